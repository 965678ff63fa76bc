#!/usr/bin/env bash
# wisp-vmm boot figures with tiny guests (prints medians, asserts nothing):
#   exec-to-first-guest-instruction: wisp-vmm --boot-timer with the reset
#       guest, whose first instruction writes the boot timer (the VMM logs
#       the time since exec);
#   exec-to-exit: the whole run of that guest, which resets at once;
#   vmm-rss-overhead: resident memory of a running VMM (spin guest, 128 MiB)
#       minus the resident pages of guest RAM.
# Usage: bench/boot.sh [WISP_BIN [WISP_GUESTS]]   (WISP_BENCH_RUNS, default 11)
# Needs /dev/kvm. Runs in the lane (bash + busybox) or on a hardware-KVM host.
set -uo pipefail
bin=${1:-${WISP_BIN:-build/bin}}
guests=${2:-${WISP_GUESTS:-build/guests}}
runs=${WISP_BENCH_RUNS:-11}
vmm=$bin/wisp-vmm
[ -x "$vmm" ] || { echo "boot-bench: $vmm missing"; exit 1; }
[ -f "$guests/reset.elf" ] && [ -f "$guests/spin.elf" ] || { echo "boot-bench: guests missing in $guests"; exit 1; }
[ -c /dev/kvm ] || { echo "SKIPPED: boot-bench: no /dev/kvm"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/wisp-boot-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

cfg() { # guest mem
	printf '{"boot-source":{"kernel_image_path":"%s","boot_args":"console=ttyS0"},"machine-config":{"vcpu_count":1,"mem_size_mib":%s}}' "$1" "$2"
}
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) { print "n/a"; exit } m = int((NR + 1) / 2); if (NR % 2) print v[m]; else printf "%d\n", (v[m] + v[m + 1]) / 2 }'; }
now_us() { local t=$EPOCHREALTIME; echo $(( ${t%.*} * 1000000 + 10#${t#*.} )); }

cfg "$guests/reset.elf" 128 >"$tmp/reset.json"
: >"$tmp/first" ; : >"$tmp/exit"; : >"$tmp/phases"
for i in $(seq 1 "$runs"); do
	t0=$(now_us)
	"$vmm" --no-api --config-file "$tmp/reset.json" --boot-timer </dev/null >/dev/null 2>"$tmp/err"
	rc=$?
	t1=$(now_us)
	[ "$rc" -eq 0 ] || { echo "boot-bench: run $i exited $rc"; cat "$tmp/err"; exit 1; }
	echo $((t1 - t0)) >>"$tmp/exit"
	sed -n 's/.*Guest-boot-time = \([0-9]*\) us since exec.*/\1/p' "$tmp/err" >>"$tmp/first"
	sed -n 's/.*VM built in \([0-9]*\) us: KVM VM \([0-9]*\), RAM and slots \([0-9]*\), devices \([0-9]*\), guest load \([0-9]*\), vCPUs \([0-9]*\).*/\1 \2 \3 \4 \5 \6/p' "$tmp/err" >>"$tmp/phases"
done
col() { awk -v c="$1" '{ print $c }' "$tmp/phases" | median; }
echo "boot-bench: exec-to-first-guest-instruction median $(median <"$tmp/first") us over $(wc -l <"$tmp/first") runs (128 MiB, 1 vCPU)"
echo "boot-bench: vm_build median $(col 1) us: KVM VM creation (irqchip, PIT) $(col 2), RAM + memory slots $(col 3), devices $(col 4), guest load $(col 5), vCPU creation + CPUID/MSR/LAPIC $(col 6)"
echo "boot-bench: exec-to-exit (guest resets at once) median $(median <"$tmp/exit") us over $runs runs (includes fork/exec by the shell)"

# RSS beyond guest pages: the guest RAM mapping is the one whose size is the
# configured memory; everything else resident is the VMM's own.
cfg "$guests/spin.elf" 128 >"$tmp/spin.json"
: >"$tmp/rss"
for i in $(seq 1 "$(( runs < 5 ? runs : 5 ))"); do
	"$vmm" --no-api --config-file "$tmp/spin.json" </dev/null >"$tmp/spin.out" 2>&1 &
	pid=$!
	for _ in $(seq 1 200); do grep -q 'spin: running' "$tmp/spin.out" && break; sleep 0.05; done
	sleep 0.2
	awk -v ram_kb=$((128 * 1024)) '
		/^[0-9a-f]+-[0-9a-f]+ / { guest = 0 }
		/^Size:/ { guest = ($2 == ram_kb) }
		/^Rss:/ { total += $2; if (guest) g += $2 }
		END { print total - g }' "/proc/$pid/smaps" >>"$tmp/rss"
	kill -TERM "$pid"; wait "$pid" 2>/dev/null
done
echo "boot-bench: vmm-rss-overhead median $(median <"$tmp/rss") KiB (RSS minus resident guest RAM, 128 MiB guest, 1 vCPU)"
