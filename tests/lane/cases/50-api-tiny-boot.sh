#!/usr/bin/env bash
# The API drives a tiny guest (api): wisp-vmm --api-sock; the ticker guest
# configured and started with curl over the Unix socket; the state moves
# Not started -> Running -> Paused -> Running; no ticks while paused and
# ticks again after resume; configuration refused once running; FlushMetrics
# writes vCPU exit counters; SendCtrlAltDel reaches the guest through the
# i8042, it resets and wisp-vmm exits 0.
# lane-guest: tiny
# lane-timeout: 240
set -uo pipefail
. lane/lib.sh
lane_need_bin wisp-vmm
[ -f "$WISP_GUESTS/ticker.elf" ] || lane_skip "ticker.elf not built"

SOCK=$WISP_TMP/api.sock OUT=$WISP_TMP/console.log ERR=$WISP_TMP/vmm.log MET=$WISP_TMP/metrics.json
"$WISP_BIN/wisp-vmm" --api-sock "$SOCK" --id lane-api </dev/null >"$OUT" 2>"$ERR" &
VPID=$!
trap 'kill -9 $VPID 2>/dev/null' EXIT
wait_for_file "$SOCK" 10 || { lane_show "$ERR"; lane_fail "no API socket"; }

fails=0
pass() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
# api METHOD PATH [BODY] -> ST, BODY
api() {
	local a=(-s --max-time 60 --unix-socket "$SOCK" -o "$WISP_TMP/resp" -w '%{http_code}' -X "$1")
	[ $# -ge 3 ] && a+=(-H 'Content-Type: application/json' -d "$3")
	ST=$(curl "${a[@]}" "http://localhost$2") || ST=000
	BODY=$(cat "$WISP_TMP/resp" 2>/dev/null)
}
want() { # STATUS METHOD PATH [BODY]
	local s=$1; shift
	api "$@"
	[ "$ST" = "$s" ] && pass "$1 $2 -> $ST" || bad "$1 $2: $ST, want $s: $BODY"
}
state_is() {
	api GET /
	[[ $BODY == *"\"state\":\"$1\""* ]] && pass "state $1" || bad "state: $BODY, want $1"
}
ticks() { grep -c '^tick ' "$OUT" 2>/dev/null || true; }

state_is "Not started"
want 204 PUT /boot-source "{\"kernel_image_path\": \"$WISP_GUESTS/ticker.elf\", \"boot_args\": \"console=ttyS0\"}"
want 204 PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 32}'
want 204 PUT /metrics "{\"metrics_path\": \"$MET\"}"
want 204 PUT /actions '{"action_type": "InstanceStart"}'
state_is Running
wait_for_log '^tick 3' "$OUT" 60 "$VPID" || { lane_show "$OUT"; lane_show "$ERR"; lane_fail "the guest did not tick"; }
pass "the guest runs (tick 3 seen)"

want 400 PUT /machine-config '{"vcpu_count": 2, "mem_size_mib": 64}'
[[ $BODY == *"not allowed after the VM is started"* ]] && pass "config refused once running" || bad "refusal: $BODY"
want 400 PUT /actions '{"action_type": "InstanceStart"}'

want 204 PATCH /vm '{"state": "Paused"}'
state_is Paused
sleep 0.5
a=$(ticks); sleep 3; b=$(ticks)
[ "$a" = "$b" ] && pass "no ticks while paused ($a)" || bad "ticks went on while paused: $a -> $b"
want 400 PUT /actions '{"action_type": "SendCtrlAltDel"}'
want 204 PATCH /vm '{"state": "Resumed"}'
state_is Running
next=$((b + 2))
wait_for_log "^tick $next\b" "$OUT" 60 "$VPID" && pass "ticks again after resume (tick $next)" || bad "no tick $next after resume"

want 204 PUT /actions '{"action_type": "FlushMetrics"}'
io=$(grep -o '"exit_io_out":[0-9]*' "$MET" | tail -1 | cut -d: -f2)
[ "${io:-0}" -gt 0 ] && pass "metrics: exit_io_out $io" || bad "metrics line: $(tail -c 300 "$MET")"
grep -q '"patch_vm":{"requests":' "$MET" && pass "metrics: API counters per endpoint" || bad "no patch_vm counter"

want 204 PUT /actions '{"action_type": "SendCtrlAltDel"}'
for _ in $(seq 600); do kill -0 "$VPID" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$VPID" 2>/dev/null; then
	bad "wisp-vmm still running 30 s after SendCtrlAltDel"
else
	wait "$VPID"; rc=$?
	[ "$rc" = 0 ] && pass "SendCtrlAltDel: the guest reset, wisp-vmm exited 0" || bad "exit $rc after SendCtrlAltDel"
fi
grep -q 'ticker: ctrl-alt-del' "$OUT" && pass "the guest saw Ctrl+Alt+Del through the i8042" || bad "the guest did not see the keys"
[ ! -e "$SOCK" ] && pass "API socket removed at exit" || bad "API socket left behind"
if [ "$fails" -ne 0 ]; then lane_show "$OUT" 20; lane_show "$ERR" 40; lane_fail "$fails checks failed"; fi
echo "api tiny boot: all checks passed"
