#!/usr/bin/env bash
# The nested lane's own harness (tests/lane/run.sh), with a fake QEMU
# (tests/host/lane-fake/) that prints the L2 runner's protocol: when the L2
# crashes or hangs, a fresh L2 runs exactly the cases without a result; a
# failure a case reports itself is never rerun; past the restart budget the
# case in flight fails and so does the lane. Then runner.sh alone: only in
# the nested lane, a guest triple fault gets one more run. No KVM or QEMU is
# needed; root and the L2 kernel (tests/lane/l2-kernel.sh, cached) are.
set -uo pipefail
cd "$(dirname "$0")/../.."
pass=0; fail=0; skip=0
ok()  { pass=$((pass + 1)); echo "ok: $*"; }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
finish() { echo "lane-harness: $pass passed, $fail failed, $skip skipped"; [ "$fail" -eq 0 ]; exit $?; }
if [ "$(id -u)" -ne 0 ]; then
	echo "SKIPPED: the lane harness runs as root"; skip=1; finish
fi
if ! tests/lane/l2-kernel.sh >/dev/null 2>&1; then
	echo "SKIPPED: no L2 kernel (tests/lane/l2-kernel.sh failed: apt-get download offline?)"; skip=1; finish
fi
T=$(mktemp -d /tmp/wisp-lane-suite.XXXXXX)
trap 'rm -rf "$T"' EXIT
# A repo of its own: the harness, three cases the fake "runs", no build.
mkdir -p "$T/repo/tests"
tar -C tests --exclude=./lane/out -cf - ./lane | tar -C "$T/repo/tests" -xf -
rm -f "$T/repo/tests/lane/cases/"*.sh
for c in 01-a 02-b 03-c; do
	printf '#!/usr/bin/env bash\n# lane-timeout: 5\nexit 0\n' > "$T/repo/tests/lane/cases/$c.sh"
done
fake=$PWD/tests/host/lane-fake

# lane SCENARIO [VAR=VALUE...]: run.sh in nested mode over the fake; its
# output in $T/out, its status in $RC, the fake's per-boot filters in
# $T/state.filters.
lane() {
	local scen=$1; shift
	rm -f "$T/state" "$T/state.filters"
	env "$@" PATH="$fake:$PATH" FAKE_SCENARIO="$scen" FAKE_STATE="$T/state" \
		WISP_LANE_MODE=nested WISP_LANE_KIND=linux WISP_LANE_NO_BUILD=1 \
		timeout 120 bash "$T/repo/tests/lane/run.sh" >"$T/out" 2>&1
	RC=$?
}
# count REGEX: lines of the output matching
count() { grep -cE -- "$1" "$T/out"; }
check() { # NAME CONDITION...
	local name=$1; shift
	if "$@"; then ok "$name"; else bad "$name"; sed 's/^/    | /' "$T/out" | tail -n 25; fi
}
filters() { tr '\n' '|' < "$T/state.filters"; }

lane healthy
check "a healthy L2: 3 passed, exit 0, one boot" \
	test "$RC" = 0 -a "$(count '^PASS ')" = 3 -a "$(filters)" = '|'

lane crash
check "the L2 panics under 02-b: one restart (of the default 3), exit 0" \
	test "$RC" = 0 -a "$(count '^lane: restart 1 of 3')" = 1
check "after the crash the fresh L2 runs exactly 02-b and 03-c" \
	test "$(filters)" = '|=02-b =03-c |'
check "each case has one result (01-a, 02-b, 03-c passed once each)" \
	test "$(count '^PASS +01-a')" = 1 -a "$(count '^PASS +02-b')" = 1 -a "$(count '^PASS +03-c')" = 1 -a "$(count '^lane: 3 passed, 0 failed')" = 1
check "the crash is reported as the nested host's" \
	test "$(count "the L2's kernel \(the nested host, not a wisp guest\) reported: .*Kernel panic")" = 1

lane failcrash
check "a case's own failure is not rerun: the fresh L2 runs only 03-c" \
	test "$(filters)" = '|=03-c |'
check "... and the lane fails with that one failure (exit 1, 2 passed, 1 failed)" \
	test "$RC" = 1 -a "$(count '^FAIL +01-a')" = 1 -a "$(count '^lane: 2 passed, 1 failed')" = 1

lane hang WISP_LANE_HANG_GRACE=1
check "the L2 stops answering under 02-b: stopped, restarted, all pass" \
	test "$RC" = 0 -a "$(count '^STOPPED +02-b')" = 1 -a "$(filters)" = '|=02-b =03-c |' -a "$(count '^lane: 3 passed, 0 failed')" = 1

lane retry
check "a retried case (guest triple fault) is shown, counted once, and named at the end" \
	test "$RC" = 0 -a "$(count '^RETRY +01-a: a guest triple fault')" = 1 -a "$(count '^    \| vCPU 0: triple fault')" = 1 -a "$(count '^PASS +01-a')" = 1 -a "$(count '^lane: 3 passed, 0 failed')" = 1 -a "$(count '^lane: ran once more after a guest triple fault \(nested lane only\): 01-a')" = 1

lane crash WISP_LANE_L2_RESTARTS=0
check "no restarts left: the case in flight fails and the lane exits 1" \
	test "$RC" = 1 -a "$(count '^FAIL +02-b: the L2 died under it')" = 1 -a "$(count '^lane: restart')" = 0 -a "$(filters)" = '|'

# The runner itself (as in the L2): in the nested lane a case that failed
# with a guest triple fault runs once more, at most twice per run; any other
# failure, a second triple fault, or the direct lane: the failure stands.
R=$T/runner
mkdir -p "$R/tests/lane/cases" "$R/x"
cp tests/lane/runner.sh tests/lane/select.sh "$R/tests/lane/"
tf='echo "[fc_vcpu 0:ERROR] vCPU 0: triple fault (KVM_EXIT_SHUTDOWN); the guest is stopped" > "$WISP_TMP/vmm.log"; exit 1'
printf '#!/usr/bin/env bash\n[ -f "$RSTATE/11" ] && exit 0\ntouch "$RSTATE/11"; %s\n' "$tf" > "$R/tests/lane/cases/11-tf-once.sh"
printf '#!/usr/bin/env bash\n%s\n' "$tf" > "$R/tests/lane/cases/12-tf-always.sh"
printf '#!/usr/bin/env bash\necho "FAIL: not a triple fault"; exit 1\n' > "$R/tests/lane/cases/13-other.sh"
printf '#!/usr/bin/env bash\n[ -f "$RSTATE/14" ] && exit 0\ntouch "$RSTATE/14"; %s\n' "$tf" > "$R/tests/lane/cases/14-tf-third.sh"
runner() { # MODE
	rm -rf "$R/state" "$R/tmp"; mkdir -p "$R/state"
	RSTATE=$R/state WISP_LANE_MODE=$1 WISP_LANE_FILTER= WISP_LANE_KIND=all \
		timeout 60 bash "$R/tests/lane/runner.sh" "$R/tests" "$R/x" "$R/x" "$R/x" "$R/tmp" >"$T/out" 2>&1
}
P='@@wisp-lane@@'
runner nested
check "nested: a triple fault once -> one retry, then pass" \
	test "$(count "^$P retry 11-tf-once ")" = 1 -a "$(count "^$P result 11-tf-once pass")" = 1
check "nested: the failed attempt's log is shown before the retry" \
	test "$(count "^$P out 11-tf-once \| .*triple fault \(KVM_EXIT_SHUTDOWN\)")" = 1
check "nested: a second triple fault is the result (fail)" \
	test "$(count "^$P retry 12-tf-always ")" = 1 -a "$(count "^$P result 12-tf-always fail")" = 1
check "nested: another failure is never retried" \
	test "$(count "^$P retry 13-other")" = 0 -a "$(count "^$P result 13-other fail")" = 1
check "nested: no more than two retries a run (the third triple fault fails)" \
	test "$(count "^$P retry 14-tf-third")" = 0 -a "$(count "^$P result 14-tf-third fail")" = 1 -a "$(count "^$P done 1 3 0")" = 1
runner direct
check "direct (hardware KVM): a triple fault is never retried" \
	test "$(count "^$P retry")" = 0 -a "$(count "^$P result 11-tf-once fail")" = 1
finish
