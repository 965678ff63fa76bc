#!/usr/bin/env bash
# Tiny guest (core): an i8042 reset right at entry ends the VMM with 0 (and
# --boot-timer logs the guest's first write); SIGTERM and SIGINT stop a
# running VMM cleanly with 0; bad kernels are refused with 152 before any
# vCPU runs.
# lane-guest: tiny
# lane-timeout: 90
set -uo pipefail
. lane/lib.sh
lane_need_bin wisp-vmm
[ -f "$WISP_GUESTS/reset.elf" ] || lane_skip "reset.elf not built"
cfg=$WISP_TMP/reset.json err=$WISP_TMP/reset.err
lane_vmm_config "$cfg" --kernel "$WISP_GUESTS/reset.elf" --args "console=ttyS0"
timeout -k 5 40 "$WISP_BIN/wisp-vmm" --no-api --config-file "$cfg" --boot-timer </dev/null >/dev/null 2>"$err"
rc=$?
[ "$rc" -eq 0 ] || { lane_show "$err"; lane_fail "reset: wisp-vmm exited $rc, expected 0"; }
grep -q 'Guest-boot-time' "$err" || { lane_show "$err"; lane_fail "--boot-timer logged nothing"; }

# SIGTERM/SIGINT: the spin guest prints a line and halts forever.
for sig in TERM INT; do
	scfg=$WISP_TMP/spin.json serr=$WISP_TMP/spin-$sig.err
	lane_vmm_config "$scfg" --kernel "$WISP_GUESTS/spin.elf" --args "console=ttyS0" --vcpus 2
	"$WISP_BIN/wisp-vmm" --no-api --config-file "$scfg" </dev/null >"$WISP_TMP/spin.out" 2>"$serr" &
	pid=$!
	wait_for_log 'spin: running' "$WISP_TMP/spin.out" 30 "$pid" || { kill -KILL $pid; lane_show "$serr"; lane_fail "spin guest did not start"; }
	kill -$sig $pid
	for i in $(seq 1 100); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
	if kill -0 $pid 2>/dev/null; then kill -KILL $pid; wait $pid; lane_fail "SIG$sig did not stop wisp-vmm within 10 s"; fi
	wait $pid; rc=$?
	[ "$rc" -eq 0 ] || { lane_show "$serr"; lane_fail "SIG$sig: wisp-vmm exited $rc, expected 0"; }
done

# Malformed kernels: refused with 152 and a message, before any vCPU runs.
head -c 100 "$WISP_GUESTS/reset.elf" > "$WISP_TMP/trunc.elf"
printf 'MZ this is no kernel at all' > "$WISP_TMP/junk.bin"
for k in trunc.elf junk.bin; do
	bcfg=$WISP_TMP/bad-$k.json berr=$WISP_TMP/bad-$k.err
	lane_vmm_config "$bcfg" --kernel "$WISP_TMP/$k" --args "console=ttyS0"
	timeout -k 5 20 "$WISP_BIN/wisp-vmm" --no-api --config-file "$bcfg" </dev/null >/dev/null 2>"$berr"
	rc=$?
	[ "$rc" -eq 152 ] || { lane_show "$berr"; lane_fail "$k: exit $rc, expected 152"; }
	grep -qi 'kernel' "$berr" || { lane_show "$berr"; lane_fail "$k: no message naming the kernel"; }
done
echo "reset -> 0 with a boot-time line; SIGTERM/SIGINT -> 0; malformed kernels -> 152"
