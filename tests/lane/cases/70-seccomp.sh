#!/usr/bin/env bash
# Seccomp (jail issue): with the filters on (the default) the hello tiny
# guest and the stripped Linux kernel run to their clean exit, so the
# allow-lists cover boot, serial, interrupts and reset; a forbidden syscall
# made on purpose (--seccomp-selftest) on the vCPU thread and on the VMM
# thread kills wisp-vmm with exit 148 and names the syscall; --no-seccomp
# lets the same call through, says filters are off and that the call was not
# stopped, and exits 1; the guest never runs when a thread lacks its filter.
# lane-timeout: 240
set -uo pipefail
. lane/lib.sh
lane_need_bin wisp-vmm
[ -f "$WISP_GUESTS/hello.elf" ] || lane_skip "hello.elf not built"
cfg=$WISP_TMP/hello.json
lane_vmm_config "$cfg" --kernel "$WISP_GUESTS/hello.elf" --args "console=ttyS0"

run() {         # run NAME VMM-ARGS...: sets rc, output in $WISP_TMP/NAME.out
	local name=$1; shift
	timeout -k 5 60 "$WISP_BIN/wisp-vmm" --no-api --config-file "$cfg" "$@" </dev/null \
		>"$WISP_TMP/$name.out" 2>&1
	rc=$?
}

run filtered
grep -q 'hello from the wisp tiny guest' "$WISP_TMP/filtered.out" && [ "$rc" -eq 0 ] ||
	{ lane_show "$WISP_TMP/filtered.out"; lane_fail "hello guest with filters on: exit $rc"; }
grep -q 'seccomp violation' "$WISP_TMP/filtered.out" &&
	{ lane_show "$WISP_TMP/filtered.out"; lane_fail "hello guest: a seccomp violation"; }
echo "filters on: hello guest ran and reset, exit 0"

for kind in vcpu vmm; do
	run "st-$kind" --seccomp-selftest "$kind"
	[ "$rc" -eq 148 ] || { lane_show "$WISP_TMP/st-$kind.out"; lane_fail "$kind self-test: exit $rc, expected 148"; }
	grep -q "the $kind thread called the forbidden syscall execve (59)" "$WISP_TMP/st-$kind.out" ||
		{ lane_show "$WISP_TMP/st-$kind.out"; lane_fail "$kind self-test: the syscall is not named"; }
	echo "$kind thread: forbidden execve -> exit 148, named"
done

for kind in vcpu vmm; do
	out=$WISP_TMP/st-off-$kind.out
	run "st-off-$kind" --no-seccomp --seccomp-selftest "$kind"
	[ "$rc" -eq 1 ] || { lane_show "$out"; lane_fail "--no-seccomp $kind self-test: exit $rc, expected 1"; }
	grep -q 'seccomp filters are off' "$out" ||
		{ lane_show "$out"; lane_fail "--no-seccomp does not say filters are off"; }
	grep -q "execve on the $kind thread was not stopped" "$out" ||
		{ lane_show "$out"; lane_fail "--no-seccomp $kind self-test did not report the call going through"; }
	grep -q 'hello from the wisp tiny guest' "$out" &&
		{ lane_show "$out"; lane_fail "the guest ran although the $kind thread had no filter"; }
	echo "--no-seccomp: logged, $kind self-test call not stopped, guest never ran, exit 1"
done

if [ -f "$WISP_IMAGES/vmlinux" ] && [ -f "$WISP_IMAGES/initramfs.cpio.gz" ]; then
	lcfg=$WISP_TMP/linux.json
	lane_vmm_config "$lcfg" --kernel "$WISP_IMAGES/vmlinux" --initrd "$WISP_IMAGES/initramfs.cpio.gz" \
		--vcpus 2 --mem 128
	lane_vmm_run "$lcfg" "$WISP_TMP/linux.out" 150
	rc=$?
	grep -q 'seccomp violation' "$WISP_TMP/linux.out" &&
		{ lane_show "$WISP_TMP/linux.out"; lane_fail "Linux boot: seccomp violation"; }
	grep -q 'wisp-init: ready' "$WISP_TMP/linux.out" && [ "$rc" -eq 0 ] ||
		{ lane_show "$WISP_TMP/linux.out"; lane_fail "Linux boot with filters on: exit $rc"; }
	echo "filters on: Linux (2 vCPUs) booted to init and rebooted, exit 0"
else
	echo "Linux boot with filters: images not built, only the tiny guest was checked"
fi
