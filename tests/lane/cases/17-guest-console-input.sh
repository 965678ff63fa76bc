#!/usr/bin/env bash
# Tiny guest (core): host stdin reaches the guest through the UART's
# receive FIFO (the VMM thread feeds it from the event loop), also in
# chunks larger than the 64-byte FIFO.
# lane-guest: tiny
# lane-timeout: 60
set -uo pipefail
. lane/lib.sh
lane_need_bin wisp-vmm
[ -f "$WISP_GUESTS/echo.elf" ] || lane_skip "echo.elf not built"
cfg=$WISP_TMP/echo.json out=$WISP_TMP/echo.out
lane_vmm_config "$cfg" --kernel "$WISP_GUESTS/echo.elf" --args "console=ttyS0"
lane_vmm_start "$cfg" "$out" --level Warning
wait_for_log 'echo: ready' "$out" 30 "$LANE_VMM_PID" || { lane_vmm_stop; lane_show "$out"; lane_fail "echo guest did not start"; }
long=$(printf 'abcdefghij%.0s' $(seq 1 20))
lane_vmm_send "hello wisp"
lane_vmm_send "$long"
lane_vmm_send "q"
lane_vmm_wait 30
rc=$?
lane_vmm_stop
tr -d '\r' <"$out" >"$out.txt"
grep -q 'HELLO WISP' "$out.txt" || { lane_show "$out.txt"; lane_fail "input did not arrive (exit $rc)"; }
grep -q "$(printf 'ABCDEFGHIJ%.0s' $(seq 1 20))" "$out.txt" || { lane_show "$out.txt"; lane_fail "200 bytes of input did not all arrive in order"; }
grep -q 'echo: bye' "$out.txt" || { lane_show "$out.txt"; lane_fail "guest never saw the q"; }
[ "$rc" -eq 0 ] || { lane_show "$out.txt"; lane_fail "wisp-vmm exited $rc"; }
echo "console input: 210 bytes through the UART in order, exit 0"
