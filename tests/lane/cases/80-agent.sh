#!/usr/bin/env bash
# The rootfs on virtio-blk with wisp-agent as /sbin/init, driven from the
# host through the VMM's hybrid vsock socket (CONNECT 52): HELLO as PID 1,
# the init duties (mounts, hostname, reaping), INVOKE echo with 1 MiB of
# input checked by hash, a timeout that kills the handler's process group
# and its setsid daemon, a setsid service of a handler that exits normally
# left running (and reaped once killed), a streamed EXEC, 100 invocations in
# a row, RESTORED really stepping the guest's clock, and SHUTDOWN ending the
# VMM with exit status 0. One boot for all of it (a Linux boot is the slow
# part of the nested lane).
# lane-timeout: 600
set -uo pipefail
[ -f lane/lib.sh ] || { echo "SKIPPED: lane/lib.sh missing"; exit 77; }
. lane/lib.sh
lane_need_bin wisp-vmm wisp-agent-ctl
lane_need_image vmlinux rootfs.ext4

H=/usr/lib/wisp/handlers
UDS=$WISP_TMP/vsock.sock
cp "$WISP_IMAGES/rootfs.ext4" "$WISP_TMP/rootfs.ext4"
lane_vmm_config "$WISP_TMP/vm.json" --kernel "$WISP_IMAGES/vmlinux" \
	--args "$LANE_BOOT_ARGS root=/dev/vda rw wisp.hostname=lane-agent" \
	--rootfs "$WISP_TMP/rootfs.ext4" --vsock "3:$UDS" --mem 256
lane_vmm_start "$WISP_TMP/vm.json" "$WISP_TMP/vmm.log"
trap lane_vmm_stop EXIT
ctl() { timeout 300 "$WISP_BIN/wisp-agent-ctl" --vsock "$UDS" --io-timeout-ms 120000 "$@"; }

if ! wait_for_file "$UDS" 60; then
	if ! kill -0 "$LANE_VMM_PID" 2>/dev/null && grep -qi vsock "$WISP_TMP/vmm.log"; then
		lane_show "$WISP_TMP/vmm.log" 20
		lane_skip "wisp-vmm refused the vsock device (not there yet?)"
	fi
	lane_fail "the VMM did not create its vsock socket $UDS"
fi
fails=0
pass() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

# HELLO: boot can take a while under nested emulation.
if ! hello=$(ctl --wait-ms 240000 hello 2>&1); then
	lane_show "$WISP_TMP/vmm.log" 80
	lane_fail "no HELLO from the guest's agent: $hello"
fi
echo "$hello"
# caps 0x1f: INVOKE EXEC RESTORED SHUTDOWN and PID1
[[ $hello == *"version=1 caps=0x1f "* ]] && pass "HELLO from the agent as PID 1" || bad "HELLO: $hello"

# init duties
m=$(ctl invoke /bin/cat /proc/mounts)
for want in " /proc proc" " /sys sysfs" " /dev devtmpfs" " /tmp tmpfs" " /run tmpfs"; do
	[[ $m == *"$want"* ]] && pass "mounted:$want" || bad "not mounted:$want"
done
h=$(ctl invoke /bin/hostname)
[ "$h" = lane-agent ] && pass "hostname from wisp.hostname" || bad "hostname is '$h'"
ctl invoke /bin/sh -c 'sleep 0.2 & sleep 0.3 & exec true' >/dev/null
sleep 1
z=$(ctl invoke /bin/sh -c 'grep -l "^State:.*Z" /proc/[0-9]*/status 2>/dev/null | wc -l')
[ "$z" = 0 ] && pass "no zombies: orphans reaped by init" || bad "$z zombie processes in the guest"
lo=$(ctl invoke /bin/cat /sys/class/net/lo/flags)
if [ -n "$lo" ] && [ $((lo & 1)) = 1 ]; then pass "loopback up"; else bad "lo flags '$lo'"; fi

# INVOKE echo with 1 MiB, checked by hash
head -c 1048576 /dev/urandom > "$WISP_TMP/in.bin"
want=$(sha256sum < "$WISP_TMP/in.bin" | cut -d' ' -f1)
got=$(ctl invoke --stdin "$WISP_TMP/in.bin" --timeout-ms 60000 "$H/echo" | sha256sum | cut -d' ' -f1)
[ "$got" = "$want" ] && pass "INVOKE echo: 1 MiB back intact" || bad "INVOKE echo: hash $got, want $want"
got=$(ctl invoke --stdin "$WISP_TMP/in.bin" --timeout-ms 60000 "$H/sha256")
[ "$got" = "$want" ] && pass "INVOKE sha256 in the guest matches the host's" || bad "guest sha256 $got, want $want"

# a timeout kill: the whole process group goes
ctl invoke --meta --timeout-ms 1000 /bin/sh -c 'sleep 777 & sleep 778' 2>"$WISP_TMP/meta"; rc=$?
grep -q 'signal=9 timed_out=1' "$WISP_TMP/meta" && [ $rc = 137 ] && pass "timeout: killed, timed_out=1" \
	|| bad "timeout: rc $rc, $(cat "$WISP_TMP/meta")"
left=$(ctl invoke /bin/sh -c 'sleep 0.5; for f in /proc/[0-9]*/cmdline; do tr "\0" " " < $f; echo; done | grep -c "^sleep 77[78]"')
[ "$left" = 0 ] && pass "timeout: no process of the group left" || bad "timeout: $left sleeps left"
# a daemon that left the group and the session (double fork + setsid, with
# busybox) goes as well: the handler says it saw it, then times out
daemon='( setsid sleep 779 </dev/null >/dev/null 2>&1 & )
count() { for f in /proc/[0-9]*/cmdline; do tr "\0" " " < $f; echo; done | grep -c "^sleep 779 "; }
for i in $(seq 50); do [ "$(count)" = 1 ] && break; sleep 0.1; done
count; exec sleep 780'
n=$(ctl invoke --timeout-ms 8000 /bin/sh -c "$daemon" 2>/dev/null)
left=$(ctl invoke /bin/sh -c 'sleep 0.5; for f in /proc/[0-9]*/cmdline; do tr "\0" " " < $f; echo; done | grep -c "^sleep 779 "')
[ "$n" = 1 ] && [ "$left" = 0 ] && pass "timeout: the handler's setsid daemon killed too" \
	|| bad "timeout: setsid daemon: $n running before the timeout, $left after"
# a handler that exits by itself may leave a service running (how 42 starts
# its httpd): it waits until the service has its own session (the group is
# killed when the handler exits), then exits 0; the agent reaps the service
# once it is killed
svc='setsid sleep 781 </dev/null >/dev/null 2>&1 & p=$!
for i in $(seq 100); do read -r _ _ _ _ _ sid _ < /proc/$p/stat; [ "$sid" = $p ] && break; sleep 0.05; done
echo $p'
spid=$(ctl invoke --meta /bin/sh -c "$svc" 2>"$WISP_TMP/meta")
n=$(ctl invoke /bin/sh -c 'sleep 0.5; for f in /proc/[0-9]*/cmdline; do tr "\0" " " < $f; echo; done | grep -c "^sleep 781 "')
grep -q 'exit=0 signal=0 timed_out=0' "$WISP_TMP/meta" && [ "$n" = 1 ] \
	&& pass "exit 0: the handler's setsid service keeps running" \
	|| bad "exit 0: setsid service: $n running after the RESULT, $(cat "$WISP_TMP/meta")"
r="no pid from the handler: '$spid'"
[[ $spid =~ ^[0-9]+$ ]] &&
	r=$(ctl invoke /bin/sh -c "kill -9 $spid && sleep 0.5 && { [ -e /proc/$spid ] && echo left || echo reaped; }")
[ "$r" = reaped ] && pass "exit 0: the service, once killed, reaped by the agent" \
	|| bad "exit 0: killed service ${spid:-?}: $r"

# a streamed EXEC
ctl exec --meta /bin/sh -c 'for i in 1 2 3; do echo line$i; sleep 0.2; done; echo oops >&2; exit 3' \
	>"$WISP_TMP/o" 2>"$WISP_TMP/e"; rc=$?
[ $rc = 3 ] && [ "$(cat "$WISP_TMP/o")" = $'line1\nline2\nline3' ] && grep -qx oops "$WISP_TMP/e" \
	&& pass "EXEC: streamed stdout/stderr, exit 3" || bad "EXEC: rc $rc, out '$(cat "$WISP_TMP/o")'"
n=$(ctl exec /bin/sh -c 'head -c 4000000 /dev/zero' | wc -c)
[ "$n" = 4000000 ] && pass "EXEC: 4 MB streamed" || bad "EXEC: $n of 4000000 bytes"

# 100 invocations in a row
if out=$(ctl invoke --repeat 100 "$H/exit" 0 2>&1); then
	pass "100 INVOKEs in a row"
	echo "lane-figure: agent $out (vsock, nested lane)"
else
	bad "100 INVOKEs: $out"
fi
out=$(ctl ping --count 500) && echo "lane-figure: agent $out (vsock, nested lane)" || bad "PING: $out"
rss=$(ctl invoke /bin/cat /proc/1/status | awk '/^VmRSS/ { print $2 }')
echo "lane-figure: agent as PID 1 VmRSS ${rss:-?} kB"

# RESTORED as PID 1: the clock steps, entropy is credited
now=$(date +%s)
r=$(ctl restored --entropy-bytes 64 --realtime-ns "$(( (now + 86400) * 1000000000 ))")
t=$(ctl invoke /bin/date +%s)
if [[ $r == *"entropy_added=1 clock_set=1"* ]] && [ "$t" -ge $((now + 86400 - 300)) ] && [ "$t" -le $((now + 86400 + 300)) ]; then
	pass "RESTORED: guest clock stepped a day ahead, entropy added"
else
	bad "RESTORED: '$r', guest clock $t, host $now"
fi
ctl restored --entropy-bytes 32 >/dev/null
t=$(ctl invoke /bin/date +%s); now=$(date +%s)
[ $((t - now)) -le 300 ] && [ $((now - t)) -le 300 ] && pass "RESTORED: clock back to the host's" \
	|| bad "guest clock $t, host $now"

# SHUTDOWN: the agent powers the VM off; the VMM exits 0
ctl shutdown && pass "SHUTDOWN acknowledged" || bad "SHUTDOWN not acknowledged"
lane_vmm_wait 120; rc=$?
[ $rc = 0 ] && pass "the VMM exited 0 after SHUTDOWN" || bad "the VMM exit status is $rc after SHUTDOWN"

if [ $fails -ne 0 ]; then
	lane_show "$WISP_TMP/vmm.log" 60
	exit 1
fi
exit 0
