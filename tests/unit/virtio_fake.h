/* A fake guest for the virtio unit tests: guest RAM over malloc'd buffers
 * (gmem_add_region), a register-level driver for the mmio transport, and
 * helpers that write descriptors and ring entries the way a driver would
 * (or the way a hostile one would). */
#ifndef WISP_TEST_VIRTIO_FAKE_H
#define WISP_TEST_VIRTIO_FAKE_H

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/mem.h"
#include "vmm/virtio/virtio.h"

#define FAKE_RAM0_SIZE  (2u << 20)       /* gpa [0, 2 MiB) */
#define FAKE_RAM1_GPA   0x400000ull      /* gpa [4 MiB, 4 MiB + 64 KiB) */
#define FAKE_RAM1_SIZE  (64u << 10)

#define FAKE_DESC   0x1000ull
#define FAKE_AVAIL  0x2000ull
#define FAKE_USED   0x3000ull
#define FAKE_DATA   0x10000ull
/* second queue's rings */
#define FAKE_DESC1  0x5000ull
#define FAKE_AVAIL1 0x6000ull
#define FAKE_USED1  0x7000ull

struct fake_guest {
	struct gmem mem;
	uint8_t *ram0, *ram1;
	uint16_t avail_idx[VIRTIO_MAX_QUEUES];
};

static inline void fake_init(struct fake_guest *g)
{
	memset(g, 0, sizeof(*g));
	g->ram0 = calloc(1, FAKE_RAM0_SIZE);
	g->ram1 = calloc(1, FAKE_RAM1_SIZE);
	cr_assert(g->ram0 && g->ram1);
	cr_assert_eq(gmem_add_region(&g->mem, 0, g->ram0, FAKE_RAM0_SIZE), 0);
	cr_assert_eq(gmem_add_region(&g->mem, FAKE_RAM1_GPA, g->ram1, FAKE_RAM1_SIZE), 0);
}

static inline void fake_fini(struct fake_guest *g)
{
	free(g->ram0);
	free(g->ram1);
}

static inline void *fake_ptr(struct fake_guest *g, uint64_t gpa)
{
	void *p = gmem_ptr(&g->mem, gpa, 1);
	cr_assert_not_null(p);
	return p;
}

static inline void mw32(struct virtio_mmio_dev *d, uint64_t off, uint32_t v)
{
	virtio_mmio_write(d, off, (const uint8_t *)&v, 4);
}

static inline uint32_t mr32(struct virtio_mmio_dev *d, uint64_t off)
{
	uint32_t v;
	virtio_mmio_read(d, off, (uint8_t *)&v, 4);
	return v;
}

static inline uint64_t fake_ring_base(int qi, int which)
{
	static const uint64_t b[2][3] = { { FAKE_DESC, FAKE_AVAIL, FAKE_USED },
					  { FAKE_DESC1, FAKE_AVAIL1, FAKE_USED1 } };
	return b[qi > 0 ? 1 : 0][which] + (qi > 1 ? 0x3000ull * (uint64_t)qi : 0);
}

/* Status ACKNOWLEDGE | DRIVER, features, FEATURES_OK. Returns the status read back. */
static inline uint32_t fake_negotiate(struct virtio_mmio_dev *d, uint64_t features)
{
	mw32(d, VIRTIO_MMIO_STATUS, 0);
	mw32(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	mw32(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	mw32(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	mw32(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)features);
	mw32(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	mw32(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(features >> 32));
	mw32(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
				    VIRTIO_STATUS_FEATURES_OK);
	return mr32(d, VIRTIO_MMIO_STATUS);
}

static inline void fake_queue(struct virtio_mmio_dev *d, int qi, uint32_t num, uint64_t desc,
			      uint64_t avail, uint64_t used)
{
	mw32(d, VIRTIO_MMIO_QUEUE_SEL, (uint32_t)qi);
	mw32(d, VIRTIO_MMIO_QUEUE_NUM, num);
	mw32(d, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)desc);
	mw32(d, VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(desc >> 32));
	mw32(d, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)avail);
	mw32(d, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, (uint32_t)(avail >> 32));
	mw32(d, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)used);
	mw32(d, VIRTIO_MMIO_QUEUE_USED_HIGH, (uint32_t)(used >> 32));
	mw32(d, VIRTIO_MMIO_QUEUE_READY, 1);
}

static inline void fake_driver_ok(struct virtio_mmio_dev *d)
{
	mw32(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
				    VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
}

/* Whole bring-up of every queue with size num. */
static inline void fake_bringup(struct virtio_mmio_dev *d, uint64_t features, uint32_t num)
{
	cr_assert(fake_negotiate(d, features) & VIRTIO_STATUS_FEATURES_OK);
	for (int i = 0; i < d->ops->nr_queues; i++)
		fake_queue(d, i, num, fake_ring_base(i, 0), fake_ring_base(i, 1),
			   fake_ring_base(i, 2));
	fake_driver_ok(d);
	cr_assert(d->active, "device did not activate: status 0x%x", d->status);
}

static inline void fake_desc(struct fake_guest *g, int qi, uint16_t i, uint64_t addr,
			     uint32_t len, uint16_t flags, uint16_t next)
{
	struct virtq_desc dd = { .addr = addr, .len = len, .flags = flags, .next = next };
	memcpy(fake_ptr(g, fake_ring_base(qi, 0) + 16ull * i), &dd, sizeof(dd));
}

static inline void fake_indirect(struct fake_guest *g, uint64_t table, uint16_t i,
				 uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	struct virtq_desc dd = { .addr = addr, .len = len, .flags = flags, .next = next };
	memcpy(fake_ptr(g, table + 16ull * i), &dd, sizeof(dd));
}

/* Put head on the avail ring and publish it. num: the queue size. */
static inline void fake_avail(struct fake_guest *g, int qi, uint16_t num, uint16_t head)
{
	uint16_t *avail = fake_ptr(g, fake_ring_base(qi, 1));
	avail[2 + (g->avail_idx[qi] % num)] = head;
	g->avail_idx[qi]++;
	__atomic_store_n(&avail[1], g->avail_idx[qi], __ATOMIC_RELEASE);
}

static inline uint16_t fake_used_idx(struct fake_guest *g, int qi)
{
	uint16_t *used = fake_ptr(g, fake_ring_base(qi, 2));
	return used[1];
}

static inline struct virtq_used_elem fake_used_elem(struct fake_guest *g, int qi, uint16_t i,
						    uint16_t num)
{
	struct virtq_used_elem e;
	memcpy(&e, fake_ptr(g, fake_ring_base(qi, 2) + 4 + 8ull * (i % num)), sizeof(e));
	return e;
}

/* Drain the device's irqfd: the number of interrupts raised since last time. */
static inline uint64_t fake_irqs(struct virtio_mmio_dev *d)
{
	uint64_t v = 0;
	if (read(d->irq_fd, &v, sizeof(v)) != sizeof(v))
		return 0;
	return v;
}

#endif
