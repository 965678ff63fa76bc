#!/usr/bin/env bash
# wisp-vmm's API on the host, no KVM needed: the real binary serving its Unix
# socket; every endpoint's happy path and refusals with curl; failed
# InstanceStarts torn down and retried (to Running with a tiny guest where
# /dev/kvm works, SKIPPED where it does not); hostile clients
# (garbage bytes, malformed request lines and headers, unknown methods,
# partial and slow requests, oversized bodies, header floods, too many
# connections), each refusal a JSON 400 with a fault_message, while the
# process stays up and keeps answering;
# config PUTs before start; logger and metrics files; a refused existing
# socket path; --config-file refusals with exit 152; clean exit on SIGTERM.
# What needs a running guest is in the lane (tests/lane/cases/5x-*.sh).
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
VMM=$PWD/$BUILD/bin/wisp-vmm
pass=0; fail=0; skip=0
ok()   { pass=$((pass + 1)); echo "ok: $*"; }
bad()  { fail=$((fail + 1)); echo "FAIL: $*"; }
skp()  { skip=$((skip + 1)); echo "SKIPPED: $*"; }
finish() {
	echo "api: $pass passed, $fail failed, $skip skipped"
	[ "$fail" -eq 0 ]
	exit $?
}
if [ ! -x "$VMM" ]; then
	bad "$VMM is not built"
	finish
fi
for tool in curl socat; do
	command -v $tool >/dev/null || { skp "$tool is not installed"; finish; }
done

T=$(mktemp -d /tmp/wisp-api-suite.XXXXXX)
SOCK=$T/api.sock
PIDS=()
cleanup() {
	local p
	for p in ${PIDS[@]+"${PIDS[@]}"}; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT

# api METHOD PATH [BODY]: sets ST (status) and BODY (response text).
api() {
	local args=(-s --max-time 20 --unix-socket "$SOCK" -o "$T/resp" -w '%{http_code}' -X "$1")
	[ $# -ge 3 ] && args+=(-H 'Content-Type: application/json' --data-binary "$3")
	ST=$(curl "${args[@]}" "http://localhost$2" 2>/dev/null) || ST=000
	BODY=$(cat "$T/resp" 2>/dev/null)
}
# expect STATUS METHOD PATH [BODY] [TEXT]: status, and TEXT in the response.
expect() {
	local want=$1 text=${5:-}; shift
	api "$@"
	if [ "$ST" != "$want" ]; then
		bad "$1 $2: status $ST, expected $want: $BODY"
	elif [ -n "$text" ] && [[ "$BODY" != *"$text"* ]]; then
		bad "$1 $2: response lacks '$text': $BODY"
	else
		ok "$1 $2 ${3:+$(printf '%.50s' "$3") }-> $ST${text:+ ($text)}"
	fi
}
alive() {
	if kill -0 "$VPID" 2>/dev/null; then
		api GET /
		if [ "$ST" = 200 ]; then ok "still serving after $1"; else bad "not answering after $1 (status $ST)"; fi
	else
		bad "wisp-vmm died after $1"
	fi
}

"$VMM" --api-sock "$SOCK" --id suite-api --level Debug >"$T/vmm.log" 2>&1 &
VPID=$!; PIDS+=("$VPID")
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
[ -S "$SOCK" ] || { bad "no API socket after 5 s"; cat "$T/vmm.log"; finish; }

# ---- reading ----
expect 200 GET / "" '"state":"Not started"'
expect 200 GET / "" '"id":"suite-api"'
expect 200 GET / "" '"app_name":"wisp"'
expect 200 GET /version "" '"firecracker_version"'
expect 200 GET /machine-config "" '"vcpu_count":1'
expect 200 GET /vm/config "" '"machine-config"'

# ---- configuration before start ----
: >"$T/vmlinux"; : >"$T/rootfs.ext4"
expect 204 PUT /boot-source "{\"kernel_image_path\": \"$T/vmlinux\", \"boot_args\": \"console=ttyS0\"}"
expect 204 PUT /machine-config '{"vcpu_count": 2, "mem_size_mib": 256, "smt": false}'
expect 204 PATCH /machine-config '{"mem_size_mib": 512}'
expect 200 GET /machine-config "" '"mem_size_mib":512'
expect 204 PUT /drives/rootfs "{\"drive_id\": \"rootfs\", \"path_on_host\": \"$T/rootfs.ext4\", \"is_root_device\": true, \"is_read_only\": false}"
expect 204 PUT /network-interfaces/eth0 '{"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "06:00:ac:10:00:02"}'
expect 204 PUT /vsock "{\"guest_cid\": 3, \"uds_path\": \"$T/v.sock\"}"
expect 200 GET /vm/config "" '"drive_id":"rootfs"'
expect 200 GET /vm/config "" '"guest_mac":"06:00:ac:10:00:02"'

# ---- refusals: 400 with a fault_message naming the problem ----
expect 400 PUT /machine-config '{"vcpu_count": 0, "mem_size_mib": 128}' 'machine-config.vcpu_count: must be between 1 and 32'
expect 400 PUT /machine-config '{"vcpu_count": 2, "mem_size_mib": 128, "ht_enabled": true}' 'machine-config.ht_enabled: unknown field'
expect 400 PUT /machine-config '{"vcpu_count": "2", "mem_size_mib": 128}' 'must be an integer'
expect 400 PUT /boot-source '{"kernel_image_path": ' 'not valid JSON'
expect 400 PUT /boot-source '' 'the request body is empty'
expect 400 PUT /drives/other "{\"drive_id\": \"rootfs\", \"path_on_host\": \"/x\", \"is_root_device\": false}" "does not match the path's id"
expect 400 PUT /drives/second '{"drive_id": "second", "path_on_host": "/x", "is_root_device": true}' 'a root device is already configured'
expect 400 PUT /vsock '{"guest_cid": 2, "uds_path": "/v"}' 'vsock.guest_cid'
expect 400 PUT /actions '{"action_type": "Reboot"}' 'actions.action_type: must be one of'
expect 400 DELETE /drives/rootfs "" 'Invalid request method'
expect 400 POST /actions '{"action_type": "InstanceStart"}' 'allowed: PUT'
expect 400 GET /no/such/thing "" 'Invalid request method and/or path'
expect 400 PATCH /vm '{"state": "Paused"}' 'not allowed before the VM is started'
expect 400 PUT /actions '{"action_type": "SendCtrlAltDel"}' 'not allowed before the VM is started'
expect 400 PATCH /drives/rootfs '{"drive_id": "rootfs", "path_on_host": "/x"}' 'not allowed before the VM is started'
expect 400 PUT /actions '{"action_type": "FlushMetrics"}' 'no metrics path is configured'
expect 200 GET /machine-config "" '"vcpu_count":2'

# ---- logger and metrics ----
expect 204 PUT /logger "{\"log_path\": \"$T/api.log\", \"level\": \"Info\", \"show_level\": true}"
expect 204 PUT /metrics "{\"metrics_path\": \"$T/metrics.json\"}"
expect 204 PUT /actions '{"action_type": "FlushMetrics"}'
if grep -q '"put_machine_config":{"requests":' "$T/metrics.json" 2>/dev/null &&
   grep -q '"fails":' "$T/metrics.json"; then
	ok "FlushMetrics wrote a JSON line with per-endpoint API counters"
else
	bad "metrics file lacks API counters: $(head -c 400 "$T/metrics.json" 2>/dev/null)"
fi
if [ "$(wc -l <"$T/metrics.json")" -eq 1 ]; then ok "one metrics line per flush"; else bad "metrics lines: $(wc -l <"$T/metrics.json")"; fi
if grep -q 'suite-api:.*logger configured' "$T/api.log" 2>/dev/null; then ok "log lines go to the PUT /logger path, with the VM id"; else bad "no log line in $T/api.log"; fi

# ---- a failed InstanceStart leaves a VMM that can start once fixed ----
# A second VMM. Each failure must leave it Not started with nothing of the
# half-built VM left (no KVM fds, no device fds, no vsock socket), then a
# fixed configuration starts. Without a usable /dev/kvm every attempt fails
# on opening KVM, and again the same way (not "failed half way"); the parts
# that need a VM are SKIPPED.
nonsock_fds() { ls -l /proc/"$1"/fd 2>/dev/null | awk 'NR > 1 {print $NF}' | grep -v '^socket:' | sort; }
MAIN_SOCK=$SOCK MAIN_PID=$VPID
SOCK=$T/retry.sock
"$VMM" --api-sock "$SOCK" --id suite-retry --level Debug >"$T/retry.log" 2>&1 </dev/null &
VPID=$!; PIDS+=("$VPID")
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
head -c 4096 /dev/zero | tr '\0' k >"$T/garbage-kernel"
head -c 1048576 /dev/zero >"$T/retry.ext4"
expect 204 PUT /machine-config '{"vcpu_count": 2, "mem_size_mib": 32}'
expect 204 PUT /boot-source "{\"kernel_image_path\": \"$T/garbage-kernel\"}"
expect 204 PUT /drives/root "{\"drive_id\": \"root\", \"path_on_host\": \"$T/retry.ext4\", \"is_root_device\": true}"
expect 204 PUT /vsock "{\"guest_cid\": 3, \"uds_path\": \"$T/no-such-dir/v.sock\"}"
fds0=$(nonsock_fds "$VPID")
# failed_start WHAT TEXT: InstanceStart is refused naming TEXT (or KVM), the
# VMM is Not started with the same open files as before, and no vsock socket.
failed_start() {
	api PUT /actions '{"action_type": "InstanceStart"}'
	if [ "$ST" != 400 ] || [[ "$BODY" != *fault_message* ]]; then
		bad "InstanceStart with $1: status $ST: $BODY"; return
	fi
	if [[ "$BODY" == *"failed half way"* ]]; then
		bad "InstanceStart with $1: the VMM gave up after an earlier failure: $BODY"; return
	fi
	if [[ "$BODY" == *"$2"* ]]; then
		ok "InstanceStart with $1: 400 $BODY"
	elif [[ "$BODY" == *kvm* || "$BODY" == *KVM* ]]; then
		NOKVM=$BODY
		ok "InstanceStart with $1 (no usable KVM here): 400 $BODY"
	else
		bad "InstanceStart with $1: expected '$2': $BODY"
	fi
	expect 200 GET / "" '"state":"Not started"'
	if [ "$(nonsock_fds "$VPID")" = "$fds0" ]; then ok "after $1: no file of the half-built VM is left open"
	else bad "after $1: open files changed: $(diff <(echo "$fds0") <(nonsock_fds "$VPID") | tr '\n' ' ')"; fi
	if [ ! -e "$T/v.sock" ]; then ok "after $1: no vsock socket is left"; else bad "after $1: $T/v.sock is left"; fi
}
NOKVM=
failed_start "a vsock path in a missing folder (a device fails)" "vsock: bind"
expect 204 PUT /vsock "{\"guest_cid\": 3, \"uds_path\": \"$T/v.sock\"}"
failed_start "a malformed kernel" "neither an ELF vmlinux nor a bzImage"
failed_start "the same malformed kernel again" "neither an ELF vmlinux nor a bzImage"
mv "$T/retry.ext4" "$T/retry.moved"
expect 400 PUT /actions '{"action_type": "InstanceStart"}' 'drives[root].path_on_host'
expect 200 GET / "" '"state":"Not started"'
mv "$T/retry.moved" "$T/retry.ext4"
if [ -n "$NOKVM" ]; then
	skp "InstanceStart retried to Running: needs a usable /dev/kvm ($NOKVM)"
elif [ ! -f "$BUILD/guests/idle.elf" ]; then
	skp "InstanceStart retried to Running: the tiny guest $BUILD/guests/idle.elf is not built"
else
	expect 204 PUT /boot-source "{\"kernel_image_path\": \"$PWD/$BUILD/guests/idle.elf\"}"
	expect 204 PUT /actions '{"action_type": "InstanceStart"}'
	expect 200 GET / "" '"state":"Running"'
	if [ -S "$T/v.sock" ]; then ok "the started VM has its vsock socket"; else bad "no vsock socket after the start"; fi
	expect 400 PUT /actions '{"action_type": "InstanceStart"}' 'not allowed'
fi
alive "the InstanceStart retries"
kill -TERM "$VPID"; wait "$VPID" 2>/dev/null
SOCK=$MAIN_SOCK VPID=$MAIN_PID

# ---- requests the HTTP layer refuses: 400 and JSON too, never HTML ----
# rawreq NAME TEXT BYTES: BYTES (printf format) on a fresh connection; the
# answer must be a 400 whose body is exactly {"fault_message": "...TEXT..."},
# and the server must answer a GET / afterwards.
rawreq() {
	local name=$1 text=$2 st body
	printf "$3" | timeout 5 socat -t1 - UNIX-CONNECT:"$SOCK" >"$T/raw" 2>/dev/null
	st=$(head -n1 "$T/raw" | tr -d '\r' | cut -d' ' -f2)
	body=$(sed -n '/^\r$/,$p' "$T/raw" | tail -n +2)
	if [ "$st" != 400 ]; then
		bad "$name: status '$st', expected 400: $(head -c 300 "$T/raw")"
	elif ! grep -qi '^Content-Type: application/json' "$T/raw"; then
		bad "$name: not JSON: $(head -c 300 "$T/raw")"
	elif ! [[ "$body" =~ ^\{\"fault_message\":\"[^\"]+\"\}$ ]] || [[ "$body" != *"$text"* ]]; then
		bad "$name: body is not {\"fault_message\": \"...$text...\"}: $body"
	else
		ok "$name -> 400 $body"
	fi
	alive "$name"
}
rawreq "garbage bytes" "Invalid HTTP request" '\x00\x01\xff\xfe garbage \r\n\r\n'
rawreq "a request line without a version" "Invalid HTTP request" 'GET\r\n\r\n'
rawreq "an unsupported HTTP version" "Invalid HTTP request" 'GET / HTTP/9.1\r\nHost: x\r\n\r\n'
rawreq "a header line without a colon" "Invalid HTTP request" 'GET / HTTP/1.1\r\nNoColonHere\r\n\r\n'
rawreq "Content-Length: abc" "Invalid HTTP request" 'PUT /boot-source HTTP/1.1\r\nContent-Length: abc\r\n\r\n'
rawreq "Content-Length: -5" "Invalid HTTP request" 'PUT /boot-source HTTP/1.1\r\nContent-Length: -5\r\n\r\n'
rawreq "method BREW" "Invalid request method" 'BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n'
rawreq "method CONNECT" "Invalid request method for /" 'CONNECT / HTTP/1.1\r\nHost: x\r\n\r\n'
rawreq "method TRACE" "Invalid request method for /" 'TRACE / HTTP/1.1\r\nHost: x\r\n\r\n'
# HEAD: refused with the header fields a GET would get and no content, and
# the connection serves the next request (its response follows at once).
# (The write side stays open a while: evhttp answers no pipelined request
# after the client's end of stream.)
(printf 'HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'; sleep 1) |
	timeout 5 socat -t2 - UNIX-CONNECT:"$SOCK" >"$T/head" 2>/dev/null
hst=$(head -n1 "$T/head" | tr -d '\r' | cut -d' ' -f2)
hlen=$(sed -n '1,/^\r$/p' "$T/head" | tr -d '\r' | sed -n 's/^Content-Length: //Ip')
after=$(sed -n '/^\r$/{n;p;q}' "$T/head" | tr -d '\r')
if [ "$hst" = 400 ] && [ "${hlen:-0}" -gt 0 ] && [[ $after == "HTTP/1.1 200"* ]]; then
	ok "HEAD -> 400 with Content-Length $hlen, no content, next response follows"
else
	bad "HEAD: status '$hst', Content-Length '$hlen', line after the header block '$after': $(head -c 400 "$T/head")"
fi
alive "HEAD"
rawreq "a malformed chunked body" "chunked encoding is malformed" 'PUT /boot-source HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n'
rawreq "a declared body over the limit" "larger than the limit of 51200 bytes" 'PUT /boot-source HTTP/1.1\r\nContent-Length: 10000000\r\n\r\n{'
rawreq "a header flood" "Invalid HTTP request" "GET / HTTP/1.1\r\nX-Flood: $(head -c 100000 /dev/zero | tr '\0' b)\r\n\r\n"
# After a served request on the same connection, a bad one still gets JSON.
(printf 'GET / HTTP/1.1\r\nHost: x\r\n\r\n'; sleep 0.5; printf 'BREW / HTTP/1.1\r\n\r\n'; sleep 0.5) |
	timeout 5 socat -t1 - UNIX-CONNECT:"$SOCK" >"$T/two" 2>/dev/null
if [ "$(grep -o 'HTTP/1.1 [0-9]*' "$T/two" | tr '\n' ' ')" = "HTTP/1.1 200 HTTP/1.1 400 " ] &&
   grep -q '"fault_message":"Invalid request method' "$T/two" && ! grep -qi html "$T/two"; then
	ok "a bad request after a served one on the same connection: JSON 400"
else
	bad "a bad request after a served one: $(head -c 600 "$T/two")"
fi
alive "a bad request on a used connection"
printf 'PUT /machine-config HTTP/1.1\r\nContent-Length: 500\r\n\r\n{"vcpu' | timeout 5 socat -t0.2 - UNIX-CONNECT:"$SOCK" >/dev/null 2>&1
alive "a partial request"
head -c 200000 /dev/zero | tr '\0' 'a' >"$T/big"
ST=$(curl -s --max-time 10 --unix-socket "$SOCK" -o "$T/resp" -w '%{http_code}' -X PUT \
	-H 'Content-Type: application/json' --data-binary @"$T/big" http://localhost/boot-source)
if [ "$ST" = 400 ] && grep -q '^{"fault_message":"Request payload is larger than the limit of 51200 bytes' "$T/resp"; then
	ok "oversized body (curl): 400 $(cat "$T/resp")"
else
	bad "oversized body: status $ST: $(head -c 300 "$T/resp")"
fi
alive "an oversized body"

# Many idle connections: the server holds a bounded number, the rest wait in
# the backlog; once they go, it serves again at once.
HOLD=()
for _ in $(seq 40); do
	sleep 30 | socat -u - UNIX-CONNECT:"$SOCK" >/dev/null 2>&1 &
	HOLD+=("$!"); PIDS+=("$!")
done
sleep 0.5
nfd=$(ls /proc/"$VPID"/fd 2>/dev/null | wc -l)
if [ "$nfd" -lt 40 ]; then ok "40 idle clients: the VMM holds $nfd fds (bounded)"; else bad "40 idle clients: the VMM holds $nfd fds"; fi
for p in "${HOLD[@]}"; do pkill -P "$p" 2>/dev/null; kill "$p" 2>/dev/null; done
wait "${HOLD[@]}" 2>/dev/null
sleep 0.3
alive "40 idle connections"

# A client that sends half a request and stops is cut off by the deadline.
mkfifo "$T/slow"
(printf 'GET / HTTP/1.1\r\n'; sleep 40) >"$T/slow" &
SLOW=$!; PIDS+=("$SLOW")
t0=$(date +%s)
timeout 30 socat -t0.2 - UNIX-CONNECT:"$SOCK" <"$T/slow" >/dev/null 2>&1
rc=$?
pkill -P "$SLOW" 2>/dev/null; kill "$SLOW" 2>/dev/null; wait "$SLOW" 2>/dev/null
if [ "$rc" -ne 124 ]; then ok "a stalled client is disconnected (after $(( $(date +%s) - t0 )) s)"; else bad "a stalled client kept its connection for 30 s"; fi
alive "a stalled client"

# ---- a second VMM on the same socket path is refused ----
"$VMM" --api-sock "$SOCK" --id dup >"$T/dup.log" 2>&1
rc=$?
if [ "$rc" -ne 0 ] && grep -q 'already exists' "$T/dup.log"; then ok "an existing socket path is refused (exit $rc)"; else bad "existing socket path: exit $rc: $(cat "$T/dup.log")"; fi
alive "a refused second VMM"

# ---- SIGTERM: exit 0, the socket path removed ----
kill -TERM "$VPID"
for _ in $(seq 100); do kill -0 "$VPID" 2>/dev/null || break; sleep 0.05; done
wait "$VPID"; rc=$?
if [ "$rc" -eq 0 ]; then ok "SIGTERM: exit 0"; else bad "SIGTERM: exit $rc"; fi
if [ ! -e "$SOCK" ]; then ok "the socket path is removed at exit"; else bad "the socket path is left behind"; fi

# ---- flags and the config file (validated before anything touches KVM) ----
cat >"$T/bad.json" <<EOF
{"boot-source": {"kernel_image_path": "$T/vmlinux"}, "machine-config": {"vcpu_count": 64, "mem_size_mib": 128}}
EOF
"$VMM" --no-api --config-file "$T/bad.json" >"$T/bad.log" 2>&1; rc=$?
if [ "$rc" -eq 152 ] && grep -q 'machine-config.vcpu_count: must be between 1 and 32' "$T/bad.log"; then
	ok "a config file with a bad value: exit 152 naming the key"
else
	bad "bad config file: exit $rc: $(cat "$T/bad.log")"
fi
echo '{"machine-config": {"vcpu_count": 1, "mem_size_mib": 128}, "drive": []}' >"$T/bad2.json"
"$VMM" --no-api --config-file "$T/bad2.json" >"$T/bad2.log" 2>&1; rc=$?
if [ "$rc" -eq 152 ] && grep -q 'configuration.drive: unknown field' "$T/bad2.log"; then
	ok "a config file with an unknown key: exit 152 naming it"
else
	bad "unknown key config: exit $rc: $(cat "$T/bad2.log")"
fi
"$VMM" --no-api >"$T/noapi.log" 2>&1; rc=$?
if [ "$rc" -eq 153 ]; then ok "--no-api without --config-file: exit 153"; else bad "--no-api alone: exit $rc"; fi

finish
