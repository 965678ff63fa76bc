#!/usr/bin/env bash
# Benchmark: time from starting wisp-vmm to the guest's init marker
# ("wisp-init: ready" on the serial console), for the stripped kernel as
# vmlinux and as bzImage with the test initramfs, 1 vCPU, 128 MiB, quiet
# console. Prints per-run figures and the median of each; asserts nothing.
# Then the host CPU an idle guest costs: a 2-vCPU guest that reached its
# init and sleeps, the VMM's user+system time over 10 s (a tickless guest
# should cost next to nothing; a 250 Hz tick costs 500 exits a second).
#
#   bench/linux-boot.sh [WISP_VMM [IMAGES_DIR]]
#   WISP_BENCH_RUNS=N (default 5)
#
# Where /dev/kvm is not hardware-assisted (the nested lane), the figures are
# only comparable with another run in the same lane, never with hardware.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
vmm=${1:-$here/../build/bin/wisp-vmm}
images=${2:-$here/../images/out}
runs=${WISP_BENCH_RUNS:-5}
[ -x "$vmm" ] || { echo "linux-boot: $vmm not built"; exit 1; }
[ -c /dev/kvm ] || { echo "linux-boot: no /dev/kvm here (use tests/lane/run.sh linux-boot-bench)"; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# one_run KERNEL: prints "MARKER_MS TOTAL_MS EXIT" for one boot.
one_run() {
	local kernel=$1 cfg=$tmp/cfg.json line t0 t1="" t2 rc
	cat > "$cfg" <<JSON
{
  "boot-source": {
    "kernel_image_path": "$kernel",
    "initrd_path": "$images/initramfs.cpio.gz",
    "boot_args": "console=ttyS0 quiet reboot=k panic=-1"
  },
  "machine-config": {"vcpu_count": 1, "mem_size_mib": 128}
}
JSON
	t0=$EPOCHREALTIME
	while IFS= read -r line; do
		if [ -z "$t1" ] && [[ $line == *"wisp-init: ready"* ]]; then t1=$EPOCHREALTIME; fi
	done < <(exec timeout -k 5 120 "$vmm" --no-api --config-file "$cfg" </dev/null 2>&1; echo "exit=$?")
	t2=$EPOCHREALTIME
	ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) * 1000 }'; }
	[ -n "$t1" ] && echo "$(ms "$t0" "$t1") $(ms "$t0" "$t2")" || echo "none $(ms "$t0" "$t2")"
}

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "none"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

status=0
for k in vmlinux bzImage; do
	[ -f "$images/$k" ] || { echo "linux-boot: $images/$k missing"; status=1; continue; }
	: > "$tmp/marks"
	for i in $(seq 1 "$runs"); do
		read -r mark total < <(one_run "$images/$k")
		echo "linux-boot: $k run $i: init marker at $mark ms, VMM exit at $total ms"
		[ "$mark" = none ] && { status=1; continue; }
		echo "$mark" >> "$tmp/marks"
	done
	echo "linux-boot: $k median $(median < "$tmp/marks") ms from VMM start to init marker ($(wc -l < "$tmp/marks")/$runs runs reached it)"
done
# idle_cpu: VMM CPU time (all threads) over WISP_BENCH_IDLE_S seconds of an
# idle 2-vCPU guest that holds at its init.
idle_s=${WISP_BENCH_IDLE_S:-10}
cat > "$tmp/idle.json" <<JSON
{
  "boot-source": {
    "kernel_image_path": "$images/vmlinux",
    "initrd_path": "$images/initramfs.cpio.gz",
    "boot_args": "console=ttyS0 quiet reboot=k panic=-1 wisp.test=hold"
  },
  "machine-config": {"vcpu_count": 2, "mem_size_mib": 128}
}
JSON
"$vmm" --no-api --config-file "$tmp/idle.json" </dev/null >"$tmp/idle.log" 2>&1 &
ipid=$!
for _ in $(seq 1 1200); do grep -q 'wisp-init: ready' "$tmp/idle.log" && break; kill -0 "$ipid" 2>/dev/null || break; sleep 0.1; done
if grep -q 'wisp-init: ready' "$tmp/idle.log"; then
	sleep 2 # let the boot's last work settle
	ticks() { awk '{ print $14 + $15 }' "/proc/$ipid/stat"; }
	c0=$(ticks); sleep "$idle_s"; c1=$(ticks)
	awk -v c=$((c1 - c0)) -v hz="$(getconf CLK_TCK 2>/dev/null || echo 100)" -v s="$idle_s" 'BEGIN {
		printf "linux-boot: idle 2-vCPU guest: VMM CPU %.1f ms per second of idle (%.2f%% of a core, over %d s)\n",
			c / hz * 1000 / s, 100 * c / hz / s, s }' || status=1
else
	echo "linux-boot: idle guest never reached its init"; status=1
fi
kill -KILL "$ipid" 2>/dev/null; wait "$ipid" 2>/dev/null
exit $status
