#!/usr/bin/env bash
# Tiny-guest boot figures (core): runs bench/boot.sh and passes its medians
# on as lane-figure lines. Asserts only that the benchmark ran.
# lane-guest: tiny
# lane-timeout: 200
set -uo pipefail
. lane/lib.sh
lane_need_bin wisp-vmm
bench=../bench/boot.sh
[ -f "$bench" ] || lane_fail "$bench missing beside the tests copy"
out=$WISP_TMP/boot-bench.log
WISP_BENCH_RUNS=${WISP_BENCH_RUNS:-11} TMPDIR=$WISP_TMP bash "$bench" "$WISP_BIN" "$WISP_GUESTS" >"$out" 2>&1
rc=$?
[ "$rc" -eq 0 ] || { lane_show "$out"; lane_fail "bench/boot.sh exited $rc"; }
grep -q 'exec-to-first-guest-instruction median [0-9]' "$out" || { lane_show "$out"; lane_fail "no first-instruction figure"; }
mode=${WISP_LANE_MODE:-direct}
sed -n "s/^boot-bench: /lane-figure: boot-bench ($mode lane): /p" "$out"
