#!/usr/bin/env bash
# The README's demo (scripts/demo.sh shows this case's output), and an end to
# end check of the main job on the built-in defaults: wisp-vmm boots the
# stripped kernel with images/out/rootfs.ext4 on virtio-blk (wisp-agent as
# /sbin/init) and a vsock device; the host waits for the agent's HELLO,
# INVOKEs the sample echo handler with a message as its stdin over the agent
# protocol (wisp-agent-ctl through the VMM's hybrid vsock socket), checks that
# the answer is the message, exit status 0, and that it ran in the guest, then
# sends SHUTDOWN: wisp-vmm must exit 0. Its output is written for someone
# seeing wisp for the first time.
#   WISP_DEMO_MESSAGE   the function's input (default: a greeting)
# lane-timeout: 300
set -uo pipefail
. lane/lib.sh
lane_need_bin wisp-vmm wisp-agent-ctl
lane_need_image vmlinux rootfs.ext4

msg=${WISP_DEMO_MESSAGE:-Hello from the host, answered by a function in a wisp microVM}
handler=/usr/lib/wisp/handlers/echo
UDS=$WISP_TMP/vsock.sock
say() { printf 'demo: %s\n' "$*"; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
ctl() { timeout 300 "$WISP_BIN/wisp-agent-ctl" --vsock "$UDS" --io-timeout-ms 120000 "$@"; }
fail() { lane_show "$WISP_TMP/vmm.log" 60; lane_fail "$*"; }

# The guest writes to its disk: boot a copy, keep the built image as it is.
cp "$WISP_IMAGES/rootfs.ext4" "$WISP_TMP/rootfs.ext4"
lane_vmm_config "$WISP_TMP/vm.json" --kernel "$WISP_IMAGES/vmlinux" \
	--args "$LANE_BOOT_ARGS root=/dev/vda rw wisp.hostname=wisp-demo" \
	--rootfs "$WISP_TMP/rootfs.ext4" --vsock "3:$UDS" --vcpus 1 --mem 256

say "1. boot: wisp-vmm starts a microVM (1 vCPU, 256 MiB): the stripped Linux kernel"
say "   images/out/vmlinux, the root filesystem images/out/rootfs.ext4 on virtio-blk"
say "   (/dev/vda, with wisp-agent as /sbin/init) and a virtio-vsock device (guest CID 3),"
say "   which the host reaches through the Unix socket $(basename "$UDS")."
t0=$(now_ms)
lane_vmm_start "$WISP_TMP/vm.json" "$WISP_TMP/vmm.log"
trap lane_vmm_stop EXIT
wait_for_file "$UDS" 60 || fail "wisp-vmm did not create its vsock socket"
# a Linux boot takes seconds in the nested lane: wait up to 4 minutes
hello=$(ctl --wait-ms 240000 hello 2>&1) || fail "no HELLO from the guest's agent: $hello"
boot_ms=$(( $(now_ms) - t0 ))
[[ $hello == *" caps=0x1f "* ]] || fail "the agent does not run as the guest's PID 1: $hello"
tr -d '\r' < "$WISP_TMP/vmm.log" | sed -n 's/^.*\[wisp-agent:[^]]*\] /demo:    guest console: wisp-agent: /p' | head -n 5
say "   The guest is up: its agent (PID 1) answered on vsock port 52, $boot_ms ms after wisp-vmm started."

printf '%s' "$msg" > "$WISP_TMP/message"
say "2. invoke: the host sends INVOKE for the sample handler $handler"
say "   with the message as its stdin:"
say "     wisp-agent-ctl --vsock $(basename "$UDS") invoke --stdin message $handler"
say "   message: $msg"
t1=$(now_ms)
ctl invoke --meta --timeout-ms 60000 --stdin "$WISP_TMP/message" "$handler" \
	>"$WISP_TMP/answer" 2>"$WISP_TMP/meta"; rc=$?
rt_ms=$(( $(now_ms) - t1 ))
meta() { tr ' ' '\n' < "$WISP_TMP/meta" | sed -n "s/^$1=//p"; }
say "3. answer: the function's stdout came back in the RESULT:"
say "   answer:  $(cat "$WISP_TMP/answer")"
wall_us=$(meta wall_us)
say "   exit status $(meta exit), $((${wall_us:-0} / 1000)).$(printf '%03d' $((${wall_us:-0} % 1000))) ms wall time in the guest" \
	"($rt_ms ms round trip from the host), peak memory $(meta max_rss_kb) kB"
[ "$rc" = 0 ] && [ "$(meta exit)" = 0 ] || fail "the handler failed (status $rc): $(cat "$WISP_TMP/meta")"
cmp -s "$WISP_TMP/message" "$WISP_TMP/answer" || fail "the answer is not the message"
where=$(ctl invoke /bin/sh -c 'echo "$(hostname) $(uname -sr)"') || fail "INVOKE of a shell failed: $where"
[ "${where%% *}" = wisp-demo ] || fail "the function did not run in the guest (hostname ${where%% *})"
say "   It ran inside the microVM: hostname ${where%% *}, kernel ${where#* }."

say "4. shutdown: the host sends SHUTDOWN; the agent stops the guest's processes and"
say "   reboots, which ends wisp-vmm."
t2=$(now_ms)
ctl shutdown || fail "SHUTDOWN was not acknowledged"
lane_vmm_wait 120; rc=$?
[ "$rc" = 0 ] || fail "wisp-vmm exited with status $rc after SHUTDOWN, expected 0"
say "   wisp-vmm exited with status 0, $(( $(now_ms) - t2 )) ms after SHUTDOWN."
say "OK: a microVM booted, a function in it answered the host, and it shut down cleanly."
