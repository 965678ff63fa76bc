/* Wiring the virtio devices into the VM: each gets a virtio-mmio window and
 * an IRQ, its QueueNotify register becomes one ioeventfd per queue (data
 * match = queue index) served by the VMM thread's loop, and its interrupt
 * an irqfd. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "common/log.h"
#include "vmm/bus.h"
#include "vmm/evloop.h"
#include "vmm/vm.h"
#include "vmm/virtio/virtio.h"

static const struct bus_ops virtio_bus_ops = {
	.read = virtio_mmio_read,
	.write = virtio_mmio_write,
};

static void kick_event(void *opaque, uint32_t events)
{
	(void)events;
	struct virtio_kick *k = opaque;
	uint64_t v;
	if (read(k->d->kick_fd[k->qi], &v, sizeof(v)) < 0 && errno != EAGAIN)
		wlog_rl(WISP_LOG_WARN, "%s: kick read: %s", k->d->name, strerror(errno));
	virtio_mmio_kick(k->d, k->qi);
}

/* Undo the first n queues' notifications: their loop entries (the loop
 * outlives a failed or torn-down VM) and ioeventfds. */
static void detach_queues(struct vm *vm, struct virtio_mmio_dev *d, int n)
{
	for (int q = 0; q < n; q++) {
		evloop_del(&vm->loop, d->kick_fd[q]);
		vm_ioeventfd_remove(vm, d->kick_fd[q], d->base + VIRTIO_MMIO_QUEUE_NOTIFY, 4,
				    (uint64_t)q, true);
	}
}

static int attach(struct vm *vm, struct virtio_mmio_dev *d, struct wisp_err *err)
{
	if (vm->nr_virtio >= WISP_VIRTIO_MMIO_MAX)
		return wisp_err_set(err, ENOSPC, "too many virtio devices");
	uint64_t base;
	unsigned int irq;
	int r = vm_alloc_mmio_slot(vm, &base, &irq, err);
	if (r < 0)
		return r;
	d->base = base;
	d->irq = irq;
	d->loop = &vm->loop;
	/* A failure leaves this range on the bus: the VM is torn down then
	 * (vm_unbuild), which empties the bus. */
	r = bus_register(&vm->mmio, base, WISP_VIRTIO_MMIO_SIZE, &virtio_bus_ops, d, d->name, err);
	if (r < 0)
		return r;
	for (int i = 0; i < d->ops->nr_queues; i++) {
		d->kick[i] = (struct virtio_kick){ .d = d, .qi = i };
		/* Without the ioeventfd the notify write exits to the vCPU thread,
		 * which signals the same eventfd: slower, still correct. */
		struct wisp_err e2 = { 0 };
		if (vm_ioeventfd(vm, d->kick_fd[i], base + VIRTIO_MMIO_QUEUE_NOTIFY, 4,
				 (uint64_t)i, true, &e2) < 0)
			wlog_warn("%s: queue %d notifications through MMIO exits: %s", d->name, i,
				  e2.msg);
		r = evloop_add(&vm->loop, d->kick_fd[i], EPOLLIN, kick_event, &d->kick[i]);
		if (r < 0) {
			detach_queues(vm, d, i + 1);
			return wisp_err_sys(err, -r, "%s: adding queue %d to the event loop", d->name,
					    i);
		}
	}
	r = vm_irqfd(vm, d->irq_fd, irq, err);
	if (r < 0) {
		detach_queues(vm, d, d->ops->nr_queues);
		return wisp_err_prefix(err, "%s", d->name);
	}
	vm->virtio[vm->nr_virtio++] = d;
	wlog_debug("%s at 0x%llx irq %u", d->name, (unsigned long long)base, irq);
	return 0;
}

/* Takes &d, not d: C leaves the order of argument evaluation open, so the
 * create call in the same argument list may run after d was read. */
static int add(struct vm *vm, int r, struct virtio_mmio_dev **dp, struct wisp_err *err)
{
	if (r < 0)
		return r;
	struct virtio_mmio_dev *d = *dp;
	r = attach(vm, d, err);
	if (r < 0)
		virtio_device_free(d);
	return r;
}

int virtio_devices_create(struct vm *vm, struct wisp_err *err)
{
	struct virtio_mmio_dev *d = NULL;
	const struct vm_config *cfg = &vm->cfg;
	int r;
	/* the root drive first: the guest names it vda */
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < cfg->nr_drives; i++) {
			const struct vmcfg_drive *dr = &cfg->drives[i];
			if (dr->is_root_device != (pass == 0))
				continue;
			r = add(vm, virtio_blk_create(&vm->mem, &vm->loop, dr, &d, err), &d, err);
			if (r < 0)
				return r;
		}
	}
	for (int i = 0; i < cfg->nr_nets; i++) {
		r = add(vm, virtio_net_create(&vm->mem, &vm->loop, &cfg->nets[i], &d, err), &d, err);
		if (r < 0)
			return r;
	}
	if (cfg->vsock.present) {
		r = add(vm, virtio_vsock_create(&vm->mem, &vm->loop, &cfg->vsock, &d, err), &d, err);
		if (r < 0)
			return r;
	}
	return 0;
}

int virtio_cmdline_append(const struct vm *vm, char *buf, size_t size, struct wisp_err *err)
{
	const struct vm_config *cfg = &vm->cfg;
	for (int i = 0; i < cfg->nr_drives; i++) {
		const struct vmcfg_drive *dr = &cfg->drives[i];
		if (!dr->is_root_device)
			continue;
		size_t n = strnlen(buf, size);
		int k;
		if (dr->partuuid)
			k = snprintf(buf + n, size - n, " root=PARTUUID=%s %s", dr->partuuid,
				     dr->is_read_only ? "ro" : "rw");
		else
			k = snprintf(buf + n, size - n, " root=/dev/vda %s",
				     dr->is_read_only ? "ro" : "rw");
		if (k < 0 || (size_t)k >= size - n) {
			buf[n] = '\0';
			return wisp_err_set(err, ENOSPC, "kernel command line too long for root=");
		}
		break;
	}
	return 0;
}

void virtio_devices_destroy(struct vm *vm)
{
	for (int i = 0; i < vm->nr_virtio; i++) {
		struct virtio_mmio_dev *d = vm->virtio[i];
		detach_queues(vm, d, d->ops->nr_queues);
		virtio_device_free(d);
		vm->virtio[i] = NULL;
	}
	vm->nr_virtio = 0;
}

void virtio_vsock_transport_reset(struct vm *vm)
{
	for (int i = 0; i < vm->nr_virtio; i++)
		if (vm->virtio[i]->ops->device_id == VIRTIO_ID_VSOCK)
			virtio_vsock_reset(vm->virtio[i]);
}
