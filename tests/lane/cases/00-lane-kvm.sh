#!/usr/bin/env bash
# The lane itself: /dev/kvm exists and opens read-write, the scratch dir is
# empty and on tmpfs, and the contract's directories are there. If this
# fails, every other case's result means nothing.
# lane-guest: any
# lane-timeout: 30
set -euo pipefail
fail() { echo "FAIL: $*"; exit 1; }
[ -c /dev/kvm ] || fail "/dev/kvm is not a character device"
exec 3<>/dev/kvm || fail "cannot open /dev/kvm read-write"
exec 3>&-
[ -d /sys/module/kvm ] || fail "kvm module not loaded"
for v in WISP_BIN WISP_GUESTS WISP_IMAGES WISP_TMP; do
	[ -n "${!v:-}" ] && [ -d "${!v}" ] || fail "$v is not set to a directory"
done
[ -z "$(ls -A "$WISP_TMP")" ] || fail "WISP_TMP is not empty"
[ "$(stat -f -c %T "$WISP_TMP")" = tmpfs ] || fail "WISP_TMP is not on tmpfs ($(stat -f -c %T "$WISP_TMP"))"
[ -f lane/lib.sh ] || fail "cwd is not a copy of tests/ (no lane/lib.sh)"
for t in bash curl socat ip sha256sum timeout mkfs.ext4 e2fsck debugfs; do
	command -v "$t" >/dev/null || fail "$t is missing"
done
echo "kvm: $(ls /sys/module | grep -E '^kvm' | tr '\n' ' ')"
