#!/usr/bin/env bash
# Run the lane cases on this machine (which must have a working /dev/kvm) and
# print machine-readable result lines. tests/lane/run.sh starts it directly on
# a hardware-KVM host, or as part of the nested L2's /init; it parses the lines
# below in both cases (over the L2's serial console in the nested lane).
#
#   runner.sh TESTS_DIR BIN_DIR GUESTS_DIR IMAGES_DIR TMP_ROOT
#
# Environment: WISP_LANE_FILTER (names to run: space- or comma-separated
# shell patterns, matched against the case name without .sh; a plain word
# matches as a substring), WISP_LANE_CASE_TIMEOUT (default timeout per case,
# seconds; a case can set its own with a `# lane-timeout: N` line),
# WISP_LANE_KIND=all|tiny|linux (only the cases whose `# lane-guest:` line
# says tiny, or only the others; `any` cases run in both),
# WISP_LANE_VERBOSE=1 (send every case's output, not only failures').
#
# Protocol (one per line, prefix "@@wisp-lane@@ "):
#   start NAME TIMEOUT
#   out NAME | TEXT           the case's output (failed/skipped cases, figures)
#   retry NAME REASON         the attempt that just failed does not count;
#                             the case starts again (see below)
#   result NAME pass|fail|skip RC SECONDS
#   done PASSED FAILED SKIPPED
#
# In the nested lane only (WISP_LANE_MODE=nested), a case that failed with a
# guest triple fault (wisp-vmm's "triple fault (KVM_EXIT_SHUTDOWN)") runs
# once more, at most twice per run: QEMU's emulated SVM corrupts a guest's
# state now and then (tests/lane/README.md). The failed attempt's output is
# sent first; a second triple fault, or any other failure, is the result.
set -uo pipefail
[ $# -eq 5 ] || { echo "usage: $0 TESTS BIN GUESTS IMAGES TMP_ROOT" >&2; exit 2; }
tests=$1 bin=$2 guests=$3 images=$4 tmproot=$5
P='@@wisp-lane@@'
default_timeout=${WISP_LANE_CASE_TIMEOUT:-300}
filter=${WISP_LANE_FILTER:-}
kind=${WISP_LANE_KIND:-all}
verbose=${WISP_LANE_VERBOSE:-0}
. "$(dirname "$0")/select.sh"

# emit NAME FILE [GREP]: the file's lines as "out" lines (printable ASCII only,
# so a case's binary output cannot garble the console protocol).
emit() {
	local name=$1 file=$2 line
	[ -s "$file" ] || return 0
	tr -cd '\11\12\40-\176' < "$file" | while IFS= read -r line || [ -n "$line" ]; do
		printf '%s out %s | %s\n' "$P" "$name" "$line"
	done
}

# show_failure NAME OUTPUT SCRATCH: a failed attempt's output and the logs
# it left in its scratch dir (VMM output, guest serial).
show_failure() {
	local name=$1 outf=$2 scratch=$3 log
	emit "$name" "$outf"
	for log in "$scratch"/*.log; do
		[ -f "$log" ] || continue
		# Skip the logs the case already showed (lib.sh's lane_show).
		grep -qF -- "----- $(basename "$log") (last" "$outf" && continue
		printf '%s out %s | ----- %s (last 80 lines) -----\n' "$P" "$name" "$(basename "$log")"
		tail -n 80 "$log" > "$tmproot/.tail"; emit "$name" "$tmproot/.tail"
	done
}

passed=0 failed=0 skipped=0 retries=0
mkdir -p "$tmproot"
shopt -s nullglob
for c in "$tests"/lane/cases/*.sh; do
	name=$(basename "$c" .sh)
	lane_selected "$name" "$filter" || continue
	lane_kind_ok "$c" "$kind" || continue
	t=$(sed -n 's/^# lane-timeout: *\([0-9][0-9]*\).*/\1/p' "$c" | head -n1)
	t=${t:-$default_timeout}
	scratch=$tmproot/$name
	outf=$tmproot/$name.output
	attempt=1
	while :; do
		rm -rf "$scratch"; mkdir -p "$scratch"
		printf '%s start %s %s\n' "$P" "$name" "$t"
		t0=$(date +%s)
		# GNU timeout makes the case a process group and signals all of it;
		# what a case leaves running after it returns is killed below.
		( cd "$tests" && WISP_BIN=$bin WISP_GUESTS=$guests WISP_IMAGES=$images WISP_TMP=$scratch \
			exec timeout -k 10 "$t" bash "$c" ) </dev/null >"$outf" 2>&1 &
		tpid=$!
		wait "$tpid"; rc=$?
		kill -KILL -- "-$tpid" 2>/dev/null
		secs=$(( $(date +%s) - t0 ))
		if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ] && [ "$attempt" -eq 1 ] && [ "$retries" -lt 2 ] &&
		   [ "${WISP_LANE_MODE:-}" = nested ] &&
		   grep -qsF 'triple fault (KVM_EXIT_SHUTDOWN)' "$outf" "$scratch"/*.log; then
			show_failure "$name" "$outf" "$scratch"
			printf '%s retry %s guest-triple-fault\n' "$P" "$name"
			retries=$((retries + 1)) attempt=2
			continue
		fi
		break
	done
	case $rc in
	0) status=pass; passed=$((passed + 1)) ;;
	77) status=skip; skipped=$((skipped + 1)) ;;
	*) status=fail; failed=$((failed + 1))
	   if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
		echo "lane: case timed out after ${t}s (rc $rc)" >> "$outf"
	   fi ;;
	esac
	if [ "$status" = fail ]; then
		show_failure "$name" "$outf" "$scratch"
	elif [ "$status" = skip ]; then
		grep -m1 '^SKIPPED' "$outf" > "$tmproot/.tail" || echo "SKIPPED: (no reason given)" > "$tmproot/.tail"
		emit "$name" "$tmproot/.tail"
	elif [ "$verbose" = 1 ]; then
		emit "$name" "$outf"
	else
		grep '^lane-figure:' "$outf" > "$tmproot/.tail"; emit "$name" "$tmproot/.tail"
	fi
	printf '%s result %s %s %s %s\n' "$P" "$name" "$status" "$rc" "$secs"
	[ "$status" = fail ] || rm -rf "$scratch"
done
printf '%s done %s %s %s\n' "$P" "$passed" "$failed" "$skipped"
