#!/usr/bin/env bash
# Two clones restored from one snapshot of a booted guest (agent as init),
# each sent RESTORED with fresh entropy and the host's clock: they must
# return different random bytes, and a wall clock that is current rather than
# the snapshot's. Driven through the Firecracker API (PATCH /vm, PUT
# /snapshot/create, PUT /snapshot/load); the clones run one after the other
# because both keep the snapshot's vsock socket path.
# lane-timeout: 900
set -uo pipefail
[ -f lane/lib.sh ] || { echo "SKIPPED: lane/lib.sh missing"; exit 77; }
. lane/lib.sh
lane_need_bin wisp-vmm wisp-agent-ctl
lane_need_image vmlinux rootfs.ext4
command -v curl >/dev/null || lane_skip "curl missing"

UDS=$WISP_TMP/vsock.sock
VPID=
stop_vmm() {
	if [ -n "$VPID" ] && kill -0 "$VPID" 2>/dev/null; then
		kill -KILL "$VPID" 2>/dev/null
		wait "$VPID" 2>/dev/null
	fi
	VPID=
}
trap stop_vmm EXIT
vmm_gone() { for _ in $(seq 600); do kill -0 "$VPID" 2>/dev/null || return 0; sleep 0.1; done; return 1; }
ctl() { timeout 300 "$WISP_BIN/wisp-agent-ctl" --vsock "$UDS" --io-timeout-ms 120000 "$@"; }
# api SOCKET METHOD PATH JSON: prints the HTTP status; the body goes to $WISP_TMP/api.body
api() {
	curl -s -o "$WISP_TMP/api.body" -w '%{http_code}' --max-time 120 --unix-socket "$1" \
		-X "$2" "http://localhost$3" -H 'Content-Type: application/json' -d "$4"
}
start_vmm() { # start_vmm API_SOCK LOG [ARGS...]
	local sock=$1 log=$2; shift 2
	rm -f "$sock"
	"$WISP_BIN/wisp-vmm" --api-sock "$sock" "$@" </dev/null >"$log" 2>&1 &
	VPID=$!
	wait_for_file "$sock" 30 || { lane_show "$log" 40; lane_fail "no API socket $sock"; }
}

# --- the original: boot, wait for the agent, pause, snapshot ---------------------
cp "$WISP_IMAGES/rootfs.ext4" "$WISP_TMP/rootfs.ext4"
lane_vmm_config "$WISP_TMP/vm.json" --kernel "$WISP_IMAGES/vmlinux" \
	--args "$LANE_BOOT_ARGS root=/dev/vda rw" --rootfs "$WISP_TMP/rootfs.ext4" \
	--vsock "3:$UDS" --mem 128
start_vmm "$WISP_TMP/api0.sock" "$WISP_TMP/vmm0.log" --config-file "$WISP_TMP/vm.json"
if ! wait_for_file "$UDS" 60; then
	grep -qi vsock "$WISP_TMP/vmm0.log" && ! kill -0 "$VPID" 2>/dev/null &&
		lane_skip "wisp-vmm refused the vsock device (not there yet?)"
	lane_fail "the VMM did not create its vsock socket"
fi
h=$(ctl --wait-ms 240000 hello 2>&1) || { lane_show "$WISP_TMP/vmm0.log" 60; lane_fail "no HELLO: $h"; }
code=$(api "$WISP_TMP/api0.sock" PATCH /vm '{"state": "Paused"}')
[ "$code" = 000 ] && { lane_show "$WISP_TMP/vmm0.log" 40; lane_fail "no answer on the API socket"; }
[ "$code" = 204 ] || lane_skip "pausing through the API is not available yet (HTTP $code: $(cat "$WISP_TMP/api.body"))"
code=$(api "$WISP_TMP/api0.sock" PUT /snapshot/create \
	"{\"snapshot_type\": \"Full\", \"snapshot_path\": \"$WISP_TMP/snap.state\", \"mem_file_path\": \"$WISP_TMP/snap.mem\"}")
[ "$code" = 204 ] || lane_skip "snapshots are not available through the API yet (HTTP $code: $(cat "$WISP_TMP/api.body"))"
stop_vmm
snap_time=$(date +%s)
sleep 3 # so a clone that kept the snapshot's clock would be visibly behind

# --- two clones -------------------------------------------------------------------
fails=0
declare -a rnd clk
for i in 1 2; do
	rm -f "$UDS"
	start_vmm "$WISP_TMP/api$i.sock" "$WISP_TMP/vmm$i.log"
	code=$(api "$WISP_TMP/api$i.sock" PUT /snapshot/load \
		"{\"snapshot_path\": \"$WISP_TMP/snap.state\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$WISP_TMP/snap.mem\"}, \"resume_vm\": true}")
	[ "$code" = 204 ] || { lane_show "$WISP_TMP/vmm$i.log" 40; lane_fail "clone $i: load HTTP $code: $(cat "$WISP_TMP/api.body")"; }
	r=$(ctl --wait-ms 60000 restored --entropy-bytes 64) || lane_fail "clone $i: RESTORED failed: $r"
	[[ $r == *"entropy_added=1 clock_set=1"* ]] || { echo "FAIL: clone $i: $r"; fails=$((fails + 1)); }
	out=$(ctl invoke /usr/lib/wisp/handlers/random) || lane_fail "clone $i: random handler failed"
	rnd[$i]=$(sed -n 1p <<<"$out")
	clk[$i]=$(sed -n 2p <<<"$out")
	echo "clone $i: $r"
	echo "clone $i: random ${rnd[$i]} clock ${clk[$i]} (host $(date +%s), snapshot at $snap_time)"
	ctl shutdown >/dev/null
	vmm_gone || { echo "FAIL: clone $i did not exit after SHUTDOWN"; fails=$((fails + 1)); }
	stop_vmm
done
if [ ${#rnd[1]} = 64 ] && [ "${rnd[1]}" != "${rnd[2]}" ]; then
	echo "ok: the clones' random bytes differ"
else
	echo "FAIL: random bytes '${rnd[1]}' and '${rnd[2]}'"; fails=$((fails + 1))
fi
now=$(date +%s)
for i in 1 2; do
	if [ "${clk[$i]:-0}" -ge $((now - 120)) ] && [ "${clk[$i]:-0}" -le $((now + 120)) ]; then
		echo "ok: clone $i's wall clock is current"
	else
		echo "FAIL: clone $i's clock ${clk[$i]:-?}, host $now"; fails=$((fails + 1))
	fi
done
[ $fails -eq 0 ]
