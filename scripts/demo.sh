#!/usr/bin/env bash
# The README's first command: install the Debian packages, build wisp, build
# the guest kernel and root filesystems, then do the main job on the built-in
# defaults: boot a microVM with wisp-vmm (the ext4 root filesystem on
# virtio-blk, wisp-agent as its init, a vsock device), invoke a sample
# function in it from the host over the agent protocol, show its answer, and
# shut the microVM down. That is lane case 83-demo-function, which also runs
# with every test run. Where KVM is hardware-assisted it runs right here;
# elsewhere (these build machines) inside the nested lane's L2
# (tests/lane/README.md).
#
#   bash scripts/demo.sh [MESSAGE]    MESSAGE: the function's input
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
step() { echo; echo "=== demo: $* ($(( $(date +%s) - t0 ))s)"; }

step "packages (scripts/deps.sh)"
bash scripts/deps.sh
step "build (make -j2)"
make -s -j2 all
step "guest kernel (images/build-kernel.sh: several minutes the first time, cached after)"
images/build-kernel.sh
step "guest root filesystems (images/build-rootfs.sh)"
images/build-rootfs.sh

hw_kvm() {
	{ [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; } && [ -c /dev/kvm ] &&
		{ exec 3<>/dev/kvm; } 2>/dev/null && exec 3>&-
}
case_name=83-demo-function
if [ $# -gt 0 ]; then export WISP_DEMO_MESSAGE="$*"; fi
if hw_kvm; then
	step "hardware KVM: booting a microVM here and invoking a function in it"
	tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
	( cd tests && WISP_BIN=$PWD/../build/bin WISP_GUESTS=$PWD/../build/guests \
		WISP_IMAGES=$PWD/../images/out WISP_TMP=$tmp WISP_LANE_MODE=direct \
		timeout 300 bash "lane/cases/$case_name.sh" </dev/null )
else
	step "no hardware KVM here: the same inside the nested lane (QEMU L2 with kvm-amd)"
	echo "The lane first boots its L2 (tens of seconds); the demo's own output (lines"
	echo "starting with 'demo:') is printed once case $case_name has ended."
	WISP_LANE_NO_BUILD=1 WISP_LANE_VERBOSE=1 bash tests/lane/run.sh "$case_name"
fi
step "done"
