#!/usr/bin/env bash
# virtio-vsock in the Linux lane through the hybrid Unix socket:
# host-initiated (CONNECT <port> / OK <port>) to a guest echo server with
# 4 MiB checked by hash both ways, and a CONNECT to a port nobody listens on
# closed without OK (the guest's RST). The guest-initiated direction, many
# concurrent connections both ways and the metrics are 45-virtio-vsock-full.
# lane-timeout: 600
set -uo pipefail
. lane/lib.sh
. lane/virtio-lib.sh
lane_need_bin wisp-vmm wisp-agent-ctl wisp-virtio-test
lane_need_image vmlinux rootfs.ext4
command -v socat >/dev/null || lane_skip "socat missing"

VT_UDS=$WISP_TMP/vsock.sock VT_LOG=$WISP_TMP/vmm.log
vt_rootfs "$WISP_TMP/root.ext4"
lane_vmm_config "$WISP_TMP/vm.json" --kernel "$WISP_IMAGES/vmlinux" --args "$LANE_BOOT_ARGS" \
	--rootfs "$WISP_TMP/root.ext4" --vsock "3:$VT_UDS" --mem 256
lane_vmm_start "$WISP_TMP/vm.json" "$VT_LOG"
trap lane_vmm_stop EXIT
vt_wait_guest "$LANE_VMM_PID"

fails=0
pass() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

# host -> guest: CONNECT 5000 to the guest's echo server, an invocation of
# its own for as long as it is needed
vt_serve 'exec wisp-virtio-test listen 5000'
trap 'vt_unserve; lane_vmm_stop' EXIT
vt_wait_vsock_port 5000 || bad "the guest echo server never answered on port 5000"
# host_echo IN OUT: send IN through a host-initiated connection, the reply
# (after the "OK <port>" line) into OUT.
host_echo() {
	{ printf 'CONNECT 5000\n'; cat "$1"; } | timeout 150 socat -t 120 - "UNIX-CONNECT:$VT_UDS" > "$2.raw"
	head -n 1 "$2.raw" > "$2.ok"
	tail -c +$(( $(wc -c < "$2.ok") + 1 )) "$2.raw" > "$2"
}
head -c 4194304 /dev/urandom > "$WISP_TMP/big.bin"
big_sha=$(sha256sum < "$WISP_TMP/big.bin" | cut -d' ' -f1)
host_echo "$WISP_TMP/big.bin" "$WISP_TMP/big.out"
grep -qE '^OK [0-9]+$' "$WISP_TMP/big.out.ok" && pass "handshake answered: $(cat "$WISP_TMP/big.out.ok")" \
	|| bad "handshake reply: '$(head -c 40 "$WISP_TMP/big.out.ok")'"
[ "$(sha256sum < "$WISP_TMP/big.out" | cut -d' ' -f1)" = "$big_sha" ] && pass "4 MiB host->guest->host echo intact" \
	|| bad "echo of 4 MiB: $(wc -c < "$WISP_TMP/big.out") bytes back, hash differs"

r=$({ printf 'CONNECT 5999\n'; sleep 3; } | timeout 30 socat -t 10 - "UNIX-CONNECT:$VT_UDS")
[ -z "$r" ] && pass "CONNECT to a port nobody listens on: closed without OK" || bad "got '$r' for a closed port"

[ $fails = 0 ] || { lane_show "$VT_LOG" 40; lane_fail "$fails checks failed"; }
echo "virtio-vsock: all checks passed"
