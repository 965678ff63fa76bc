#!/usr/bin/env bash
# Linux lane (core): through the API socket, PATCH /vm pauses and resumes a
# running Linux guest (its vCPUs park at a safe point and continue), then
# SendCtrlAltDel injects Ctrl+Alt+Del through the i8042; the guest's
# keyboard driver turns it into a reboot (reboot=k), and wisp-vmm exits 0.
# lane-timeout: 300
set -uo pipefail
. lane/lib.sh
lane_need_bin wisp-vmm
lane_need_image vmlinux initramfs.cpio.gz
command -v curl >/dev/null || lane_skip "curl missing"

cfg=$WISP_TMP/cad.json out=$WISP_TMP/cad-console.log sock=$WISP_TMP/api.sock
lane_vmm_config "$cfg" --kernel "$WISP_IMAGES/vmlinux" --initrd "$WISP_IMAGES/initramfs.cpio.gz" \
	--args "$LANE_BOOT_ARGS wisp.test=hold"
"$WISP_BIN/wisp-vmm" --api-sock "$sock" --config-file "$cfg" </dev/null >"$out" 2>&1 &
pid=$!
cleanup() { kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; }
trap cleanup EXIT
api() { # METHOD PATH BODY -> prints the HTTP status
	curl -s -o "$WISP_TMP/api.body" -w '%{http_code}' --max-time 30 --unix-socket "$sock" \
		-X "$1" -H 'Content-Type: application/json' "http://localhost$2" ${3:+-d "$3"}
}
wait_for_log 'wisp-init: ready' "$out" 180 "$pid" || { lane_show "$out"; lane_fail "the guest never reached its init"; }

st=$(api PATCH /vm '{"state":"Paused"}')
[ "$st" = 204 ] || { cat "$WISP_TMP/api.body"; lane_fail "pause answered $st"; }
api GET / >/dev/null
grep -q '"Paused"' "$WISP_TMP/api.body" || { cat "$WISP_TMP/api.body"; lane_fail "state is not Paused after PATCH /vm"; }
sleep 1
kill -0 "$pid" 2>/dev/null || lane_fail "wisp-vmm died while paused"
st=$(api PATCH /vm '{"state":"Resumed"}')
[ "$st" = 204 ] || { cat "$WISP_TMP/api.body"; lane_fail "resume answered $st"; }

st=$(api PUT /actions '{"action_type":"SendCtrlAltDel"}')
[ "$st" = 204 ] || { cat "$WISP_TMP/api.body"; lane_fail "SendCtrlAltDel answered $st"; }
for _ in $(seq 1 1200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then lane_show "$out"; lane_fail "the guest did not reboot within 120 s of Ctrl+Alt+Del"; fi
wait "$pid"; rc=$?
trap - EXIT
[ "$rc" -eq 0 ] || { lane_show "$out"; lane_fail "wisp-vmm exited $rc after the Ctrl+Alt+Del reboot, expected 0"; }
echo "pause/resume via PATCH /vm, SendCtrlAltDel -> guest reboot -> exit 0"
