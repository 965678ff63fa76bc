#!/usr/bin/env bash
# Tiny guest (virtio): a guest-side virtio-blk driver reads and writes
# sectors on drive A, writes garbage to every register of drive B in every
# status (rings anywhere, notifies of any queue), then checks that A still
# works and that B recovers after a reset. The VMM must survive, log the
# violations rate-limited, write sector 2 of A's image, and exit 0.
# lane-guest: tiny
# lane-timeout: 120
set -uo pipefail
. lane/lib.sh
lane_need_bin wisp-vmm
[ -f "$WISP_GUESTS/virtio.elf" ] || lane_skip "virtio.elf not built"
for img in a b; do
	for s in $(seq 0 63); do head -c 512 /dev/zero | tr '\0' "\\$(printf '%03o' "$s")"; done > "$WISP_TMP/$img.img"
done
cfg=$WISP_TMP/virtio.json out=$WISP_TMP/virtio.out err=$WISP_TMP/virtio.err
lane_vmm_config "$cfg" --kernel "$WISP_GUESTS/virtio.elf" --args "console=ttyS0" \
	--drive "a:$WISP_TMP/a.img" --drive "b:$WISP_TMP/b.img"
timeout -k 5 90 "$WISP_BIN/wisp-vmm" --no-api --config-file "$cfg" </dev/null >"$out" 2>"$err"
rc=$?
tr -d '\r' <"$out" >"$out.txt"
grep -q 'virtio-guest: ok' "$out.txt" || { lane_show "$out.txt"; lane_show "$err"; lane_fail "the guest's checks failed (exit $rc)"; }
[ "$rc" -eq 0 ] || { lane_show "$err"; lane_fail "wisp-vmm exited $rc, expected 0"; }
[ "$(dd if="$WISP_TMP/a.img" bs=512 skip=2 count=1 2>/dev/null | tr -d '\253' | wc -c)" = 0 ] \
	|| lane_fail "sector 2 of drive A was not written"
grep -q 'virtio-blk:b' "$err" || { lane_show "$err"; lane_fail "device B's violations were not logged"; }
lines=$(grep -c 'virtio-blk:b' "$err")
[ "$lines" -lt 400 ] || lane_fail "virtio log not rate-limited: $lines lines"
echo "virtio guest: A served requests through B's garbage storm, B recovered, $lines log lines"
