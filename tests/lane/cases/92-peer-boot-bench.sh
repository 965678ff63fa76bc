#!/usr/bin/env bash
# Linux lane: wisp-vmm against its peer, QEMU's microvm machine, in the same
# lane (DESIGN.md Targets: on these machines only ratios against a peer run
# in the same place mean anything). Runs bench/peer-boot.sh (VMM start to the
# guest init marker and the VMM's RSS there, the same kernel, initramfs and
# boot args for both) and passes its figures on as lane-figure lines. It
# asserts that every run reached the marker and that the medians and the
# ratio were printed, never a timing. Skips when QEMU cannot run here (the
# benchmark's SKIPPED line says why).
# lane-timeout: 240
set -uo pipefail
. lane/lib.sh
lane_need_bin wisp-vmm
lane_need_image vmlinux bzImage initramfs.cpio.gz
bench=../bench/peer-boot.sh
[ -f "$bench" ] || lane_fail "$bench missing beside the tests copy"
out=$WISP_TMP/bench.log
TMPDIR=$WISP_TMP WISP_BENCH_RUNS=${WISP_BENCH_RUNS:-3} bash "$bench" "$WISP_BIN/wisp-vmm" "$WISP_IMAGES" > "$out" 2>&1
rc=$?
if [ "$rc" -eq 77 ]; then
	lane_skip "$(sed -n 's/^SKIPPED: //p' "$out" | head -n1)"
fi
mode=${WISP_LANE_MODE:-direct}
sed -n "s/^peer-boot: /lane-figure: peer-boot ($mode lane): /p" "$out"
[ "$rc" -eq 0 ] || { lane_show "$out" 40; lane_fail "bench/peer-boot.sh exited $rc (a run never reached the init marker?)"; }
for who in wisp-bzImage qemu-bzImage; do
	grep -Eq "^peer-boot: $who median [0-9.]+ ms to init marker, RSS at marker [0-9.]+ KiB" "$out" ||
		{ lane_show "$out"; lane_fail "no $who median (time and RSS) in the benchmark's output"; }
done
grep -Eq '^peer-boot: ratio wisp/QEMU-microvm \(bzImage\): init marker [0-9.]+ .*RSS at marker [0-9.]+ ' "$out" ||
	{ lane_show "$out"; lane_fail "no wisp/QEMU ratio in the benchmark's output"; }
