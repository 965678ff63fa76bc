#!/usr/bin/env bash
# Build the wisp guest kernel (vmlinux and bzImage) from Debian's linux-source
# package: `make tinyconfig`, merge images/kernel/wisp.config, check that every
# option of the fragment made it into the final .config, build.
#
# The result is cached in ${WISP_CACHE:-/var/cache/wisp}/kernel/<key>/, where
# <key> hashes the fragment, this recipe's version, the source package version
# and the compiler version; the cache lives outside the repository so fresh
# clones on the same machine reuse it. Output: images/out/{vmlinux,bzImage,
# kernel.config}.
#
#   images/build-kernel.sh            build (or reuse the cached build)
#   images/build-kernel.sh --key      print the cache key and exit
#   WISP_KERNEL_JOBS=N                parallel jobs (default 2)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$here/out
cache=${WISP_CACHE:-/var/cache/wisp}
jobs=${WISP_KERNEL_JOBS:-2}
src_tar=/usr/src/linux-source-6.1.tar.xz
frag=$here/kernel/wisp.config
# Bump when the build steps below change in a way that changes the output.
recipe=1

die() { echo "build-kernel: $*" >&2; exit 1; }

[ -r "$src_tar" ] || die "$src_tar missing: install linux-source-6.1 (scripts/deps.sh)"
srcver=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null) || die "linux-source-6.1 is not installed"
ccver=$(${CC:-gcc} -dumpfullversion 2>/dev/null || ${CC:-gcc} -dumpversion)
key=$( { echo "recipe=$recipe src=$srcver cc=$ccver"; cat "$frag"; } | sha256sum | cut -c1-16)
if [ "${1:-}" = --key ]; then echo "$key"; exit 0; fi

mkdir -p "$cache" "$out"
dest=$cache/kernel/$key

install_out() {
	# Copy (not link) so images/out survives a cache wipe; skip when identical.
	for f in vmlinux bzImage kernel.config; do
		if ! cmp -s "$dest/$f" "$out/$f"; then
			cp "$dest/$f" "$out/$f.tmp"
			mv -f "$out/$f.tmp" "$out/$f"
		fi
	done
	echo "$key" > "$out/kernel.key"
	echo "build-kernel: images/out/vmlinux and bzImage (key $key)"
}

if [ -f "$dest/done" ]; then
	install_out
	exit 0
fi

# One builder at a time per cache (demo and test may start together).
exec 9>"$cache/kernel.lock"
flock 9
if [ -f "$dest/done" ]; then install_out; exit 0; fi

# Unpack the source once per source version.
srcdir=$cache/src/linux-source-6.1-$srcver
if [ ! -f "$srcdir/.unpacked" ]; then
	echo "build-kernel: unpacking $src_tar (once per source version)"
	rm -rf "$srcdir" "$srcdir.tmp"
	mkdir -p "$srcdir.tmp"
	tar -C "$srcdir.tmp" -xf "$src_tar" --strip-components=1
	mv "$srcdir.tmp" "$srcdir"
	touch "$srcdir/.unpacked"
fi

bdir=$cache/kernel-build/$key
rm -rf "$bdir"
mkdir -p "$bdir"
t0=$(date +%s)
kmake() { make -s -C "$srcdir" O="$bdir" ARCH=x86_64 KBUILD_BUILD_USER=wisp \
	KBUILD_BUILD_HOST=wisp KBUILD_BUILD_TIMESTAMP="1970-01-01" "$@"; }

echo "build-kernel: configuring (tinyconfig + images/kernel/wisp.config)"
kmake tinyconfig >/dev/null
"$srcdir/scripts/kconfig/merge_config.sh" -m -O "$bdir" "$bdir/.config" "$frag" >/dev/null
kmake olddefconfig >/dev/null

# Every line of the fragment must hold in the final configuration.
bad=0
while IFS= read -r line; do
	case $line in
	CONFIG_*=*)
		grep -qxF "$line" "$bdir/.config" || { echo "build-kernel: $line did not stick (got: $(grep -E "^(# )?${line%%=*}[= ]" "$bdir/.config" || echo unset))" >&2; bad=1; } ;;
	"# CONFIG_"*" is not set")
		opt=${line#\# }; opt=${opt%% *}
		if grep -qE "^$opt=" "$bdir/.config"; then echo "build-kernel: $opt should be off" >&2; bad=1; fi ;;
	esac
done < "$frag"
[ "$bad" -eq 0 ] || die "the configuration does not match images/kernel/wisp.config"

echo "build-kernel: make -j$jobs vmlinux bzImage (several minutes on 2 cores)"
kmake -j"$jobs" vmlinux bzImage

mkdir -p "$dest.tmp"
cp "$bdir/vmlinux" "$dest.tmp/vmlinux"
cp "$bdir/arch/x86/boot/bzImage" "$dest.tmp/bzImage"
cp "$bdir/.config" "$dest.tmp/kernel.config"
t1=$(date +%s)
echo "$((t1 - t0))" > "$dest.tmp/build-seconds"
rm -rf "$dest"
mv "$dest.tmp" "$dest"
touch "$dest/done"
rm -rf "$bdir"
echo "build-kernel: built in $((t1 - t0)) s"
install_out
