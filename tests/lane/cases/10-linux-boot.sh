#!/usr/bin/env bash
# Linux lane (needs wisp-vmm from the core issue; skipped until it is built):
# wisp-vmm boots the stripped kernel, both as an uncompressed ELF vmlinux and
# as a bzImage, with the test initramfs; its init prints "wisp-init: ready"
# and reboots; the VMM must then exit 0 on its own. The kernel must not warn
# on the way (a WARNING or BUG splat, e.g. "XSAVE consistency problem" when
# the vCPU's XCR0 and CPUID leaf 0xD disagree).
# lane-timeout: 300
set -uo pipefail
. lane/lib.sh
lane_need_bin wisp-vmm
lane_need_image vmlinux bzImage initramfs.cpio.gz

for kv in vmlinux:1 bzImage:2; do
	k=${kv%:*} vcpus=${kv#*:}
	cfg=$WISP_TMP/$k.json out=$WISP_TMP/$k-console.log
	lane_vmm_config "$cfg" --kernel "$WISP_IMAGES/$k" --initrd "$WISP_IMAGES/initramfs.cpio.gz" \
		--vcpus "$vcpus" --mem 128
	lane_vmm_run "$cfg" "$out" 120
	rc=$?
	if [ "$rc" -eq 124 ]; then
		lane_show "$out"; lane_fail "$k: wisp-vmm still running after 120 s"
	fi
	grep -q 'wisp-init: ready' "$out" || { lane_show "$out"; lane_fail "$k: no init marker (exit $rc)"; }
	grep -q 'wisp-init: rebooting' "$out" || { lane_show "$out"; lane_fail "$k: init did not get to reboot (exit $rc)"; }
	[ "$rc" -eq 0 ] || { lane_show "$out"; lane_fail "$k: wisp-vmm exited $rc after the guest rebooted, expected 0"; }
	if grep -q -E '(WARNING|BUG):|XSAVE consistency' "$out"; then
		lane_show "$out"; lane_fail "$k: the guest kernel warned during boot"
	fi
	echo "$k ($vcpus vCPU): booted to the init marker, rebooted, wisp-vmm exited 0"
done
