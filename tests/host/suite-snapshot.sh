#!/usr/bin/env bash
# Snapshot refusals on the host (no KVM needed): wisp-vmm --restore-from and
# --load-snapshot refuse a truncated state file, a flipped bit, another
# format version or architecture, a memory file of the wrong size, a
# missing one, one without a wisp footer, another snapshot's, a Diff's
# memory file alone, a Diff's base not yet merged and a missing drive
# backing file, each with its own message and exit 152, before KVM is
# touched; nothing on disk changes.
# wisp-snap info/merge on real files: a merged diff passes the memory
# checks its unmerged parts fail.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
VMM=$PWD/$BUILD/bin/wisp-vmm
SNAP=$PWD/$BUILD/bin/wisp-snap
SEED=$PWD/tests/fuzz/corpus/fuzz_snapshot/seed-vm2   # a valid Full state file, 128 MiB of RAM
SEED_DIFF=$SEED-diff                                  # a Diff of it
SEED_DRIVE=$SEED-drive   # a Full one whose root drive is /nonexistent/wisp-test/rootfs.ext4
SEED_ID=$((0x5eed000000000001)) DIFF_ID=$((0x5eed000000000002)) DRIVE_ID=$((0x5eed000000000003))
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
# le VALUE BYTES: little-endian bytes
le() { local i; for ((i = 0; i < $2; i++)); do printf "\\x$(printf %02x $(( ($1 >> (8 * i)) & 255 )))"; done; }
# memfile PATH RAM_BYTES FLAGS SNAP_ID BASE_ID: sparse RAM and the footer page
# (magic WISPMEM, version 1, flags, RAM size, snapshot id, base id)
memfile() {
	rm -f "$1"; truncate -s "$2" "$1"
	{ printf 'WISPMEM\0'; le 1 4; le "$3" 4; le "$2" 8; le "$4" 8; le "$5" 8; } >>"$1"
	truncate -s $(( $2 + 4096 )) "$1"
}

cp "$SEED" "$tmp/state"
cp "$SEED_DIFF" "$tmp/dstate"
memfile "$tmp/mem" $((128 << 20)) 0 $SEED_ID 0
memfile "$tmp/dmem" $((128 << 20)) 1 $DIFF_ID $SEED_ID
memfile "$tmp/other" $((128 << 20)) 0 $((0x0123456789abcdef)) 0
memfile "$tmp/mem-drive" $((128 << 20)) 0 $DRIVE_ID 0
truncate -s 64M "$tmp/mem-small"
truncate -s 128M "$tmp/mem-raw"

refuse 'memory file .*/missing: No such file' "a missing memory file" -- \
	--restore-from "$tmp/state" --mem-file "$tmp/missing"
refuse 'is 67108864 bytes; the snapshot.s guest memory is 134217728 bytes' \
	"a memory file of the wrong size" -- --restore-from "$tmp/state" --mem-file "$tmp/mem-small"
refuse 'state file .*/nostate: No such file' "a missing state file" -- \
	--restore-from "$tmp/nostate" --mem-file "$tmp/mem"
refuse 'is 134217728 bytes; the snapshot.s guest memory is 134217728 bytes \(plus a 4096-byte footer\)' \
	"a raw memory image without the footer" -- --restore-from "$tmp/state" --mem-file "$tmp/mem-raw"
refuse 'belongs to snapshot 0123456789abcdef; the state file is snapshot 5eed000000000001' \
	"another snapshot's memory file" -- --restore-from "$tmp/state" --mem-file "$tmp/other"
refuse 'dmem is a Diff snapshot.s: it holds only the pages written since snapshot 5eed000000000001, not a whole memory image; merge it onto' \
	"a Diff's memory file alone (with its own state file)" -- --restore-from "$tmp/dstate" --mem-file "$tmp/dmem"
refuse 'is a Diff snapshot.s' "a Diff's memory file with a Full state file" -- \
	--restore-from "$tmp/state" --mem-file "$tmp/dmem"
refuse 'is the base \(snapshot 5eed000000000001\) of this Diff snapshot 5eed000000000002, not yet merged' \
	"a Diff's state file with its base's memory file, unmerged" -- --restore-from "$tmp/dstate" --mem-file "$tmp/mem"

head -c 300 "$SEED" > "$tmp/trunc"
refuse 'truncated' "a truncated state file" -- --restore-from "$tmp/trunc" --mem-file "$tmp/mem"
cp "$SEED" "$tmp/flip"; patch "$tmp/flip" 200 ff
refuse 'checksum mismatch' "a flipped byte" -- --restore-from "$tmp/flip" --mem-file "$tmp/mem"
cp "$SEED" "$tmp/v1"; patch "$tmp/v1" 8 01
refuse 'format version 1; this wisp-vmm reads version 2 only' "an older format version" -- \
	--restore-from "$tmp/v1" --mem-file "$tmp/mem"
cp "$SEED" "$tmp/v3"; patch "$tmp/v3" 8 03
refuse 'format version 3' "a newer format version" -- --restore-from "$tmp/v3" --mem-file "$tmp/mem"
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

# A drive's backing file that is not there (the snapshot's own path, or a
# drive_overrides path): refused before KVM.
refuse 'drive rootfs: backing file /nonexistent/wisp-test/rootfs.ext4: No such file' \
	"a missing drive backing file" -- --restore-from "$SEED_DRIVE" --mem-file "$tmp/mem-drive"
printf '{"snapshot_path": "%s", "mem_file_path": "%s", "drive_overrides": [{"drive_id": "rootfs", "path_on_host": "%s"}]}\n' \
	"$SEED_DRIVE" "$tmp/mem-drive" "$tmp/no-such-disk" > "$tmp/drv.json"
refuse "drive rootfs: backing file $tmp/no-such-disk: No such file" \
	"a drive_overrides path that is not there" -- --load-snapshot "$tmp/drv.json"

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
"$SNAP" info "$tmp/dstate" "$tmp/dmem" >"$tmp/info" 2>&1
[ $? -eq 1 ] && grep -q 'a diff of snapshot 5eed000000000001' "$tmp/info" && grep -q 'is a Diff snapshot' "$tmp/info" &&
	ok "wisp-snap info: a Diff and its unmerged memory file do not load" || { bad "wisp-snap info on a diff"; sed 's/^/    /' "$tmp/info"; }
rm -f "$tmp/info"

# merge: 256 KiB of RAM; the base has random pages, the diff a dirty zero
# page and a new one; the result is the diff's snapshot, Full.
memfile "$tmp/base" $((256 << 10)) 0 $SEED_ID 0
dd if=/dev/urandom of="$tmp/base" bs=4096 count=16 conv=notrunc status=none
memfile "$tmp/diff" $((256 << 10)) 1 $DIFF_ID $SEED_ID
dd if=/dev/zero of="$tmp/diff" bs=4096 seek=2 count=1 conv=notrunc status=none   # a dirty zero page
printf 'DIFFPAGE' | dd of="$tmp/diff" bs=4096 seek=40 conv=notrunc status=none
cp "$tmp/base" "$tmp/expect"
dd if=/dev/zero of="$tmp/expect" bs=4096 seek=2 count=1 conv=notrunc status=none
dd if="$tmp/diff" of="$tmp/expect" bs=4096 skip=40 seek=40 count=1 conv=notrunc status=none
memfile "$tmp/footer" 0 0 $DIFF_ID 0   # the merged footer: Full, the diff's id, 256 KiB
dd if="$tmp/footer" of="$tmp/expect" bs=4096 seek=64 count=1 conv=notrunc status=none
le $((256 << 10)) 8 | dd of="$tmp/expect" bs=1 seek=$((64 * 4096 + 16)) conv=notrunc status=none
cp "$tmp/base" "$tmp/base.before"
"$SNAP" merge "$tmp/diff" "$tmp/base" >"$tmp/.o" 2>&1
[ $? -eq 1 ] && grep -q 'is a Full memory file' "$tmp/.o" && cmp -s "$tmp/base" "$tmp/base.before" &&
	ok "wisp-snap merge refuses the arguments swapped, files unchanged" || { bad "wisp-snap merge swapped"; cat "$tmp/.o"; }
memfile "$tmp/diff-other" $((256 << 10)) 1 $((0x77)) $((0x66))
"$SNAP" merge "$tmp/base" "$tmp/diff-other" >"$tmp/.o" 2>&1
[ $? -eq 1 ] && grep -q 'applies onto snapshot 0000000000000066; base .* is snapshot 5eed000000000001' "$tmp/.o" &&
	cmp -s "$tmp/base" "$tmp/base.before" &&
	ok "wisp-snap merge refuses a diff of another base, base unchanged" || { bad "wisp-snap merge base check"; cat "$tmp/.o"; }
if "$SNAP" merge "$tmp/base" "$tmp/diff" >"$tmp/.o" 2>&1 && cmp -s "$tmp/base" "$tmp/expect" &&
   grep -q 'Full memory file of snapshot 5eed000000000002' "$tmp/.o"; then
	ok "wisp-snap merge applies a diff's pages (zero pages too) onto its base: a Full file of the diff's snapshot"
else bad "wisp-snap merge"; cat "$tmp/.o"; cmp "$tmp/base" "$tmp/expect"; fi
truncate -s 128K "$tmp/diff"
cp "$tmp/base" "$tmp/base.before"
"$SNAP" merge "$tmp/base" "$tmp/diff" >"$tmp/.o" 2>&1
[ $? -eq 1 ] && grep -q 'its base' "$tmp/.o" && cmp -s "$tmp/base" "$tmp/base.before" &&
	ok "wisp-snap merge refuses a diff of another size, base unchanged" || bad "wisp-snap merge size check"

# merge-then-load: the Diff's state file with its memory file merged onto
# the base's passes every memory check (wisp-snap info says it loads;
# wisp-vmm goes on to KVM, absent here, or to the seed's dummy vCPU state).
cp "$tmp/mem" "$tmp/merged"
"$SNAP" merge "$tmp/merged" "$tmp/dmem" >"$tmp/.o" 2>&1 || { bad "wisp-snap merge of the 128 MiB diff"; cat "$tmp/.o"; }
"$SNAP" info "$tmp/dstate" "$tmp/merged" >"$tmp/info" 2>&1 && grep -q 'snapshot 5eed000000000002 (loads)' "$tmp/info" &&
	ok "wisp-snap info: a Diff's state file loads with its merged memory file" || { bad "wisp-snap info after merge"; sed 's/^/    /' "$tmp/info"; }
refuse 'opening /dev/kvm|vcpu state of instance 0 has version 1' \
	"a merged diff gets past the memory file checks" -- --restore-from "$tmp/dstate" --mem-file "$tmp/merged"
rm -f "$tmp/info" "$tmp/.o"
finish
