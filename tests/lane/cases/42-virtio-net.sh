#!/usr/bin/env bash
# virtio-net in the Linux lane: a tap in a network namespace made here, the
# VMM started inside it; the guest's MAC comes from guest_mac; ping both
# ways; an 8 MiB TCP stream each way (HTTP with busybox httpd on both ends)
# checked by SHA-256.
# lane-timeout: 600
set -uo pipefail
. lane/lib.sh
. lane/virtio-lib.sh
lane_need_bin wisp-vmm wisp-agent-ctl wisp-virtio-test
lane_need_image vmlinux rootfs.ext4
command -v ip >/dev/null || lane_skip "ip missing"
command -v curl >/dev/null || lane_skip "curl missing"
[ -c /dev/net/tun ] || lane_skip "/dev/net/tun missing"

NS=wisp-vnet-$$ TAP=wtap0 HOST_IP=172.30.0.1 GUEST_IP=172.30.0.2 MAC=06:00:ac:1e:00:02
VT_UDS=$WISP_TMP/vsock.sock VT_LOG=$WISP_TMP/vmm.log
cleanup() {
	[ -n "${VMM:-}" ] && kill -KILL "$VMM" 2>/dev/null && wait "$VMM" 2>/dev/null
	[ -n "${HTTPD:-}" ] && kill "$HTTPD" 2>/dev/null
	ip netns del "$NS" 2>/dev/null
}
trap cleanup EXIT
ip netns add "$NS" || lane_skip "cannot create a network namespace"
inns() { ip netns exec "$NS" "$@"; }
inns ip link set lo up
inns ip tuntap add dev "$TAP" mode tap || lane_fail "cannot create tap $TAP"
inns ip addr add "$HOST_IP/24" dev "$TAP"
inns ip link set "$TAP" up

vt_rootfs "$WISP_TMP/root.ext4"
lane_vmm_config "$WISP_TMP/vm.json" --kernel "$WISP_IMAGES/vmlinux" --args "$LANE_BOOT_ARGS" \
	--rootfs "$WISP_TMP/root.ext4" --net "eth0:$TAP:$MAC" --vsock "3:$VT_UDS" --mem 256
inns "$WISP_BIN/wisp-vmm" --no-api --config-file "$WISP_TMP/vm.json" </dev/null >"$VT_LOG" 2>&1 &
VMM=$!
vt_wait_guest "$VMM"

fails=0
pass() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

mac=$(vt_ctl invoke /bin/cat /sys/class/net/eth0/address)
[ "$mac" = "$MAC" ] && pass "guest MAC from guest_mac" || bad "guest MAC '$mac', want $MAC"
vt_sh "ip addr add $GUEST_IP/24 dev eth0 && ip link set eth0 up" || bad "guest interface setup"
p=$(vt_sh "ping -c 3 -w 20 $HOST_IP 2>&1")
[[ $p == *"bytes from $HOST_IP"* ]] && pass "guest pings host: $(echo "$p" | grep -c "bytes from") replies" \
	|| bad "guest ping: $p"
inns ping -c 3 -W 5 "$GUEST_IP" >"$WISP_TMP/ping.log" 2>&1 && pass "host pings guest" \
	|| { lane_show "$WISP_TMP/ping.log"; bad "host ping"; }

# guest -> host: the guest serves, the host downloads
# (the agent ends an invocation's process group with its leader: the server
# goes to its own session, and the invocation outlives the setsid)
g=$(vt_sh 'mkdir -p /tmp/www && head -c 8388608 /dev/urandom > /tmp/www/g.bin && sha256sum /tmp/www/g.bin && { setsid httpd -f -p 8080 -h /tmp/www </dev/null >/dev/null 2>&1 & sleep 2; }')
g_sha=${g%% *}
# (busybox httpd daemonizes before it listens: retry a refused connect)
inns curl -sS --retry 10 --retry-connrefused --retry-delay 1 --max-time 120 -o "$WISP_TMP/g.bin" "http://$GUEST_IP:8080/g.bin" 2>"$WISP_TMP/curl.log"
h=$(sha256sum < "$WISP_TMP/g.bin" 2>/dev/null | cut -d' ' -f1)
[ ${#g_sha} = 64 ] && [ "$h" = "$g_sha" ] && pass "8 MiB TCP guest->host intact" \
	|| { lane_show "$WISP_TMP/curl.log"; bad "guest->host hash '$h', want '$g_sha'"; }

# host -> guest: the host serves, the guest downloads
mkdir -p "$WISP_TMP/www"
head -c 8388608 /dev/urandom > "$WISP_TMP/www/h.bin"
h_sha=$(sha256sum < "$WISP_TMP/www/h.bin" | cut -d' ' -f1)
inns busybox httpd -f -p "$HOST_IP:8081" -h "$WISP_TMP/www" &
HTTPD=$!
sleep 0.5
r=$(vt_sh "wget -q -O - http://$HOST_IP:8081/h.bin | sha256sum")
[ "${r%% *}" = "$h_sha" ] && pass "8 MiB TCP host->guest intact" || bad "host->guest hash '${r%% *}', want $h_sha"

[ $fails = 0 ] || { lane_show "$VT_LOG" 40; lane_fail "$fails checks failed"; }
echo "virtio-net: all checks passed"
