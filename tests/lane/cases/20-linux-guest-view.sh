#!/usr/bin/env bash
# Linux lane (needs wisp-vmm from the core issue; skipped until it is built):
# the guest sees the configured vCPU count and memory size (from /proc), and
# the configured boot arguments reach it (/proc/cmdline). Two shapes, so a
# hard-coded answer cannot pass.
# lane-timeout: 300
set -uo pipefail
. lane/lib.sh
lane_need_bin wisp-vmm
lane_need_image vmlinux initramfs.cpio.gz

for shape in "1 128" "2 256"; do
	read -r vcpus mem <<<"$shape"
	token=lane$RANDOM$RANDOM
	cfg=$WISP_TMP/view-$vcpus.json out=$WISP_TMP/view-$vcpus-console.log
	lane_vmm_config "$cfg" --kernel "$WISP_IMAGES/vmlinux" --initrd "$WISP_IMAGES/initramfs.cpio.gz" \
		--vcpus "$vcpus" --mem "$mem" --args "$LANE_BOOT_ARGS wisp.test=info wisp.token=$token"
	lane_vmm_run "$cfg" "$out" 120
	rc=$?
	info() { tr -d '\r' < "$out" | sed -n "s/^wisp-init: $1=//p" | head -n1; }
	got_vcpus=$(info vcpus) got_mem=$(info memtotal_kb) got_cmdline=$(info cmdline)
	[ -n "$got_vcpus" ] || { lane_show "$out"; lane_fail "$vcpus vCPUs/$mem MiB: the guest printed no info (wisp-vmm exit $rc)"; }
	[ "$got_vcpus" = "$vcpus" ] || { lane_show "$out"; lane_fail "configured $vcpus vCPUs, the guest sees $got_vcpus"; }
	# MemTotal is RAM minus what the kernel reserves for itself (its image,
	# page structs): it must be below the configured size and above 3/4 of it.
	cfg_kb=$((mem * 1024))
	if [ -z "$got_mem" ] || [ "$got_mem" -gt "$cfg_kb" ] || [ "$got_mem" -lt $((cfg_kb * 3 / 4)) ]; then
		lane_show "$out"; lane_fail "configured $mem MiB ($cfg_kb kB), guest MemTotal is '${got_mem}' kB"
	fi
	case " $got_cmdline " in
	*" wisp.token=$token "*) ;;
	*) lane_show "$out"; lane_fail "boot argument wisp.token=$token missing from the guest's /proc/cmdline: '$got_cmdline'" ;;
	esac
	[ "$rc" -eq 0 ] || { lane_show "$out"; lane_fail "wisp-vmm exited $rc after the guest rebooted, expected 0"; }
	echo "$vcpus vCPUs / $mem MiB: guest sees vcpus=$got_vcpus memtotal=${got_mem} kB, token on its cmdline"
done
