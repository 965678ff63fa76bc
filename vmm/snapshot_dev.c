/* Device state in snapshots: the virtio-mmio transport (registers, feature
 * negotiation, queue geometry and positions), then the device's own state
 * through its ops (virtio_dev_ops.snap_save/snap_restore). Restore runs on
 * a device freshly created from the snapshot's configuration, before any
 * vCPU runs; every saved value is checked against that device as a
 * guest-written one would be. */
#include "snapshot.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "virtio/virtio.h"

#define SNAP_VIRTIO_VERSION 1u

struct snap_virtq_state {
	uint64_t desc_gpa, avail_gpa, used_gpa;
	uint16_t num, last_avail, used_idx, signalled_used;
	uint8_t ready, event_idx, indirect, signalled_valid;
	uint32_t pad;
};

struct snap_virtio_state {
	uint32_t device_id;
	uint32_t nr_queues;
	uint64_t device_features, driver_features;
	uint32_t dev_feat_sel, drv_feat_sel, queue_sel, status;
	uint32_t isr, config_generation, shm_sel;
	uint8_t active, failed, pad[2];
	uint64_t violations, interrupts;
	struct snap_virtq_state q[VIRTIO_MAX_QUEUES];
};

int snap_virtio_save(struct virtio_mmio_dev *d, uint32_t slot, struct snap_writer *w,
		     struct wisp_err *err)
{
	struct snap_virtio_state s;
	memset(&s, 0, sizeof(s));
	pthread_mutex_lock(&d->lock);
	s.device_id = d->ops->device_id;
	s.nr_queues = (uint32_t)d->ops->nr_queues;
	s.device_features = d->device_features;
	s.driver_features = d->driver_features;
	s.dev_feat_sel = d->dev_feat_sel;
	s.drv_feat_sel = d->drv_feat_sel;
	s.queue_sel = d->queue_sel;
	s.status = d->status;
	s.isr = d->isr;
	s.config_generation = d->config_generation;
	s.shm_sel = d->shm_sel;
	s.active = d->active;
	s.failed = d->failed;
	s.violations = d->violations;
	s.interrupts = d->interrupts;
	for (int i = 0; i < d->ops->nr_queues; i++) {
		const struct virtq *q = &d->queues[i];
		s.q[i] = (struct snap_virtq_state){
			.desc_gpa = q->desc_gpa, .avail_gpa = q->avail_gpa, .used_gpa = q->used_gpa,
			.num = q->num, .last_avail = q->last_avail, .used_idx = q->used_idx,
			.signalled_used = q->signalled_used, .ready = q->ready,
			.event_idx = q->event_idx, .indirect = q->indirect,
			.signalled_valid = q->signalled_valid,
		};
	}
	int r = snap_put(w, SNAP_SEC_VIRTIO_MMIO, SNAP_VIRTIO_VERSION, slot, &s, sizeof(s));
	if (r == 0 && d->ops->snap_save)
		r = d->ops->snap_save(d, slot, w);
	pthread_mutex_unlock(&d->lock);
	if (r < 0 && err)
		*err = w->err;
	return r;
}

static int restore_locked(struct virtio_mmio_dev *d, uint32_t slot,
			  const struct snap_virtio_state *s, struct snap_image *img,
			  struct wisp_err *err)
{
	if (s->device_id != d->ops->device_id)
		return wisp_err_set(err, EINVAL,
				    "virtio slot %u: the snapshot has device type %u there, the restored VM has %s",
				    slot, s->device_id, d->name);
	if (s->nr_queues != (uint32_t)d->ops->nr_queues)
		return wisp_err_set(err, EINVAL, "virtio slot %u (%s): %u queues saved, the device has %d",
				    slot, d->name, s->nr_queues, d->ops->nr_queues);
	if (s->driver_features & ~d->device_features)
		return wisp_err_set(err, EINVAL,
				    "virtio slot %u (%s): the guest negotiated features 0x%llx this device does not offer",
				    slot, d->name,
				    (unsigned long long)(s->driver_features & ~d->device_features));
	const uint32_t known = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
			       VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK |
			       VIRTIO_STATUS_FAILED | VIRTIO_STATUS_NEEDS_RESET;
	if ((s->status & ~known) || (s->active && !(s->status & VIRTIO_STATUS_DRIVER_OK)) ||
	    (s->isr & ~(VIRTIO_INT_VRING | VIRTIO_INT_CONFIG)))
		return wisp_err_set(err, EINVAL, "virtio slot %u (%s): inconsistent status 0x%x",
				    slot, d->name, s->status);
	d->driver_features = s->driver_features;
	d->dev_feat_sel = s->dev_feat_sel;
	d->drv_feat_sel = s->drv_feat_sel;
	d->queue_sel = s->queue_sel;
	d->status = s->status;
	d->isr = s->isr;
	d->config_generation = s->config_generation;
	d->shm_sel = s->shm_sel;
	d->failed = s->failed;
	d->violations = s->violations;
	d->interrupts = s->interrupts;
	for (int i = 0; i < d->ops->nr_queues; i++) {
		const struct snap_virtq_state *qs = &s->q[i];
		struct virtq *q = &d->queues[i];
		virtq_reset(q);
		q->num = qs->num;
		q->desc_gpa = qs->desc_gpa;
		q->avail_gpa = qs->avail_gpa;
		q->used_gpa = qs->used_gpa;
		q->event_idx = qs->event_idx;
		q->indirect = qs->indirect;
		if (!qs->ready)
			continue;
		if (virtq_setup(q, d->mem) < 0)
			return wisp_err_set(err, EINVAL, "virtio slot %u (%s) queue %d: %s", slot,
					    d->name, i, q->error);
		q->ready = true;
		q->last_avail = qs->last_avail;
		q->used_idx = qs->used_idx;
		q->signalled_used = qs->signalled_used;
		q->signalled_valid = qs->signalled_valid;
	}
	if (d->ops->snap_restore) {
		int r = d->ops->snap_restore(d, slot, img, err);
		if (r < 0)
			return r;
	}
	if (s->active && !s->failed) {
		int r = d->ops->activate ? d->ops->activate(d) : 0;
		if (r < 0)
			return wisp_err_set(err, -r, "virtio slot %u (%s): backend could not start",
					    slot, d->name);
		d->active = true;
	}
	return 0;
}

int snap_virtio_restore(struct virtio_mmio_dev *d, uint32_t slot, struct snap_image *img,
			struct wisp_err *err)
{
	struct snap_virtio_state s;
	int r = snap_get(img, SNAP_SEC_VIRTIO_MMIO, SNAP_VIRTIO_VERSION, slot, &s, sizeof(s), err);
	if (r < 0)
		return r;
	pthread_mutex_lock(&d->lock);
	r = restore_locked(d, slot, &s, img, err);
	pthread_mutex_unlock(&d->lock);
	return r;
}

void snap_virtio_kick(struct virtio_mmio_dev *d)
{
	/* Anything the guest queued before the snapshot and any interrupt it
	 * had not yet taken are delivered again once the VM runs. */
	uint64_t one = 1;
	if (!d->active)
		return;
	for (int i = 0; i < d->ops->nr_queues; i++)
		if (d->queues[i].ready && d->kick_fd[i] >= 0 &&
		    write(d->kick_fd[i], &one, sizeof(one)) < 0)
			wlog_debug("%s: kick after restore: %m", d->name);
	if (d->isr && d->irq_fd >= 0 && write(d->irq_fd, &one, sizeof(one)) < 0)
		wlog_debug("%s: interrupt after restore: %m", d->name);
}
