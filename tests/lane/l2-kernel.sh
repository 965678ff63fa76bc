#!/usr/bin/env bash
# Print the directory of an unpacked Debian cloud kernel for the nested
# lane's L2 (it has boot/vmlinuz-* and lib/modules/*/kernel/...), fetching it
# with `apt-get download` the first time. Cached in
# ${WISP_CACHE:-/var/cache/wisp}/l2/<package>/ so later runs (and fresh
# clones on the same machine) need no network. Never installs into /boot.
set -euo pipefail
cache=${WISP_CACHE:-/var/cache/wisp}/l2
mkdir -p "$cache"
die() { echo "l2-kernel: $*" >&2; exit 1; }

# The versioned package the cloud metapackage points at today.
pick() {
	apt-cache depends linux-image-cloud-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-cloud-amd64\)$/\1/p' | head -n1
}
pkg=$(pick || true)
if [ -z "$pkg" ] && [ "$(id -u)" -eq 0 ]; then
	apt-get update -q >/dev/null 2>&1 || true
	pkg=$(pick || true)
fi
if [ -z "$pkg" ]; then
	# apt knows no cloud kernel (offline?): fall back to the newest cached one.
	dir=$(ls -d "$cache"/linux-image-*-cloud-amd64 2>/dev/null | sort -V | tail -n1 || true)
	[ -n "$dir" ] && [ -f "$dir/.unpacked" ] || die "apt offers no linux-image-cloud-amd64 and nothing is cached in $cache"
	echo "$dir"; exit 0
fi
dir=$cache/$pkg
if [ ! -f "$dir/.unpacked" ]; then
	exec 9>"$cache/.lock"; flock 9
	if [ ! -f "$dir/.unpacked" ]; then
		dl=$(mktemp -d "$cache/dl.XXXXXX")
		echo "l2-kernel: apt-get download $pkg" >&2
		( cd "$dl" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2 ) || { rm -rf "$dl"; die "apt-get download $pkg failed"; }
		rm -rf "$dir.tmp"; mkdir -p "$dir.tmp"
		dpkg-deb -x "$dl"/*.deb "$dir.tmp"
		rm -rf "$dl" "$dir"
		mv "$dir.tmp" "$dir"
		touch "$dir/.unpacked"
	fi
fi
echo "$dir"
