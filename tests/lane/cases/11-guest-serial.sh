#!/usr/bin/env bash
# Tiny guest (core): the hello guest prints through the 8250 UART and resets
# through the i8042; wisp-vmm shows the line on stdout and exits 0.
# lane-guest: tiny
# lane-timeout: 60
set -uo pipefail
. lane/lib.sh
lane_need_bin wisp-vmm
[ -f "$WISP_GUESTS/hello.elf" ] || lane_skip "hello.elf not built"
cfg=$WISP_TMP/hello.json out=$WISP_TMP/hello.out
lane_vmm_config "$cfg" --kernel "$WISP_GUESTS/hello.elf" --args "console=ttyS0"
timeout -k 5 40 "$WISP_BIN/wisp-vmm" --no-api --config-file "$cfg" </dev/null >"$out" 2>"$WISP_TMP/hello.err"
rc=$?
grep -q 'hello from the wisp tiny guest' "$out" || { lane_show "$out"; lane_show "$WISP_TMP/hello.err"; lane_fail "no guest line on stdout (exit $rc)"; }
[ "$rc" -eq 0 ] || { lane_show "$WISP_TMP/hello.err"; lane_fail "wisp-vmm exited $rc after the guest reset, expected 0"; }
grep -q 'reset through the i8042' "$WISP_TMP/hello.err" || { lane_show "$WISP_TMP/hello.err"; lane_fail "no reset log line"; }
echo "serial: guest line on stdout, reset -> exit 0"
