#!/usr/bin/env bash
# The README's first command: install the Debian packages, build wisp, build
# the guest kernel and root filesystems, then boot a microVM with wisp-vmm
# and show the guest answering. Where KVM is hardware-assisted the microVM
# boots right here; elsewhere (these build machines) it boots inside the
# nested lane's L2 (tests/lane/README.md).
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
if hw_kvm; then
	step "booting the stripped kernel with wisp-vmm (2 vCPUs, 256 MiB)"
	tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
	cat > "$tmp/vm.json" <<JSON
{
  "boot-source": {
    "kernel_image_path": "$PWD/images/out/vmlinux",
    "initrd_path": "$PWD/images/out/initramfs.cpio.gz",
    "boot_args": "console=ttyS0 reboot=k panic=-1 wisp.test=info"
  },
  "machine-config": {"vcpu_count": 2, "mem_size_mib": 256}
}
JSON
	timeout 60 build/bin/wisp-vmm --no-api --config-file "$tmp/vm.json" </dev/null | tee "$tmp/console"
	grep -q 'wisp-init: vcpus=2' "$tmp/console"
else
	step "no hardware KVM here: booting it inside the nested lane (QEMU L2 with kvm-amd)"
	WISP_LANE_NO_BUILD=1 WISP_LANE_VERBOSE=1 bash tests/lane/run.sh 20-linux-guest-view
fi
step "done"
