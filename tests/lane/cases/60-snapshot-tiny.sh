#!/usr/bin/env bash
# Snapshot and restore with a tiny guest (snapshot, issue 6): the count
# guest keeps a counter in RAM and prints it. Through the API: a snapshot
# is refused while Running; pause; Full snapshot (sparse memory file);
# resume, count on, pause, Diff snapshot; the VMM is killed. Then two VMMs
# restore the Full snapshot at once from the same files (MAP_PRIVATE) and
# both go on from the saved count; a third restores the Diff merged onto
# the Full with wisp-snap merge and goes on from the newer count. The
# Diff's memory file alone, and the Full's not yet merged with it, are
# refused before any vCPU runs (exit 152), and nothing on disk changes.
# lane-guest: tiny
# lane-timeout: 240
set -uo pipefail
. lane/lib.sh
lane_need_bin wisp-vmm wisp-snap
[ -f "$WISP_GUESTS/count.elf" ] || lane_skip "count.elf not built"
command -v curl >/dev/null || lane_skip "curl missing"
T=$WISP_TMP
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT

api() { # api METHOD PATH JSON: prints the HTTP status; body in $T/api.body
	curl -s -o "$T/api.body" -w '%{http_code}' --max-time 60 --unix-socket "$T/api.sock" \
		-X "$1" "http://localhost$2" -H 'Content-Type: application/json' -d "$3"
}
# counts FILE: the complete "count 0x.." lines' numbers in decimal, in order
# (the last line is dropped: it may be cut in the middle).
counts() { tr -d '\r' <"$1" | sed -n '$!p' | sed -n 's/^count 0x\([0-9a-f]*\)$/\1/p' |
	while read -r h; do echo $((16#$h)); done; }
last_count() { counts "$1" | tail -n 1; }
# wait_counts FILE N PID: until FILE has N complete count lines (60 s)
wait_counts() {
	for _ in $(seq 600); do
		[ "$(counts "$1" | wc -l)" -ge "$2" ] && return 0
		kill -0 "$3" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}
# check_continues FILE SAVED WHAT: every count in FILE is after SAVED, the
# first at most 3 after it (the line being printed at the pause may be cut).
check_continues() {
	local first bad
	first=$(counts "$1" | head -n 1)
	bad=$(counts "$1" | awk -v s="$2" '$1 <= s' | head -n 1)
	[ -n "$first" ] || { lane_show "$1"; lane_fail "$3: no count lines"; }
	[ -z "$bad" ] || { lane_show "$1"; lane_fail "$3: printed count $bad, at or before the saved $2"; }
	[ "$first" -le $(( $2 + 3 )) ] || { lane_show "$1"; lane_fail "$3: first count $first, saved was $2"; }
	echo "$3: first count $first after the saved $2"
}

lane_vmm_config "$T/vm.json" --kernel "$WISP_GUESTS/count.elf" --args "console=ttyS0" --mem 128 --track-dirty
"$WISP_BIN/wisp-vmm" --api-sock "$T/api.sock" --config-file "$T/vm.json" </dev/null >"$T/orig.out" 2>"$T/orig.log" &
ORIG=$!; PIDS+=($ORIG)
wait_counts "$T/orig.out" 3 $ORIG || { lane_show "$T/orig.log"; lane_fail "the count guest did not count"; }
code=$(api PUT /snapshot/create "{\"snapshot_path\": \"$T/full.state\", \"mem_file_path\": \"$T/full.mem\"}")
[ "$code" = 400 ] && grep -q 'Running' "$T/api.body" || lane_fail "snapshot while Running: HTTP $code $(cat "$T/api.body")"
code=$(api PATCH /vm '{"state": "Paused"}')
[ "$code" = 204 ] || lane_fail "pause: HTTP $code $(cat "$T/api.body")"
sleep 0.5
saved1=$(last_count "$T/orig.out")
code=$(api PUT /snapshot/create "{\"snapshot_type\": \"Full\", \"snapshot_path\": \"$T/full.state\", \"mem_file_path\": \"$T/full.mem\"}")
[ "$code" = 204 ] || { lane_show "$T/orig.log"; lane_fail "full snapshot: HTTP $code $(cat "$T/api.body")"; }
[ "$(stat -c %s "$T/full.mem")" -eq $(((128 << 20) + 4096)) ] || lane_fail "full.mem is not 128 MiB and the footer page"
full_kib=$(du -k "$T/full.mem" | cut -f1)
[ "$full_kib" -lt 16384 ] || lane_fail "full.mem is not sparse: $full_kib KiB allocated"
"$WISP_BIN/wisp-snap" info "$T/full.state" "$T/full.mem" >"$T/info" || { cat "$T/info"; lane_fail "wisp-snap info refused the snapshot"; }
grep -q 'vcpu          instance 0 .* [0-9][0-9]* CPUID entries' "$T/info" || { cat "$T/info"; lane_fail "no vCPU state with its CPUID in the state file"; }
grep -q '(loads)' "$T/info" || { cat "$T/info"; lane_fail "wisp-snap info: full.mem does not load with full.state"; }

# count on, then a diff
n=$(counts "$T/orig.out" | wc -l)
code=$(api PATCH /vm '{"state": "Resumed"}')
[ "$code" = 204 ] || lane_fail "resume: HTTP $code $(cat "$T/api.body")"
wait_counts "$T/orig.out" $((n + 4)) $ORIG || { lane_show "$T/orig.log"; lane_fail "the guest did not go on after resume"; }
code=$(api PATCH /vm '{"state": "Paused"}')
[ "$code" = 204 ] || lane_fail "second pause: HTTP $code"
sleep 0.5
saved2=$(last_count "$T/orig.out")
code=$(api PUT /snapshot/create "{\"snapshot_type\": \"Diff\", \"snapshot_path\": \"$T/diff.state\", \"mem_file_path\": \"$T/diff.mem\"}")
[ "$code" = 204 ] || { lane_show "$T/orig.log"; lane_fail "diff snapshot: HTTP $code $(cat "$T/api.body")"; }
diff_kib=$(du -k "$T/diff.mem" | cut -f1)
kill -KILL $ORIG; wait $ORIG 2>/dev/null
echo "lane-figure: snapshot-tiny full.mem ${full_kib} KiB allocated, diff.mem ${diff_kib} KiB, state $(stat -c %s "$T/full.state") B"
[ "$diff_kib" -le "$full_kib" ] || lane_fail "the diff ($diff_kib KiB) is larger than the full snapshot ($full_kib KiB)"

# refused before any vCPU runs: the diff's memory file alone, and the full
# one not yet merged with the diff; no file changes
sums=$(sha256sum "$T/full.state" "$T/full.mem" "$T/diff.state" "$T/diff.mem")
expect_refused() { # expect_refused MEM PATTERN WHAT
	timeout 60 "$WISP_BIN/wisp-vmm" --no-api --restore-from "$T/diff.state" --mem-file "$1" \
		</dev/null >"$T/refused.out" 2>&1
	local rc=$?
	[ "$rc" -eq 152 ] && grep -q "$2" "$T/refused.out" || { cat "$T/refused.out"; lane_fail "$3: exit $rc"; }
	! grep -q 'count 0x' "$T/refused.out" || lane_fail "$3: the guest ran"
	echo "refused: $3"
}
expect_refused "$T/diff.mem" "is a Diff snapshot's" "the diff's memory file alone"
expect_refused "$T/full.mem" "not yet merged with the diff" "the full memory file, unmerged, with the diff's state"
[ "$sums" = "$(sha256sum "$T/full.state" "$T/full.mem" "$T/diff.state" "$T/diff.mem")" ] || lane_fail "a refused load changed the snapshot files"

# two clones of the full snapshot at once
sha_before=$(sha256sum "$T/full.state" "$T/full.mem")
for i in 1 2; do
	"$WISP_BIN/wisp-vmm" --no-api --restore-from "$T/full.state" --mem-file "$T/full.mem" \
		</dev/null >"$T/clone$i.out" 2>"$T/clone$i.log" &
	PIDS+=($!); eval "C$i=$!"
done
for i in 1 2; do
	eval "p=\$C$i"
	wait_counts "$T/clone$i.out" 3 "$p" || { lane_show "$T/clone$i.log"; lane_show "$T/clone$i.out"; lane_fail "clone $i did not count"; }
done
for i in 1 2; do check_continues "$T/clone$i.out" "$saved1" "clone $i"; done
[ "$sha_before" = "$(sha256sum "$T/full.state" "$T/full.mem")" ] || lane_fail "running clones changed the snapshot files"
kill -KILL $C1 $C2; wait $C1 $C2 2>/dev/null

# the diff, merged onto a copy of the full memory file
cp "$T/full.mem" "$T/merged.mem"
"$WISP_BIN/wisp-snap" merge "$T/merged.mem" "$T/diff.mem" || lane_fail "wisp-snap merge failed"
"$WISP_BIN/wisp-snap" info "$T/diff.state" "$T/merged.mem" >"$T/info" 2>&1 && grep -q '(loads)' "$T/info" ||
	{ cat "$T/info"; lane_fail "wisp-snap info: the merged memory file does not load with diff.state"; }
"$WISP_BIN/wisp-vmm" --no-api --restore-from "$T/diff.state" --mem-file "$T/merged.mem" \
	</dev/null >"$T/clone3.out" 2>"$T/clone3.log" &
C3=$!; PIDS+=($C3)
wait_counts "$T/clone3.out" 3 $C3 || { lane_show "$T/clone3.log"; lane_fail "the diff clone did not count"; }
check_continues "$T/clone3.out" "$saved2" "diff clone"
[ "$saved2" -gt "$saved1" ] || lane_fail "the diff's count $saved2 is not after the full's $saved1"

# a memory file of the wrong size is refused before any vCPU runs, exit 152
truncate -s 64M "$T/small.mem"
timeout 30 "$WISP_BIN/wisp-vmm" --no-api --restore-from "$T/full.state" --mem-file "$T/small.mem" \
	</dev/null >"$T/bad.out" 2>&1
rc=$?
[ "$rc" -eq 152 ] && grep -q "guest memory is 134217728 bytes" "$T/bad.out" || { cat "$T/bad.out"; lane_fail "wrong-size memory file: exit $rc"; }
echo "full snapshot at count $saved1 -> two concurrent clones went on; diff at $saved2 -> merged clone went on"
