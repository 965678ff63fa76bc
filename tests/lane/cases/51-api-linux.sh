#!/usr/bin/env bash
# An API-driven Linux boot (api): wisp-vmm --api-sock, then with curl over
# the Unix socket the kernel, machine, a root drive (rootfs.ext4 with
# wisp-agent as init) and vsock; InstanceStart; the agent answers HELLO over
# the hybrid vsock socket; PATCH /vm Paused stops the guest (a HELLO gets no
# answer), Resumed brings it back (HELLO answers again); PATCH /drives gives
# the running root drive a rate limiter; GET /vm/config shows what was
# configured; SendCtrlAltDel makes init shut down and the guest
# reboot, and wisp-vmm exits 0.
# lane-timeout: 600
set -uo pipefail
. lane/lib.sh
lane_need_bin wisp-vmm wisp-agent-ctl
lane_need_image vmlinux rootfs.ext4

SOCK=$WISP_TMP/api.sock OUT=$WISP_TMP/console.log ERR=$WISP_TMP/vmm.log UDS=$WISP_TMP/vsock.sock
cp "$WISP_IMAGES/rootfs.ext4" "$WISP_TMP/rootfs.ext4"
"$WISP_BIN/wisp-vmm" --api-sock "$SOCK" --id lane-linux </dev/null >"$OUT" 2>"$ERR" &
VPID=$!
trap 'kill -9 $VPID 2>/dev/null' EXIT
wait_for_file "$SOCK" 10 || { lane_show "$ERR"; lane_fail "no API socket"; }

fails=0
pass() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
api() {
	local a=(-s --max-time 120 --unix-socket "$SOCK" -o "$WISP_TMP/resp" -w '%{http_code}' -X "$1")
	[ $# -ge 3 ] && a+=(-H 'Content-Type: application/json' -d "$3")
	ST=$(curl "${a[@]}" "http://localhost$2") || ST=000
	BODY=$(cat "$WISP_TMP/resp" 2>/dev/null)
}
want() {
	local s=$1; shift
	api "$@"
	[ "$ST" = "$s" ] && pass "$1 $2 -> $ST" || bad "$1 $2: $ST, want $s: $BODY"
}
state_is() {
	api GET /
	[[ $BODY == *"\"state\":\"$1\""* ]] && pass "state $1" || bad "state: $BODY, want $1"
}
ctl() { "$WISP_BIN/wisp-agent-ctl" --vsock "$UDS" "$@"; }

want 204 PUT /boot-source "{\"kernel_image_path\": \"$WISP_IMAGES/vmlinux\", \"boot_args\": \"$LANE_BOOT_ARGS root=/dev/vda rw wisp.hostname=lane-api\"}"
want 204 PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 256}'
want 204 PUT /drives/rootfs "{\"drive_id\": \"rootfs\", \"path_on_host\": \"$WISP_TMP/rootfs.ext4\", \"is_root_device\": true, \"is_read_only\": false}"
want 204 PUT /vsock "{\"guest_cid\": 3, \"uds_path\": \"$UDS\"}"
want 204 PUT /actions '{"action_type": "InstanceStart"}'
[ "$ST" = 204 ] || { lane_show "$ERR"; lane_fail "InstanceStart refused: $BODY"; }
state_is Running
api GET /vm/config
[[ $BODY == *'"drive_id":"rootfs"'* && $BODY == *'"guest_cid":3'* ]] && pass "GET /vm/config shows the drive and vsock" || bad "vm/config: $BODY"

if ! hello=$(timeout 300 "$WISP_BIN/wisp-agent-ctl" --vsock "$UDS" --wait-ms 240000 hello 2>&1); then
	lane_show "$OUT" 60; lane_show "$ERR" 40
	lane_fail "no HELLO from the guest's agent: $hello"
fi
pass "the agent answers over vsock: $hello"

want 204 PATCH /vm '{"state": "Paused"}'
state_is Paused
if timeout 20 "$WISP_BIN/wisp-agent-ctl" --vsock "$UDS" --wait-ms 5000 --io-timeout-ms 5000 hello >/dev/null 2>&1; then
	bad "the paused guest answered HELLO"
else
	pass "the paused guest does not answer"
fi
want 204 PATCH /vm '{"state": "Resumed"}'
state_is Running
if timeout 200 "$WISP_BIN/wisp-agent-ctl" --vsock "$UDS" --wait-ms 120000 --io-timeout-ms 120000 hello >/dev/null 2>&1; then
	pass "the resumed guest answers HELLO again"
else
	bad "no HELLO after resume"
fi
want 204 PATCH /drives/rootfs '{"drive_id": "rootfs", "rate_limiter": {"ops": {"size": 1000, "refill_time": 100}}}'
want 400 PATCH /drives/nosuch '{"drive_id": "nosuch", "path_on_host": "/dev/null"}'
want 400 PUT /drives/late '{"drive_id": "late", "path_on_host": "/dev/null", "is_root_device": false}'
h=$(timeout 120 "$WISP_BIN/wisp-agent-ctl" --vsock "$UDS" --io-timeout-ms 100000 invoke /bin/hostname 2>&1)
[ "$h" = lane-api ] && pass "the guest runs commands after resume (hostname $h)" || bad "invoke after resume: $h"

want 204 PUT /actions '{"action_type": "SendCtrlAltDel"}'
for _ in $(seq 2400); do kill -0 "$VPID" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$VPID" 2>/dev/null; then
	bad "wisp-vmm still running 120 s after SendCtrlAltDel"
else
	wait "$VPID"; rc=$?
	[ "$rc" = 0 ] && pass "SendCtrlAltDel: init shut down, the guest rebooted, wisp-vmm exited 0" || bad "exit $rc after SendCtrlAltDel"
fi
if [ "$fails" -ne 0 ]; then lane_show "$OUT" 40; lane_show "$ERR" 40; lane_fail "$fails checks failed"; fi
echo "api linux: all checks passed"
