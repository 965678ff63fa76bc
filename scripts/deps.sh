#!/usr/bin/env bash
# Install the Debian packages wisp needs to build, test and run (as root).
# Only packages that are missing are installed; nothing comes from anywhere
# but Debian's archive.
set -euo pipefail
PKGS=(
	build-essential pkg-config make gcc git
	libseccomp-dev libcap-dev libjansson-dev libevent-dev libcriterion-dev
	musl-tools busybox-static cpio e2fsprogs socat curl xz-utils kmod iproute2
	qemu-system-x86
	linux-source-6.1 bc flex bison libelf-dev libssl-dev
	clang libclang-rt-14-dev
)
missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: missing packages: ${missing[*]}; run as root to install them" >&2
		exit 1
	fi
	echo "deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
