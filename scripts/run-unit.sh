#!/usr/bin/env bash
# Run criterion unit test binaries; print one closing line over all of them.
set -u
build=$1; shift
pass=0; fail=0
for t in "$@"; do
	echo "== $t"
	if "$t" --jobs 2; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
done
echo "unit($build): $pass passed, $fail failed, 0 skipped"
[ "$fail" -eq 0 ]
