#!/usr/bin/env bash
# Snapshot refusals on the host (no KVM needed): wisp-vmm --restore-from and
# --load-snapshot refuse a truncated state file, a flipped bit, another
# format version or architecture, a memory file of the wrong size, a
# missing one, one without a wisp footer, another snapshot's, a Diff's
# memory file alone, a Diff's base not yet merged and a missing drive
# backing file, each with its own message and exit 152, before KVM is
# touched; nothing on disk changes. With /dev/kvm (PVM): a load refused
# after the VM is built leaves the VMM fresh (152; the API takes another
# load or InstanceStart).
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
kt=$(mktemp -d /tmp/wisp-snap-suite-kvm.XXXXXX)  # the tiny guest's part
KPIDS=()
trap 'for p in ${KPIDS[@]+"${KPIDS[@]}"}; do kill -KILL "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$tmp" "$out" "$kt"' EXIT

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

# With KVM (PVM runs the tiny guests): a load refused after the VM is
# built (a drive of another size than at snapshot time, caught by the
# block device's state) leaves the VMM fresh: --restore-from exits 152,
# an API VMM is Not started and takes a valid load, or a configuration and
# InstanceStart, afterwards; nothing on disk changes.
GUEST=$PWD/$BUILD/guests/count.elf
if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ] || [ ! -f "$GUEST" ] || ! command -v curl >/dev/null; then
	skip=$((skip + 1)); echo "skip: refused after the VM is built (needs /dev/kvm, count.elf, curl)"; finish
fi
kapi() { # kapi SOCK METHOD PATH JSON: prints the HTTP status; body in $kt/body
	curl -s -o "$kt/body" -w '%{http_code}' --max-time 30 --unix-socket "$1" \
		-X "$2" "http://localhost$3" -H 'Content-Type: application/json' -d "$4"
}
wait_sock() { for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.1; done; return 1; }
# wait_count FILE N: until FILE has N lines "count 0x.." (20 s)
wait_count() { for _ in $(seq 200); do [ "$(grep -c 'count 0x' "$1")" -ge "$2" ] && return 0; sleep 0.1; done; return 1; }
truncate -s 1M "$kt/disk"
cat >"$kt/vm.json" <<EOF2
{"boot-source": {"kernel_image_path": "$GUEST", "boot_args": "console=ttyS0"},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 64},
 "drives": [{"drive_id": "data", "path_on_host": "$kt/disk", "is_root_device": false, "is_read_only": false}]}
EOF2
"$VMM" --api-sock "$kt/orig.sock" --config-file "$kt/vm.json" </dev/null >"$kt/orig.out" 2>"$kt/orig.log" &
KPIDS+=($!); orig=$!
if wait_sock "$kt/orig.sock" && wait_count "$kt/orig.out" 2 &&
   [ "$(kapi "$kt/orig.sock" PATCH /vm '{"state": "Paused"}')" = 204 ] &&
   [ "$(kapi "$kt/orig.sock" PUT /snapshot/create "{\"snapshot_path\": \"$kt/state\", \"mem_file_path\": \"$kt/mem\"}")" = 204 ]; then
	ok "tiny guest with a drive: paused and snapshotted"
else
	bad "tiny guest snapshot: $(cat "$kt/body" 2>/dev/null)"; sed 's/^/    /' "$kt/orig.log" | tail -5; finish
fi
kill -KILL $orig; wait $orig 2>/dev/null
truncate -s 2M "$kt/disk"
SIZEMSG='drive data: the guest knows a disk of 2048 sectors, its file here has 4096'
ksums() { sha256sum "$kt/state" "$kt/mem" "$kt/disk"; }
sums=$(ksums)
timeout 30 "$VMM" --no-api --restore-from "$kt/state" --mem-file "$kt/mem" </dev/null >"$kt/r.out" 2>&1
rc=$?
if [ $rc -eq 152 ] && grep -q "$SIZEMSG" "$kt/r.out" && ! grep -q 'count 0x' "$kt/r.out" && [ "$sums" = "$(ksums)" ]; then
	ok "--restore-from with a disk of another size: 152 after the VM was built, files unchanged"
else bad "--restore-from with a disk of another size: exit $rc"; sed 's/^/    /' "$kt/r.out" | tail -5; fi

LOAD="{\"snapshot_path\": \"$kt/state\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$kt/mem\"}, \"resume_vm\": true}"
# refused_api N: a fresh API VMM N whose load is refused; its output in $kt/aN.*
refused_api() {
	"$VMM" --api-sock "$kt/a$1.sock" </dev/null >"$kt/a$1.out" 2>"$kt/a$1.log" &
	KPIDS+=($!)
	wait_sock "$kt/a$1.sock" || { bad "API VMM $1 did not start"; return 1; }
	local code
	code=$(kapi "$kt/a$1.sock" PUT /snapshot/load "$LOAD")
	[ "$code" = 400 ] && grep -q "$SIZEMSG" "$kt/body" || { bad "API load $1, disk of another size: HTTP $code $(cat "$kt/body")"; return 1; }
	code=$(kapi "$kt/a$1.sock" GET / "")
	[ "$code" = 200 ] && grep -q '"state":"Not started"' "$kt/body" || { bad "API VMM $1 after the refused load: HTTP $code $(cat "$kt/body")"; return 1; }
	[ "$sums" = "$(ksums)" ] || { bad "API VMM $1: the refused load changed the files"; return 1; }
}
if refused_api 1; then
	truncate -s 1M "$kt/disk"
	code=$(kapi "$kt/a1.sock" PUT /snapshot/load "$LOAD")
	if [ "$code" = 204 ] && wait_count "$kt/a1.out" 2; then
		ok "API: a load refused after the VM was built leaves it Not started; a valid load follows and runs"
	else bad "API: the valid load after a refused one: HTTP $code $(cat "$kt/body")"; sed 's/^/    /' "$kt/a1.log" | tail -5; fi
	truncate -s 2M "$kt/disk"; sums=$(ksums)
fi
if refused_api 2; then
	b=$(kapi "$kt/a2.sock" PUT /boot-source "{\"kernel_image_path\": \"$GUEST\", \"boot_args\": \"console=ttyS0\"}")
	m=$(kapi "$kt/a2.sock" PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 64}')
	s=$(kapi "$kt/a2.sock" PUT /actions '{"action_type": "InstanceStart"}')
	if [ "$b$m$s" = 204204204 ] && wait_count "$kt/a2.out" 2; then
		ok "API: after a refused load, a configuration and InstanceStart boot"
	else bad "API: InstanceStart after a refused load: $b $m $s $(cat "$kt/body")"; sed 's/^/    /' "$kt/a2.log" | tail -5; fi
fi
finish
