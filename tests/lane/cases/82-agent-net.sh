#!/usr/bin/env bash
# The agent as init configures eth0 from wisp.ip=ADDR/PREFIX,GATEWAY: the
# guest gets its address and default route on the virtio-net device, and
# packets flow both ways over the tap device (the host pings the guest and
# gets its replies; ping inside the guest is impossible: the stripped kernel
# has no POSIX timers).
# lane-timeout: 400
set -uo pipefail
[ -f lane/lib.sh ] || { echo "SKIPPED: lane/lib.sh missing"; exit 77; }
. lane/lib.sh
lane_need_bin wisp-vmm wisp-agent-ctl
lane_need_image vmlinux rootfs.ext4
[ -c /dev/net/tun ] || lane_skip "no /dev/net/tun"
command -v ip >/dev/null || lane_skip "no ip tool"
command -v busybox >/dev/null || lane_skip "no busybox (ping)"

TAP=wagt$$
UDS=$WISP_TMP/vsock.sock
cleanup() { lane_vmm_stop; ip link del "$TAP" 2>/dev/null; }
trap cleanup EXIT
ip tuntap add dev "$TAP" mode tap || lane_skip "cannot create a tap device"
ip addr add 172.30.0.1/24 dev "$TAP"
ip link set "$TAP" up

cp "$WISP_IMAGES/rootfs.ext4" "$WISP_TMP/rootfs.ext4"
lane_vmm_config "$WISP_TMP/vm.json" --kernel "$WISP_IMAGES/vmlinux" \
	--args "$LANE_BOOT_ARGS root=/dev/vda rw wisp.ip=172.30.0.2/24,172.30.0.1" \
	--rootfs "$WISP_TMP/rootfs.ext4" --vsock "3:$UDS" --net "eth0:$TAP:06:00:ac:1e:00:02"
lane_vmm_start "$WISP_TMP/vm.json" "$WISP_TMP/vmm.log"
ctl() { timeout 300 "$WISP_BIN/wisp-agent-ctl" --vsock "$UDS" --io-timeout-ms 120000 "$@"; }
wait_for_file "$UDS" 60 || lane_fail "the VMM did not create its vsock socket"
h=$(ctl --wait-ms 240000 hello 2>&1) || { lane_show "$WISP_TMP/vmm.log" 60; lane_fail "no HELLO: $h"; }

fails=0
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
net=$(ctl invoke /bin/sh -c 'ip -4 addr show dev eth0; ip -4 route')
echo "$net"
grep -q 'inet 172.30.0.2/24' <<<"$net" && echo "ok: eth0 has 172.30.0.2/24" || bad "eth0 address"
grep -q 'default via 172.30.0.1 dev eth0' <<<"$net" && echo "ok: default route via 172.30.0.1" || bad "default route"
if timeout 60 busybox ping -c 3 -W 10 172.30.0.2 >"$WISP_TMP/ping.out" 2>&1; then
	echo "ok: the host reaches the guest ($(tail -n1 "$WISP_TMP/ping.out"))"
else
	cat "$WISP_TMP/ping.out"; bad "host -> guest ping"
fi
ctl shutdown >/dev/null || bad "SHUTDOWN"
lane_vmm_wait 120; rc=$?
[ $rc = 0 ] || bad "the VMM exited $rc after SHUTDOWN"
if [ $fails -ne 0 ]; then
	lane_show "$WISP_TMP/vmm.log" 40
	exit 1
fi
exit 0
