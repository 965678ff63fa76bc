#!/usr/bin/env bash
# Snapshot and restore of a Linux guest (snapshot, issue 6), through the
# API: boot with a root drive and vsock (wisp-agent as init), write a
# marker to RAM (tmpfs), Full snapshot; two clones restored at the same time
# from the same files, each with its own disk copy (drive_overrides) and
# vsock socket (vsock_override): each goes on from the snapshot (the RAM
# marker, an uptime from the snapshot's on), a new vsock connection works,
# and a file written after the restore lands only in that clone's disk. The state file holds each device's own state (block,
# vsock) and each vCPU's CPUID; a clone given a disk of another size is
# refused before any vCPU runs. Then a Diff taken after more guest writes,
# merged onto the Full with wisp-snap merge, restores to the newer state.
# lane-timeout: 900
set -uo pipefail
. lane/lib.sh
lane_need_bin wisp-vmm wisp-agent-ctl wisp-snap
lane_need_image vmlinux rootfs.ext4
command -v curl >/dev/null || lane_skip "curl missing"
command -v debugfs >/dev/null || lane_skip "debugfs missing"
T=$WISP_TMP
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT
ctl() { local uds=$1; shift; timeout 300 "$WISP_BIN/wisp-agent-ctl" --vsock "$uds" --io-timeout-ms 120000 "$@"; }
api() { # api SOCK METHOD PATH JSON: prints the HTTP status; body in $T/api.body
	curl -s -o "$T/api.body" -w '%{http_code}' --max-time 120 --unix-socket "$1" \
		-X "$2" "http://localhost$3" -H 'Content-Type: application/json' -d "$4"
}
start_vmm() { # start_vmm NAME [ARGS]: API socket $T/NAME.api, log $T/NAME.log; sets VPID
	local n=$1; shift
	"$WISP_BIN/wisp-vmm" --api-sock "$T/$n.api" "$@" </dev/null >"$T/$n.log" 2>&1 &
	VPID=$!; PIDS+=($VPID)
	wait_for_file "$T/$n.api" 30 || { lane_show "$T/$n.log"; lane_fail "$n: no API socket"; }
}
fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
disk_cat() { debugfs -R "cat $2" "$1" 2>/dev/null; }

# --- the original -------------------------------------------------------------
cp "$WISP_IMAGES/rootfs.ext4" "$T/orig.ext4"
lane_vmm_config "$T/vm.json" --kernel "$WISP_IMAGES/vmlinux" --args "$LANE_BOOT_ARGS root=/dev/vda rw" \
	--rootfs "$T/orig.ext4" --vsock "3:$T/v0.sock" --mem 128 --track-dirty
start_vmm orig --config-file "$T/vm.json"
ORIG=$VPID
h=$(ctl "$T/v0.sock" --wait-ms 240000 hello 2>&1) || { lane_show "$T/orig.log" 60; lane_fail "no HELLO from the guest: $h"; }
# a file on the disk, one in RAM (tmpfs /run), and the guest's uptime: a
# clone that goes on from the snapshot has the RAM file and an uptime from
# there on (the agent sweeps whatever an invocation leaves running, so no
# process of ours outlives its invocation to be checked instead)
up0=$(ctl "$T/v0.sock" invoke /bin/sh -c 'echo base > /before; echo base > /run/before-full; sync; cut -d. -f1 /proc/uptime')
[ -n "$up0" ] || lane_fail "could not write the marker files"
code=$(api "$T/orig.api" PATCH /vm '{"state": "Paused"}'); [ "$code" = 204 ] || lane_fail "pause: HTTP $code $(cat "$T/api.body")"
code=$(api "$T/orig.api" PUT /snapshot/create "{\"snapshot_type\": \"Full\", \"snapshot_path\": \"$T/full.state\", \"mem_file_path\": \"$T/full.mem\"}")
[ "$code" = 204 ] || { lane_show "$T/orig.log" 30; lane_fail "full snapshot: HTTP $code $(cat "$T/api.body")"; }
cp "$T/orig.ext4" "$T/full.ext4"    # the disk as it was at the snapshot
echo "full snapshot: memory file $(du -k "$T/full.mem" | cut -f1) KiB allocated of 128 MiB"
"$WISP_BIN/wisp-snap" info "$T/full.state" "$T/full.mem" >"$T/info" 2>&1 || { cat "$T/info"; lane_fail "wisp-snap info refused the full snapshot"; }
for sec in 'virtio-blk    instance 0' 'virtio-vsock  instance 1' 'vcpu          instance 0 .* CPUID entries'; do
	grep -q "$sec" "$T/info" && ok "state file: $sec" || { cat "$T/info"; bad "state file lacks /$sec/"; }
done

# more guest writes, then a diff
code=$(api "$T/orig.api" PATCH /vm '{"state": "Resumed"}'); [ "$code" = 204 ] || lane_fail "resume: HTTP $code"
up1=$(ctl "$T/v0.sock" invoke /bin/sh -c 'echo newer > /run/after-full; echo newer > /after-full; sync; cut -d. -f1 /proc/uptime')
[ -n "$up1" ] || lane_fail "writes after the full snapshot failed"
code=$(api "$T/orig.api" PATCH /vm '{"state": "Paused"}'); [ "$code" = 204 ] || lane_fail "second pause: HTTP $code"
code=$(api "$T/orig.api" PUT /snapshot/create "{\"snapshot_type\": \"Diff\", \"snapshot_path\": \"$T/diff.state\", \"mem_file_path\": \"$T/diff.mem\"}")
[ "$code" = 204 ] || { lane_show "$T/orig.log" 30; lane_fail "diff snapshot: HTTP $code $(cat "$T/api.body")"; }
echo "diff snapshot: memory file $(du -k "$T/diff.mem" | cut -f1) KiB allocated"
kill -KILL $ORIG; wait $ORIG 2>/dev/null

# --- a clone with a disk of another size: refused, nothing runs -----------------
cp "$T/full.ext4" "$T/big.ext4"; truncate -s +1M "$T/big.ext4"
start_vmm big; B=$VPID
code=$(api "$T/big.api" PUT /snapshot/load "{\"snapshot_path\": \"$T/full.state\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$T/full.mem\"}, \"resume_vm\": true, \"vsock_override\": {\"uds_path\": \"$T/vb.sock\"}, \"drive_overrides\": [{\"drive_id\": \"rootfs\", \"path_on_host\": \"$T/big.ext4\"}]}")
[ "$code" = 400 ] && grep -q 'drive rootfs: the guest knows a disk of' "$T/api.body" &&
	ok "a clone with a disk of another size is refused: $(cat "$T/api.body")" || bad "bigger disk: HTTP $code $(cat "$T/api.body")"
kill -KILL $B; wait $B 2>/dev/null

# --- two clones at once ---------------------------------------------------------
for i in 1 2; do
	cp "$T/full.ext4" "$T/clone$i.ext4"
	start_vmm clone$i; eval "C$i=$VPID"
done
for i in 1 2; do
	code=$(api "$T/clone$i.api" PUT /snapshot/load "{\"snapshot_path\": \"$T/full.state\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$T/full.mem\"}, \"resume_vm\": true, \"vsock_override\": {\"uds_path\": \"$T/v$i.sock\"}, \"drive_overrides\": [{\"drive_id\": \"rootfs\", \"path_on_host\": \"$T/clone$i.ext4\"}]}")
	[ "$code" = 204 ] || { lane_show "$T/clone$i.log" 30; lane_fail "clone $i: load HTTP $code $(cat "$T/api.body")"; }
done
for i in 1 2; do
	h=$(ctl "$T/v$i.sock" --wait-ms 60000 hello 2>&1) && ok "clone $i: a new vsock connection gets HELLO" || { bad "clone $i: no HELLO: $h"; continue; }
	out=$(ctl "$T/v$i.sock" invoke /bin/sh -c 'cat /run/before-full; cut -d. -f1 /proc/uptime; sleep 3; cut -d. -f1 /proc/uptime' 2>"$T/t.err")
	m=$(echo "$out" | sed -n 1p); u1=$(echo "$out" | sed -n 2p); u2=$(echo "$out" | sed -n 3p)
	if [ "$m" = base ] && [ -n "$u1" ] && [ -n "$u2" ] && [ "$u1" -ge "$up0" ] && [ "$u2" -gt "$u1" ]; then
		ok "clone $i: goes on from the snapshot (RAM file kept; uptime $up0 s at the snapshot, then $u1 -> $u2 s)"
	else bad "clone $i: not the snapshot's guest going on: '$out' (uptime at the snapshot $up0; $(cat "$T/t.err"))"; fi
	b=$(ctl "$T/v$i.sock" invoke /bin/cat /before)
	[ "$b" = base ] && ok "clone $i: sees the file written before the snapshot" || bad "clone $i: /before is '$b'"
	a=$(ctl "$T/v$i.sock" invoke /bin/sh -c 'cat /run/after-full 2>/dev/null || echo none')
	[ "$a" = none ] && ok "clone $i: has the full snapshot's memory, not later writes" || bad "clone $i: /run/after-full is '$a'"
	ctl "$T/v$i.sock" invoke /bin/sh -c "echo clone$i > /clone-marker; sync" >/dev/null || bad "clone $i: write failed"
done
kill -KILL $C1 $C2; wait $C1 $C2 2>/dev/null
for i in 1 2; do
	m=$(disk_cat "$T/clone$i.ext4" /clone-marker)
	[ "$m" = clone$i ] && ok "clone $i's write is in its own disk" || bad "clone $i's disk has /clone-marker '$m'"
done
m=$(disk_cat "$T/full.ext4" /clone-marker)
[ -z "$m" ] && ok "the snapshot's disk is untouched by the clones" || bad "full.ext4 has /clone-marker '$m'"

# --- the diff, merged onto the full -----------------------------------------------
cp "$T/full.mem" "$T/merged.mem"
"$WISP_BIN/wisp-snap" merge "$T/merged.mem" "$T/diff.mem" || lane_fail "wisp-snap merge failed"
start_vmm clone3; C3=$VPID
code=$(api "$T/clone3.api" PUT /snapshot/load "{\"snapshot_path\": \"$T/diff.state\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$T/merged.mem\"}, \"resume_vm\": true, \"vsock_override\": {\"uds_path\": \"$T/v3.sock\"}}")
[ "$code" = 204 ] || { lane_show "$T/clone3.log" 30; lane_fail "diff clone: load HTTP $code $(cat "$T/api.body")"; }
a=$(ctl "$T/v3.sock" --wait-ms 60000 invoke /bin/sh -c 'cat /run/after-full; cut -d. -f1 /proc/uptime')
u=$(echo "$a" | sed -n 2p)
[ "$(echo "$a" | sed -n 1p)" = newer ] && [ -n "$u" ] && [ "$u" -ge "$up1" ] &&
	ok "the diff clone has the newer memory and goes on from the diff (uptime $up1 -> $u s)" || bad "diff clone: '$a' (uptime at the diff $up1)"
kill -KILL $C3; wait $C3 2>/dev/null
[ $fails -eq 0 ] || lane_fail "$fails check(s) failed"
echo "two concurrent clones of a Linux snapshot, each with its own disk and vsock; a merged diff restored the newer state"
