#!/usr/bin/env bash
# Median time for wisp-jailer to build a jail and exec the VMM, measured
# to the VMM's API socket being ready (what a control daemon waits for), and
# the median time of --cleanup. Root needed. Prints figures, asserts none.
#   bash bench/jailer.sh [RUNS]     (BUILD=build by default)
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
RUNS=${1:-30}
JAILER=$PWD/$BUILD/bin/wisp-jailer
[ "$(id -u)" -eq 0 ] || { echo "bench/jailer: needs root"; exit 1; }
[ -x "$JAILER" ] || { echo "bench/jailer: build $JAILER first (make)"; exit 1; }
T=$(mktemp -d /tmp/wisp-jailer-bench.XXXXXX)
trap 'rm -rf "$T"' EXIT
BASE=$T/jails

VMM=$PWD/$BUILD/bin/wisp-vmm
what="wisp-vmm"
if ! { [ -x "$VMM" ] && ! readelf -l "$VMM" 2>/dev/null | grep -q INTERP && (
	"$VMM" --api-sock "$T/try.sock" >/dev/null 2>&1 & p=$!
	for _ in $(seq 50); do [ -S "$T/try.sock" ] && break; sleep 0.1; done
	kill -9 $p 2>/dev/null; [ -S "$T/try.sock" ]); }; then
	cc -static -O2 -o "$T/jail-probe" tests/host/jail-probe.c || exit 1
	VMM=$T/jail-probe
	what="the stand-in tests/host/jail-probe.c (wisp-vmm does not reach its API socket on this host)"
fi
NAME=$(basename "$VMM")

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
: >"$T/start"; : >"$T/clean"
for i in $(seq "$RUNS"); do
	id=bench-$i
	sock=$BASE/$NAME/$id/root/api.sock
	t0=${EPOCHREALTIME/./}
	"$JAILER" --id "$id" --exec-file "$VMM" --uid 43210 --gid 43210 --chroot-base-dir "$BASE" \
		--cgroup pids.max=100 -- --api-sock /api.sock >/dev/null 2>&1 &
	p=$!
	n=0
	until [ -S "$sock" ]; do
		n=$((n + 1))
		[ $n -gt 2000000 ] && { echo "bench/jailer: run $i never reached its socket"; exit 1; }
	done
	t1=${EPOCHREALTIME/./}
	echo $(( t1 - t0 )) >>"$T/start"
	kill -9 $p; wait $p 2>/dev/null
	t0=${EPOCHREALTIME/./}
	"$JAILER" --cleanup --id "$id" --exec-file "$VMM" --chroot-base-dir "$BASE" || exit 1
	t1=${EPOCHREALTIME/./}
	echo $(( t1 - t0 )) >>"$T/clean"
done
# The floor: fork+exec of the same binary outside any jail, to its socket.
: >"$T/bare"
for i in $(seq "$RUNS"); do
	rm -f "$T/bare.sock"
	t0=${EPOCHREALTIME/./}
	"$VMM" --api-sock "$T/bare.sock" >/dev/null 2>&1 &
	p=$!
	until [ -S "$T/bare.sock" ]; do :; done
	t1=${EPOCHREALTIME/./}
	echo $(( t1 - t0 )) >>"$T/bare"
	kill -9 $p; wait $p 2>/dev/null
done
# The jailer's own share: jail + exec of a static no-op program against a
# plain spawn of the same program (both fork+exec from bash).
printf 'int main(void) { return 0; }\n' >"$T/noop.c"
cc -static -O2 -o "$T/noop" "$T/noop.c" || exit 1
: >"$T/jnoop"; : >"$T/bnoop"
for i in $(seq "$RUNS"); do
	t0=${EPOCHREALTIME/./}
	"$JAILER" --id "noop-$i" --exec-file "$T/noop" --uid 43210 --gid 43210 --chroot-base-dir "$BASE" \
		--cgroup pids.max=100 || exit 1
	t1=${EPOCHREALTIME/./}
	echo $(( t1 - t0 )) >>"$T/jnoop"
	"$JAILER" --cleanup --id "noop-$i" --exec-file "$T/noop" --chroot-base-dir "$BASE" || exit 1
	t0=${EPOCHREALTIME/./}
	"$T/noop"
	t1=${EPOCHREALTIME/./}
	echo $(( t1 - t0 )) >>"$T/bnoop"
done
echo "bench/jailer: $RUNS runs, VMM: $what ($(stat -c %s "$VMM") bytes copied per jail)"
printf 'jail + exec to API socket ready: median %s us (min %s, max %s)\n' \
	"$(median <"$T/start")" "$(sort -n "$T/start" | head -1)" "$(sort -n "$T/start" | tail -1)"
printf 'same VMM without a jail (spawn to socket): median %s us\n' "$(median <"$T/bare")"
printf 'wisp-jailer --cleanup: median %s us\n' "$(median <"$T/clean")"
printf 'jail + exec of a static no-op to its exit: median %s us; the no-op spawned alone: median %s us\n' \
	"$(median <"$T/jnoop")" "$(median <"$T/bnoop")"
echo "(times include bash's fork+exec of the jailer and a busy-wait on the socket; a 2-core PVM guest, not hardware)"
