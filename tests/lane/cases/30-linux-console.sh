#!/usr/bin/env bash
# Linux lane (needs wisp-vmm from the core issue; skipped until it is built):
# the serial console is interactive. A command written to wisp-vmm's stdin
# runs in the guest's shell and its output comes back on stdout; `exit` ends
# the shell, init reboots, and the VMM exits 0.
# lane-timeout: 300
set -uo pipefail
. lane/lib.sh
lane_need_bin wisp-vmm
lane_need_image vmlinux initramfs.cpio.gz

cfg=$WISP_TMP/console.json out=$WISP_TMP/console.log
lane_vmm_config "$cfg" --kernel "$WISP_IMAGES/vmlinux" --initrd "$WISP_IMAGES/initramfs.cpio.gz" \
	--args "$LANE_BOOT_ARGS wisp.test=shell"
lane_vmm_start "$cfg" "$out"
trap lane_vmm_stop EXIT
wait_for_log 'wisp-init: shell' "$out" 120 "$LANE_VMM_PID" || { lane_show "$out"; lane_fail "the guest shell did not start"; }
# Let the shell print its prompt before typing.
sleep 1
# The answer is computed in the guest: the echoed input holds the expression,
# only the shell's output holds the result.
a=$((RANDOM % 1000 + 100)) b=$((RANDOM % 1000 + 100))
lane_vmm_send "echo console-answer-\$(( $a * $b ))-\$(cat /proc/sys/kernel/hostname)"$'\n'
wait_for_log "console-answer-$((a * b))-wisp" "$out" 60 "$LANE_VMM_PID" ||
	{ lane_show "$out"; lane_fail "the command typed on stdin did not answer (expected console-answer-$((a * b))-wisp)"; }
lane_vmm_send $'exit\n'
lane_vmm_wait 60; rc=$?
[ "$rc" -eq 0 ] || { lane_show "$out"; lane_fail "after the shell exited and the guest rebooted, wisp-vmm exited $rc (expected 0)"; }
echo "console: command ran in the guest shell ($a*$b=$((a * b))), exit rebooted, wisp-vmm exited 0"
