/* The VM's lifecycle: vm_build does everything from the validated config
 * to a VM whose BSP is ready at the kernel entry, in one linear pass;
 * vm_start runs the vCPU threads; pause/resume park them at safe points. */
#include "vm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "boot.h"
#include "boot_timer.h"
#include "common/cleanup.h"
#include "common/io.h"
#include "common/log.h"
#include "cpu.h"
#include "cmos.h"
#include "i8042.h"
#include "kvm.h"
#include "mptable.h"
#include "serial.h"
#include "vcpu.h"
#include "virtio/virtio.h"

void vm_init(struct vm *vm)
{
	memset(vm, 0, sizeof(*vm));
	vmcfg_init(&vm->cfg);
	vm->kvm_fd = vm->vm_fd = -1;
	vm->loop.epfd = vm->loop.wakefd = -1;
	vm->serial_out_fd = 1;
	vm->serial_in_fd = 0;
	vm->pio.name = "pio";
	vm->mmio.name = "mmio";
	vm->exec_ns = wisp_now_ns();
	pthread_mutex_init(&vm->irq_lock, NULL);
}

/* Edge-triggered legacy IRQs: raise and lower the IOAPIC line, as one step
 * (vm.h, irq_lock). */
static void vm_pulse_irq(struct vm *vm, unsigned int gsi)
{
	pthread_mutex_lock(&vm->irq_lock);
	int r = vm_irq_line(vm, gsi, 1);
	if (!r)
		r = vm_irq_line(vm, gsi, 0);
	pthread_mutex_unlock(&vm->irq_lock);
	if (r)
		wlog_rl(WISP_LOG_ERROR, "KVM_IRQ_LINE %u: %s", gsi, strerror(-r));
}

static void serial_irq(void *opaque)
{
	vm_pulse_irq(opaque, WISP_SERIAL_IRQ);
}

static void i8042_irq(void *opaque)
{
	vm_pulse_irq(opaque, 1);
}

/* Linux writes the BIOS reboot flag (guest physical 0x472) just before it
 * pulses the reset line: 0x1234 means a warm reboot, which with
 * reboot=...,panic_warm is how a panic reboot shows itself. */
#define BIOS_REBOOT_FLAG_ADDR 0x472
#define BIOS_REBOOT_WARM 0x1234

static void i8042_reset(void *opaque)
{
	struct vm *vm = opaque;
	uint16_t flag = 0;
	gmem_read(&vm->mem, BIOS_REBOOT_FLAG_ADDR, &flag, sizeof(flag));
	if (flag == BIOS_REBOOT_WARM) {
		wlog_error("guest reset with the warm-reboot flag set (a panic with reboot=panic_warm); exiting");
		vm_request_exit(vm, WISP_EXIT_GUEST_CRASH);
		return;
	}
	wlog_info("guest requested a reset through the i8042; exiting");
	vm_request_exit(vm, WISP_EXIT_OK);
}

static int vm_build_legacy_devices(struct vm *vm, struct wisp_err *err)
{
	vm->serial = calloc(1, sizeof(*vm->serial));
	vm->i8042 = calloc(1, sizeof(*vm->i8042));
	vm->cmos = calloc(1, sizeof(*vm->cmos));
	if (!vm->serial || !vm->i8042 || !vm->cmos)
		return wisp_err_set(err, ENOMEM, "allocating legacy devices");
	serial_init(vm->serial, vm->serial_out_fd, serial_irq, vm);
	i8042_init(vm->i8042, i8042_reset, i8042_irq, vm);
	cmos_init(vm->cmos);
	int r = bus_register(&vm->pio, WISP_SERIAL_PORT, 8, &serial_bus_ops, vm->serial, "serial",
			     err);
	if (!r)
		r = bus_register(&vm->pio, WISP_I8042_DATA_PORT,
				 WISP_I8042_CMD_PORT - WISP_I8042_DATA_PORT + 1, &i8042_bus_ops,
				 vm->i8042, "i8042", err);
	if (!r)
		r = bus_register(&vm->pio, WISP_CMOS_INDEX_PORT, 2, &cmos_bus_ops, vm->cmos,
				 "cmos", err);
	if (r)
		return r;
	if (vm->serial_in_fd >= 0) {
		r = serial_attach_input(vm->serial, &vm->loop, vm->serial_in_fd);
		/* A regular file or /dev/null cannot be polled: no console input. */
		if (r)
			wlog_debug("serial input from fd %d not attached: %s", vm->serial_in_fd,
				   strerror(-r));
		r = 0;
	}
	if (vm->boot_timer) {
		vm->timer = calloc(1, sizeof(*vm->timer));
		if (!vm->timer)
			return wisp_err_set(err, ENOMEM, "allocating the boot timer");
		vm->timer->exec_ns = &vm->exec_ns;
		vm->timer->start_ns = &vm->start_ns;
		r = bus_register(&vm->mmio, WISP_BOOT_TIMER_ADDR, WISP_BOOT_TIMER_SIZE,
				 &boot_timer_bus_ops, vm->timer, "boot-timer", err);
	}
	return r;
}

/* boot_args (or the default), the root drive's root=, and one
 * virtio_mmio.device= per window handed out. */
static int vm_cmdline(const struct vm *vm, char *buf, size_t size, struct wisp_err *err)
{
	const char *base = vm->cfg.boot.boot_args ? vm->cfg.boot.boot_args : WISP_DEFAULT_BOOT_ARGS;
	size_t n = (size_t)snprintf(buf, size, "%s", base);
	if (n >= size)
		return wisp_err_set(err, E2BIG, "boot_args: longer than %zu bytes", size - 1);
	int r = virtio_cmdline_append(vm, buf, size, err);
	if (r)
		return r;
	n = strlen(buf);
	for (int i = 0; i < vm->nr_mmio_slots; i++) {
		n += (size_t)snprintf(buf + n, size - n, " virtio_mmio.device=4K@0x%llx:%u",
				      (unsigned long long)(WISP_VIRTIO_MMIO_BASE +
							   (uint64_t)i * WISP_VIRTIO_MMIO_SIZE),
				      WISP_IRQ_VIRTIO_BASE + (unsigned)i);
		if (n >= size)
			return wisp_err_set(err, E2BIG, "kernel command line: longer than %zu bytes",
					    size - 1);
	}
	return 0;
}

static int vm_load_guest(struct vm *vm, struct wisp_err *err)
{
	const struct vmcfg_boot *b = &vm->cfg.boot;
	if (!b->kernel_image_path)
		return wisp_err_set(err, EINVAL, "boot-source: no kernel_image_path");
	const uint8_t *img = NULL;
	size_t len = 0;
	struct boot_kernel k;
	int r = boot_map_file(b->kernel_image_path, BOOT_KERNEL_MAX_BYTES, &img, &len, err);
	if (r)
		return wisp_err_prefix(err, "kernel");
	r = boot_load_kernel(&vm->mem, img, len, &k, err);
	boot_unmap_file(img, len);
	if (r)
		return wisp_err_prefix(err, "%s", b->kernel_image_path);
	uint64_t initrd_addr = 0, initrd_len = 0;
	if (b->initrd_path) {
		r = boot_map_file(b->initrd_path, BOOT_INITRD_MAX_BYTES, &img, &len, err);
		if (r)
			return wisp_err_prefix(err, "initrd");
		r = boot_load_initrd(&vm->mem, &k, img, len, &initrd_addr, err);
		boot_unmap_file(img, len);
		if (r)
			return wisp_err_prefix(err, "%s", b->initrd_path);
		initrd_len = len;
	}
	char *cmdline = malloc(WISP_CMDLINE_MAX);
	if (!cmdline)
		return wisp_err_set(err, ENOMEM, "building the kernel command line");
	r = vm_cmdline(vm, cmdline, WISP_CMDLINE_MAX, err);
	if (!r) {
		wlog_debug("kernel entry 0x%llx, command line: %s", (unsigned long long)k.entry,
			   cmdline);
		r = boot_write_params(&vm->mem, &k, cmdline, initrd_addr, initrd_len, err);
	}
	free(cmdline);
	if (r)
		return r;
	vm->entry_addr = k.entry;
	return mptable_write(&vm->mem, vm->nr_vcpus, err);
}

/* supported: the host's CPUID table when the caller has it already (a
 * snapshot load); NULL: fetched here. */
static int vm_create_vcpus(struct vm *vm, const struct kvm_cpuid2 *supported,
			   struct wisp_err *err)
{
	_cleanup_free_ struct kvm_cpuid2 *own = NULL;
	int r = 0;
	if (!supported) {
		if ((r = cpu_supported_cpuid(vm->kvm_fd, &own, err)))
			return r;
		supported = own;
	}
	vm->vcpus = calloc((size_t)vm->nr_vcpus, sizeof(*vm->vcpus));
	if (!vm->vcpus)
		return wisp_err_set(err, ENOMEM, "allocating vCPUs");
	for (int i = 0; i < vm->nr_vcpus && !r; i++) {
		r = vcpu_create(vm, &vm->vcpus[i], i, supported, err);
		vm->vcpus_created = i + 1;
	}
	return r;
}

/* mem_fd < 0: a fresh boot (anonymous RAM, the kernel loaded); otherwise
 * RAM is the snapshot memory file mem_fd, mapped MAP_PRIVATE, and no kernel
 * is loaded: the snapshot's vCPU state replaces the boot state. */
static int vm_build_from(struct vm *vm, int mem_fd, const struct kvm_cpuid2 *supported,
			 struct wisp_err *err)
{
	int r;
	vm->config_error = false;
	if (vm->cfg.machine.vcpu_count < 1 || vm->cfg.machine.vcpu_count > WISP_MAX_VCPUS)
		return wisp_err_set(err, EINVAL, "machine-config: vcpu_count %u out of range",
				    vm->cfg.machine.vcpu_count);
	vm->nr_vcpus = (int)vm->cfg.machine.vcpu_count;
	/* With the API the loop runs before the VM exists (main starts it). */
	if (vm->loop.epfd < 0 && (r = evloop_init(&vm->loop, err)))
		return r;
	/* Phase times for the log: how much of a boot is KVM's and how much ours. */
	uint64_t t0 = wisp_now_ns();
	if ((r = kvm_open_vm(vm, err)))
		return r;
	uint64_t t_kvm = wisp_now_ns();
	uint64_t ram = (uint64_t)vm->cfg.machine.mem_size_mib << 20;
	r = mem_fd < 0 ? gmem_init_anon(&vm->mem, ram, err) : gmem_init_file(&vm->mem, ram, mem_fd, err);
	if (r) {
		vm->config_error = r == -EINVAL;
		return r;
	}
	if (vm->cfg.machine.track_dirty_pages && (r = gmem_track_dirty(&vm->mem, err)))
		return r;
	if ((r = kvm_map_memory(vm, err)))
		return r;
	uint64_t t_mem = wisp_now_ns();
	if ((r = vm_build_legacy_devices(vm, err)))
		return r;
	/* virtio devices take their windows (vm_alloc_mmio_slot) before the
	 * command line that announces them is written. */
	if ((r = virtio_devices_create(vm, err))) {
		vm->config_error = true;
		return r;
	}
	uint64_t t_dev = wisp_now_ns();
	if (mem_fd < 0 && (r = vm_load_guest(vm, err))) {
		vm->config_error = true;
		return r;
	}
	uint64_t t_load = wisp_now_ns();
	if ((r = vm_create_vcpus(vm, supported, err)))
		return r;
	uint64_t t_end = wisp_now_ns();
	wlog_info("VM built in %llu us: KVM VM %llu, RAM and slots %llu, devices %llu, guest load %llu, vCPUs %llu",
		  (unsigned long long)(t_end - t0) / 1000, (unsigned long long)(t_kvm - t0) / 1000,
		  (unsigned long long)(t_mem - t_kvm) / 1000, (unsigned long long)(t_dev - t_mem) / 1000,
		  (unsigned long long)(t_load - t_dev) / 1000,
		  (unsigned long long)(t_end - t_load) / 1000);
	return 0;
}

int vm_build(struct vm *vm, struct wisp_err *err)
{
	return vm_build_from(vm, -1, NULL, err);
}

int vm_build_restored(struct vm *vm, int mem_fd, const struct kvm_cpuid2 *supported,
		      struct wisp_err *err)
{
	if (mem_fd < 0)
		return wisp_err_set(err, EBADF, "no snapshot memory file");
	return vm_build_from(vm, mem_fd, supported, err);
}

int vm_start(struct vm *vm, struct wisp_err *err)
{
	if (vm->state != VM_NOT_STARTED)
		return wisp_err_set(err, EINVAL, "the VM was already started");
	int r = vcpu_signals_init(err);
	if (r)
		return r;
	vm->start_ns = wisp_now_ns();
	vm->state = VM_RUNNING;
	for (int i = 0; i < vm->nr_vcpus; i++) {
		r = vcpu_start(&vm->vcpus[i], err);
		if (r)
			return r;
	}
	return 0;
}

int vm_pause(struct vm *vm, struct wisp_err *err)
{
	if (vm->state != VM_RUNNING)
		return wisp_err_set(err, EINVAL, "the VM is not running");
	for (int i = 0; i < vm->nr_vcpus; i++)
		vcpu_request_pause(&vm->vcpus[i]);
	for (int i = 0; i < vm->nr_vcpus; i++)
		(void)vcpu_wait_paused(&vm->vcpus[i]); /* a failed thread is parked for good */
	vm->state = VM_PAUSED;
	return 0;
}

int vm_resume(struct vm *vm, struct wisp_err *err)
{
	if (vm->state != VM_PAUSED)
		return wisp_err_set(err, EINVAL, "the VM is not paused");
	for (int i = 0; i < vm->nr_vcpus; i++)
		vcpu_resume(&vm->vcpus[i]);
	vm->state = VM_RUNNING;
	return 0;
}

int vm_send_ctrl_alt_del(struct vm *vm, struct wisp_err *err)
{
	if (!vm->i8042)
		return wisp_err_set(err, EINVAL, "the VM has no i8042 controller");
	int r = i8042_send_ctrl_alt_del(vm->i8042);
	if (r)
		return wisp_err_set(err, -r, "the guest has not read the previous keys yet");
	return 0;
}

void vm_log_state(struct vm *vm)
{
	struct kvm_irqchip chip = { .chip_id = KVM_IRQCHIP_IOAPIC };
	bool have_ioapic = vm->vm_fd >= 0 && ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &chip) == 0;
	if (!have_ioapic)
		wlog_info("state: IOAPIC: KVM_GET_IRQCHIP: %s",
			  vm->vm_fd < 0 ? "no VM" : strerror(errno));
	for (int i = 0; i < vm->nr_virtio; i++) {
		struct virtio_mmio_dev *d = vm->virtio[i];
		virtio_mmio_log_state(d);
		if (!have_ioapic || d->irq >= KVM_IOAPIC_NUM_PINS)
			continue;
		const struct kvm_ioapic_state *io = &chip.chip.ioapic;
		__typeof__(io->redirtbl[0].fields) e = io->redirtbl[d->irq].fields;
		wlog_info("state: %s: IOAPIC pin %u: vector 0x%x, %s, %s, remote IRR %u, pending %u, destination %u",
			  d->name, d->irq, e.vector, e.mask ? "masked" : "unmasked",
			  e.trig_mode ? "level" : "edge", e.remote_irr, (io->irr >> d->irq) & 1,
			  e.dest_id);
	}
}

void vm_request_exit(struct vm *vm, int exit_code)
{
	evloop_stop(&vm->loop, exit_code);
}

void vm_unbuild(struct vm *vm)
{
	for (int i = 0; i < vm->vcpus_created; i++)
		vcpu_stop(&vm->vcpus[i]);
	for (int i = 0; i < vm->vcpus_created; i++)
		vcpu_destroy(&vm->vcpus[i]);
	free(vm->vcpus);
	vm->vcpus = NULL;
	vm->vcpus_created = 0;
	vm->nr_vcpus = 0;
	if (vm->serial) {
		serial_destroy(vm->serial);
		free(vm->serial);
		vm->serial = NULL;
	}
	if (vm->i8042) {
		i8042_destroy(vm->i8042);
		free(vm->i8042);
		vm->i8042 = NULL;
	}
	if (vm->cmos) {
		cmos_destroy(vm->cmos);
		free(vm->cmos);
		vm->cmos = NULL;
	}
	free(vm->timer);
	vm->timer = NULL;
	virtio_devices_destroy(vm);
	vm->nr_mmio_slots = 0;
	vm->pio.nr = 0;
	vm->mmio.nr = 0;
	gmem_destroy(&vm->mem);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	vm->vm_fd = vm->kvm_fd = -1;
	vm->vcpu_mmap_size = 0;
	vm->entry_addr = 0;
	vm->start_ns = 0;
	vm->state = VM_NOT_STARTED;
}

void vm_destroy(struct vm *vm)
{
	vm_unbuild(vm);
	vm->state = VM_STOPPED;
	evloop_destroy(&vm->loop);
	vmcfg_free(&vm->cfg);
	pthread_mutex_destroy(&vm->irq_lock);
}
