#!/usr/bin/env bash
# Benchmark of the virtio devices with a real Linux guest (run it where
# /dev/kvm works: directly on hardware KVM, or through the lane case
# 91-virtio-bench in the nested lane). One guest (2 vCPUs by default, 512 MiB) with the
# test rootfs, a raw scratch drive, a tap in its own network namespace and
# vsock. Prints, for each workload, its throughput and the VMM's host CPU
# time (user+system, all threads) per GiB moved; asserts nothing.
#
#   bench/virtio.sh [BIN_DIR [IMAGES_DIR]]
#   WISP_BENCH_MB=N   data per streaming workload (default 128)
#   WISP_BENCH_SECS=N seconds per random-I/O run (default 10)
#   WISP_BENCH_VCPUS=N the guest's vCPUs (default 2, or 1 where this process
#                      may use only one CPU, as in the nested lane: a 2-vCPU
#                      guest there measured its own lock-holder preemption,
#                      not the devices; net TCP fell from 23 to 0.9 MiB/s)
#
# In the nested lane the figures compare only with another run there.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
WISP_BIN=${1:-${WISP_BIN:-$here/../build/bin}}
WISP_IMAGES=${2:-${WISP_IMAGES:-$here/../images/out}}
lib=${VT_LIB_DIR:-$here/../tests/lane}
MB=${WISP_BENCH_MB:-128}
SECS=${WISP_BENCH_SECS:-10}
VCPUS=${WISP_BENCH_VCPUS:-$( [ "$(nproc)" -gt 1 ] && echo 2 || echo 1)}
[ -c /dev/kvm ] || { echo "virtio-bench: no /dev/kvm here (use tests/lane/run.sh virtio-bench)"; exit 1; }
WISP_TMP=$(mktemp -d)
. "$lib/lib.sh"
. "$lib/virtio-lib.sh"
lane_skip() { echo "virtio-bench: cannot run: $*"; exit 1; }
lane_fail() { echo "virtio-bench: failed: $*"; exit 1; }
for b in wisp-vmm wisp-agent-ctl wisp-virtio-test; do [ -x "$WISP_BIN/$b" ] || lane_fail "$b not built"; done

NS=wisp-vbench-$$ TAP=wbtap0 HOST_IP=172.31.0.1 GUEST_IP=172.31.0.2
VT_UDS=$WISP_TMP/vsock.sock VT_LOG=$WISP_TMP/vmm.log
cleanup() {
	[ -n "${VMM:-}" ] && kill -KILL "$VMM" 2>/dev/null && wait "$VMM" 2>/dev/null
	ip netns del "$NS" 2>/dev/null
	rm -rf "$WISP_TMP"
}
trap cleanup EXIT
ip netns add "$NS" || lane_fail "cannot create a network namespace"
ip netns exec "$NS" ip tuntap add dev "$TAP" mode tap || lane_fail "tap"
ip netns exec "$NS" ip addr add "$HOST_IP/24" dev "$TAP"
ip netns exec "$NS" ip link set "$TAP" up
vt_rootfs "$WISP_TMP/root.ext4"
truncate -s $(( (MB + 64) * 1048576 )) "$WISP_TMP/scratch.img"
lane_vmm_config "$WISP_TMP/vm.json" --kernel "$WISP_IMAGES/vmlinux" --args "$LANE_BOOT_ARGS quiet" \
	--rootfs "$WISP_TMP/root.ext4" --drive "scratch:$WISP_TMP/scratch.img" \
	--net "eth0:$TAP" --vsock "3:$VT_UDS" --vcpus "$VCPUS" --mem 512
ip netns exec "$NS" "$WISP_BIN/wisp-vmm" --no-api --config-file "$WISP_TMP/vm.json" </dev/null >"$VT_LOG" 2>&1 &
VMM=$!
vt_wait_guest "$VMM"
echo "virtio-bench: guest with $VCPUS vCPU(s), 512 MiB; $(nproc) host CPU(s) usable here"
vt_sh "ip addr add $GUEST_IP/24 dev eth0 && ip link set eth0 up && mkdir -p /tmp/www" >/dev/null
HZ=$(getconf CLK_TCK 2>/dev/null || echo 100) # USER_HZ, 100 on x86 Linux

# measure NAME BYTES CMD...: run CMD, print throughput and VMM CPU per GiB.
measure() {
	local name=$1 bytes=$2; shift 2
	local c0 c1 t0 t1
	c0=$(vt_cpu_ticks "$VMM"); t0=$(date +%s%N)
	if ! "$@" >"$WISP_TMP/out" 2>&1; then
		cat "$WISP_TMP/out"
		echo "virtio-bench: $name failed; the VMM's log and the guest console (last 40 lines):"
		tail -n 40 "$VT_LOG" | sed 's/^/    /'
		return 1
	fi
	t1=$(date +%s%N); c1=$(vt_cpu_ticks "$VMM")
	awk -v n="$name" -v b="$bytes" -v t=$((t1 - t0)) -v c=$((c1 - c0)) -v hz="$HZ" 'BEGIN {
		s = t / 1e9; cpu = c / hz; gib = b / 1073741824
		printf "virtio-bench: %s: %.1f MiB/s (%.0f MiB in %.2f s), VMM CPU %.2f s/GiB (%.0f%% of a core)\n",
			n, b / 1048576 / s, b / 1048576, s, cpu / gib, 100 * cpu / s }'
}
bytes=$((MB * 1048576))
measure "blk sequential write" $bytes vt_sh "dd if=/dev/zero of=/dev/vdb bs=1M count=$MB conv=fsync 2>&1"
vt_sh 'sync; echo 3 > /proc/sys/vm/drop_caches' >/dev/null 2>&1
measure "blk sequential read" $bytes vt_sh "dd if=/dev/vdb of=/dev/null bs=1M count=$MB 2>&1"
for mode in r w; do
	c0=$(vt_cpu_ticks "$VMM")
	r=$(vt_sh "wisp-virtio-test randio /dev/vdb $SECS $mode")
	c1=$(vt_cpu_ticks "$VMM")
	echo "virtio-bench: blk 4 KiB random $( [ $mode = r ] && echo read || echo write): ${r#iops } IOPS (O_DIRECT, queue depth 1), VMM CPU $(awk -v c=$((c1 - c0)) -v hz="$HZ" -v s="$SECS" 'BEGIN{printf "%.0f%%", 100*c/hz/s}') of a core"
done
# (servers go to their own session: the agent ends an invocation's group)
vt_sh "dd if=/dev/zero of=/tmp/www/z bs=1M count=$MB 2>/dev/null && { setsid httpd -f -p 8080 -h /tmp/www </dev/null >/dev/null 2>&1 & sleep 2; }" >/dev/null
measure "net TCP guest->host" $bytes ip netns exec "$NS" curl -sS --retry 10 --retry-connrefused --retry-delay 1 --max-time 600 -o /dev/null "http://$GUEST_IP:8080/z"
vt_sh "rm -f /tmp/www/z; setsid wisp-virtio-test source 5001 $bytes </dev/null >/dev/null 2>&1 & sleep 2" >/dev/null
vsock_pull() {
	local n
	# 32 MiB take seconds even in the nested lane: a transfer that stalls
	# fails in 3 minutes, saying how far it got.
	n=$(printf 'CONNECT 5001\n' | timeout 180 socat -t 180 - "UNIX-CONNECT:$VT_UDS" | wc -c)
	[ "$n" -ge "$bytes" ] || { echo "vsock: $n of $bytes bytes arrived (the reply line included)"; return 1; }
}
measure "vsock guest->host" $bytes vsock_pull
