#!/usr/bin/env bash
# wisp-jailer on the host (root, no KVM needed): a real jail around the VMM,
# checked from outside through /proc/<pid>; refusals that must change
# nothing; failures after the jail is made (after pivot_root, after the
# forks of --daemonize/--new-pid-ns) that must name the step, exit 1 and
# undo everything, so that the same --id starts next; --cleanup leaving
# nothing; seccomp filters biting on the API thread, and with a tiny guest on
# the host's /dev/kvm (where it runs) on the VMM and vCPU threads (lane case
# 70-seccomp checks those in the nested lane).
#
# The VMM is $BUILD/bin/wisp-vmm when it can wait on its API socket without
# /dev/kvm; otherwise a stand-in (tests/host/jail-probe.c, built here) that
# takes the same flags, and the checks that need the real VMM say SKIPPED.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
JAILER=$PWD/$BUILD/bin/wisp-jailer
pass=0; fail=0; skip=0
ok()   { pass=$((pass + 1)); echo "ok: $*"; }
bad()  { fail=$((fail + 1)); echo "FAIL: $*"; }
skp()  { skip=$((skip + 1)); echo "SKIPPED: $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
finish() {
	echo "jailer: $pass passed, $fail failed, $skip skipped"
	[ "$fail" -eq 0 ]
	exit $?
}

if [ "$(id -u)" -ne 0 ]; then
	skp "the jailer suite needs root (mount namespaces, mknod, cgroups)"
	finish
fi
if [ ! -x "$JAILER" ]; then
	bad "$JAILER is not built"
	finish
fi

T=$(mktemp -d /tmp/wisp-jailer-suite.XXXXXX)
BASE=$T/jails
NS=wisp-jt-$$
JUID=43210; JGID=43211
PIDS=()
cleanup_all() {
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	sleep 0.2
	ip netns del "$NS" 2>/dev/null
	umount "$T/noexec" 2>/dev/null
	umount -l "$T" 2>/dev/null
	for d in /sys/fs/cgroup/*/wisp-vmm /sys/fs/cgroup/*/jail-probe /sys/fs/cgroup/*/jt-parent \
		/sys/fs/cgroup/*/jt-undo /sys/fs/cgroup/pids/jt-outer-$$; do
		[ -d "$d" ] || continue
		find "$d" -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null
		rmdir "$d" 2>/dev/null
	done
	rm -rf "$T"
}
trap cleanup_all EXIT
trap "exit 1" INT TERM HUP PIPE   # so that EXIT cleans up

# Pick the VMM: the real one if it reaches its API socket here.
VMM=$PWD/$BUILD/bin/wisp-vmm
REAL_VMM=0
is_static() { readelf -l "$1" 2>/dev/null | grep -q 'LOAD' && ! readelf -l "$1" 2>/dev/null | grep -q INTERP; }
if [ -x "$VMM" ] && is_static "$VMM"; then
	mkdir -p "$T/try"
	"$VMM" --api-sock "$T/try/api.sock" >"$T/try/log" 2>&1 &
	tp=$!
	for _ in $(seq 50); do [ -S "$T/try/api.sock" ] && break; sleep 0.1; done
	[ -S "$T/try/api.sock" ] && REAL_VMM=1
	kill -9 "$tp" 2>/dev/null; wait "$tp" 2>/dev/null
fi
if [ "$REAL_VMM" = 0 ]; then
	echo "note: $VMM does not wait on its API socket here (missing, dynamic, or needs /dev/kvm);" \
	     "jailing the stand-in tests/host/jail-probe.c"
	mkdir -p "$T/bin"
	cc -static -O2 -o "$T/bin/jail-probe" tests/host/jail-probe.c || { bad "build jail-probe"; finish; }
	VMM=$T/bin/jail-probe
fi
NAME=$(basename "$VMM")

snapshot() {    # everything the jailer could have touched
	{ find "$BASE" 2>/dev/null; find /sys/fs/cgroup -maxdepth 5 -type d -name "*jt*" 2>/dev/null
	  ls -d /sys/fs/cgroup/*/"$NAME" 2>/dev/null; } | sort
}
wait_sock() {   # wait_sock PATH: up to 5 s
	for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.05; done
	return 1
}

ip netns add "$NS" || { bad "ip netns add $NS"; finish; }
# The jails' tree as a shared mount: without private propagation in the
# jailer's mount namespace its bind mount would show up here.
mount --bind "$T" "$T" && mount --make-shared "$T" || { bad "make $T a shared mount"; finish; }

# 1. A real jail, checked from outside.
ID=jt-main-$$
WISP_SECRET=1 "$JAILER" --id "$ID" --exec-file "$VMM" --uid $JUID --gid $JGID --chroot-base-dir "$BASE" \
	--netns /var/run/netns/$NS --cgroup pids.max=64 --cgroup cpu.shares=512 \
	--resource-limit no-file=512 --resource-limit fsize=1048576 \
	-- --api-sock /api.sock >"$T/main.log" 2>&1 7>"$T/inherited-fd" &
P=$!; PIDS+=("$P")
ROOT=$BASE/$NAME/$ID/root
if wait_sock "$ROOT/api.sock"; then ok "VMM in the jail listens on its API socket"; else
	bad "VMM in the jail never created its API socket"; cat "$T/main.log"; finish; fi
st=/proc/$P/status
check "runs as the given uid" grep -Eq "^Uid:\s+$JUID\s+$JUID\s+$JUID\s+$JUID$" "$st"
check "runs as the given gid" grep -Eq "^Gid:\s+$JGID\s+$JGID\s+$JGID\s+$JGID$" "$st"
check "no supplementary groups" grep -Eq "^Groups:\s*$" "$st"
for c in CapInh CapPrm CapEff CapBnd CapAmb; do
	check "$c is empty" grep -Eq "^$c:\s+0000000000000000$" "$st"
done
check "NoNewPrivs is set" grep -Eq "^NoNewPrivs:\s+1$" "$st"
listing=$(ls -A "/proc/$P/root" | tr '\n' ' ')
check "root holds only the jail's files ($listing)" [ "$listing" = "api.sock dev $NAME " ]
check "the root is the jail directory" [ "$(stat -c %i /proc/$P/root/)" = "$(stat -c %i "$ROOT")" ]
check "/proc/<pid>/root has no way out (no etc, no proc)" \
	bash -c "[ ! -e /proc/$P/root/etc ] && [ ! -e /proc/$P/root/proc ]"
check "/dev/kvm is char 10,232 owned by the jailed user" \
	[ "$(stat -c '%F %t,%T %u:%g' "$ROOT/dev/kvm")" = "character special file a,e8 $JUID:$JGID" ]
check "/dev/net/tun is char 10,200 owned by the jailed user" \
	[ "$(stat -c '%F %t,%T %u:%g' "$ROOT/dev/net/tun")" = "character special file a,c8 $JUID:$JGID" ]
if [ -c /dev/userfaultfd ]; then
	check "/dev/userfaultfd copies the host's numbers" \
		[ "$(stat -c '%t,%T %u:%g' "$ROOT/dev/userfaultfd")" = "$(stat -c '%t,%T' /dev/userfaultfd) $JUID:$JGID" ]
else
	check "no /dev/userfaultfd when the host has none" [ ! -e "$ROOT/dev/userfaultfd" ]
fi
check "the exec copy is not a link to the original" [ "$(stat -c %i "$ROOT/$NAME")" != "$(stat -c %i "$VMM")" ]
check "the exec copy has the same bytes" cmp -s "$ROOT/$NAME" "$VMM"
check "in the pids cgroup <exec>/<id>" grep -q ":pids:/$NAME/$ID$" /proc/$P/cgroup
check "in the cpu cgroup <exec>/<id>" grep -Eq ":cpu(,cpuacct)?:/$NAME/$ID$" /proc/$P/cgroup
check "pids.max was written" [ "$(cat /sys/fs/cgroup/pids/$NAME/$ID/pids.max)" = 64 ]
check "cpu.shares was written" [ "$(cat /sys/fs/cgroup/cpu/$NAME/$ID/cpu.shares)" = 512 ]
check "in the given network namespace" [ "$(stat -L -c %i /proc/$P/ns/net)" = "$(stat -L -c %i /var/run/netns/$NS)" ]
check "not in the host network namespace" [ "$(stat -L -c %i /proc/$P/ns/net)" != "$(stat -L -c %i /proc/self/ns/net)" ]
check "in its own mount namespace" [ "$(stat -L -c %i /proc/$P/ns/mnt)" != "$(stat -L -c %i /proc/self/ns/mnt)" ]
check "the old root is detached: the jail's namespace holds one mount ($(wc -l </proc/$P/mountinfo))" \
	[ "$(wc -l </proc/$P/mountinfo)" = 1 ]
check "private propagation: the jail's bind mount did not reach the host (shared $T)" \
	bash -c "! awk '{ print \$5 }' /proc/self/mountinfo | grep -qx '$ROOT'"
check "open-files limit set" grep -Eq "^Max open files\s+512\s+512\s" /proc/$P/limits
check "file-size limit set" grep -Eq "^Max file size\s+1048576\s+1048576\s" /proc/$P/limits
check "the VMM got --id and the flags after --" \
	[ "$(tr '\0' ' ' </proc/$P/cmdline)" = "$NAME --id $ID --api-sock /api.sock " ]
check "environment is empty" [ ! -s /proc/$P/environ ]
# The jailer got fd 7 from this shell (and any environment); neither may
# reach the VMM.
check "an fd inherited by the jailer (7) did not reach the VMM" \
	bash -c "! ls -l /proc/$P/fd | grep -q inherited-fd"
if "$JAILER" --cleanup --id "$ID" --exec-file "$VMM" --chroot-base-dir "$BASE" >"$T/c.log" 2>&1; then
	bad "--cleanup of a running jail was accepted"
else
	check "--cleanup of a running jail is refused, clearly" grep -q "still holds process" "$T/c.log"
	check "... and removes nothing" [ -S "$ROOT/api.sock" ]
fi

# 2. Refusals: each a clear error, nothing changed.
refuse() {      # refuse NAME PATTERN JAILER-ARGS...
	local what=$1 pat=$2; shift 2
	local before after
	before=$(snapshot)
	if "$JAILER" "$@" >"$T/r.log" 2>&1; then
		bad "$what: accepted"; return
	fi
	after=$(snapshot)
	if ! grep -q -- "$pat" "$T/r.log"; then
		bad "$what: message lacks '$pat': $(cat "$T/r.log" | head -1)"
	elif [ "$before" != "$after" ]; then
		bad "$what: changed files: $(diff <(echo "$before") <(echo "$after") | head -5)"
	else
		ok "$what refused: $(head -1 "$T/r.log")"
	fi
}
common=(--exec-file "$VMM" --uid $JUID --gid $JGID --chroot-base-dir "$BASE")
refuse "id with '/'" "found '/'" --id "a/b" "${common[@]}"
refuse "id climbing out with '../'" "--id may hold only" --id "../../etc" "${common[@]}"
refuse "id '..'" "--id may hold only" --id ".." "${common[@]}"
refuse "id of 65 characters" "more than 64" --id "$(printf 'a%.0s' $(seq 65))" "${common[@]}"
refuse "empty id" "--id is empty" --id "" "${common[@]}"
refuse "an existing jail" "already exists" --id "$ID" "${common[@]}" -- --api-sock /api2.sock
refuse "missing exec file" "No such file" --id jt-x "${common[@]/$VMM/$T/nope}"
refuse "missing cgroup v1 controller" "has no cgroup v1 hierarchy" --id jt-nc "${common[@]}" \
	--cgroup nosuch.max=1
refuse "bad cgroup syntax" "key=value" --id jt-bs "${common[@]}" --cgroup pids.max
refuse "bad resource limit" "--resource-limit" --id jt-rl "${common[@]}" --resource-limit fsize=-1
if grep -q pids /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null; then
	skp "cgroup2 has the pids controller here: no missing-controller case for v2"
else
	refuse "missing cgroup v2 controller" "not available in the cgroup2" --id jt-nc2 \
		"${common[@]}" --cgroup-version 2 --cgroup pids.max=10
fi
# A symlink planted at the exec destination of a pre-staged jail.
mkdir -p "$BASE/$NAME/jt-sym/root"
ln -s /etc/hostname "$BASE/$NAME/jt-sym/root/$NAME"
host_before=$(sha256sum /etc/hostname)
refuse "symlink at the exec destination" "symlink is planted" --id jt-sym "${common[@]}"
check "... the symlink's target is untouched" [ "$(sha256sum /etc/hostname)" = "$host_before" ]
check "... and the symlink is still a symlink" [ -L "$BASE/$NAME/jt-sym/root/$NAME" ]
rm -rf "$BASE/$NAME/jt-sym"
# A symlink in place of the jail's root directory.
mkdir -p "$BASE/$NAME/jt-sym2"; ln -s /tmp "$BASE/$NAME/jt-sym2/root"
refuse "symlink as the jail root" "symlink or not a directory" --id jt-sym2 "${common[@]}"
rm -rf "$BASE/$NAME/jt-sym2"
# A value the kernel refuses: everything this run made is undone.
refuse "a cgroup value the kernel refuses (rolled back)" "pids.max" --id jt-kv "${common[@]}" \
	--cgroup pids.max=banana
refuse "unknown netns (before anything is made)" "network namespace" --id jt-nn "${common[@]}" \
	--netns /var/run/netns/wisp-none-$$
# Exec files that could not be exec'd in the jail, found before the
# privileges go (an exec that fails after that could not be undone).
mkdir -p "$T/bin"
printf '#!/bin/sh\necho hi\n' >"$T/bin/script"; chmod 755 "$T/bin/script"
printf 'int main(void) { return 0; }\n' >"$T/bin/dyn.c"
cc -o "$T/bin/dyn" "$T/bin/dyn.c" || bad "build a dynamic executable"
printf 'MZ\220\0 not a Linux executable\n' >"$T/bin/junk"; chmod 755 "$T/bin/junk"
refuse "a dynamic exec file (no interpreter in the jail)" "dynamically linked: its interpreter" \
	--id jt-dyn --exec-file "$T/bin/dyn" --uid $JUID --gid $JGID --chroot-base-dir "$BASE"
refuse "a #! script whose interpreter is not in the jail" "a script for /bin/sh, which is not in the jail" \
	--id jt-scr --exec-file "$T/bin/script" --uid $JUID --gid $JGID --chroot-base-dir "$BASE"
refuse "an exec file of no format the kernel runs" "neither an ELF executable nor a #! script" \
	--id jt-junk --exec-file "$T/bin/junk" --uid $JUID --gid $JGID --chroot-base-dir "$BASE"
mkdir -p "$T/noexec"
if mount -t tmpfs -o noexec,size=64m none "$T/noexec"; then
	refuse "a base directory on a noexec mount" "noexec mount" --id jt-nx --exec-file "$VMM" \
		--uid $JUID --gid $JGID --chroot-base-dir "$T/noexec/jails"
	check "... and nothing made there" [ -z "$(ls -A "$T/noexec")" ]
	umount "$T/noexec"
else
	bad "mount a noexec tmpfs"
fi
mkdir -p "$BASE/$NAME/jt-pid/root"; : >"$BASE/$NAME/jt-pid/root/$NAME.pid"
refuse "--new-pid-ns with a pid file already in the jail" "already has a pid file" --id jt-pid \
	"${common[@]}" --new-pid-ns
rm -rf "$BASE/$NAME/jt-pid"

# 2b. Failures after the jail is made: exit 1, the step named on the
# caller's stderr (also from a daemonized child, whose own stderr is
# /dev/null), everything this run made undone (directories, copy, device
# nodes, cgroups and the parent cgroup levels it created); pre-staged files
# stay; then the same --id starts.
undone() {      # undone NAME PATTERN COMMAND... (JAILER-ARGS... when it starts with -)
	local what=$1 pat=$2; shift 2
	local before after rc
	[ "${1:0:1}" = - ] && set -- "$JAILER" "$@"
	before=$(snapshot)
	"$@" >"$T/u.log" 2>&1
	rc=$?
	sleep 0.1       # a child that outlived its parent would show up now
	after=$(snapshot)
	if [ "$rc" != 1 ]; then
		bad "$what: exit $rc, expected 1: $(head -1 "$T/u.log")"
	elif ! grep -q -- "$pat" "$T/u.log"; then
		bad "$what: message lacks '$pat': $(head -1 "$T/u.log")"
	elif [ "$before" != "$after" ]; then
		bad "$what: left behind: $(diff <(echo "$before") <(echo "$after") | grep '^>' | head -5)"
	else
		ok "$what: undone: $(head -1 "$T/u.log")"
	fi
}
UID_=jt-undo-$$
ucommon=(--id "$UID_" "${common[@]}" --parent-cgroup jt-undo/sub)
# A pre-staged jail whose /dev/kvm is taken: mknod fails after pivot_root.
mkdir -p "$BASE/$NAME/$UID_/root/dev"; : >"$BASE/$NAME/$UID_/root/dev/kvm"
echo kernel >"$BASE/$NAME/$UID_/root/vmlinux"
undone "after pivot_root (a file in the way of /dev/kvm)" "mknod /dev/kvm" "${ucommon[@]}" \
	--cgroup pids.max=64 -- --api-sock /api.sock
check "... the pre-staged files stay" \
	bash -c "[ -f '$BASE/$NAME/$UID_/root/vmlinux' ] && [ -f '$BASE/$NAME/$UID_/root/dev/kvm' ]"
rm -f "$BASE/$NAME/$UID_/root/dev/kvm"
# The jail's own pids.max never limits the jailer (its processes stay out of
# the jail's cgroups, see 2c): a fork is made to fail by starting the jailer
# in a cgroup of the caller's whose pids.max it fills.
OUTER=/sys/fs/cgroup/pids/jt-outer-$$
mkdir "$OUTER" || bad "create $OUTER"
printf '#!/bin/bash\necho "$1" >%s/pids.max && echo 0 >%s/cgroup.procs || exit 99\nshift\nexec "$@"\n' \
	"$OUTER" "$OUTER" >"$T/outer.sh"
undone "--daemonize, its fork refused (the caller's pids.max=1)" "fork to daemonize" \
	bash "$T/outer.sh" 1 "$JAILER" "${ucommon[@]}" --cgroup pids.max=64 --daemonize \
	-- --api-sock /api.sock
undone "--new-pid-ns, its fork refused (the caller's pids.max=1)" "fork into the new PID namespace" \
	bash "$T/outer.sh" 1 "$JAILER" "${ucommon[@]}" --cgroup pids.max=64 --new-pid-ns \
	-- --api-sock /api.sock
undone "--daemonize --new-pid-ns: the daemon's fork refused (the caller's pids.max=2), told by the parent" \
	"fork into the new PID namespace: Resource temporarily unavailable" \
	bash "$T/outer.sh" 2 "$JAILER" "${ucommon[@]}" --cgroup pids.max=64 --daemonize --new-pid-ns \
	-- --api-sock /api.sock
rm -rf "$BASE/$NAME/$UID_"
"$JAILER" "${ucommon[@]}" --cgroup pids.max=64 --daemonize --new-pid-ns -- --api-sock /api.sock \
	>"$T/u.log" 2>&1
rc=$?
UP=$(cat "$BASE/$NAME/$UID_/root/$NAME.pid" 2>/dev/null)
if [ "$rc" = 0 ] && [ -n "$UP" ] && wait_sock "$BASE/$NAME/$UID_/root/api.sock"; then
	PIDS+=("$UP")
	ok "the same --id starts after those failures (VMM $UP)"
	kill -9 "$UP"; for _ in $(seq 50); do [ -d /proc/$UP ] || break; sleep 0.05; done
	check "... and cleans up" "$JAILER" --cleanup --id "$UID_" --exec-file "$VMM" \
		--chroot-base-dir "$BASE" --parent-cgroup jt-undo/sub
else
	bad "the same --id after those failures: exit $rc: $(cat "$T/u.log")"
fi

# 2c. The jail's cgroups hold the VMM alone: with --daemonize or
# --new-pid-ns the jailer that waits for the exec (and the daemon that forks
# into the PID namespace) stay outside them, so cgroup.procs names only the
# VMM and a pids.max that fits exactly the VMM's tasks is enough (a waiting
# jailer counted in it would make the VMM's fork or thread fail).
VMM_TASKS=1     # the stand-in: one thread
[ "$REAL_VMM" = 1 ] && VMM_TASKS=2      # wisp-vmm before InstanceStart: main + API thread
V2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
alone_n=0
vmm_alone() {   # vmm_alone NAME CGROUP-VERSION JAILER-FLAGS...
	local what=$1 ver=$2; shift 2
	alone_n=$((alone_n + 1))
	local id=jt-alone-$alone_n-$$ rc dirs=() vp procs n limit=0
	local root=$BASE/$NAME/$id/root
	if [ "$ver" = 1 ]; then
		dirs=(/sys/fs/cgroup/pids/$NAME/$id /sys/fs/cgroup/cpu/$NAME/$id)
		set -- --cgroup pids.max=$VMM_TASKS --cgroup cpu.shares=512 "$@"
		limit=1
	else
		dirs=("$V2/$NAME/$id")
		if grep -qw pids "$V2/cgroup.controllers"; then
			set -- --cgroup pids.max=$VMM_TASKS "$@"
			limit=1
		fi
	fi
	"$JAILER" --id "$id" "${common[@]}" --cgroup-version "$ver" "$@" -- --api-sock /api.sock \
		>"$T/a.log" 2>&1
	rc=$?
	if [ "$rc" != 0 ] || ! wait_sock "$root/api.sock"; then
		bad "$what: exit $rc, no API socket: $(head -1 "$T/a.log")"
		return
	fi
	# The VMM: the pid file's (--new-pid-ns), else the one process of its
	# cgroup whose command line is the VMM's.
	vp=$(cat "$root/$NAME.pid" 2>/dev/null)
	[ -n "$vp" ] || vp=$(head -1 "${dirs[0]}/cgroup.procs")
	if [ -z "$vp" ] || [ "$(tr '\0' ' ' </proc/$vp/cmdline 2>/dev/null)" != "$NAME --id $id --api-sock /api.sock " ]; then
		bad "$what: no VMM found (pid '${vp}')"
		return
	fi
	PIDS+=("$vp")
	# Its threads come after the socket: wait (5 s at most) until they are all there.
	for _ in $(seq 100); do
		n=$(ls /proc/$vp/task 2>/dev/null | wc -l)
		[ "$n" -ge "$VMM_TASKS" ] && break
		sleep 0.05
	done
	for d in "${dirs[@]}"; do
		procs=$(sort -u "$d/cgroup.procs" | tr '\n' ' ')
		check "$what: $d/cgroup.procs holds only the VMM ($procs)" [ "$procs" = "$vp " ]
	done
	if [ "$limit" = 1 ]; then
		check "$what: pids.max=$VMM_TASKS fits the VMM: it runs with its $VMM_TASKS tasks ($n), no fork refused ($(grep max "${dirs[0]}/pids.events"))" \
			bash -c "[ -d /proc/$vp ] && [ '$n' = $VMM_TASKS ] && grep -qx 'max 0' '${dirs[0]}/pids.events'"
	fi
	kill -9 "$vp"; for _ in $(seq 100); do [ -d /proc/$vp ] || break; sleep 0.05; done
	check "$what: --cleanup" "$JAILER" --cleanup --id "$id" --exec-file "$VMM" --chroot-base-dir "$BASE" \
		--cgroup-version "$ver"
}
vmm_alone "v1 --daemonize" 1 --daemonize
vmm_alone "v1 --new-pid-ns" 1 --new-pid-ns
vmm_alone "v1 --daemonize --new-pid-ns" 1 --daemonize --new-pid-ns
if [ -n "$V2" ]; then
	vmm_alone "v2 --daemonize" 2 --daemonize
	vmm_alone "v2 --new-pid-ns" 2 --new-pid-ns
	vmm_alone "v2 --daemonize --new-pid-ns" 2 --daemonize --new-pid-ns
else
	skp "the VMM alone in a v2 cgroup: no cgroup2 hierarchy mounted"
fi

# 3. Stop and clean up: nothing remains.
kill "$P"; wait "$P" 2>/dev/null
if "$JAILER" --cleanup --id "$ID" --exec-file "$VMM" --chroot-base-dir "$BASE" >"$T/c.log" 2>&1; then
	ok "--cleanup succeeded"
else
	bad "--cleanup failed: $(cat "$T/c.log")"
fi
check "jail directory removed" [ ! -e "$BASE/$NAME/$ID" ]
check "exec-name directory removed with its last jail" [ ! -e "$BASE/$NAME" ]
check "cgroups removed" bash -c "! ls -d /sys/fs/cgroup/*/$NAME/$ID 2>/dev/null | grep -q ."
check "default parent cgroup removed with its last jail" bash -c "! ls -d /sys/fs/cgroup/*/$NAME 2>/dev/null | grep -q ."
check "cleanup of a jail that is gone succeeds" "$JAILER" --cleanup --id "$ID" --exec-file "$VMM" --chroot-base-dir "$BASE"

# 4. cgroup v2, a parent cgroup, --daemonize and --new-pid-ns.
ID2=jt-v2-$$
V2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
if [ -z "$V2" ]; then
	skp "no cgroup2 hierarchy mounted"
else
	"$JAILER" --id "$ID2" --exec-file "$VMM" --uid $JUID --gid $JGID --chroot-base-dir "$BASE" \
		--cgroup-version 2 --parent-cgroup jt-parent/sub --daemonize --new-pid-ns \
		-- --api-sock /api.sock >"$T/v2.log" 2>&1
	rc=$?
	check "daemonized jailer returns 0 at once" [ "$rc" = 0 ]
	R2=$BASE/$NAME/$ID2/root
	wait_sock "$R2/api.sock"
	P2=$(cat "$R2/$NAME.pid" 2>/dev/null)
	if [ -n "$P2" ] && [ -d "/proc/$P2" ]; then
		PIDS+=("$P2")
		ok "pid file $NAME.pid names the running VMM ($P2)"
		check "VMM is pid 1 in a new PID namespace" grep -Eq "^NSpid:\s+$P2\s+1$" /proc/$P2/status
		check "in the cgroup2 jt-parent/sub/<id>" grep -q "^0::/jt-parent/sub/$ID2$" /proc/$P2/cgroup
		check "daemonized: stdin/stdout/stderr on /dev/null" \
			[ "$(readlink /proc/$P2/fd/0)$(readlink /proc/$P2/fd/1)$(readlink /proc/$P2/fd/2)" = /dev/null/dev/null/dev/null ]
		check "daemonized: a session of its own, not the caller's" \
			[ "$(awk '{print $6}' /proc/$P2/stat)" != "$(awk '{print $6}' /proc/$$/stat)" ]
		check "caps empty in the daemonized jail too" grep -Eq "^CapEff:\s+0000000000000000$" /proc/$P2/status
		kill -9 "$P2"; for _ in $(seq 50); do [ -d /proc/$P2 ] || break; sleep 0.05; done
		check "--cleanup (v2, parent cgroup)" "$JAILER" --cleanup --id "$ID2" --exec-file "$VMM" \
			--chroot-base-dir "$BASE" --parent-cgroup jt-parent/sub --cgroup-version 2
		check "v2 cgroup removed" [ ! -e "$V2/jt-parent/sub/$ID2" ]
		check "a given parent cgroup is left for its owner" [ -d "$V2/jt-parent/sub" ]
		check "v2 jail directory removed" [ ! -e "$BASE/$NAME/$ID2" ]
	else
		bad "daemonized jail did not start: $(cat "$T/v2.log")"
	fi
fi

# 5. Seccomp bites on the API thread (needs the real VMM). The VMM thread's
# filter is loaded at InstanceStart and the vCPU threads' before their first
# KVM_RUN: both need KVM, checked below with a tiny guest where the host's
# /dev/kvm runs it, and by lane case 70-seccomp.
if [ "$REAL_VMM" = 1 ]; then
	timeout -k 2 20 "$VMM" --api-sock "$T/sc-api.sock" --seccomp-selftest api >"$T/sc-api.log" 2>&1
	rc=$?
	check "seccomp: forbidden syscall on the API thread exits 148 (got $rc)" [ "$rc" = 148 ]
	check "seccomp: the API thread's violation names execve" \
		grep -q "the api thread called the forbidden syscall execve" "$T/sc-api.log"
	timeout -k 2 20 "$VMM" --api-sock "$T/sc-off.sock" --no-seccomp --seccomp-selftest api \
		>"$T/sc-off.log" 2>&1
	rc=$?
	check "--no-seccomp: the API thread's call is not stopped: exit 1 (got $rc), said so" \
		bash -c "[ $rc = 1 ] && grep -q 'seccomp filters are off' '$T/sc-off.log' && grep -q 'execve on the api thread was not stopped' '$T/sc-off.log'"
	"$VMM" --no-api --config-file /nonexistent --seccomp-selftest api >"$T/sc-bad.log" 2>&1
	rc=$?
	check "--seccomp-selftest api with --no-api: bad flags, 153 (got $rc)" \
		bash -c "[ $rc = 153 ] && grep -q 'needs the API thread' '$T/sc-bad.log'"
	check "--help documents --seccomp-selftest and its exit codes" \
		bash -c "'$VMM' --help | grep -A5 -- '--seccomp-selftest vmm|api|vcpu' | grep -q 'exits 1'"
else
	skp "seccomp on the API thread: needs wisp-vmm serving its API here (vCPU/VMM threads: lane case 70-seccomp)"
fi

# The VMM and vCPU threads, with the tiny hello guest on the host's KVM.
HELLO=$PWD/$BUILD/guests/hello.elf
printf '{"boot-source": {"kernel_image_path": "%s", "boot_args": "console=ttyS0"},\n "machine-config": {"vcpu_count": 1, "mem_size_mib": 32}}\n' \
	"$HELLO" >"$T/hello.json"
runvm() {       # runvm NAME VMM-ARGS...: sets rc, output in $T/NAME.out
	local name=$1; shift
	timeout -k 2 30 "$PWD/$BUILD/bin/wisp-vmm" --no-api --config-file "$T/hello.json" "$@" \
		</dev/null >"$T/$name.out" 2>&1
	rc=$?
}
hello='hello from the wisp tiny guest'
if [ "$REAL_VMM" = 1 ] && [ -c /dev/kvm ] && [ -f "$HELLO" ] && runvm hello-on &&
   grep -q "$hello" "$T/hello-on.out"; then
	ok "seccomp: the hello guest runs to its exit with every filter on"
	for kind in vmm vcpu; do
		runvm "on-$kind" --seccomp-selftest $kind
		check "seccomp: forbidden execve on the $kind thread exits 148, named (got $rc)" \
			bash -c "[ $rc = 148 ] && grep -q 'the $kind thread called the forbidden syscall execve (59)' '$T/on-$kind.out'"
		runvm "off-$kind" --no-seccomp --seccomp-selftest $kind
		check "--no-seccomp: the $kind thread's call is not stopped: exit 1 (got $rc), said so" \
			bash -c "[ $rc = 1 ] && grep -q 'seccomp filters are off' '$T/off-$kind.out' && grep -q 'execve on the $kind thread was not stopped' '$T/off-$kind.out'"
		# The vCPUs wait for the VMM thread's filter: when it cannot be
		# loaded, the guest never runs.
		check "... the guest never ran without the $kind thread's filter" \
			bash -c "! grep -q '$hello' '$T/off-$kind.out'"
	done
else
	skp "seccomp on the VMM and vCPU threads: the hello guest does not run on this host's /dev/kvm (lane case 70-seccomp checks them)"
fi

finish
