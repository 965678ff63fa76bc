#!/usr/bin/env bash
# Snapshot figures (prints medians, asserts nothing):
#   create: PUT /snapshot/create round trip and the VMM's own time for a Full
#       and a Diff snapshot of a 128 MiB and a 1 GiB guest, with the file
#       sizes (apparent and allocated: the memory file is sparse);
#   load-to-running: PUT /snapshot/load with resume_vm into a fresh VMM, the
#       client's round trip and the VMM's own load time, 128 MiB and 1 GiB;
#   clones: 1, 10 and 50 idle clones restored at once from one snapshot,
#       their resident (Rss) and proportional (Pss) memory from
#       /proc/PID/smaps_rollup: the page sharing shows as Pss < Rss.
# The guest (tests/guests/idle.c) writes 16 MiB, then halts.
# Usage: bench/snapshot.sh [WISP_BIN [WISP_GUESTS]]
#   WISP_BENCH_RUNS (default 5), WISP_BENCH_CLONES (default "1 10 50")
# Needs /dev/kvm. Runs in the lane (bash + busybox + curl) or on a KVM host.
set -uo pipefail
bin=${1:-${WISP_BIN:-build/bin}}
guests=${2:-${WISP_GUESTS:-build/guests}}
runs=${WISP_BENCH_RUNS:-5}
clone_counts=${WISP_BENCH_CLONES:-1 10 50}
vmm=$bin/wisp-vmm
[ -x "$vmm" ] || { echo "snapshot-bench: $vmm missing"; exit 1; }
[ -f "$guests/idle.elf" ] || { echo "snapshot-bench: $guests/idle.elf missing"; exit 1; }
[ -c /dev/kvm ] || { echo "SKIPPED: snapshot-bench: no /dev/kvm"; exit 77; }
command -v curl >/dev/null || { echo "SKIPPED: snapshot-bench: no curl"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/wisp-snap-bench.XXXXXX")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) { print "n/a"; exit } m = int((NR + 1) / 2); if (NR % 2) print v[m]; else printf "%d\n", (v[m] + v[m + 1]) / 2 }'; }
# api SOCK METHOD PATH JSON: prints "HTTP_CODE MICROSECONDS"
api() {
	curl -s -o "$tmp/api.body" -w '%{http_code} %{time_total}' --max-time 120 --unix-socket "$1" \
		-X "$2" "http://localhost$3" -H 'Content-Type: application/json' -d "$4" |
		awk '{ printf "%s %d\n", $1, $2 * 1000000 }'
}
wait_for() { # wait_for PATTERN FILE SECONDS
	local end=$(( $(date +%s) + $3 ))
	until grep -q -- "$1" "$2" 2>/dev/null; do
		[ "$(date +%s)" -ge "$end" ] && return 1
		sleep 0.05
	done
}
start_vmm() { # start_vmm SOCK LOG [ARGS]: sets VPID
	local sock=$1 log=$2; shift 2
	rm -f "$sock"
	"$vmm" --api-sock "$sock" --level Info "$@" </dev/null >"$log.out" 2>"$log" &
	VPID=$!; PIDS+=($VPID)
	local end=$(( $(date +%s) + 30 ))
	until [ -S "$sock" ]; do
		[ "$(date +%s)" -ge "$end" ] && { echo "snapshot-bench: no API socket"; cat "$log"; exit 1; }
		sleep 0.02
	done
}
stop_vmm() { kill -KILL "$1" 2>/dev/null; wait "$1" 2>/dev/null; PIDS=(); }

for mem in 128 1024; do
	printf '{"boot-source":{"kernel_image_path":"%s","boot_args":"console=ttyS0"},"machine-config":{"vcpu_count":1,"mem_size_mib":%s,"track_dirty_pages":true}}' \
		"$guests/idle.elf" "$mem" >"$tmp/vm$mem.json"
	start_vmm "$tmp/api.sock" "$tmp/orig$mem.log" --config-file "$tmp/vm$mem.json"
	orig=$VPID
	wait_for 'idle: ready' "$tmp/orig$mem.log.out" 60 || { echo "snapshot-bench: guest not ready"; cat "$tmp/orig$mem.log"; exit 1; }
	read -r code _ < <(api "$tmp/api.sock" PATCH /vm '{"state":"Paused"}')
	[ "$code" = 204 ] || { echo "snapshot-bench: pause failed: $(cat "$tmp/api.body")"; exit 1; }
	for type in Full Diff; do
		: >"$tmp/rt"; : >"$tmp/own"
		for i in $(seq 1 "$runs"); do
			read -r code us < <(api "$tmp/api.sock" PUT /snapshot/create \
				"{\"snapshot_type\":\"$type\",\"snapshot_path\":\"$tmp/s$mem-$type.state\",\"mem_file_path\":\"$tmp/s$mem-$type.mem\"}")
			[ "$code" = 204 ] || { echo "snapshot-bench: $type snapshot failed: $(cat "$tmp/api.body")"; exit 1; }
			echo "$us" >>"$tmp/rt"
		done
		t=$(echo "$type" | tr 'FD' 'fd')
		grep -o "$t snapshot: .* in [0-9]* us" "$tmp/orig$mem.log" | tail -n "$runs" |
			sed 's/.* in \([0-9]*\) us/\1/' >"$tmp/own"
		m=$tmp/s$mem-$type.mem
		echo "snapshot-bench: create $type ${mem} MiB: round trip median $(median <"$tmp/rt") us, in the VMM $(median <"$tmp/own") us over $runs runs; state $(stat -c %s "$tmp/s$mem-$type.state") B, memory file $(( $(stat -c %s "$m") >> 20 )) MiB apparent, $(du -k "$m" | cut -f1) KiB allocated"
	done
	stop_vmm "$orig"

	: >"$tmp/rt"; : >"$tmp/own"
	for i in $(seq 1 "$runs"); do
		start_vmm "$tmp/load.sock" "$tmp/load$mem-$i.log"
		read -r code us < <(api "$tmp/load.sock" PUT /snapshot/load \
			"{\"snapshot_path\":\"$tmp/s$mem-Full.state\",\"mem_backend\":{\"backend_type\":\"File\",\"backend_path\":\"$tmp/s$mem-Full.mem\"},\"resume_vm\":true}")
		[ "$code" = 204 ] || { echo "snapshot-bench: load failed: $(cat "$tmp/api.body")"; cat "$tmp/load$mem-$i.log"; exit 1; }
		echo "$us" >>"$tmp/rt"
		sed -n 's/.*loaded in \([0-9]*\) us.*/\1/p' "$tmp/load$mem-$i.log" >>"$tmp/own"
		stop_vmm "$VPID"
	done
	echo "snapshot-bench: load-to-running ${mem} MiB (PUT /snapshot/load, resume_vm): round trip median $(median <"$tmp/rt") us, in the VMM $(median <"$tmp/own") us over $runs runs"
done

# Idle clones of the 128 MiB snapshot, all at once.
kib() { awk -v k="$1" '$1 == k":" { print $2 }' "$2"; }
for n in $clone_counts; do
	cl=()
	for i in $(seq 1 "$n"); do
		"$vmm" --no-api --restore-from "$tmp/s128-Full.state" --mem-file "$tmp/s128-Full.mem" \
			</dev/null >/dev/null 2>"$tmp/clone$i.log" &
		cl+=($!); PIDS+=($!)
	done
	for i in $(seq 1 "$n"); do
		wait_for 'loaded in' "$tmp/clone$i.log" 120 || { echo "snapshot-bench: clone $i did not load"; cat "$tmp/clone$i.log"; exit 1; }
	done
	sleep 1
	rss=0; pss=0; anon=0
	for p in "${cl[@]}"; do
		cat "/proc/$p/smaps_rollup" >"$tmp/sr" 2>/dev/null || { echo "snapshot-bench: clone $p is gone"; exit 1; }
		rss=$((rss + $(kib Rss "$tmp/sr"))); pss=$((pss + $(kib Pss "$tmp/sr")))
		anon=$((anon + $(kib Anonymous "$tmp/sr")))
	done
	echo "snapshot-bench: $n idle clone(s) of one 128 MiB snapshot: Rss $rss KiB total ($((rss / n)) per clone), Pss $pss KiB total ($((pss / n)) per clone), private anonymous $((anon / n)) KiB per clone"
	for p in "${cl[@]}"; do kill -KILL "$p" 2>/dev/null; done
	wait "${cl[@]}" 2>/dev/null
	PIDS=()   # never signal a pid that may have been reused
done
