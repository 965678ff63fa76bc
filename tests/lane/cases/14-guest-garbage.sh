#!/usr/bin/env bash
# Tiny guest (core): a hostile guest writes and reads unknown ports (every
# width, string I/O) and MMIO in the gap and above RAM. Reads return all
# ones, the VMM logs (rate-limited) and keeps running; the guest then resets
# and the VMM exits 0.
# lane-guest: tiny
# lane-timeout: 90
set -uo pipefail
. lane/lib.sh
lane_need_bin wisp-vmm
[ -f "$WISP_GUESTS/garbage.elf" ] || lane_skip "garbage.elf not built"
cfg=$WISP_TMP/garbage.json out=$WISP_TMP/garbage.out err=$WISP_TMP/garbage.err
lane_vmm_config "$cfg" --kernel "$WISP_GUESTS/garbage.elf" --args "console=ttyS0"
timeout -k 5 60 "$WISP_BIN/wisp-vmm" --no-api --config-file "$cfg" </dev/null >"$out" 2>"$err"
rc=$?
tr -d '\r' <"$out" >"$out.txt"
grep -q 'garbage: survived' "$out.txt" || { lane_show "$out.txt"; lane_show "$err"; lane_fail "guest did not report all-ones reads (exit $rc)"; }
[ "$rc" -eq 0 ] || { lane_show "$err"; lane_fail "wisp-vmm exited $rc, expected 0"; }
grep -q 'unhandled port' "$err" || { lane_show "$err"; lane_fail "unknown port accesses were not logged"; }
grep -q 'unhandled MMIO' "$err" || { lane_show "$err"; lane_fail "unknown MMIO accesses were not logged"; }
lines=$(grep -c 'unhandled' "$err")
# about 3000 bad accesses: the log must be rate-limited
[ "$lines" -lt 200 ] || lane_fail "log not rate-limited: $lines lines"
echo "garbage: VMM survived, reads were all ones, $lines log lines"
