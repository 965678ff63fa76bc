#!/usr/bin/env bash
# Linux lane (needs wisp-vmm from the core issue; skipped until it is built):
# runs bench/linux-boot.sh (VMM start to the guest init marker) and passes
# its figures on as lane-figure lines. It asserts only that the benchmark
# ran and produced a figure, never a timing.
# lane-timeout: 450
set -uo pipefail
. lane/lib.sh
lane_need_bin wisp-vmm
lane_need_image vmlinux bzImage initramfs.cpio.gz
bench=../bench/linux-boot.sh
[ -f "$bench" ] || lane_fail "$bench missing beside the tests copy"
out=$WISP_TMP/bench.log
WISP_BENCH_RUNS=${WISP_BENCH_RUNS:-3} bash "$bench" "$WISP_BIN/wisp-vmm" "$WISP_IMAGES" > "$out" 2>&1
rc=$?
[ "$rc" -eq 0 ] || { lane_show "$out"; lane_fail "bench/linux-boot.sh exited $rc"; }
grep -q '^linux-boot: .*median' "$out" || { lane_show "$out"; lane_fail "no median figure in the benchmark's output"; }
grep -q '^linux-boot: idle 2-vCPU guest: VMM CPU' "$out" || { lane_show "$out"; lane_fail "no idle-CPU figure in the benchmark's output"; }
mode=${WISP_LANE_MODE:-direct}
sed -n "s/^linux-boot: /lane-figure: linux-boot ($mode lane): /p" "$out"
