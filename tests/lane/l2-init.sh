#!/bin/bash
# /init of the nested lane's L2 (tests/lane/run.sh packs it into the L2
# initramfs). Mounts the basics, loads kvm/kvm-amd and tun from the Debian
# cloud kernel, runs tests/lane/runner.sh over the packed copies of the
# project's binaries, guests, images and tests, and powers off. Everything
# goes to the serial console, where run.sh parses the result lines.
export PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
P='@@wisp-lane@@'
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
exec </dev/null >/dev/console 2>&1
# busybox applets fill in whatever the packed GNU tools do not provide.
/bin/busybox --install -s 2>/dev/null
mkdir -p /dev/pts /dev/shm /tmp /run /sys/fs/cgroup
mount -t devpts devpts /dev/pts
# bash process substitution and /dev/stdin need these; devtmpfs has none.
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=755 tmpfs /run
ip link set lo up
hostname wisp-l2

finish() {
	sync
	poweroff -f
	reboot -f
}

# Settings from the host (filter, timeouts).
[ -f /lane/env ] && . /lane/env

for m in /lane/modules/*.ko; do
	# Packed in load order: irqbypass, kvm, kvm-amd, then tun and its deps.
	if ! out=$(insmod "$m" 2>&1); then
		echo "$P setup-fail insmod $(basename "$m"): $out"
		finish
	fi
done
for i in $(seq 1 50); do [ -c /dev/kvm ] && break; sleep 0.1; done
if [ ! -c /dev/kvm ]; then
	echo "$P setup-fail /dev/kvm did not appear after loading kvm-amd"
	dmesg | tail -n 20 | sed "s/^/$P setup-log | /"
	finish
fi
if ! grep -q . /sys/module/kvm_amd/parameters/npt 2>/dev/null; then
	echo "$P setup-fail kvm_amd is not loaded"
	finish
fi
# Keep the nested host from remapping guest RAM under running microVMs:
# no transparent huge pages (khugepaged collapsing a VMM's memory) and no
# proactive compaction. Each remap is an NPT change whose TLB flush QEMU's
# emulated SVM must get right, and long runs here have ended with the L2's
# kernel or a guest corrupted (see tests/lane/README.md).
echo never > /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null
echo 0 > /proc/sys/vm/compaction_proactiveness 2>/dev/null
# The cases run on the L2's last CPU only (WISP_LANE_L2_PIN=0: on all).
# With a microVM's vCPU threads free to move between the L2's CPUs, QEMU's
# emulated SVM now and then swaps host and guest state at a world switch:
# a guest ran on with the nested host's CR3 and RIP (a nested page fault
# loop outside its RAM, then an RCU stall), other guests triple-faulted,
# and the L2's kernel ran on with a guest's GS base (the "stack guard page"
# crash). Measured with the 2-vCPU virtio-bench guest booted and moving
# 32 MiB over vsock in a loop: 11 failures in about 127 runs unpinned,
# none in 60 pinned (tests/lane/README.md).
pin= pin_cpu=
if [ "${WISP_LANE_L2_PIN:-1}" != 0 ] && [ "$(nproc)" -gt 1 ]; then
	pin_cpu=$(( $(nproc) - 1 ))
	pin="taskset -c $pin_cpu"
fi
echo "$P setup-ok kvm_amd npt=$(cat /sys/module/kvm_amd/parameters/npt) nproc=$(nproc) mem_kb=$(awk '/^MemTotal/ {print $2}' /proc/meminfo) thp=$(sed 's/.*\[\(.*\)\].*/\1/' /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null) clocksource=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null) cases-on-cpus=${pin_cpu:-all}"
# The L2 kernel's warnings and errors (the console shows only the worst),
# every 10 s as "l2log" lines: when the nested host dies or stalls, its
# serial log then says what it complained of before (run.sh shows them).
( while sleep 10; do
	dmesg -r -c 2>/dev/null | grep '^<[0-4]>' | tr -cd '\11\12\40-\176' | while IFS= read -r l; do
		printf '%s l2log | %s\n' "$P" "$l"
	done
done ) &

$pin /lane/tests/lane/runner.sh /lane/tests /lane/bin /lane/guests /lane/images /tmp/lane
finish
