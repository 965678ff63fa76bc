#!/usr/bin/env bash
# Tiny guest (core): the 64-bit entry state and the zero page as the guest
# sees them: %rsi = zero page, __BOOT_CS/__BOOT_DS, paging + long mode,
# interrupts off, boot_flag/HdrS, the command line from the config file, and
# an e820 map whose RAM adds up to the configured size (minus the legacy
# hole 0x9fc00-0x100000).
# lane-guest: tiny
# lane-timeout: 60
set -uo pipefail
. lane/lib.sh
lane_need_bin wisp-vmm
[ -f "$WISP_GUESTS/bootstate.elf" ] || lane_skip "bootstate.elf not built"
args="console=ttyS0 wisp.marker=xyzzy-42 quoted=\"a b\""
for mem in 64 300; do
	cfg=$WISP_TMP/bs$mem.json out=$WISP_TMP/bs$mem.out
	lane_vmm_config "$cfg" --kernel "$WISP_GUESTS/bootstate.elf" --args "$args" --mem $mem
	timeout -k 5 40 "$WISP_BIN/wisp-vmm" --no-api --config-file "$cfg" </dev/null >"$out" 2>"$out.err"
	rc=$?
	tr -d '\r' <"$out" >"$out.txt"
	[ "$rc" -eq 0 ] || { lane_show "$out.txt"; lane_fail "mem $mem: wisp-vmm exited $rc"; }
	grep -q 'bootstate: rsi=0x7000 cs=0x10 ds=0x18 ss=0x18' "$out.txt" || { lane_show "$out.txt"; lane_fail "mem $mem: entry registers wrong"; }
	grep -q 'bootstate: pe=1 pg=1 pae=1 lma=1 if=0' "$out.txt" || { lane_show "$out.txt"; lane_fail "mem $mem: not in long mode with paging"; }
	grep -q 'bootstate: boot_flag=0xaa55 header=0x53726448 loader=0xff' "$out.txt" || { lane_show "$out.txt"; lane_fail "mem $mem: setup header wrong"; }
	grep -qF "bootstate: cmdline=[$args]" "$out.txt" || { lane_show "$out.txt"; lane_fail "mem $mem: command line did not arrive intact"; }
	want=$(( (mem * 1024 * 1024 - (0x100000 - 0x9fc00)) / 1024 ))
	grep -q "bootstate: e820 ram KiB=$want\$" "$out.txt" || { lane_show "$out.txt"; lane_fail "mem $mem: e820 RAM is not $want KiB"; }
	grep -q 'bootstate: e820 0x100000 ' "$out.txt" || { lane_show "$out.txt"; lane_fail "mem $mem: no RAM entry at 1 MiB"; }
	grep -q 'bootstate: ok' "$out.txt" || { lane_show "$out.txt"; lane_fail "mem $mem: guest self-check failed"; }
done
echo "bootstate: entry registers, setup header, command line and e820 (64 and 300 MiB) as expected"
