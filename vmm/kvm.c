/* KVM plumbing: the VM file descriptor, memory slots, the in-kernel
 * irqchip and PIT, and the irqfd/ioeventfd helpers devices use. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "common/log.h"
#include "kvm.h"
#include "vm.h"

int kvm_ioctl(int fd, unsigned long req, void *arg)
{
	int r;
	do
		r = ioctl(fd, req, arg);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : r;
}

int kvm_open_vm(struct vm *vm, struct wisp_err *err)
{
	/* A snapshot load opens /dev/kvm itself first (its CPUID checks). */
	if (vm->kvm_fd < 0)
		vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0)
		return wisp_err_sys(err, errno, "opening /dev/kvm");
	int v = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (v != KVM_API_VERSION)
		return wisp_err_set(err, ENOTSUP, "KVM API version %d, need %d", v, KVM_API_VERSION);
	static const struct { int cap; const char *name; } caps[] = {
		{ KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP" },
		{ KVM_CAP_PIT2, "KVM_CAP_PIT2" },
		{ KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
		{ KVM_CAP_IRQFD, "KVM_CAP_IRQFD" },
		{ KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD" },
		{ KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT" },
		{ KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID" },
		{ KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR" },
	};
	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++)
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, caps[i].cap) <= 0)
			return wisp_err_set(err, ENOTSUP, "KVM lacks %s", caps[i].name);
	int fd;
	do
		fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	while (fd < 0 && errno == EINTR);
	if (fd < 0)
		return wisp_err_sys(err, errno, "KVM_CREATE_VM");
	vm->vm_fd = fd;
	int sz = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (sz < (int)sizeof(struct kvm_run))
		return wisp_err_sys(err, sz < 0 ? errno : EINVAL, "KVM_GET_VCPU_MMAP_SIZE");
	vm->vcpu_mmap_size = sz;

	/* Real-mode support pages for VMX; both sit in the MMIO gap. */
	uint64_t ident = WISP_KVM_IDENTITY_MAP_ADDR;
	int r = kvm_ioctl(fd, KVM_SET_IDENTITY_MAP_ADDR, &ident);
	if (r < 0)
		return wisp_err_sys(err, -r, "KVM_SET_IDENTITY_MAP_ADDR");
	r = ioctl(fd, KVM_SET_TSS_ADDR, (unsigned long)WISP_KVM_TSS_ADDR);
	if (r < 0)
		return wisp_err_sys(err, errno, "KVM_SET_TSS_ADDR");
	r = kvm_ioctl(fd, KVM_CREATE_IRQCHIP, NULL);
	if (r < 0)
		return wisp_err_sys(err, -r, "KVM_CREATE_IRQCHIP");
	/* The dummy speaker lets Linux's PIT calibration read port 0x61. */
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	r = kvm_ioctl(fd, KVM_CREATE_PIT2, &pit);
	if (r < 0)
		return wisp_err_sys(err, -r, "KVM_CREATE_PIT2");
	return 0;
}

int kvm_map_memory(struct vm *vm, struct wisp_err *err)
{
	for (int i = 0; i < vm->mem.nr_regions; i++) {
		const struct gmem_region *g = &vm->mem.regions[i];
		struct kvm_userspace_memory_region reg = {
			.slot = (uint32_t)i,
			.flags = vm->cfg.machine.track_dirty_pages ? KVM_MEM_LOG_DIRTY_PAGES : 0,
			.guest_phys_addr = g->gpa,
			.memory_size = g->size,
			.userspace_addr = (uint64_t)(uintptr_t)g->host,
		};
		int r = kvm_ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &reg);
		if (r < 0)
			return wisp_err_sys(err, -r, "KVM_SET_USER_MEMORY_REGION slot %d (0x%llx+%llu MiB)",
					    i, (unsigned long long)g->gpa,
					    (unsigned long long)(g->size >> 20));
	}
	return 0;
}

int vm_irqfd(struct vm *vm, int efd, unsigned int gsi, struct wisp_err *err)
{
	if (gsi > WISP_IRQ_MAX)
		return wisp_err_set(err, EINVAL, "irqfd: GSI %u out of range", gsi);
	struct kvm_irqfd req = { .fd = (uint32_t)efd, .gsi = gsi };
	int r = kvm_ioctl(vm->vm_fd, KVM_IRQFD, &req);
	if (r < 0)
		return wisp_err_sys(err, -r, "KVM_IRQFD gsi %u", gsi);
	return 0;
}

static int ioeventfd(struct vm *vm, int efd, uint64_t addr, uint32_t len, uint64_t datamatch,
		     bool match, bool deassign)
{
	struct kvm_ioeventfd req = {
		.datamatch = datamatch,
		.addr = addr,
		.len = len,
		.fd = efd,
		.flags = (match ? KVM_IOEVENTFD_FLAG_DATAMATCH : 0) |
			 (deassign ? KVM_IOEVENTFD_FLAG_DEASSIGN : 0),
	};
	return kvm_ioctl(vm->vm_fd, KVM_IOEVENTFD, &req);
}

int vm_ioeventfd(struct vm *vm, int efd, uint64_t addr, uint32_t len, uint64_t datamatch,
		 bool match, struct wisp_err *err)
{
	int r = ioeventfd(vm, efd, addr, len, datamatch, match, false);
	if (r < 0)
		return wisp_err_sys(err, -r, "KVM_IOEVENTFD at 0x%llx", (unsigned long long)addr);
	return 0;
}

int vm_ioeventfd_remove(struct vm *vm, int efd, uint64_t addr, uint32_t len,
			uint64_t datamatch, bool match)
{
	return ioeventfd(vm, efd, addr, len, datamatch, match, true);
}

int vm_irq_line(struct vm *vm, unsigned int gsi, int level)
{
	struct kvm_irq_level req = { .irq = gsi, .level = (uint32_t)level };
	return kvm_ioctl(vm->vm_fd, KVM_IRQ_LINE, &req);
}

int vm_alloc_mmio_slot(struct vm *vm, uint64_t *addr, unsigned int *irq, struct wisp_err *err)
{
	if (vm->nr_mmio_slots >= WISP_VIRTIO_MMIO_MAX ||
	    WISP_IRQ_VIRTIO_BASE + vm->nr_mmio_slots > WISP_IRQ_MAX)
		return wisp_err_set(err, ENOSPC, "no free virtio-mmio slot (%d in use)",
				    vm->nr_mmio_slots);
	*addr = WISP_VIRTIO_MMIO_BASE + WISP_VIRTIO_MMIO_SIZE * (uint64_t)vm->nr_mmio_slots;
	*irq = WISP_IRQ_VIRTIO_BASE + (unsigned int)vm->nr_mmio_slots;
	vm->nr_mmio_slots++;
	return 0;
}
