#!/usr/bin/env bash
# Linux lane (needs wisp-vmm from the core issue; skipped until it is built):
# a guest kernel panic ends the VMM with a non-zero exit status, the panic
# text in its output. The initramfs init exits on purpose (wisp.test=panic),
# so the kernel panics with "Attempted to kill init!". The boot args have
# panic=-1 (reboot at once) and reboot=k,panic_warm (lib.sh explains).
# lane-timeout: 200
set -uo pipefail
. lane/lib.sh
lane_need_bin wisp-vmm
lane_need_image vmlinux initramfs.cpio.gz

cfg=$WISP_TMP/panic.json out=$WISP_TMP/panic-console.log
lane_vmm_config "$cfg" --kernel "$WISP_IMAGES/vmlinux" --initrd "$WISP_IMAGES/initramfs.cpio.gz" \
	--args "$LANE_BOOT_ARGS wisp.test=panic"
lane_vmm_run "$cfg" "$out" 120
rc=$?
[ "$rc" -ne 124 ] || { lane_show "$out"; lane_fail "wisp-vmm still running 120 s after boot (did the panic hang?)"; }
grep -q 'wisp-init: panicking on purpose' "$out" || { lane_show "$out"; lane_fail "init never got to the panic step (exit $rc)"; }
grep -q 'Kernel panic - not syncing' "$out" || { lane_show "$out"; lane_fail "no panic text in the VMM's output (exit $rc)"; }
[ "$rc" -ne 0 ] || { lane_show "$out"; lane_fail "wisp-vmm exited 0 after a guest panic; expected non-zero"; }
echo "panic: wisp-vmm exited $rc with the panic text: $(grep -m1 -o 'Kernel panic - not syncing.*' "$out" | tr -d '\r')"
