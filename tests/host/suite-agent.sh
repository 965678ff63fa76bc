#!/usr/bin/env bash
# wisp-agent on the host over a Unix socket (no VM, no root needed): every
# message type, handler timeouts, output limits, crashes, client disconnects
# leaving no processes (not even detached ones), the detached services of
# handlers that exit normally left running, malformed and oversized frames,
# several clients at once, the hybrid-vsock CONNECT handshake through a
# stand-in for the VMM, SHUTDOWN and SIGTERM. The agent under test is the
# ASan+UBSan build when it exists (its log must stay free of sanitizer
# reports), else the release one.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
if [ -z "${AGENT_BUILD:-}" ]; then
	AGENT_BUILD=$BUILD
	[ -x build-asan/bin/wisp-agent ] && AGENT_BUILD=build-asan
fi
AGENT=$PWD/$AGENT_BUILD/bin/wisp-agent
CTLBIN=$PWD/$BUILD/bin/wisp-agent-ctl
H=$PWD/images/rootfs/handlers
pass=0; fail=0; skip=0
ok()   { pass=$((pass + 1)); echo "ok: $*"; }
bad()  { fail=$((fail + 1)); echo "FAIL: $*"; }
skp()  { skip=$((skip + 1)); echo "SKIPPED: $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
finish() {
	echo "agent: $pass passed, $fail failed, $skip skipped"
	[ "$fail" -eq 0 ]
	exit $?
}
for b in "$AGENT" "$CTLBIN"; do
	[ -x "$b" ] || { bad "$b is not built"; finish; }
done

T=$(mktemp -d /tmp/wisp-agent-suite.XXXXXX)
S=$T/agent.sock
# Handlers the suite starts sleep for NNNN.$TAG seconds: a fraction unique to
# this run, so leftovers can be found (and cleaned up) by their argv.
TAG=$(printf '9%06d' $(($$ % 1000000)))
BG=()
cleanup_all() {
	for p in "${BG[@]}"; do { kill -9 "$p"; wait "$p"; } 2>/dev/null; done
	[ -n "${APID:-}" ] && kill -9 "$APID" 2>/dev/null
	# repeated: a leftover that forks (a broken agent's survivors) may add more
	for _ in 1 2 3 4 5; do pkill -9 -f "sleep [0-9]*\\.$TAG" 2>/dev/null || break; sleep 0.1; done
	rm -rf "$T"
}
trap cleanup_all EXIT

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1}
start_agent() { # start_agent SOCKET LOG [ARGS...]
	local sock=$1 log=$2; shift 2
	"$AGENT" --listen "unix:$sock" --level debug "$@" 2>>"$log" &
	APID=$!
	for _ in $(seq 100); do [ -S "$sock" ] && return 0; sleep 0.05; done
	return 1
}
ctl() { "$CTLBIN" --unix "$S" --io-timeout-ms 30000 "$@"; }
# wait_gone PATTERN: until no process matches (5 s at most)
wait_gone() {
	for _ in $(seq 100); do pgrep -f "$1" >/dev/null || return 0; sleep 0.05; done
	return 1
}
running() { pgrep -f "$1" >/dev/null; }
# wait_pid PID: wait for a child of this shell, 20 s at most (then kill it);
# returns its exit status, 124 on timeout
wait_pid() {
	for _ in $(seq 400); do
		kill -0 "$1" 2>/dev/null || { wait "$1"; return $?; }
		sleep 0.05
	done
	kill -9 "$1" 2>/dev/null; wait "$1" 2>/dev/null
	return 124
}
wait_file() { for _ in $(seq 200); do [ -e "$1" ] && return 0; sleep 0.05; done; return 1; }

# --- building raw frames (little-endian) --------------------------------------
le16() { printf "\\\\x%02x\\\\x%02x" $(($1 & 255)) $((($1 >> 8) & 255)); }
le32() { printf "\\\\x%02x\\\\x%02x\\\\x%02x\\\\x%02x" $(($1 & 255)) $((($1 >> 8) & 255)) \
	$((($1 >> 16) & 255)) $((($1 >> 24) & 255)); }
tlv_str() { printf "$(le16 "$1")$(le32 $((${#2} + 1)))"; printf '%s\0' "$2"; }
tlv_u32() { printf "$(le16 "$1")$(le32 4)$(le32 "$2")"; }
# frame TYPE ID BODYFILE [MAGIC [VERSION [LENGTH]]]
frame() {
	local len; len=$(stat -c %s "$3")
	printf '%s' "${4:-WSPA}"
	printf "$(le16 "${5:-1}")$(le16 "$1")$(le32 "$2")$(le32 "${6:-$len}")"
	cat "$3"
}

if ! start_agent "$S" "$T/agent.log"; then
	bad "the agent did not create its socket"; cat "$T/agent.log"; finish
fi

# --- HELLO and PING ------------------------------------------------------------
out=$(ctl hello)
check "HELLO: protocol 1, INVOKE|EXEC|RESTORED|SHUTDOWN, not PID 1" \
	grep -q '^HELLO id=0 version=1 caps=0xf agent=' <<<"$out"
check "PING x200" bash -c "'$CTLBIN' --unix '$S' ping --count 200 | grep -q '^ping: 200 round trips'"
check "PING with a 1 MiB payload comes back identical" \
	bash -c "'$CTLBIN' --unix '$S' ping --size 1048576 --count 3 >/dev/null"

# --- INVOKE ----------------------------------------------------------------------
head -c 1048576 /dev/urandom > "$T/in.bin"
want=$(sha256sum < "$T/in.bin" | cut -d' ' -f1)
got=$(ctl invoke --stdin "$T/in.bin" "$H/echo" | sha256sum | cut -d' ' -f1)
check "INVOKE echo: 1 MiB of stdin comes back byte for byte" [ "$got" = "$want" ]
got=$(ctl invoke --stdin "$T/in.bin" "$H/sha256")
check "INVOKE sha256 of 1 MiB of stdin" [ "$got" = "$want" ]
ctl invoke "$H/exit" 7 "to stderr" >"$T/o" 2>"$T/e"; rc=$?
check "INVOKE exit 7: status 7, stderr captured" bash -c "[ $rc = 7 ] && grep -qx 'to stderr' '$T/e'"
ctl invoke --env A=1 --env "B=two words" --cwd /tmp "$H/env" >"$T/o"
check "INVOKE env: given variables, default PATH, cwd" bash -c \
	"grep -qx 'A=1' '$T/o' && grep -qx 'B=two words' '$T/o' && grep -q '^PATH=/' '$T/o' && grep -qx 'cwd=/tmp' '$T/o' && [ \$(wc -l < '$T/o') -le 6 ]"
got=$(ctl invoke --env PATH=/nowhere /usr/bin/env | grep '^PATH=')
check "INVOKE env: a given PATH replaces the default" [ "$got" = "PATH=/nowhere" ]
got=$(ctl invoke /bin/sh -c 'printf "%s|" "$0" "$@"' x 'a b' '' c)
check "INVOKE argv: empty and spaced arguments kept" [ "$got" = "x|a b||c|" ]
got=$(ctl invoke sh -c 'echo found')
check "INVOKE: a path without '/' is searched in PATH" [ "$got" = "found" ]
ctl invoke --meta /bin/true 2>"$T/e" >/dev/null
check "RESULT carries wall time and peak RSS" grep -qE 'exit=0 signal=0 .*wall_us=[1-9][0-9]* max_rss_kb=[1-9]' "$T/e"

# --- failures ------------------------------------------------------------------------
ctl invoke --meta --timeout-ms 300 /bin/sh -c "sleep 1000.$TAG & sleep 1001.$TAG; echo never" \
	>"$T/o" 2>"$T/e"; rc=$?
check "timeout: killed by SIGKILL (status 137), timed_out=1" bash -c \
	"[ $rc = 137 ] && grep -q 'signal=9 timed_out=1' '$T/e' && [ ! -s '$T/o' ]"
check "timeout: the handler's whole process group is gone" wait_gone "^sleep 100[01].$TAG"
ctl invoke --meta /bin/sh -c 'kill -SEGV $$' 2>"$T/e"; rc=$?
check "crash: SIGSEGV reported as signal 11 (status 139)" bash -c "[ $rc = 139 ] && grep -q 'exit=-1 signal=11 timed_out=0' '$T/e'"
ctl invoke --meta /bin/sh -c 'kill -ABRT $$' 2>"$T/e"; rc=$?
check "crash: SIGABRT reported as signal 6" bash -c "[ $rc = 134 ] && grep -q 'signal=6' '$T/e'"
ctl invoke --meta --limit 1000 /bin/sh -c 'head -c 3000000 /dev/zero; echo done >&2' >"$T/o" 2>"$T/e"; rc=$?
check "output limit: stdout cut at 1000 bytes, truncated flag, handler not blocked" bash -c \
	"[ $rc = 0 ] && [ \$(stat -c %s '$T/o') = 1000 ] && grep -q 'stdout_truncated=1 stderr_truncated=0' '$T/e' && grep -qx done '$T/e'"
ctl invoke --meta --limit 10 /bin/sh -c 'echo 0123456789abcdef >&2' >"$T/o" 2>"$T/e"
check "output limit: stderr truncated separately" grep -q 'stdout_truncated=0 stderr_truncated=1 .*stderr_bytes=10' "$T/e"
ctl invoke --meta /bin/sh -c 'head -c 1048576 /dev/zero' 2>"$T/e" >"$T/o"
check "output limit: 1 MiB (the default) kept whole" bash -c \
	"[ \$(stat -c %s '$T/o') = 1048576 ] && grep -q 'stdout_truncated=0' '$T/e'"
ctl invoke --limit 99999999 /bin/true 2>"$T/e"; rc=$?
check "output limit over the maximum refused" bash -c "[ $rc = 125 ] && grep -q 'over the maximum' '$T/e'"
ctl invoke /nonexistent/handler 2>"$T/e"; rc=$?
check "missing handler: ERROR ENOENT, not a RESULT" bash -c "[ $rc = 125 ] && grep -q 'No such file' '$T/e'"
printf 'not executable\n' > "$T/noexec"
ctl invoke "$T/noexec" 2>"$T/e"; rc=$?
check "non-executable handler: ERROR EACCES" bash -c "[ $rc = 125 ] && grep -q 'Permission denied' '$T/e'"
ctl invoke --cwd /nonexistent /bin/true 2>"$T/e"; rc=$?
check "bad working directory: ERROR" bash -c "[ $rc = 125 ] && grep -q 'No such file' '$T/e'"
out=$(ctl ping)
check "the agent still serves after all of that" grep -q '^ping: 1 round trips' <<<"$out"

# --- EXEC (streaming) ---------------------------------------------------------------
ctl exec --meta /bin/sh -c 'echo out1; echo err1 >&2; echo out2; exit 4' >"$T/o" 2>"$T/e"; rc=$?
check "EXEC: stdout and stderr streams, exit 4" bash -c \
	"[ $rc = 4 ] && [ \"\$(cat '$T/o')\" = \$'out1\nout2' ] && grep -qx err1 '$T/e'"
rm -f "$T/go"
ctl exec --timeout-ms 20000 /bin/sh -c "echo first; while [ ! -e '$T/go' ]; do sleep 0.02; done; echo second" \
	>"$T/stream" 2>/dev/null &
sp=$!; BG+=("$sp")
for _ in $(seq 200); do grep -q first "$T/stream" 2>/dev/null && break; sleep 0.05; done
check "EXEC: output arrives while the command still runs" grep -q first "$T/stream"
touch "$T/go"; wait "$sp"; rc=$?
check "EXEC: the command then finishes normally" bash -c "[ $rc = 0 ] && [ \"\$(cat '$T/stream')\" = \$'first\nsecond' ]"
got=$(ctl exec /bin/sh -c 'head -c 20000000 /dev/zero' | wc -c)
check "EXEC: 20 MB streamed through back-pressure, nothing lost" [ "$got" = 20000000 ]
ctl exec --meta --limit 5000 /bin/sh -c 'head -c 100000 /dev/zero' >"$T/o" 2>"$T/e"
check "EXEC: output limit with truncated flag" bash -c \
	"[ \$(stat -c %s '$T/o') = 5000 ] && grep -q 'stdout_truncated=1' '$T/e'"
ctl exec --meta --timeout-ms 200 /bin/sleep 1000.$TAG 2>"$T/e"; rc=$?
check "EXEC: timeout kills, EXIT says so" bash -c "[ $rc = 137 ] && grep -q 'timed_out=1' '$T/e'"
got=$(ctl exec --stdin "$T/in.bin" "$H/sha256")
check "EXEC: stdin bytes delivered" [ "$got" = "$want" ]

# --- several clients at once ------------------------------------------------------------
rm -f "$T/a-started" "$T/a-go"
ctl invoke --timeout-ms 30000 /bin/sh -c "touch '$T/a-started'; while [ ! -e '$T/a-go' ]; do sleep 0.02; done; echo A-done" \
	>"$T/a-out" &
ap=$!; BG+=("$ap")
wait_file "$T/a-started"
ctl invoke /bin/echo B-done >"$T/b-out"; brc=$?
check "a second client is served while the first one's handler runs" bash -c \
	"[ $brc = 0 ] && grep -qx B-done '$T/b-out' && kill -0 $ap && [ ! -s '$T/a-out' ]"
touch "$T/a-go"; wait "$ap"
check "and the first client then gets its result" grep -qx A-done "$T/a-out"
pids=()
for i in $(seq 12); do
	ctl invoke --stdin "$T/in.bin" "$H/sha256" >"$T/par.$i" & pids+=($!)
done
allok=1
for i in $(seq 12); do
	wait "${pids[$((i - 1))]}" || allok=0
	[ "$(cat "$T/par.$i")" = "$want" ] || allok=0
done
check "12 clients at once, each with 1 MiB, all answered correctly" [ "$allok" = 1 ]

# --- several requests on one connection, by raw frames ----------------------------------------
tlv_str 1 /bin/echo > "$T/b1"; tlv_str 2 one >> "$T/b1"
tlv_str 1 /bin/echo > "$T/b2"; tlv_str 2 two >> "$T/b2"
{ frame 4 101 "$T/b1"; frame 4 102 "$T/b2"; frame 4 101 "$T/b1"; } > "$T/multi"
# the duplicate id 101 may arrive before or after the first one ended
ctl raw --frames 3 < "$T/multi" > "$T/o"
check "two INVOKEs in flight on one connection, both answered by id" bash -c \
	"grep -q '^RESULT id=101 exit=0' '$T/o' && grep -q '^RESULT id=102 exit=0' '$T/o'"
tlv_str 1 /bin/sleep > "$T/b3"; tlv_str 2 "1000.$TAG" >> "$T/b3"
{ frame 4 7 "$T/b3"; frame 4 7 "$T/b3"; } > "$T/dup"
ctl raw --frames 1 < "$T/dup" > "$T/o"
check "a request id already running is refused (EEXIST)" grep -q "^ERROR id=7 errno=17 " "$T/o"
check "and the running one was killed when that client left" wait_gone "^sleep 1000.$TAG"

# --- malformed frames -----------------------------------------------------------------------
: > "$T/empty"
frame 2 1 "$T/empty" WSPX | ctl raw > "$T/o"
check "bad magic: ERROR, then the connection is closed" bash -c \
	"grep -q '^ERROR id=0 errno=71 message=\"bad frame magic' '$T/o' && grep -q '^closed' '$T/o'"
frame 2 5 "$T/empty" WSPA 9 | ctl raw > "$T/o"
check "unknown protocol version: ERROR EPROTONOSUPPORT, closed" bash -c \
	"grep -q '^ERROR id=5 errno=93 ' '$T/o' && grep -q '^closed' '$T/o'"
frame 4 6 "$T/empty" WSPA 1 $((8 * 1024 * 1024 + 1)) | ctl raw > "$T/o"
check "oversized frame: ERROR EMSGSIZE before any body is read, closed" bash -c \
	"grep -q '^ERROR id=6 errno=90 ' '$T/o' && grep -q '^closed' '$T/o'"
frame 99 8 "$T/empty" | ctl raw > "$T/o"
check "unknown message type: ERROR EOPNOTSUPP, closed" grep -q '^ERROR id=8 errno=95 ' "$T/o"
printf '\x01\x00\x40\x00\x00\x00/x\x00' > "$T/badtlv"
frame 4 9 "$T/badtlv" | ctl raw > "$T/o"
check "TLV longer than its frame: ERROR EBADMSG, closed" bash -c \
	"grep -q '^ERROR id=9 errno=74 ' '$T/o' && grep -q '^closed' '$T/o'"
printf '\x01\x00\x03\x00\x00\x00/xy' > "$T/nonul"
frame 4 10 "$T/nonul" | ctl raw > "$T/o"
check "string without NUL: ERROR EBADMSG" grep -q '^ERROR id=10 errno=74 .*NUL' "$T/o"
tlv_str 3 NOEQUALS > "$T/badenv"; tlv_str 1 /bin/true >> "$T/badenv"
frame 4 11 "$T/badenv" | ctl raw > "$T/o"
check "environment entry without '=': ERROR EBADMSG" grep -q '^ERROR id=11 errno=74 ' "$T/o"
tlv_u32 6 5 > "$T/nopath"
frame 6 12 "$T/nopath" | ctl raw > "$T/o"
check "EXEC without a path: ERROR EBADMSG" grep -q '^ERROR id=12 errno=74 .*path' "$T/o"
printf 'WSPA\x01\x00\x02' | ctl raw > "$T/o"
check "a header cut short and EOF: closed quietly" grep -q '^closed' "$T/o"
tlv_u32 8 0 > "$T/res"; tlv_u32 9 0 >> "$T/res"; tlv_u32 10 0 >> "$T/res"
frame 5 13 "$T/res" | ctl raw > "$T/o"
check "a RESULT sent to the agent: ERROR EPROTO" grep -q '^ERROR id=13 errno=71 ' "$T/o"
head -c 65536 /dev/urandom | ctl raw > "$T/o" 2>/dev/null
check "64 KiB of noise: ERROR, closed" bash -c "grep -q '^ERROR' '$T/o' && grep -q '^closed' '$T/o'"
out=$(ctl ping)
check "the agent keeps serving other clients after bad frames" grep -q '^ping: 1' <<<"$out"

# --- disconnects ------------------------------------------------------------------------------
# (the tool itself, not the ctl function: killing a backgrounded function's
# subshell would leave the tool and its connection alive)
"$CTLBIN" --unix "$S" invoke /bin/sh -c "sleep 2000.$TAG & sleep 2001.$TAG & wait" >/dev/null 2>&1 &
cp=$!; BG+=("$cp")
for _ in $(seq 100); do pgrep -f "^sleep 2001.$TAG" >/dev/null && break; sleep 0.05; done
check "a client's handler and its children are running" running "^sleep 200[01].$TAG"
kill -9 "$cp"; wait "$cp" 2>/dev/null
check "client killed mid-INVOKE: no process of its handler remains" wait_gone "^sleep 200[01].$TAG"
"$CTLBIN" --unix "$S" exec /bin/sh -c "echo x; sleep 3000.$TAG" >/dev/null 2>&1 &
cp=$!; BG+=("$cp")
for _ in $(seq 100); do pgrep -f "^sleep 3000.$TAG" >/dev/null && break; sleep 0.05; done
kill -9 "$cp"; wait "$cp" 2>/dev/null
check "client killed mid-EXEC: nothing remains" wait_gone "^sleep 3000.$TAG"

# --- detached processes: setsid after a double fork ------------------------------------------
# A daemon's way out: a child of a subshell that exits (so its parent is
# gone) calls setsid (so it left the process group and the session). The
# group kill cannot reach it; the agent must still kill it when its
# invocation ends abnormally (timeout, client gone), and only that
# invocation's: another one running meanwhile, with a detached process of
# its own, must not lose it. An invocation that ends by itself may leave it
# running (a service for later invocations), for the agent to reap.
# detach N: shell code starting "sleep N.$TAG" that way
detach() { echo "( setsid sleep $1.$TAG </dev/null >/dev/null 2>&1 & )"; }
# detached_from PATTERN HANDLER_PID: the process matching PATTERN leads its
# own session and process group, not the handler's
detached_from() {
	local p sid pgid; p=$(pgrep -f "$1" | head -n1)
	[ -n "$p" ] && [ -n "$2" ] || return 1
	read -r sid pgid < <(ps -o sid= -o pgid= -p "$p")
	[ "$sid" = "$p" ] && [ "$pgid" = "$p" ] && [ "$pgid" != "$2" ]
}
wait_running() { for _ in $(seq 200); do running "$1" && return 0; sleep 0.05; done; return 1; }
rm -f "$T/b-go" "$T/b.pid" "$T/a.pid"
ctl invoke --timeout-ms 30000 /bin/sh -c "echo \$\$ > '$T/b.pid'; $(detach 6100); \
	while [ ! -e '$T/b-go' ]; do sleep 0.02; done; echo B-done" >"$T/b-out" 2>&1 &
bp=$!; BG+=("$bp")
wait_running "^sleep 6100.$TAG"
ctl invoke --meta --timeout-ms 2000 /bin/sh -c "echo \$\$ > '$T/a.pid'; $(detach 6000); sleep 6001.$TAG" \
	>/dev/null 2>"$T/a-meta" &
ap=$!; BG+=("$ap")
wait_running "^sleep 6001.$TAG"
check "detached: the handler's daemon runs in its own session and group" \
	detached_from "^sleep 6000.$TAG" "$(cat "$T/a.pid" 2>/dev/null)"
wait_pid "$ap"; rc=$?
check "detached: the handler timed out (status 137)" bash -c "[ $rc = 137 ] && grep -q 'timed_out=1' '$T/a-meta'"
check "detached: after the timeout, neither the handler's child nor its daemon remains" \
	wait_gone "^sleep 600[01].$TAG"
check "detached: another invocation running meanwhile keeps its own daemon" bash -c \
	"pgrep -f '^sleep 6100.$TAG' >/dev/null && kill -0 $bp && [ ! -s '$T/b-out' ]"
touch "$T/b-go"; wait_pid "$bp"; rc=$?
check "detached: and that invocation then ends normally" bash -c "[ $rc = 0 ] && grep -qx B-done '$T/b-out'"
# (a broken agent kills it right after the reap: give it the time to show)
sleep 0.3; ctl invoke /bin/true
check "detached: its daemon keeps running after the handler exited by itself" \
	running "^sleep 6100.$TAG"
# parent_of PID
parent_of() { ps -o ppid= -p "$1" 2>/dev/null | tr -d " "; }
dp=$(pgrep -f "^sleep 6100.$TAG" | head -n1)
check "detached: re-parented to the agent (a subreaper)" [ "$(parent_of "${dp:-0}")" = "$APID" ]
[ -n "$dp" ] && kill -9 "$dp"
# gone from /proc only once reaped: no zombie left with the agent
reaped() { for _ in $(seq 100); do [ -e "/proc/$1" ] || return 0; sleep 0.05; done; return 1; }
check "detached: the agent reaps it when it dies" reaped "${dp:-0}"
# service N: shell code starting "sleep N.$TAG" in its own session, then
# waiting until it is (the handler's group is killed when the handler exits:
# what has not left it yet goes with it)
service() {
	echo "setsid sleep $1.$TAG </dev/null >/dev/null 2>&1 & p=\$!
	for i in \$(seq 500); do [ \"\$(ps -o sid= -p \$p | tr -d ' ')\" = \$p ] && break; sleep 0.01; done"
}
ctl invoke --meta /bin/sh -c "$(service 6150); exit 0" >/dev/null 2>"$T/e"; rc=$?
sleep 0.3; ctl invoke /bin/true
check "detached: a 'setsid cmd &' service outlives its handler's RESULT (exit 0)" bash -c \
	"[ $rc = 0 ] && grep -q 'exit=0 signal=0 timed_out=0' '$T/e' && pgrep -f '^sleep 6150.$TAG' >/dev/null"
pkill -9 -f "^sleep 6150.$TAG"
check "detached: and is gone once killed" wait_gone "^sleep 6150.$TAG"
"$CTLBIN" --unix "$S" exec /bin/sh -c "$(detach 6200); echo up; sleep 6201.$TAG" >/dev/null 2>&1 &
cp=$!; BG+=("$cp")
wait_running "^sleep 6201.$TAG"; wait_running "^sleep 6200.$TAG"
kill -9 "$cp"; wait "$cp" 2>/dev/null
check "detached: client killed mid-EXEC: its handler's daemon is gone too" wait_gone "^sleep 620[01].$TAG"
# a daemon that starts more of its kind while the agent kills them
ctl invoke --meta --timeout-ms 1000 /bin/sh -c "( setsid sh -c 'while :; do ( setsid sleep 6300.$TAG </dev/null >/dev/null 2>&1 & ); sleep 0.01; done' </dev/null >/dev/null 2>&1 & ); sleep 6301.$TAG" >/dev/null 2>"$T/e"
check "detached: a handler whose daemon keeps forking daemons timed out" grep -q 'timed_out=1' "$T/e"
check "detached: and that daemon is gone with all of them" wait_gone "630[01].$TAG"

# --- hybrid vsock handshake through a stand-in for the VMM --------------------------------------
if command -v socat >/dev/null; then
	V=$T/vsock.sock
	# what the VMM does: read "CONNECT <port>", answer "OK <host port>",
	# then splice the stream to the guest's listener (here: port 52 only)
	cat > "$T/fake-vmm.sh" <<-EOF
	#!/bin/sh
	read -r line
	[ "\$line" = "CONNECT 52" ] || exit 0
	echo "OK 1073741824"
	exec socat - "UNIX-CONNECT:$S"
	EOF
	chmod +x "$T/fake-vmm.sh"
	socat UNIX-LISTEN:"$V",fork EXEC:"$T/fake-vmm.sh" 2>/dev/null &
	BG+=($!)
	wait_file "$V"
	out=$("$CTLBIN" --vsock "$V" --io-timeout-ms 5000 invoke /bin/echo via-vsock)
	check "vsock: CONNECT 52 / OK handshake, then INVOKE" [ "$out" = via-vsock ]
	"$CTLBIN" --vsock "$V:53" --io-timeout-ms 5000 hello 2>"$T/e"; rc=$?
	check "vsock: a port nobody listens on is a clear error" bash -c \
		"[ $rc = 125 ] && grep -q 'nothing listens on guest port 53' '$T/e'"
else
	skp "socat missing: no stand-in VMM for the vsock handshake"
fi

# --- RESTORED -------------------------------------------------------------------------------------
now=$(date +%s%N)
ctl restored --realtime-ns $((now + 3600000000000)) --entropy-bytes 64 > "$T/o"
step=$(sed -n 's/.*clock_step_ns=\(-\{0,1\}[0-9]*\).*/\1/p' "$T/o")
check "RESTORED (not PID 1): nothing applied, the clock step computed" bash -c \
	"grep -q 'entropy_added=0 clock_set=0' '$T/o' && [ ${step:-0} -gt 3540000000000 ] && [ ${step:-0} -lt 3660000000000 ]"
head -c 5000 /dev/urandom > "$T/ent"
{ printf "$(le16 19)$(le32 5000)"; cat "$T/ent"; } > "$T/bigent"
frame 9 14 "$T/bigent" | ctl raw > "$T/o"
check "RESTORED with more than 4096 bytes of entropy refused" grep -q '^ERROR id=14 errno=74 ' "$T/o"
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null; then
	# Applied for real: only the entropy half, without a wall clock (no
	# time namespace covers CLOCK_REALTIME, and the host's clock is not
	# ours to step). The clock half runs in the Linux lane.
	S2=$T/apply.sock
	"$AGENT" --listen "unix:$S2" --apply-restore 2>>"$T/agent.log" &
	a2=$!; BG+=("$a2")
	wait_file "$S2"
	"$CTLBIN" --unix "$S2" restored --entropy-bytes 32 --no-clock > "$T/o" 2>&1
	check "RESTORED --apply-restore as root: entropy added, clock left alone" \
		grep -q 'entropy_added=1 clock_set=0 clock_step_ns=0' "$T/o"
	"$CTLBIN" --unix "$S2" shutdown >/dev/null; wait_pid "$a2"
else
	skp "applying RESTORED needs root (RNDADDENTROPY)"
fi

# --- SHUTDOWN and SIGTERM ---------------------------------------------------------------------------
ctl invoke /bin/sh -c "$(service 4100); exit 0"
sleep 0.3
check "a finished handler's service runs before SHUTDOWN" running "^sleep 4100.$TAG"
ctl exec /bin/sh -c "echo up; $(detach 4001); sleep 4000.$TAG" > "$T/o" 2>&1 &
BG+=($!)
wait_running "^sleep 4000.$TAG"; wait_running "^sleep 4001.$TAG"
ctl shutdown; rc=$?
check "SHUTDOWN acknowledged" [ $rc = 0 ]
wait_pid "$APID"; arc=$?
APID=
check "the agent exits 0 after SHUTDOWN and removes its socket" bash -c "[ $arc = 0 ] && [ ! -e '$S' ]"
check "SHUTDOWN killed the handler still running, and its daemon" wait_gone "^sleep 400[01].$TAG"
check "SHUTDOWN killed the service a finished handler left" wait_gone "^sleep 4100.$TAG"
start_agent "$S" "$T/agent.log"
kill -TERM "$APID"; wait_pid "$APID"; arc=$?
APID=
check "SIGTERM: the agent exits 0" [ $arc = 0 ]

# --- as PID 1, in fresh pid/mount/UTS/net/IPC namespaces -----------------------------
# The init duties for real, without a VM: the namespaces keep the mounts,
# hostname and loopback away from the host. RESTORED here must carry no
# wall clock: CLOCK_REALTIME is not namespaced. The socket lives under
# /var/tmp because the agent mounts fresh tmpfs on /tmp and /run.
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null &&
	unshare --pid --fork --mount --uts --net --ipc true 2>/dev/null; then
	P1=$(mktemp -d /var/tmp/wisp-agent-pid1.XXXXXX)
	# boot parameters from a file, and an eth0 (veth or dummy) for wisp.ip=
	echo "console=ttyS0 wisp.hostname=nsguest wisp.ip=10.99.0.2/24,10.99.0.1 root=/dev/vda" > "$P1/cmdline"
	unshare --pid --fork --mount --uts --net --ipc --kill-child \
		sh -c '{ ip link add veth0 type veth peer name eth0 && ip link set veth0 up; } 2>/dev/null ||
			ip link add eth0 type dummy 2>/dev/null; exec "$0" "$@"' \
		"$AGENT" --listen "unix:$P1/s" --level debug --cmdline "$P1/cmdline" 2>>"$T/agent.log" &
	p1=$!; BG+=("$p1")
	wait_file "$P1/s"
	p1ctl() { "$CTLBIN" --unix "$P1/s" --io-timeout-ms 30000 "$@"; }
	out=$(p1ctl hello)
	check "PID 1: HELLO has the PID1 capability" grep -q 'caps=0x1f ' <<<"$out"
	p1ctl invoke /bin/cat /proc/mounts > "$T/m"
	allm=1
	for m in " /proc proc" " /sys sysfs" " /dev devtmpfs" " /dev/pts devpts" " /dev/shm tmpfs" \
		" /tmp tmpfs" " /run tmpfs"; do
		grep -q "$m" "$T/m" || { allm=0; echo "missing mount:$m"; }
	done
	check "PID 1: /proc /sys /dev /dev/pts /dev/shm /tmp /run mounted" [ $allm = 1 ]
	check "PID 1: hostname from wisp.hostname=" [ "$(p1ctl invoke /bin/hostname)" = nsguest ]
	if p1ctl invoke /bin/sh -c 'ip link show eth0' >/dev/null 2>&1; then
		p1ctl invoke /bin/sh -c 'ip -4 addr show dev eth0; ip -4 route' > "$T/net" 2>&1
		check "PID 1: eth0 address from wisp.ip=" grep -q 'inet 10.99.0.2/24' "$T/net"
		check "PID 1: default route via the wisp.ip= gateway" grep -q 'default via 10.99.0.1 dev eth0' "$T/net"
	else
		skp "no eth0 in the namespace (neither veth nor dummy links can be created)"
	fi
	lo=$(p1ctl invoke /bin/cat /sys/class/net/lo/flags)
	check "PID 1: loopback up" [ $((${lo:-0} & 1)) = 1 ]
	p1ctl invoke /bin/sh -c "sleep 0.1 & sleep 0.2 & exit 0" >/dev/null
	p1ctl invoke /bin/sh -c "(sleep 0.1 &) ; setsid sleep 0.2 & exit 0" >/dev/null
	sleep 1
	z=$(p1ctl invoke /bin/sh -c 'grep -l "^State:.*Z" /proc/[0-9]*/status 2>/dev/null | wc -l')
	check "PID 1: orphans (and a handler's setsid daemon) reaped, no zombies" [ "$z" = 0 ]
	p1ctl invoke --meta --timeout-ms 1000 /bin/sh -c "$(detach 5100); sleep 5101.$TAG" >/dev/null 2>"$T/e"
	check "PID 1: a handler with a setsid daemon timed out" grep -q 'timed_out=1' "$T/e"
	check "PID 1: and its daemon is gone too" wait_gone "^sleep 510[01].$TAG"
	out=$(p1ctl restored --entropy-bytes 64 --no-clock)
	check "PID 1: RESTORED adds entropy (applied by default as init)" \
		grep -q 'entropy_added=1 clock_set=0' <<<"$out"
	p1ctl exec /bin/sh -c "echo up; sleep 5000.$TAG" >/dev/null 2>&1 &
	for _ in $(seq 100); do running "^sleep 5000.$TAG" && break; sleep 0.05; done
	check "PID 1: SHUTDOWN acknowledged" p1ctl shutdown
	wait_pid "$p1"; rc=$?
	# init calling reboot() in a pid namespace ends the namespace: the kernel
	# kills its init with SIGHUP (status 129 from unshare)
	check "PID 1: SHUTDOWN ends in reboot() (the namespace's init killed by SIGHUP)" [ $rc = 129 ]
	check "PID 1: every process of the guest is gone" wait_gone "^sleep 5000.$TAG"
	grep -q 'rebooting to end the microVM' "$T/agent.log" && ok "PID 1: logged the reboot" \
		|| bad "PID 1: no reboot line in the log"
	rm -rf "$P1"
else
	skp "PID 1 checks need root and unshare of pid/mount/uts/net/ipc namespaces"
fi

if grep -q 'Sanitizer' "$T/agent.log"; then
	bad "sanitizer reports in the agent's log:"; grep -A20 'Sanitizer' "$T/agent.log" | head -40
else
	ok "no sanitizer reports in the agent's log ($AGENT_BUILD)"
fi
finish
