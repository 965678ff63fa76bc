#!/usr/bin/env bash
# Build the guest root filesystems, reproducibly and without mounting anything:
#   images/out/rootfs.ext4         ext4 (mkfs.ext4 -d) with busybox and an init
#   images/out/initramfs.cpio.gz   busybox and the same init as /init
# Both come from busybox-static and images/rootfs/init.sh. When the agent is
# built (build/bin/wisp-agent, or $WISP_AGENT), the rootfs gets it as
# /sbin/init and keeps the script as /sbin/wisp-test-init. Files in
# images/rootfs/handlers/ land in /usr/lib/wisp/handlers/ (sample function
# handlers for the agent).
#
# Reproducible: fixed mtimes (SOURCE_DATE_EPOCH, default 1: mke2fs treats 0 as "now"), sorted entries,
# fixed ext4 UUID and hash seed, faked mkfs time. Same inputs, same bytes.
#   WISP_ROOTFS_SIZE   ext4 image size (default 64M)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
out=$here/out
epoch=${SOURCE_DATE_EPOCH:-1}
size=${WISP_ROOTFS_SIZE:-64M}
agent=${WISP_AGENT:-$repo/build/bin/wisp-agent}
busybox=/bin/busybox
# Fixed identifiers so two builds produce the same image.
uuid=5749535f-524f-4f54-4653-000000000001
hash_seed=5749535f-4841-5348-5345-000000000001

die() { echo "build-rootfs: $*" >&2; exit 1; }
[ -x "$busybox" ] && "$busybox" --list >/dev/null 2>&1 || die "$busybox missing: install busybox-static"
file -L "$busybox" 2>/dev/null | grep -q 'statically linked' || ldd "$busybox" 2>&1 | grep -q 'not a dynamic' \
	|| die "$busybox is not static: install busybox-static"
command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 missing: install e2fsprogs"
command -v cpio >/dev/null || die "cpio missing"

mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/wisp-rootfs.XXXXXX")
trap 'rm -rf "$work"' EXIT

# populate DIR: the tree both images share.
populate() {
	local d=$1
	mkdir -p "$d"/{bin,sbin,usr/bin,usr/sbin,etc,dev,proc,sys,tmp,run,root,var,mnt,usr/lib/wisp/handlers}
	chmod 1777 "$d/tmp"
	chmod 700 "$d/root"
	cp "$busybox" "$d/bin/busybox"
	# One symlink per applet, where busybox would install it.
	local a
	while read -r a; do
		[ "$a" = bin/busybox ] && continue
		local rel=../bin/busybox
		case $a in
		bin/*) rel=busybox ;;
		sbin/*) rel=../bin/busybox ;;
		usr/bin/*|usr/sbin/*) rel=../../bin/busybox ;;
		esac
		[ -e "$d/$a" ] || ln -s "$rel" "$d/$a"
	done < <("$busybox" --list-full | LC_ALL=C sort)
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$d/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' > "$d/etc/group"
	echo wisp > "$d/etc/hostname"
	printf '127.0.0.1 localhost\n' > "$d/etc/hosts"
	: > "$d/etc/fstab"
	if [ -d "$here/rootfs/handlers" ]; then
		find "$here/rootfs/handlers" -mindepth 1 -maxdepth 1 ! -name '.*' ! -name README.md -print0 | LC_ALL=C sort -z |
			xargs -0 -r cp -a -t "$d/usr/lib/wisp/handlers/"
	fi
}

# normalize DIR: owner root, fixed mtimes (links too).
normalize() {
	chown -R -h 0:0 "$1" 2>/dev/null || true
	find "$1" -exec touch -h -d "@$epoch" {} +
}

# --- initramfs -------------------------------------------------------------
ird=$work/initramfs
populate "$ird"
install -m 0755 "$here/rootfs/init.sh" "$ird/init"
normalize "$ird"
( cd "$ird" && find . -mindepth 1 | LC_ALL=C sort |
	cpio --quiet -o -H newc --reproducible --owner=0:0 ) | gzip -9 -n > "$work/initramfs.cpio.gz"
mv -f "$work/initramfs.cpio.gz" "$out/initramfs.cpio.gz"

# --- rootfs.ext4 -------------------------------------------------------------
rfs=$work/rootfs
populate "$rfs"
if [ -x "$agent" ]; then
	install -m 0755 "$agent" "$rfs/sbin/init"
	install -m 0755 "$here/rootfs/init.sh" "$rfs/sbin/wisp-test-init"
	what="wisp-agent as /sbin/init"
else
	rm -f "$rfs/sbin/init"
	install -m 0755 "$here/rootfs/init.sh" "$rfs/sbin/init"
	what="the test init script as /sbin/init (no $agent yet)"
fi
normalize "$rfs"
rm -f "$work/rootfs.ext4"
E2FSPROGS_FAKE_TIME=$epoch mkfs.ext4 -q -F -L wisp-root -U "$uuid" \
	-E "hash_seed=$hash_seed,root_owner=0:0" -T default -I 256 -O ^metadata_csum_seed \
	-d "$rfs" "$work/rootfs.ext4" "$size"
# mkfs.ext4 -d copies each file's ctime from the host (the time this script
# ran): pin every ctime (and its nanoseconds) to the epoch.
( cd "$rfs" && find . | LC_ALL=C sort | sed 's|^\.||; s|^$|/|' |
	while read -r p; do
		printf 'sif "%s" ctime @%s\nsif "%s" ctime_extra 0\n' "$p" "$epoch" "$p"
	done ) > "$work/pin-ctime.cmds"
E2FSPROGS_FAKE_TIME=$epoch debugfs -w -f "$work/pin-ctime.cmds" "$work/rootfs.ext4" >/dev/null 2>"$work/debugfs.err" ||
	die "debugfs: $(cat "$work/debugfs.err")"
e2fsck -fn "$work/rootfs.ext4" >/dev/null 2>&1 || die "the built rootfs.ext4 does not pass e2fsck"
mv -f "$work/rootfs.ext4" "$out/rootfs.ext4"
echo "build-rootfs: images/out/rootfs.ext4 ($what) and images/out/initramfs.cpio.gz"
