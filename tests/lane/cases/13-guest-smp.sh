#!/usr/bin/env bash
# Tiny guest (core): the MP table lists every vCPU, one IOAPIC and IRQs
# 0-23, and every AP comes up through INIT-SIPI-SIPI from the guest's
# local APIC into a real-mode trampoline.
# lane-guest: tiny
# lane-timeout: 90
set -uo pipefail
. lane/lib.sh
lane_need_bin wisp-vmm
[ -f "$WISP_GUESTS/smp.elf" ] || lane_skip "smp.elf not built"
for n in 1 2 4 8; do
	cfg=$WISP_TMP/smp$n.json out=$WISP_TMP/smp$n.out
	lane_vmm_config "$cfg" --kernel "$WISP_GUESTS/smp.elf" --args "console=ttyS0" --vcpus $n
	timeout -k 5 40 "$WISP_BIN/wisp-vmm" --no-api --config-file "$cfg" </dev/null >"$out" 2>"$out.err"
	rc=$?
	tr -d '\r' <"$out" >"$out.txt"
	[ "$rc" -eq 0 ] || { lane_show "$out.txt"; lane_fail "$n vCPUs: wisp-vmm exited $rc"; }
	grep -q "smp: mp cpus=$n ioapics=1 irqs=24" "$out.txt" || { lane_show "$out.txt"; lane_fail "$n vCPUs: MP table wrong"; }
	grep -q "smp: up=$n\$" "$out.txt" || { lane_show "$out.txt"; lane_fail "$n vCPUs: not every vCPU came up"; }
done
echo "smp: MP table and AP startup correct for 1, 2, 4 and 8 vCPUs"
