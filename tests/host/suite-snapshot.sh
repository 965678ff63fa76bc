#!/usr/bin/env bash
# Snapshot refusals on the host (no KVM needed): wisp-vmm --restore-from and
# --load-snapshot refuse a truncated state file, a flipped bit, another
# format version or architecture, a memory file of the wrong size and a
# missing one, each with its own message and exit 152, before KVM is
# touched; nothing on disk changes. wisp-snap info/merge on real files.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
VMM=$PWD/$BUILD/bin/wisp-vmm
SNAP=$PWD/$BUILD/bin/wisp-snap
SEED=$PWD/tests/fuzz/corpus/fuzz_snapshot/seed-vm2   # a valid state file, 128 MiB of RAM
pass=0; fail=0; skip=0
ok()  { pass=$((pass + 1)); echo "ok: $*"; }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
finish() { echo "snapshot: $pass passed, $fail failed, $skip skipped"; [ "$fail" -eq 0 ]; exit $?; }
for b in "$VMM" "$SNAP"; do [ -x "$b" ] || { bad "$b is not built"; finish; }; done
tmp=$(mktemp -d /tmp/wisp-snap-suite.XXXXXX)
out=$(mktemp /tmp/wisp-snap-suite-out.XXXXXX)   # outside $tmp: $tmp is compared
trap 'rm -rf "$tmp" "$out"' EXIT

listing() { (cd "$tmp" && find . -type f -exec sha256sum {} + | sort); }

# refuse PATTERN WHAT -- ARGS: exit 152, the message, and no file changed
refuse() {
	local pat=$1 what=$2; shift 3
	local before after
	before=$(listing)
	timeout 20 "$VMM" --no-api --no-seccomp "$@" >"$out" 2>&1 </dev/null
	local rc=$?
	after=$(listing)
	if [ "$rc" -ne 152 ]; then
		bad "$what: exit $rc, expected 152"; sed 's/^/    /' "$out" | head -5
	elif ! grep -qE -- "$pat" "$out"; then
		bad "$what: output lacks /$pat/"; sed 's/^/    /' "$out" | head -5
	elif [ "$before" != "$after" ]; then
		bad "$what: files changed on disk"
	else
		ok "$what"
	fi
}

# patch FILE OFFSET HEXBYTE: overwrite one byte
patch() { printf "\\x$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none; }

cp "$SEED" "$tmp/state"
truncate -s 128M "$tmp/mem"
truncate -s 64M "$tmp/mem-small"

refuse 'memory file .*/missing: No such file' "a missing memory file" -- \
	--restore-from "$tmp/state" --mem-file "$tmp/missing"
refuse 'is 67108864 bytes; the snapshot.s guest memory is 134217728 bytes' \
	"a memory file of the wrong size" -- --restore-from "$tmp/state" --mem-file "$tmp/mem-small"
refuse 'state file .*/nostate: No such file' "a missing state file" -- \
	--restore-from "$tmp/nostate" --mem-file "$tmp/mem"

head -c 300 "$SEED" > "$tmp/trunc"
refuse 'truncated' "a truncated state file" -- --restore-from "$tmp/trunc" --mem-file "$tmp/mem"
cp "$SEED" "$tmp/flip"; patch "$tmp/flip" 200 ff
refuse 'checksum mismatch' "a flipped byte" -- --restore-from "$tmp/flip" --mem-file "$tmp/mem"
cp "$SEED" "$tmp/v2"; patch "$tmp/v2" 8 02
refuse 'format version 2' "another format version" -- --restore-from "$tmp/v2" --mem-file "$tmp/mem"
cp "$SEED" "$tmp/arm"; patch "$tmp/arm" 12 b7
refuse 'architecture 183' "another architecture" -- --restore-from "$tmp/arm" --mem-file "$tmp/mem"
printf 'not a snapshot at all, just text that is long enough to have a header......\n' > "$tmp/junk"
refuse 'bad magic' "not a state file" -- --restore-from "$tmp/junk" --mem-file "$tmp/mem"

# The same checks through a PUT /snapshot/load body.
printf '{"snapshot_path": "%s", "mem_backend": {"backend_type": "File", "backend_path": "%s"}, "resume_vm": true}\n' \
	"$tmp/flip" "$tmp/mem" > "$tmp/load.json"
refuse 'checksum mismatch' "--load-snapshot with a corrupt state file" -- --load-snapshot "$tmp/load.json"
printf '{"snapshot_path": "%s", "mem_backend": {"backend_type": "Uffd", "backend_path": "/x"}}\n' \
	"$tmp/state" > "$tmp/uffd.json"
refuse 'only "File"' "--load-snapshot with a Uffd backend" -- --load-snapshot "$tmp/uffd.json"
printf '{"snapshot_path": "%s", "mem_file_path": "%s", "network_overrides": [{"iface_id": "eth0", "host_dev_name": "tap9"}]}\n' \
	"$tmp/state" "$tmp/mem" > "$tmp/ovr.json"
refuse 'no network interface eth0' "an override for an interface the snapshot lacks" -- --load-snapshot "$tmp/ovr.json"

# Flag combinations.
timeout 10 "$VMM" --restore-from "$tmp/state" --no-api </dev/null >"$tmp/.o" 2>&1
[ $? -eq 153 ] && grep -q 'go together' "$tmp/.o" && ok "--restore-from without --mem-file: 153" || bad "--restore-from without --mem-file"
timeout 10 "$VMM" --resume --no-api --config-file x </dev/null >"$tmp/.o" 2>&1
[ $? -eq 153 ] && ok "--resume without a snapshot: 153" || bad "--resume without a snapshot"
rm -f "$tmp/.o"

# wisp-snap info and merge.
if "$SNAP" info "$SEED" "$tmp/mem" > "$tmp/info" 2>&1 && grep -q 'size matches' "$tmp/info" &&
   grep -q 'vcpu          instance 1' "$tmp/info"; then ok "wisp-snap info lists the sections"
else bad "wisp-snap info"; sed 's/^/    /' "$tmp/info"; fi
"$SNAP" info "$tmp/flip" >"$tmp/info" 2>&1
[ $? -eq 1 ] && grep -q 'checksum mismatch' "$tmp/info" && ok "wisp-snap info refuses a corrupt file" || bad "wisp-snap info on a corrupt file"
rm -f "$tmp/info"
dd if=/dev/urandom of="$tmp/base" bs=4096 count=16 status=none
truncate -s 256K "$tmp/base"
truncate -s 256K "$tmp/diff"
dd if=/dev/zero of="$tmp/diff" bs=4096 seek=2 count=1 conv=notrunc status=none   # a dirty zero page
printf 'DIFFPAGE' | dd of="$tmp/diff" bs=4096 seek=40 conv=notrunc status=none
cp "$tmp/base" "$tmp/expect"
dd if=/dev/zero of="$tmp/expect" bs=4096 seek=2 count=1 conv=notrunc status=none
dd if="$tmp/diff" of="$tmp/expect" bs=4096 skip=40 seek=40 count=1 conv=notrunc status=none
if "$SNAP" merge "$tmp/base" "$tmp/diff" && cmp -s "$tmp/base" "$tmp/expect"; then
	ok "wisp-snap merge applies a diff's pages (zero pages too) onto its base"
else bad "wisp-snap merge"; fi
truncate -s 128K "$tmp/diff"
cp "$tmp/base" "$tmp/base.before"
"$SNAP" merge "$tmp/base" "$tmp/diff" >"$tmp/.o" 2>&1
[ $? -eq 1 ] && grep -q 'its base' "$tmp/.o" && cmp -s "$tmp/base" "$tmp/base.before" &&
	ok "wisp-snap merge refuses a diff of another size, base unchanged" || bad "wisp-snap merge size check"
finish
