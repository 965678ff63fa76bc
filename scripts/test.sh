#!/usr/bin/env bash
# The README's test command: install packages, build everything (release and
# ASan+UBSan), run the unit tests of both builds, the host-side suites, then
# the KVM lane (tiny guests and real Linux guests; nested under QEMU when the
# host's KVM is not hardware-assisted). Each suite prints its own closing
# line; this script ends with one over the suites.
set -uo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/deps.sh || { echo "test: dependency install failed"; exit 1; }

suites_pass=0; suites_fail=0; failed=()
run_suite() {
	local name=$1; shift
	echo "=== suite $name: $*"
	local t0=$(date +%s)
	if "$@"; then
		suites_pass=$((suites_pass + 1))
	else
		suites_fail=$((suites_fail + 1)); failed+=("$name")
	fi
	echo "=== suite $name took $(( $(date +%s) - t0 ))s"
}

run_suite build make -j2 all
run_suite build-asan make -j2 SAN=1 all
run_suite unit make -j2 unit
run_suite unit-asan make -j2 SAN=1 unit
for s in tests/host/suite-*.sh; do
	[ -e "$s" ] || continue
	run_suite "$(basename "$s" .sh)" bash "$s"
done
if [ -f tests/lane/run.sh ]; then
	run_suite lane bash tests/lane/run.sh
fi

echo "test: total $(( $(date +%s) - start ))s; failed suites: ${failed[*]:-none}"
echo "suites: $suites_pass passed, $suites_fail failed, 0 skipped"
[ "$suites_fail" -eq 0 ]
