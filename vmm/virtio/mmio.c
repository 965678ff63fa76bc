/* virtio-mmio transport, version 2 (virtio 1.2 section 4.2.2). Register
 * accesses arrive on vCPU threads; they only change transport state under
 * the device mutex and hand queue work to the VMM thread through the
 * queue's kick eventfd. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/log.h"
#include "vmm/metrics.h"
#include "vmm/virtio/virtio.h"

static uint32_t le32_of(const uint8_t *data)
{
	uint32_t v;
	memcpy(&v, data, 4);
	return v;
}

static void raise_irq(struct virtio_mmio_dev *d, uint32_t bit)
{
	d->isr |= bit;
	d->interrupts++;
	if (d->irq_fd >= 0) {
		uint64_t one = 1;
		/* an eventfd write only fails when the counter would overflow,
		 * which means the interrupt is already pending */
		if (write(d->irq_fd, &one, sizeof(one)) < 0)
			wlog_rl(WISP_LOG_DEBUG, "%s: irqfd write: %m", d->name);
	}
}

void virtio_mmio_fail(struct virtio_mmio_dev *d, const char *why)
{
	d->violations++;
	metrics_dev_add(d->metrics, METRICS_DEV_FAILED, 1);
	wlog_rl(WISP_LOG_WARN, "%s: device failed: %s (status 0x%x)", d->name, why, d->status);
	if (d->failed)
		return;
	d->failed = true;
	d->status |= VIRTIO_STATUS_NEEDS_RESET;
	if (d->status & VIRTIO_STATUS_DRIVER_OK)
		raise_irq(d, VIRTIO_INT_CONFIG);
}

/* A register write the spec forbids in this state: counted and ignored. */
static void violation(struct virtio_mmio_dev *d, const char *what, uint64_t off)
{
	d->violations++;
	wlog_rl(WISP_LOG_WARN, "%s: ignored %s (offset 0x%llx, status 0x%x)", d->name, what,
		(unsigned long long)off, d->status);
}

bool virtio_has_feature(const struct virtio_mmio_dev *d, int bit)
{
	return d->driver_features & VIRTIO_BIT(bit);
}

void virtio_mmio_notify_queue(struct virtio_mmio_dev *d, int qi)
{
	if (virtq_should_notify(&d->queues[qi]))
		raise_irq(d, VIRTIO_INT_VRING);
}

void virtio_mmio_config_changed(struct virtio_mmio_dev *d)
{
	d->config_generation++;
	if (d->status & VIRTIO_STATUS_DRIVER_OK)
		raise_irq(d, VIRTIO_INT_CONFIG);
}

int virtio_mmio_pop(struct virtio_mmio_dev *d, int qi, struct virtq_chain *c)
{
	if (d->failed || !d->active)
		return 0;
	int r = virtq_pop(&d->queues[qi], d->mem, c);
	if (r < 0) {
		char why[128];
		snprintf(why, sizeof(why), "queue %d: %s", qi, d->queues[qi].error);
		virtio_mmio_fail(d, why);
	}
	return r;
}

static void reset_locked(struct virtio_mmio_dev *d)
{
	if (d->ops->reset)
		d->ops->reset(d);
	for (int i = 0; i < d->ops->nr_queues; i++)
		virtq_reset(&d->queues[i]);
	d->driver_features = 0;
	d->dev_feat_sel = 0;
	d->drv_feat_sel = 0;
	d->queue_sel = 0;
	d->status = 0;
	d->isr = 0;
	d->active = false;
	d->failed = false;
}

static void kick_all(struct virtio_mmio_dev *d)
{
	for (int i = 0; i < d->ops->nr_queues; i++) {
		uint64_t one = 1;
		if (d->kick_fd[i] >= 0 && write(d->kick_fd[i], &one, sizeof(one)) < 0)
			wlog_rl(WISP_LOG_DEBUG, "%s: kick write: %m", d->name);
	}
}

static void status_write(struct virtio_mmio_dev *d, uint32_t v)
{
	if (v == 0) {
		reset_locked(d);
		return;
	}
	const uint32_t known = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
			       VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK |
			       VIRTIO_STATUS_FAILED | VIRTIO_STATUS_NEEDS_RESET;
	uint32_t cur = d->status & ~VIRTIO_STATUS_NEEDS_RESET;
	uint32_t nv = v & ~VIRTIO_STATUS_NEEDS_RESET;
	if (v & ~known) {
		violation(d, "status with unknown bits", VIRTIO_MMIO_STATUS);
		return;
	}
	if (cur & ~nv) {
		violation(d, "status clearing bits without a reset", VIRTIO_MMIO_STATUS);
		return;
	}
	uint32_t added = nv & ~cur;
	if ((added & VIRTIO_STATUS_DRIVER) && !(nv & VIRTIO_STATUS_ACKNOWLEDGE)) {
		violation(d, "DRIVER before ACKNOWLEDGE", VIRTIO_MMIO_STATUS);
		return;
	}
	if ((added & VIRTIO_STATUS_FEATURES_OK) && !(nv & VIRTIO_STATUS_DRIVER)) {
		violation(d, "FEATURES_OK before DRIVER", VIRTIO_MMIO_STATUS);
		return;
	}
	if ((added & VIRTIO_STATUS_DRIVER_OK) && !(nv & VIRTIO_STATUS_FEATURES_OK)) {
		violation(d, "DRIVER_OK before FEATURES_OK", VIRTIO_MMIO_STATUS);
		return;
	}
	if (added & VIRTIO_STATUS_FEATURES_OK) {
		uint64_t extra = d->driver_features & ~d->device_features;
		if (extra || !(d->driver_features & VIRTIO_BIT(VIRTIO_F_VERSION_1))) {
			/* FEATURES_OK stays clear: the driver reads it back */
			violation(d, extra ? "features the device did not offer"
					   : "driver without VIRTIO_F_VERSION_1",
				  VIRTIO_MMIO_DRIVER_FEATURES);
			nv &= ~(VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
			added &= ~(VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
		} else {
			for (int i = 0; i < d->ops->nr_queues; i++) {
				d->queues[i].event_idx = virtio_has_feature(d, VIRTIO_F_EVENT_IDX);
				d->queues[i].indirect = virtio_has_feature(d, VIRTIO_F_INDIRECT_DESC);
			}
		}
	}
	d->status = nv | (d->status & VIRTIO_STATUS_NEEDS_RESET);
	if (added & VIRTIO_STATUS_FAILED)
		d->active = false;
	if ((added & VIRTIO_STATUS_DRIVER_OK) && !d->failed && !(nv & VIRTIO_STATUS_FAILED)) {
		int r = d->ops->activate ? d->ops->activate(d) : 0;
		if (r < 0) {
			virtio_mmio_fail(d, "backend could not start");
			return;
		}
		d->active = true;
		kick_all(d);
	}
}

static struct virtq *sel_queue(struct virtio_mmio_dev *d)
{
	if (d->queue_sel >= (uint32_t)d->ops->nr_queues)
		return NULL;
	return &d->queues[d->queue_sel];
}

/* Queue geometry may change only between FEATURES_OK and DRIVER_OK, on a
 * queue that is not ready. Changing it on a live device breaks it. */
static struct virtq *geometry_queue(struct virtio_mmio_dev *d, uint64_t off)
{
	struct virtq *q = sel_queue(d);
	if (!q) {
		violation(d, "queue register write for a queue that does not exist", off);
		return NULL;
	}
	if (d->status & VIRTIO_STATUS_DRIVER_OK) {
		virtio_mmio_fail(d, "queue reconfigured after DRIVER_OK");
		return NULL;
	}
	if (!(d->status & VIRTIO_STATUS_FEATURES_OK) || d->failed) {
		violation(d, "queue register write outside FEATURES_OK..DRIVER_OK", off);
		return NULL;
	}
	if (q->ready) {
		violation(d, "queue register write while the queue is ready", off);
		return NULL;
	}
	return q;
}

static void set_lo(uint64_t *v, uint32_t x)
{
	*v = (*v & 0xffffffff00000000ull) | x;
}

static void set_hi(uint64_t *v, uint32_t x)
{
	*v = (*v & 0xffffffffull) | ((uint64_t)x << 32);
}

static void queue_ready_write(struct virtio_mmio_dev *d, uint32_t v)
{
	struct virtq *q = sel_queue(d);
	if (v == 0 && (!q || !q->ready))
		return; /* drivers clear it on teardown, after reset */
	q = geometry_queue(d, VIRTIO_MMIO_QUEUE_READY);
	if (!q) {
		return;
	}
	if (v != 1) {
		violation(d, "QueueReady value other than 0 or 1", VIRTIO_MMIO_QUEUE_READY);
		return;
	}
	if (virtq_setup(q, d->mem) < 0) {
		char why[128];
		snprintf(why, sizeof(why), "queue %u: %s", d->queue_sel, q->error);
		virtio_mmio_fail(d, why);
		return;
	}
	q->ready = true;
}

static uint32_t reg_read(struct virtio_mmio_dev *d, uint64_t off)
{
	struct virtq *q;
	switch (off) {
	case VIRTIO_MMIO_MAGIC_VALUE:
		return VIRTIO_MMIO_MAGIC;
	case VIRTIO_MMIO_VERSION_REG:
		return VIRTIO_MMIO_VERSION;
	case VIRTIO_MMIO_DEVICE_ID:
		return d->ops->device_id;
	case VIRTIO_MMIO_VENDOR_ID:
		return VIRTIO_VENDOR_ID;
	case VIRTIO_MMIO_DEVICE_FEATURES:
		if (d->dev_feat_sel == 0)
			return (uint32_t)d->device_features;
		if (d->dev_feat_sel == 1)
			return (uint32_t)(d->device_features >> 32);
		return 0;
	case VIRTIO_MMIO_QUEUE_NUM_MAX:
		q = sel_queue(d);
		return q ? q->num_max : 0;
	case VIRTIO_MMIO_QUEUE_READY:
		q = sel_queue(d);
		return q ? q->ready : 0;
	case VIRTIO_MMIO_INTERRUPT_STATUS:
		return d->isr;
	case VIRTIO_MMIO_STATUS:
		return d->status;
	case VIRTIO_MMIO_CONFIG_GENERATION:
		return d->config_generation;
	case VIRTIO_MMIO_SHM_LEN_LOW:
	case VIRTIO_MMIO_SHM_LEN_HIGH:
	case VIRTIO_MMIO_SHM_BASE_LOW:
	case VIRTIO_MMIO_SHM_BASE_HIGH:
		return 0xffffffffu; /* no shared memory regions */
	default:
		return 0;
	}
}

static void reg_write(struct virtio_mmio_dev *d, uint64_t off, uint32_t v)
{
	struct virtq *q;
	switch (off) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
		d->dev_feat_sel = v;
		return;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
		d->drv_feat_sel = v;
		return;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		if (!(d->status & VIRTIO_STATUS_DRIVER) ||
		    (d->status & VIRTIO_STATUS_FEATURES_OK)) {
			violation(d, "feature write outside DRIVER..FEATURES_OK", off);
			return;
		}
		if (d->drv_feat_sel == 0)
			set_lo(&d->driver_features, v);
		else if (d->drv_feat_sel == 1)
			set_hi(&d->driver_features, v);
		else if (v)
			violation(d, "feature bits beyond 63", off);
		return;
	case VIRTIO_MMIO_QUEUE_SEL:
		d->queue_sel = v;
		return;
	case VIRTIO_MMIO_QUEUE_NUM:
		if ((q = geometry_queue(d, off)))
			q->num = v > 0xffff ? 0 : (uint16_t)v; /* checked at QueueReady */
		return;
	case VIRTIO_MMIO_QUEUE_READY:
		queue_ready_write(d, v);
		return;
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
		if ((q = geometry_queue(d, off)))
			set_lo(&q->desc_gpa, v);
		return;
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
		if ((q = geometry_queue(d, off)))
			set_hi(&q->desc_gpa, v);
		return;
	case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
		if ((q = geometry_queue(d, off)))
			set_lo(&q->avail_gpa, v);
		return;
	case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
		if ((q = geometry_queue(d, off)))
			set_hi(&q->avail_gpa, v);
		return;
	case VIRTIO_MMIO_QUEUE_USED_LOW:
		if ((q = geometry_queue(d, off)))
			set_lo(&q->used_gpa, v);
		return;
	case VIRTIO_MMIO_QUEUE_USED_HIGH:
		if ((q = geometry_queue(d, off)))
			set_hi(&q->used_gpa, v);
		return;
	case VIRTIO_MMIO_QUEUE_NOTIFY:
		if (v >= (uint32_t)d->ops->nr_queues) {
			violation(d, "notify of a queue that does not exist", off);
			return;
		}
		if (d->kick_fd[v] >= 0) {
			uint64_t one = 1;
			if (write(d->kick_fd[v], &one, sizeof(one)) < 0)
				wlog_rl(WISP_LOG_DEBUG, "%s: kick write: %m", d->name);
		}
		return;
	case VIRTIO_MMIO_INTERRUPT_ACK:
		d->isr &= ~v;
		return;
	case VIRTIO_MMIO_STATUS:
		status_write(d, v);
		return;
	case VIRTIO_MMIO_SHM_SEL:
		d->shm_sel = v;
		return;
	default:
		violation(d, "write to a read-only or unknown register", off);
		return;
	}
}

void virtio_mmio_read(void *opaque, uint64_t off, uint8_t *data, uint32_t len)
{
	struct virtio_mmio_dev *d = opaque;
	memset(data, 0, len);
	pthread_mutex_lock(&d->lock);
	if (off >= VIRTIO_MMIO_CONFIG) {
		uint64_t c = off - VIRTIO_MMIO_CONFIG;
		if (c + len <= d->ops->config_size && d->ops->config_read)
			d->ops->config_read(d, (uint32_t)c, data, len);
	} else if (len == 4 && !(off & 3)) {
		uint32_t v = reg_read(d, off);
		memcpy(data, &v, 4);
	} else {
		violation(d, "register read that is not 32-bit aligned", off);
	}
	pthread_mutex_unlock(&d->lock);
}

void virtio_mmio_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
	struct virtio_mmio_dev *d = opaque;
	pthread_mutex_lock(&d->lock);
	if (off >= VIRTIO_MMIO_CONFIG) {
		uint64_t c = off - VIRTIO_MMIO_CONFIG;
		if (c + len <= d->ops->config_size && d->ops->config_write)
			d->ops->config_write(d, (uint32_t)c, data, len);
		else
			violation(d, "config write outside the writable config", off);
	} else if (len == 4 && !(off & 3)) {
		reg_write(d, off, le32_of(data));
	} else {
		violation(d, "register write that is not 32-bit aligned", off);
	}
	pthread_mutex_unlock(&d->lock);
}

void virtio_mmio_kick(struct virtio_mmio_dev *d, int qi)
{
	if (qi < 0 || qi >= d->ops->nr_queues)
		return;
	pthread_mutex_lock(&d->lock);
	if (d->active && !d->failed && d->queues[qi].ready && d->ops->queue_notify)
		d->ops->queue_notify(d, qi);
	pthread_mutex_unlock(&d->lock);
}

int virtio_mmio_init(struct virtio_mmio_dev *d, const struct virtio_dev_ops *ops, void *priv,
		     const struct gmem *mem, uint64_t features, struct wisp_err *err)
{
	memset(d, 0, sizeof(*d));
	d->irq_fd = -1;
	for (int i = 0; i < VIRTIO_MAX_QUEUES; i++)
		d->kick_fd[i] = -1;
	if (ops->nr_queues < 1 || ops->nr_queues > VIRTIO_MAX_QUEUES || ops->queue_max == 0 ||
	    ops->queue_max > VIRTQ_MAX_SIZE || (ops->queue_max & (ops->queue_max - 1)))
		return wisp_err_set(err, EINVAL, "virtio %s: bad queue layout", ops->name);
	pthread_mutex_init(&d->lock, NULL);
	d->priv = priv;
	d->mem = mem;
	d->device_features = features | VIRTIO_BIT(VIRTIO_F_VERSION_1);
	snprintf(d->name, sizeof(d->name), "virtio-%s", ops->name);
	for (int i = 0; i < ops->nr_queues; i++) {
		d->queues[i].num_max = ops->queue_max;
		virtq_reset(&d->queues[i]);
		d->kick_fd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (d->kick_fd[i] < 0) {
			int e = errno;
			virtio_mmio_destroy(d);
			return wisp_err_sys(err, e, "virtio %s: eventfd", ops->name);
		}
	}
	d->irq_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d->irq_fd < 0) {
		int e = errno;
		virtio_mmio_destroy(d);
		return wisp_err_sys(err, e, "virtio %s: eventfd", ops->name);
	}
	d->ops = ops; /* from here on, destroy also destroys the device */
	return 0;
}

void virtio_mmio_destroy(struct virtio_mmio_dev *d)
{
	if (d->ops && d->ops->destroy)
		d->ops->destroy(d);
	d->ops = NULL;
	for (int i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		if (d->kick_fd[i] >= 0)
			close(d->kick_fd[i]);
		d->kick_fd[i] = -1;
	}
	if (d->irq_fd >= 0)
		close(d->irq_fd);
	d->irq_fd = -1;
	pthread_mutex_destroy(&d->lock);
}

void virtio_device_free(struct virtio_mmio_dev *d)
{
	if (!d)
		return;
	void *container = d->priv; /* every device embeds its transport */
	virtio_mmio_destroy(d);
	free(container);
}

void virtio_mmio_log_state(struct virtio_mmio_dev *d)
{
	pthread_mutex_lock(&d->lock);
	wlog_info("state: %s: irq %u, status 0x%x, interrupt status 0x%x, %llu interrupts, %s, %llu violations",
		  d->name, d->irq, d->status, d->isr, (unsigned long long)d->interrupts,
		  d->failed ? "failed" : d->active ? "active" : "not active",
		  (unsigned long long)d->violations);
	for (int i = 0; i < d->ops->nr_queues; i++) {
		char line[320];
		virtq_describe(&d->queues[i], line, sizeof(line));
		wlog_info("state: %s: queue %d: %s", d->name, i, line);
	}
	pthread_mutex_unlock(&d->lock);
}
