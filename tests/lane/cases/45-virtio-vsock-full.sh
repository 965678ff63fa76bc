#!/usr/bin/env bash
# virtio-vsock in the Linux lane, what 43 leaves out:
# - guest-initiated connections (the VMM connects them to <uds_path>_<port>):
#   6 MiB guest->host and 6 MiB host->guest, each checked by SHA-256 on the
#   receiving end, and 6 MiB echoed both ways at once;
# - 16 concurrent connections in each direction, each with its own 256 KiB
#   checked on both ends (guest->host streams also by the host's own copy,
#   host->guest ones by wisp-virtio-test hostecho, one host process);
# - 16 concurrent guest connections to a listener with backlog 1: a full
#   backlog must not lose a connection silently. Each one completes intact
#   or fails with a clean connect error; none hangs or corrupts (how many
#   complete is a figure: the VMM retries connect() for 2 s, Linux's default
#   connect timeout, then resets, so it depends on how fast socat accepts);
# (the guest's clients wait 30 s in connect(), not 2 s: see send_cmd in
# tests/virtio/wisp-virtio-test.c)
# - the device's metrics block ("vsock" in the metrics file) counts it all.
# The host listeners are socat with backlog=64 (socat's default is 5, which
# a burst of 16 overflows), so the case measures the VMM, not the tool.
# lane-timeout: 900
set -uo pipefail
. lane/lib.sh
. lane/virtio-lib.sh
lane_need_bin wisp-vmm wisp-agent-ctl wisp-virtio-test
lane_need_image vmlinux rootfs.ext4
command -v socat >/dev/null || lane_skip "socat missing"

N=16 CHUNK=262144 BIG=6291456
VT_UDS=$WISP_TMP/vsock.sock VT_LOG=$WISP_TMP/vmm.log MET=$WISP_TMP/metrics.json
vt_rootfs "$WISP_TMP/root.ext4"
lane_vmm_config "$WISP_TMP/vm.json" --kernel "$WISP_IMAGES/vmlinux" --args "$LANE_BOOT_ARGS" \
	--rootfs "$WISP_TMP/root.ext4" --vsock "3:$VT_UDS" --mem 256 --metrics "$MET"
lane_vmm_start "$WISP_TMP/vm.json" "$VT_LOG"
LPIDS=()
cleanup() {
	for p in "${LPIDS[@]}"; do kill "$p" 2>/dev/null; done
	vt_unserve
	lane_vmm_stop
}
trap cleanup EXIT
vt_wait_guest "$LANE_VMM_PID"

fails=0
pass() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
sha() { sha256sum < "$1" 2>/dev/null | cut -d' ' -f1; }

# listen_echo PORT BACKLOG DIR: an echo server at <uds>_PORT that keeps what
# each connection sent in DIR/in.<pid> (-t 120: after the guest's half-close
# the echo may take its time)
listen_echo() {
	mkdir -p "$3"
	socat -t 120 "UNIX-LISTEN:${VT_UDS}_$1,fork,backlog=$2" "SYSTEM:tee $3/in.\$\$" \
		2>>"$WISP_TMP/socat-$1.log" &
	LPIDS+=($!)
}
listen_echo 6000 64 "$WISP_TMP/r6000"
listen_echo 6003 64 "$WISP_TMP/r6003"
listen_echo 6004 1 "$WISP_TMP/r6004"
# 6001: one connection into a file; 6002: a file out to one connection
socat -u "UNIX-LISTEN:${VT_UDS}_6001,backlog=64" "CREATE:$WISP_TMP/g2h.bin" 2>>"$WISP_TMP/socat-6001.log" &
SINK=$!
LPIDS+=($SINK)
head -c $BIG /dev/urandom > "$WISP_TMP/h2g.bin"
h2g_sha=$(sha "$WISP_TMP/h2g.bin")
socat -U "UNIX-LISTEN:${VT_UDS}_6002,backlog=64" "OPEN:$WISP_TMP/h2g.bin,rdonly" 2>>"$WISP_TMP/socat-6002.log" &
LPIDS+=($!)
for p in 6000 6001 6002 6003 6004; do
	wait_for_file "${VT_UDS}_$p" 30 || bad "no host listener at ${VT_UDS}_$p"
done

# ---- guest-initiated, 6 MiB each way ----
g=$(vt_sh "head -c $BIG /dev/urandom > /tmp/big && sha256sum /tmp/big")
big_sha=${g%% *}
[ ${#big_sha} = 64 ] || bad "guest file: $g"
r=$(vt_sh 'wisp-virtio-test send 2 6001 < /tmp/big > /dev/null; echo "rc=$?"')
for _ in $(seq 600); do kill -0 "$SINK" 2>/dev/null || break; sleep 0.1; done # socat wrote the file
[ "$r" = rc=0 ] && [ "$(sha "$WISP_TMP/g2h.bin")" = "$big_sha" ] \
	&& pass "6 MiB guest->host (guest-initiated) intact" \
	|| bad "guest->host: send $r, $(stat -c %s "$WISP_TMP/g2h.bin" 2>/dev/null) bytes arrived, hash $(sha "$WISP_TMP/g2h.bin")"
r=$(vt_sh 'wisp-virtio-test send 2 6002 < /dev/null > /tmp/h2g; echo "rc=$? $(sha256sum < /tmp/h2g | cut -d" " -f1) $(wc -c < /tmp/h2g)"')
[ "${r#rc=0 }" != "$r" ] && [ "$(echo "$r" | cut -d' ' -f2)" = "$h2g_sha" ] \
	&& pass "6 MiB host->guest (guest-initiated) intact" || bad "host->guest: '$r', want $h2g_sha"
r=$(vt_sh 'wisp-virtio-test send 2 6000 < /tmp/big > /tmp/back; echo "rc=$? $(sha256sum < /tmp/back | cut -d" " -f1)"')
host_copy=$(sha "$(ls "$WISP_TMP"/r6000/in.* 2>/dev/null | head -n 1)")
[ "$r" = "rc=0 $big_sha" ] && [ "$host_copy" = "$big_sha" ] \
	&& pass "6 MiB echoed both ways at once (guest-initiated) intact" \
	|| bad "echo: guest '$r', host copy $host_copy, want $big_sha"

# ---- N concurrent guest-initiated connections ----
# run_guest_conns PORT OUT: N clients at once in the guest, each sending its
# chunk c$i to PORT; one line per client: "i rc sha(sent) sha(back) error"
vt_sh "mkdir -p /tmp/c && cd /tmp/c && for i in \$(seq 0 $((N - 1))); do head -c $CHUNK /dev/urandom > c\$i; done" \
	|| bad "guest chunk files"
run_guest_conns() {
	vt_sh "cd /tmp/c && for i in \$(seq 0 $((N - 1))); do
		(wisp-virtio-test send 2 $1 < c\$i > b$1.\$i 2> e$1.\$i; echo \$? > rc$1.\$i) &
	done; wait
	for i in \$(seq 0 $((N - 1))); do
		echo \"\$i \$(cat rc$1.\$i) \$(sha256sum < c\$i | cut -d' ' -f1) \$(sha256sum < b$1.\$i | cut -d' ' -f1) \$(head -c 100 e$1.\$i | tr ' \n' '__')\"
	done" > "$2"
}
run_guest_conns 6003 "$WISP_TMP/g6003.txt"
ok=$(awk '$2 == 0 && $3 == $4' "$WISP_TMP/g6003.txt" | wc -l)
awk '{print $3}' "$WISP_TMP/g6003.txt" | sort > "$WISP_TMP/g6003.sent"
for f in "$WISP_TMP"/r6003/in.*; do sha "$f"; done | sort > "$WISP_TMP/g6003.host"
[ "$ok" = $N ] && pass "$N concurrent guest->host connections echoed intact" \
	|| { cat "$WISP_TMP/g6003.txt"; bad "concurrent guest connections: $ok of $N intact"; }
[ "$(wc -l < "$WISP_TMP/g6003.sent")" = $N ] && cmp -s "$WISP_TMP/g6003.sent" "$WISP_TMP/g6003.host" \
	&& pass "the host received each of the $N streams intact" \
	|| bad "host copies: $(wc -l < "$WISP_TMP/g6003.host") streams, not the $N sent"

# against backlog 1: intact or a clean connect error, never a hang or bad data
run_guest_conns 6004 "$WISP_TMP/g6004.txt" || bad "the backlog-1 round did not finish"
done4=$(awk '$2 == 0 && $3 == $4' "$WISP_TMP/g6004.txt" | wc -l)
clean4=$(awk '$2 != 0 && $5 ~ /^wisp-virtio-test:_connect:/' "$WISP_TMP/g6004.txt" | wc -l)
[ "$(wc -l < "$WISP_TMP/g6004.txt")" = $N ] && [ $((done4 + clean4)) = $N ] \
	&& pass "backlog-1 listener: $done4 of $N completed intact, $clean4 refused cleanly" \
	|| { cat "$WISP_TMP/g6004.txt"; bad "backlog-1 listener: $done4 intact + $clean4 clean refusals of $N"; }
echo "lane-figure: vsock $N concurrent guest connects to a backlog-1 listener: $done4 completed"

# ---- N concurrent host-initiated connections to a guest echo server ----
# (the server is an invocation of its own while it is needed)
vt_serve 'exec wisp-virtio-test listen 5000'
vt_wait_vsock_port 5000 || bad "the guest echo server never answered on port 5000"
# one host process opens all N (wisp-virtio-test hostecho: each sends its
# own 256 KiB pattern and checks every byte of the echo), so the burst is of
# connections, not of process starts
timeout 400 "$WISP_BIN/wisp-virtio-test" hostecho "$VT_UDS" 5000 $N $CHUNK > "$WISP_TMP/hostecho.txt" 2>&1
vt_unserve
ok=$(grep -c ': intact ' "$WISP_TMP/hostecho.txt")
[ "$ok" = $N ] && pass "$N concurrent host->guest connections echoed intact" \
	|| { grep -v ': intact ' "$WISP_TMP/hostecho.txt"; bad "concurrent host connections: $ok of $N intact"; }

# ---- metrics: the VMM flushes a last line when it ends ----
kill -TERM "$LANE_VMM_PID"
lane_vmm_wait 60 >/dev/null
rc=$?
[ $rc = 0 ] || bad "wisp-vmm exit status $rc after SIGTERM"
LANE_VMM_PID=
# msum KEY: KEY summed over the "vsock" blocks of every metrics line
msum() {
	grep -o '"vsock":{[^}]*}' "$MET" 2>/dev/null | grep -o "\"$1\":[0-9]*" | cut -d: -f2 \
		| awk '{ s += $1 } END { print s + 0 }'
}
if grep -q '"vsock":{' "$MET" 2>/dev/null; then
	wr=$(msum bytes_written) rd=$(msum bytes_read) add=$(msum conns_added)
	rx=$(msum rx_packets) tx=$(msum tx_packets) req=$(msum requests)
	min_bytes=$((2 * BIG + 2 * N * CHUNK))
	echo "lane-figure: vsock metrics: bytes_written $wr bytes_read $rd rx_packets $rx tx_packets $tx" \
		"conns_added $add conns_closed $(msum conns_closed) conns_refused $(msum conns_refused)" \
		"connect_retries $(msum connect_retries) errors $(msum errors)"
	[ "$wr" -ge $min_bytes ] && [ "$rd" -ge $min_bytes ] && pass "metrics count the bytes both ways" \
		|| bad "metrics bytes: written $wr, read $rd, want at least $min_bytes each"
	[ "$add" -ge $((3 + 2 * N + done4)) ] && pass "metrics count $add connections" \
		|| bad "metrics conns_added $add, want at least $((3 + 2 * N + done4))"
	[ "$rx" -gt 0 ] && [ "$tx" -gt 0 ] && [ "$req" = $((rx + tx)) ] && pass "metrics packets: requests = rx + tx" \
		|| bad "metrics packets: requests $req, rx $rx, tx $tx"
else
	lane_show "$MET" 5
	bad "no vsock block in the metrics file"
fi

grep -E 'WARN|ERROR' "$VT_LOG" | tail -n 20 | sed 's/^/vmm: /'
if [ $fails != 0 ]; then
	for p in 6000 6003 6004; do lane_show "$WISP_TMP/socat-$p.log" 10; done
	lane_show "$VT_LOG" 40
	lane_fail "$fails checks failed"
fi
echo "virtio-vsock-full: all checks passed"
