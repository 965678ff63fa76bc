#!/bin/sh
# Minimal init for wisp test guests: /init in images/out/initramfs.cpio.gz and
# /sbin/init in images/out/rootfs.ext4 (until wisp-agent is built; then the
# rootfs gets the agent as /sbin/init and this script as /sbin/wisp-test-init).
#
# It mounts the basic filesystems, prints the marker line
#     wisp-init: ready
# on the console, then does what `wisp.test=` on the kernel command line says:
#     (absent) or reboot   print the marker and reboot (the VMM then exits 0)
#     info                 print vcpus/memory/cmdline lines, then reboot
#     shell                run an interactive shell on the console; reboot when it exits
#     panic                exit PID 1 so the kernel panics ("Attempted to kill init!")
#     hold                 print the marker and stay up (sleep) until killed
# Lines printed for tests start with "wisp-init: ".
export PATH=/usr/bin:/bin:/usr/sbin:/sbin

# (Debian's busybox has no `mountpoint` applet.)
mounted() { grep -q "^[^ ]* $1 " /proc/mounts 2>/dev/null; }
mounted /proc || mount -t proc proc /proc
mounted /sys || mount -t sysfs sysfs /sys
mounted /dev || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts
mounted /dev/pts || mount -t devpts devpts /dev/pts
mounted /tmp || mount -t tmpfs -o mode=1777 tmpfs /tmp
mounted /run || mount -t tmpfs -o mode=755 tmpfs /run
# An initramfs has no /dev/console before devtmpfs: take the console now.
[ -c /dev/console ] && exec </dev/console >/dev/console 2>&1
hostname wisp 2>/dev/null

mode=reboot
for arg in $(cat /proc/cmdline); do
	case $arg in
	wisp.test=*) mode=${arg#wisp.test=} ;;
	esac
done

echo "wisp-init: ready"

case $mode in
info)
	echo "wisp-init: vcpus=$(grep -c '^processor' /proc/cpuinfo)"
	echo "wisp-init: memtotal_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
	echo "wisp-init: cmdline=$(cat /proc/cmdline)"
	;;
shell)
	echo "wisp-init: shell"
	# cttyhack gives the shell a controlling terminal (job control, ^C).
	setsid cttyhack sh -i
	echo "wisp-init: shell exited"
	;;
panic)
	echo "wisp-init: panicking on purpose"
	exit 1
	;;
hold)
	while :; do sleep 3600; done
	;;
reboot) ;;
*)
	echo "wisp-init: unknown wisp.test=$mode"
	;;
esac
sync
echo "wisp-init: rebooting"
reboot -f
# reboot -f returns only if it failed.
echo "wisp-init: reboot failed"
exit 1
