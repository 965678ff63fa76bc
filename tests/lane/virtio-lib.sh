# Helpers shared by the virtio lane cases (41-43) and bench/virtio.sh:
# a copy of the test rootfs with wisp-virtio-test inside, and the agent
# as the way to run commands in the guest. Source after lane/lib.sh.

# vt_rootfs DEST: copy rootfs.ext4 to DEST and put wisp-virtio-test in it.
vt_rootfs() {
	local dest=$1
	command -v debugfs >/dev/null || lane_skip "debugfs (e2fsprogs) missing"
	cp "$WISP_IMAGES/rootfs.ext4" "$dest" || lane_fail "copying rootfs.ext4"
	debugfs -w -R "write $WISP_BIN/wisp-virtio-test /usr/bin/wisp-virtio-test" "$dest" >/dev/null 2>&1 \
		|| lane_fail "debugfs could not add wisp-virtio-test to the rootfs"
	debugfs -w -R "sif /usr/bin/wisp-virtio-test mode 0100755" "$dest" >/dev/null 2>&1 \
		|| lane_fail "debugfs could not make wisp-virtio-test executable"
}

# vt_ctl ARGS...: wisp-agent-ctl against the VMM's vsock socket $VT_UDS.
vt_ctl() { timeout 300 "$WISP_BIN/wisp-agent-ctl" --vsock "$VT_UDS" --io-timeout-ms 200000 "$@"; }
# vt_sh 'SCRIPT': run a shell script in the guest, its output on stdout.
vt_sh() { vt_ctl invoke --timeout-ms 180000 /bin/sh -c "$1"; }

# vt_serve 'SCRIPT': run a guest server as an invocation of its own, in the
# background, until vt_unserve (the agent ends everything an invocation
# started when the invocation ends, setsid or not: a server has to be one).
# At most 180 s (the invocation's timeout).
vt_serve() {
	timeout 300 "$WISP_BIN/wisp-agent-ctl" --vsock "$VT_UDS" --io-timeout-ms 200000 \
		invoke --timeout-ms 180000 /bin/sh -c "$1" >/dev/null 2>&1 &
	VT_SERVE_PID=$!
}
# vt_unserve: end the vt_serve invocation (its client goes: the agent kills it).
vt_unserve() {
	[ -n "${VT_SERVE_PID:-}" ] || return 0
	kill "$VT_SERVE_PID" 2>/dev/null
	wait "$VT_SERVE_PID" 2>/dev/null
	VT_SERVE_PID=
}
# vt_wait_vsock_port PORT: until a host-initiated CONNECT to the guest's PORT
# is answered OK (the server listens), at most 60 s; 1 when it never is.
vt_wait_vsock_port() {
	local deadline=$(( $(date +%s) + 60 )) r
	while [ "$(date +%s)" -lt "$deadline" ]; do
		r=$({ printf 'CONNECT %s\n' "$1"; sleep 0.5; } \
			| timeout 10 socat -t 2 - "UNIX-CONNECT:$VT_UDS" 2>/dev/null | head -c 3)
		[ "$r" = "OK " ] && return 0
		sleep 0.5
	done
	return 1
}

# vt_wait_guest PID: until the agent answers (the guest booted), or fail
# (early when the VMM process PID has gone).
vt_wait_guest() {
	local pid=$1 deadline=$(( $(date +%s) + 280 )) h=""
	wait_for_file "$VT_UDS" 60 || { lane_show "$VT_LOG"; lane_fail "no vsock socket $VT_UDS"; }
	while [ "$(date +%s)" -lt "$deadline" ]; do
		h=$(vt_ctl --wait-ms 5000 hello 2>&1) && return 0
		kill -0 "$pid" 2>/dev/null || { lane_show "$VT_LOG" 80; lane_fail "wisp-vmm exited before the guest answered"; }
	done
	lane_show "$VT_LOG" 80
	lane_fail "no HELLO from the guest: $h"
}

# vt_cpu_ticks PID: user+system clock ticks the process used so far.
vt_cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
