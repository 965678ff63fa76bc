#!/usr/bin/env bash
# Snapshot benchmark (snapshot, issue 6): runs bench/snapshot.sh (create
# time and sizes, load-to-running for 128 MiB and 1 GiB, Rss/Pss of 1, 10
# and 50 idle clones) and passes its figures on as lane-figure lines. It
# asserts only that the benchmark ran and printed its figures.
# lane-guest: tiny
# lane-timeout: 600
set -uo pipefail
. lane/lib.sh
lane_need_bin wisp-vmm
bench=../bench/snapshot.sh
[ -f "$bench" ] || lane_fail "$bench missing beside the tests copy"
out=$WISP_TMP/bench.log
TMPDIR=$WISP_TMP WISP_BENCH_RUNS=${WISP_BENCH_RUNS:-3} bash "$bench" "$WISP_BIN" "$WISP_GUESTS" >"$out" 2>&1
rc=$?
[ "$rc" -eq 77 ] && lane_skip "$(sed -n 's/^SKIPPED: //p' "$out")"
[ "$rc" -eq 0 ] || { lane_show "$out"; lane_fail "bench/snapshot.sh exited $rc"; }
for f in 'create Full 128' 'load-to-running 1024' 'idle clone'; do
	grep -q "^snapshot-bench: .*$f" "$out" || { lane_show "$out"; lane_fail "no '$f' figure"; }
done
sed -n "s/^snapshot-bench: /lane-figure: snapshot (${WISP_LANE_MODE:-direct} lane): /p" "$out"
