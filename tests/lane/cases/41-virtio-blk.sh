#!/usr/bin/env bash
# virtio-blk in the Linux lane: the rootfs on virtio-blk read-write with the
# VMM's own "root=/dev/vda rw" (boot_args carry no root=); a 4 MiB file
# written and synced in the guest is intact in the image after the VMM is
# killed with SIGKILL; a read-only drive reads right, refuses writes even
# when the guest forces its block device writable, and is unchanged after.
# lane-timeout: 600
set -uo pipefail
. lane/lib.sh
. lane/virtio-lib.sh
lane_need_bin wisp-vmm wisp-agent-ctl wisp-virtio-test
lane_need_image vmlinux rootfs.ext4
command -v e2fsck >/dev/null || lane_skip "e2fsck missing"

VT_UDS=$WISP_TMP/vsock.sock VT_LOG=$WISP_TMP/vmm.log
vt_rootfs "$WISP_TMP/root.ext4"
head -c 4194304 /dev/urandom > "$WISP_TMP/ro.img"
ro_sha=$(sha256sum < "$WISP_TMP/ro.img" | cut -d' ' -f1)
lane_vmm_config "$WISP_TMP/vm.json" --kernel "$WISP_IMAGES/vmlinux" --args "$LANE_BOOT_ARGS" \
	--rootfs "$WISP_TMP/root.ext4" --drive "data:$WISP_TMP/ro.img:ro" --vsock "3:$VT_UDS" --mem 256
lane_vmm_start "$WISP_TMP/vm.json" "$VT_LOG"
trap lane_vmm_stop EXIT
vt_wait_guest "$LANE_VMM_PID"

fails=0
pass() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

cmdline=$(vt_ctl invoke /bin/cat /proc/cmdline)
[[ " $cmdline " == *" root=/dev/vda rw "* ]] && pass "VMM added root=/dev/vda rw" || bad "cmdline: $cmdline"
m=$(vt_sh 'grep " / " /proc/mounts')
[[ $m == *" / ext4 rw"* ]] && pass "root mounted ext4 rw" || bad "root mount: $m"

# written and synced in the guest, checked in the image after SIGKILL
g=$(vt_sh 'head -c 4194304 /dev/urandom > /lane-data.bin && sync && sha256sum /lane-data.bin')
g_sha=${g%% *}
[ ${#g_sha} = 64 ] || bad "guest write: $g"

# the read-only drive
[ "$(vt_ctl invoke /bin/cat /sys/block/vdb/ro)" = 1 ] && pass "vdb is read-only in the guest" \
	|| bad "/sys/block/vdb/ro is not 1"
r=$(vt_sh 'dd if=/dev/vdb bs=65536 count=64 2>/dev/null | sha256sum')
[ "${r%% *}" = "$ro_sha" ] && pass "read-only drive reads back its image" || bad "vdb hash ${r%% *}, want $ro_sha"
w=$(vt_sh 'blockdev --setrw /dev/vdb; dd if=/dev/zero of=/dev/vdb bs=4096 count=16 conv=fsync 2>&1; echo "rc=$?"')
[[ $w == *"rc=0"* ]] && bad "a write to the read-only drive succeeded: $w" \
	|| pass "write to the read-only drive failed in the guest"
id=$(vt_sh 'cat /sys/block/vdb/serial 2>/dev/null || true')
[ "$id" = data ] && pass "GET_ID gives the drive_id" || echo "note: /sys/block/vdb/serial is '$id'"

kill -KILL "$LANE_VMM_PID"
wait "$LANE_VMM_PID" 2>/dev/null
LANE_VMM_PID=
[ "$(sha256sum < "$WISP_TMP/ro.img" | cut -d' ' -f1)" = "$ro_sha" ] && pass "read-only image unchanged" \
	|| bad "the read-only image changed"
e2fsck -fy "$WISP_TMP/root.ext4" > "$WISP_TMP/fsck.log" 2>&1
rc=$?
[ $rc -le 1 ] && pass "e2fsck after SIGKILL: $rc" || { lane_show "$WISP_TMP/fsck.log"; bad "e2fsck exit $rc"; }
debugfs -R "dump /lane-data.bin $WISP_TMP/out.bin" "$WISP_TMP/root.ext4" >/dev/null 2>&1
h=$(sha256sum < "$WISP_TMP/out.bin" 2>/dev/null | cut -d' ' -f1)
[ -n "$g_sha" ] && [ "$h" = "$g_sha" ] && pass "synced file intact in the image after SIGKILL" \
	|| bad "file in the image: hash '$h', guest wrote '$g_sha'"

[ $fails = 0 ] || { lane_show "$VT_LOG" 40; lane_fail "$fails checks failed"; }
echo "virtio-blk: all checks passed"
