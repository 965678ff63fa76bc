#!/usr/bin/env bash
# Tiny guest (core): a triple fault ends the VMM with exit code 2 (distinct
# from a clean reset) and a register dump in the log.
# lane-guest: tiny
# lane-timeout: 60
set -uo pipefail
. lane/lib.sh
lane_need_bin wisp-vmm
[ -f "$WISP_GUESTS/triple.elf" ] || lane_skip "triple.elf not built"
cfg=$WISP_TMP/triple.json out=$WISP_TMP/triple.out err=$WISP_TMP/triple.err
lane_vmm_config "$cfg" --kernel "$WISP_GUESTS/triple.elf" --args "console=ttyS0"
timeout -k 5 40 "$WISP_BIN/wisp-vmm" --no-api --config-file "$cfg" </dev/null >"$out" 2>"$err"
rc=$?
grep -q 'triple: faulting now' "$out" || { lane_show "$out"; lane_fail "guest never ran (exit $rc)"; }
grep -q 'still alive' "$out" && lane_fail "guest survived its triple fault"
[ "$rc" -eq 2 ] || { lane_show "$err"; lane_fail "wisp-vmm exited $rc, expected 2"; }
grep -q 'triple fault' "$err" || { lane_show "$err"; lane_fail "no triple fault message"; }
grep -q 'rip=' "$err" || { lane_show "$err"; lane_fail "no register dump"; }
echo "triple fault: exit 2 with a register dump"
