#!/usr/bin/env bash
# wisp-jailer around a real boot (jail issue): the stripped Linux kernel
# boots inside a jail (pre-staged kernel and initramfs, as with
# Firecracker's jailer), as an unprivileged uid with no capabilities and the
# seccomp filters on, reaches its init and reboots; wisp-vmm exits 0, the
# jailer's --cleanup leaves nothing behind.
# lane-timeout: 200
set -uo pipefail
. lane/lib.sh
lane_need_bin wisp-vmm wisp-jailer
lane_need_image vmlinux initramfs.cpio.gz
BASE=$WISP_TMP/jails
ID=lane-jail-$$
UIDJ=4321
ROOT=$BASE/wisp-vmm/$ID/root
mkdir -p "$ROOT"
cp "$WISP_IMAGES/vmlinux" "$WISP_IMAGES/initramfs.cpio.gz" "$ROOT/"
lane_vmm_config "$ROOT/vm.json" --kernel /vmlinux --initrd /initramfs.cpio.gz --vcpus 1 --mem 128
chown -R $UIDJ:$UIDJ "$ROOT"
out=$WISP_TMP/jail.out
# No timeout wrapper: the jailer execs the VMM, so $! is the VMM itself.
"$WISP_BIN/wisp-jailer" --id "$ID" --exec-file "$WISP_BIN/wisp-vmm" --uid $UIDJ \
	--gid $UIDJ --chroot-base-dir "$BASE" --resource-limit no-file=256 \
	-- --no-api --config-file /vm.json </dev/null >"$out" 2>&1 &
pid=$!
# While it runs: the VMM's identity, from outside (the VMM thread's filter
# is loaded once the vCPUs run).
seen=""
for _ in $(seq 600); do
	if grep -Eq "^Seccomp:[[:space:]]+2" /proc/$pid/status 2>/dev/null; then
		seen=$(cat /proc/$pid/status); break
	fi
	kill -0 $pid 2>/dev/null || break
	sleep 0.1
done
deadline=$(( $(date +%s) + 150 ))
while kill -0 $pid 2>/dev/null; do
	[ "$(date +%s)" -lt "$deadline" ] || { kill -9 $pid; lane_show "$out"; lane_fail "jailed VMM still running after 150 s"; }
	sleep 0.2
done
wait $pid
rc=$?
[ -n "$seen" ] || { lane_show "$out"; lane_fail "never saw the jailed VMM running with its seccomp filter (exit $rc)"; }
echo "$seen" | grep -Eq "^Uid:[[:space:]]+$UIDJ[[:space:]]+$UIDJ[[:space:]]+$UIDJ[[:space:]]+$UIDJ$" || lane_fail "VMM uid: $(echo "$seen" | grep ^Uid)"
echo "$seen" | grep -Eq "^CapEff:[[:space:]]+0+$" || lane_fail "VMM has capabilities: $(echo "$seen" | grep ^Cap)"
echo "$seen" | grep -Eq "^CapBnd:[[:space:]]+0+$" || lane_fail "VMM has a bounding set: $(echo "$seen" | grep ^CapBnd)"
echo "$seen" | grep -Eq "^NoNewPrivs:[[:space:]]+1$" || lane_fail "VMM lacks no_new_privs"
echo "jailed VMM seen running as $UIDJ, CapEff and CapBnd 0, no_new_privs, seccomp mode 2"
grep -q 'seccomp violation' "$out" && { lane_show "$out"; lane_fail "seccomp violation in the jail"; }
grep -q 'wisp-init: ready' "$out" || { lane_show "$out"; lane_fail "no init marker from the jailed boot (exit $rc)"; }
[ "$rc" -eq 0 ] || { lane_show "$out"; lane_fail "jailed wisp-vmm exited $rc, expected 0"; }
echo "jailed boot: init reached, VMM exited 0"
"$WISP_BIN/wisp-jailer" --cleanup --id "$ID" --exec-file "$WISP_BIN/wisp-vmm" --chroot-base-dir "$BASE" ||
	lane_fail "--cleanup failed"
[ ! -e "$BASE/wisp-vmm" ] || lane_fail "--cleanup left $(find "$BASE" | head -5)"
echo "--cleanup: nothing left"
