/* virtio 1.x over virtio-mmio (version 2, modern only): one transport, one
 * split-virtqueue implementation, and the three devices (blk, net, vsock).
 *
 * Threads: a vCPU thread touches a device's registers (virtio_mmio_read/
 * write, under the device's mutex, nothing slow); queues are processed on
 * the VMM thread, woken by the queue's kick eventfd (an ioeventfd on
 * QueueNotify when KVM is there), with the same mutex held. Interrupts go
 * out through the device's irqfd eventfd. Every guest-controlled value is
 * checked; a violation marks the device failed (DEVICE_NEEDS_RESET), counts
 * it and logs it rate-limited, and only that device stops. */
#ifndef WISP_VIRTIO_H
#define WISP_VIRTIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "vmm/config.h"
#include "vmm/mem.h"

struct vm;
struct evloop;
struct metrics_dev;
struct snap_writer;
struct snap_image;

/* ---- virtio constants (virtio 1.2, sections 2, 4.2, 5) ---- */

#define VIRTIO_MMIO_MAGIC            0x74726976u /* "virt" */
#define VIRTIO_MMIO_VERSION          2u
#define VIRTIO_VENDOR_ID             0x70736977u /* "wisp" */

#define VIRTIO_MMIO_MAGIC_VALUE      0x000
#define VIRTIO_MMIO_VERSION_REG      0x004
#define VIRTIO_MMIO_DEVICE_ID        0x008
#define VIRTIO_MMIO_VENDOR_ID        0x00c
#define VIRTIO_MMIO_DEVICE_FEATURES  0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES  0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL        0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX    0x034
#define VIRTIO_MMIO_QUEUE_NUM        0x038
#define VIRTIO_MMIO_QUEUE_READY      0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY     0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS 0x060
#define VIRTIO_MMIO_INTERRUPT_ACK    0x064
#define VIRTIO_MMIO_STATUS           0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW   0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH  0x084
#define VIRTIO_MMIO_QUEUE_AVAIL_LOW  0x090
#define VIRTIO_MMIO_QUEUE_AVAIL_HIGH 0x094
#define VIRTIO_MMIO_QUEUE_USED_LOW   0x0a0
#define VIRTIO_MMIO_QUEUE_USED_HIGH  0x0a4
#define VIRTIO_MMIO_SHM_SEL          0x0ac
#define VIRTIO_MMIO_SHM_LEN_LOW      0x0b0
#define VIRTIO_MMIO_SHM_LEN_HIGH     0x0b4
#define VIRTIO_MMIO_SHM_BASE_LOW     0x0b8
#define VIRTIO_MMIO_SHM_BASE_HIGH    0x0bc
#define VIRTIO_MMIO_CONFIG_GENERATION 0x0fc
#define VIRTIO_MMIO_CONFIG           0x100

#define VIRTIO_STATUS_ACKNOWLEDGE    1u
#define VIRTIO_STATUS_DRIVER         2u
#define VIRTIO_STATUS_DRIVER_OK      4u
#define VIRTIO_STATUS_FEATURES_OK    8u
#define VIRTIO_STATUS_NEEDS_RESET    64u
#define VIRTIO_STATUS_FAILED         128u

#define VIRTIO_INT_VRING             1u
#define VIRTIO_INT_CONFIG            2u

#define VIRTIO_F_INDIRECT_DESC       28
#define VIRTIO_F_EVENT_IDX           29
#define VIRTIO_F_VERSION_1           32

#define VIRTQ_DESC_F_NEXT            1u
#define VIRTQ_DESC_F_WRITE           2u
#define VIRTQ_DESC_F_INDIRECT        4u
#define VIRTQ_AVAIL_F_NO_INTERRUPT   1u
#define VIRTQ_USED_F_NO_NOTIFY       1u

#define VIRTQ_MAX_SIZE               32768u   /* split ring limit */
#define VIRTQ_CHAIN_MAX              256      /* buffers in one chain */
#define VIRTIO_MAX_QUEUES            3

#define VIRTIO_ID_NET                1
#define VIRTIO_ID_BLOCK              2
#define VIRTIO_ID_VSOCK              19

#define VIRTIO_BIT(b) (1ull << (b))

/* ---- split virtqueue ---- */

struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};
_Static_assert(sizeof(struct virtq_desc) == 16, "virtq_desc layout");

struct virtq_used_elem {
	uint32_t id;
	uint32_t len;
};
_Static_assert(sizeof(struct virtq_used_elem) == 8, "virtq_used_elem layout");

/* One guest buffer of a chain: host pointer to the whole checked range. */
struct virtq_buf {
	uint8_t *p;
	uint32_t len;
	bool write;       /* device-writable */
};

/* A popped descriptor chain: readable buffers first, then writable ones. */
struct virtq_chain {
	uint16_t head;
	int nr;           /* buffers */
	int nr_read;      /* the first nr_read are device-readable */
	uint64_t read_len, write_len;
	struct virtq_buf bufs[VIRTQ_CHAIN_MAX];
};

struct virtq {
	/* set by the driver through the transport */
	uint16_t num;
	uint16_t num_max;
	bool ready;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	/* negotiated */
	bool event_idx;
	bool indirect;
	/* checked host views, valid while ready */
	struct virtq_desc *desc;
	uint16_t *avail;      /* flags, idx, ring[num], used_event */
	uint8_t *used;        /* flags, idx, ring[num], avail_event */
	/* device side */
	uint16_t last_avail;  /* next avail entry to consume */
	uint16_t used_idx;    /* next used entry to fill */
	uint16_t signalled_used;
	bool signalled_valid;
	const char *error;    /* why the last walk failed */
};

/* Checks geometry (num power of two <= num_max, alignment, every ring in
 * one RAM region) and caches host pointers. -EINVAL with q->error set. */
int virtq_setup(struct virtq *q, const struct gmem *mem);
void virtq_reset(struct virtq *q);
/* 1: a chain was popped into *c; 0: nothing available; -EINVAL: the guest
 * broke the protocol (q->error says how; the device must fail). */
int virtq_pop(struct virtq *q, const struct gmem *mem, struct virtq_chain *c);
/* Give back the last popped chain unconsumed (nothing was used). */
void virtq_unpop(struct virtq *q);
/* Publish a used element (len = bytes written into the chain). */
void virtq_push(struct virtq *q, uint16_t head, uint32_t len);
/* Whether the driver wants an interrupt for what was pushed since the last
 * call (EVENT_IDX's used_event, or the NO_INTERRUPT flag). */
bool virtq_should_notify(struct virtq *q);
/* Ask for a kick when more buffers come (EVENT_IDX avail_event); returns
 * true when buffers arrived meanwhile (process again). */
bool virtq_enable_notify(struct virtq *q);
/* One line on the queue's state for the log: the driver's indices in guest
 * memory (avail idx, flags, used_event) beside the device's own. */
void virtq_describe(const struct virtq *q, char *buf, size_t size);
bool virtq_has_avail(struct virtq *q);

/* Copy between a chain's buffers and host memory. off counts from the
 * first readable (copy_from) or first writable (copy_to) byte. Return the
 * number of bytes copied. */
size_t virtq_chain_read(const struct virtq_chain *c, size_t off, void *dst, size_t len);
size_t virtq_chain_write(const struct virtq_chain *c, size_t off, const void *src, size_t len);
/* Up to max iovecs covering [off, off+len) of the readable or writable
 * part; returns the count, *got the bytes covered. */
struct iovec;
int virtq_chain_iov(const struct virtq_chain *c, bool write, size_t off, size_t len,
		    struct iovec *iov, int max, size_t *got);

/* ---- virtio-mmio transport ---- */

struct virtio_mmio_dev;

struct virtio_dev_ops {
	const char *name;
	uint32_t device_id;
	int nr_queues;
	uint16_t queue_max;
	uint32_t config_size;
	/* config space, offset and len checked to be inside config_size */
	void (*config_read)(struct virtio_mmio_dev *d, uint32_t off, uint8_t *data, uint32_t len);
	void (*config_write)(struct virtio_mmio_dev *d, uint32_t off, const uint8_t *data,
			     uint32_t len);
	/* DRIVER_OK: start the backend; non-zero fails the device */
	int (*activate)(struct virtio_mmio_dev *d);
	/* status 0: drop everything in flight */
	void (*reset)(struct virtio_mmio_dev *d);
	/* a queue was kicked (VMM thread, lock held, device active) */
	void (*queue_notify)(struct virtio_mmio_dev *d, int qi);
	void (*destroy)(struct virtio_mmio_dev *d);
	/* Snapshots (snapshot_dev.c), lock held: the device's own state
	 * struct under its own section id, instance = slot. restore runs on a
	 * device freshly built from the snapshot's configuration, after the
	 * transport's registers are back and before the backend starts, and
	 * refuses state that does not fit this device. NULL: no own state. */
	int (*snap_save)(struct virtio_mmio_dev *d, uint32_t slot, struct snap_writer *w);
	int (*snap_restore)(struct virtio_mmio_dev *d, uint32_t slot, struct snap_image *img,
			    struct wisp_err *err);
};

struct virtio_mmio_dev {
	pthread_mutex_t lock;
	const struct virtio_dev_ops *ops;
	void *priv;
	const struct gmem *mem;
	struct evloop *loop;             /* NULL in unit tests */
	struct metrics_dev *metrics;     /* per-device counters (vmm/metrics.h); may be NULL */
	char name[32];
	uint64_t base;                   /* MMIO window */
	unsigned int irq;
	/* transport state */
	uint64_t device_features;
	uint64_t driver_features;
	uint32_t dev_feat_sel, drv_feat_sel;
	uint32_t queue_sel;
	uint32_t status;
	uint32_t isr;
	uint32_t config_generation;
	uint32_t shm_sel;
	bool active;                     /* DRIVER_OK accepted */
	bool failed;                     /* NEEDS_RESET raised */
	uint64_t violations;             /* guest protocol violations, ever */
	uint64_t interrupts;
	struct virtq queues[VIRTIO_MAX_QUEUES];
	int kick_fd[VIRTIO_MAX_QUEUES];  /* eventfds: QueueNotify */
	int irq_fd;                      /* eventfd: the irqfd */
	struct virtio_kick {             /* event loop context of each kick fd */
		struct virtio_mmio_dev *d;
		int qi;
	} kick[VIRTIO_MAX_QUEUES];
};

/* Create the transport for a device; priv belongs to the device. */
int virtio_mmio_init(struct virtio_mmio_dev *d, const struct virtio_dev_ops *ops, void *priv,
		     const struct gmem *mem, uint64_t features, struct wisp_err *err);
void virtio_mmio_destroy(struct virtio_mmio_dev *d);
/* Destroy a device made by one of the *_create functions and free it. */
void virtio_device_free(struct virtio_mmio_dev *d);
/* Register accesses (vCPU threads): the bus_ops of the window. */
void virtio_mmio_read(void *opaque, uint64_t off, uint8_t *data, uint32_t len);
void virtio_mmio_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len);
/* Log the transport's state and every ready queue's (SIGUSR1, vm_log_state). */
void virtio_mmio_log_state(struct virtio_mmio_dev *d);
/* Process a kick of queue qi (VMM thread): takes the lock. */
void virtio_mmio_kick(struct virtio_mmio_dev *d, int qi);
/* Device side, lock held: */
bool virtio_has_feature(const struct virtio_mmio_dev *d, int bit);
/* Mark the device failed for a guest violation (or a dead backend). */
void virtio_mmio_fail(struct virtio_mmio_dev *d, const char *why);
/* Raise the used-buffer interrupt when the queue's driver wants it. */
void virtio_mmio_notify_queue(struct virtio_mmio_dev *d, int qi);
/* Device configuration changed: bump the generation, config interrupt. */
void virtio_mmio_config_changed(struct virtio_mmio_dev *d);
/* Pop with violation handling: a protocol error fails the device. */
int virtio_mmio_pop(struct virtio_mmio_dev *d, int qi, struct virtq_chain *c);

/* ---- the devices ---- */

/* Each creates a device (transport and backend) on guest memory mem; loop
 * is the VMM thread's event loop for backend fds (NULL: none, unit tests). */
int virtio_blk_create(const struct gmem *mem, struct evloop *loop, const struct vmcfg_drive *cfg,
		      struct virtio_mmio_dev **out, struct wisp_err *err);
/* Serve what waited for the rate limiter (its timer fired). */
void virtio_blk_rl_timer(struct virtio_mmio_dev *d);
int virtio_net_create(const struct gmem *mem, struct evloop *loop, const struct vmcfg_net *cfg,
		      struct virtio_mmio_dev **out, struct wisp_err *err);
int virtio_vsock_create(const struct gmem *mem, struct evloop *loop,
			const struct vmcfg_vsock *cfg, struct virtio_mmio_dev **out,
			struct wisp_err *err);
/* After boot, on the VMM thread (PATCH /drives, PATCH /network-interfaces):
 * a drive's new backing file and/or rate limiter, an interface's new rx/tx
 * rate limiters; NULL keeps what is there. -ENOENT for an unknown id. */
int virtio_blk_update(struct vm *vm, const char *drive_id, const char *path_on_host,
		      const struct vmcfg_rate_limiter *rl, struct wisp_err *err);
int virtio_net_update(struct vm *vm, const char *iface_id, const struct vmcfg_rate_limiter *rx,
		      const struct vmcfg_rate_limiter *tx, struct wisp_err *err);
/* Drop every connection and send VIRTIO_VSOCK_EVENT_TRANSPORT_RESET. */
void virtio_vsock_reset(struct virtio_mmio_dev *d);

/* ---- wiring into the VM ---- */

/* Create every device vm->cfg asks for (the root drive first, so it is
 * /dev/vda; other drives, network-interfaces, vsock), each with its MMIO
 * window from vm_alloc_mmio_slot (the boot code announces the windows with
 * virtio_mmio.device=), ioeventfds, irqfd and event loop handlers, into
 * vm->virtio[]. Call from vm_build, after the event loop is initialized and
 * before the command line is written. */
int virtio_devices_create(struct vm *vm, struct wisp_err *err);
/* The root drive's kernel arguments: " root=/dev/vda ro|rw" (or
 * root=PARTUUID=<partuuid>), nothing without a root drive. Appends to the
 * NUL-terminated buf of size bytes; -ENOSPC when it does not fit. */
int virtio_cmdline_append(const struct vm *vm, char *buf, size_t size, struct wisp_err *err);
void virtio_devices_destroy(struct vm *vm);
/* After a snapshot restore: the vsock device resets every connection and
 * tells the guest (VIRTIO_VSOCK_EVENT_TRANSPORT_RESET). */
void virtio_vsock_transport_reset(struct vm *vm);

#endif
