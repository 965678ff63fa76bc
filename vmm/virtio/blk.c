/* virtio-blk (virtio 1.2 section 5.2) over a raw image file. Requests are
 * served synchronously on the VMM thread, straight between the image and
 * the guest's buffers. Every request is checked against the capacity; host
 * I/O errors reach the guest as VIRTIO_BLK_S_IOERR. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/uio.h>

#include "common/log.h"
#include "vmm/evloop.h"
#include "vmm/metrics.h"
#include "vmm/ratelimit.h"
#include "vmm/snapshot.h"
#include "vmm/vm.h"
#include "vmm/virtio/backend.h"
#include "vmm/virtio/virtio.h"

#define VIRTIO_BLK_F_SEG_MAX      2
#define VIRTIO_BLK_F_RO           5
#define VIRTIO_BLK_F_FLUSH        9
#define VIRTIO_BLK_F_DISCARD      13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

#define VIRTIO_BLK_T_IN           0
#define VIRTIO_BLK_T_OUT          1
#define VIRTIO_BLK_T_FLUSH        4
#define VIRTIO_BLK_T_GET_ID       8
#define VIRTIO_BLK_T_DISCARD      11
#define VIRTIO_BLK_T_WRITE_ZEROES 13

#define VIRTIO_BLK_S_OK           0
#define VIRTIO_BLK_S_IOERR        1
#define VIRTIO_BLK_S_UNSUPP       2

#define VIRTIO_BLK_WZ_UNMAP       1u
#define VIRTIO_BLK_ID_BYTES       20

#define BLK_QUEUE_SIZE            256
#define BLK_SECTOR                512ull
#define BLK_MAX_DISCARD_SECTORS   (1u << 22)   /* 2 GiB per segment */
#define BLK_MAX_DISCARD_SEG       1

struct virtio_blk_config {
	uint64_t capacity;
	uint32_t size_max;
	uint32_t seg_max;
	struct {
		uint16_t cylinders;
		uint8_t heads;
		uint8_t sectors;
	} geometry;
	uint32_t blk_size;
	struct {
		uint8_t physical_block_exp;
		uint8_t alignment_offset;
		uint16_t min_io_size;
		uint32_t opt_io_size;
	} topology;
	uint8_t writeback;
	uint8_t unused0;
	uint16_t num_queues;
	uint32_t max_discard_sectors;
	uint32_t max_discard_seg;
	uint32_t discard_sector_alignment;
	uint32_t max_write_zeroes_sectors;
	uint32_t max_write_zeroes_seg;
	uint8_t write_zeroes_may_unmap;
	uint8_t unused1[3];
} __attribute__((packed));
_Static_assert(sizeof(struct virtio_blk_config) == 60, "virtio_blk_config layout");

struct virtio_blk_req_hdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
} __attribute__((packed));

struct virtio_blk_seg {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags;
} __attribute__((packed));

struct blk {
	struct virtio_mmio_dev dev;
	struct blkfile file;
	struct virtio_blk_config config;
	char id[VIRTIO_BLK_ID_BYTES];
	uint64_t capacity;             /* sectors */
	struct ratelimit rl;
	struct evloop *loop;
	struct virtq_chain chain;
	struct iovec iov[VIRTQ_CHAIN_MAX];
	char drive_id[VMCFG_ID_MAX + 1]; /* for PATCH /drives */
	/* counters */
	uint64_t reads, writes, flushes, io_errors, bytes_read, bytes_written;
};

static void blk_config_read(struct virtio_mmio_dev *d, uint32_t off, uint8_t *data, uint32_t len)
{
	struct blk *b = d->priv;
	memcpy(data, (const uint8_t *)&b->config + off, len);
}

static bool in_capacity(const struct blk *b, uint64_t sector, uint64_t nsec)
{
	return sector <= b->capacity && nsec <= b->capacity - sector;
}

static uint8_t blk_rw(struct blk *b, const struct virtq_chain *c, uint64_t sector, bool write,
		      uint64_t len, uint32_t *used)
{
	if (len % BLK_SECTOR || !in_capacity(b, sector, len / BLK_SECTOR)) {
		wlog_rl(WISP_LOG_DEBUG, "%s: %s of %llu bytes at sector %llu outside the disk",
			b->dev.name, write ? "write" : "read", (unsigned long long)len,
			(unsigned long long)sector);
		return VIRTIO_BLK_S_IOERR;
	}
	if (write && b->file.read_only)
		return VIRTIO_BLK_S_IOERR;
	if (len == 0)
		return VIRTIO_BLK_S_OK;
	size_t got = 0;
	int n = virtq_chain_iov(c, write ? false : true, write ? sizeof(struct virtio_blk_req_hdr) : 0,
				len, b->iov, VIRTQ_CHAIN_MAX, &got);
	if (got != len)
		return VIRTIO_BLK_S_IOERR;
	int r = write ? blkfile_pwritev(&b->file, b->iov, n, sector * BLK_SECTOR)
		      : blkfile_preadv(&b->file, b->iov, n, sector * BLK_SECTOR);
	if (r < 0) {
		b->io_errors++;
		metrics_dev_add(b->dev.metrics, METRICS_DEV_ERRORS, 1);
		wlog_rl(WISP_LOG_WARN, "%s: host %s at sector %llu failed: %s", b->dev.name,
			write ? "write" : "read", (unsigned long long)sector, strerror(-r));
		return VIRTIO_BLK_S_IOERR;
	}
	metrics_dev_add(b->dev.metrics, METRICS_DEV_REQUESTS, 1);
	if (write) {
		b->writes++;
		b->bytes_written += len;
		metrics_dev_add(b->dev.metrics, METRICS_DEV_BYTES_WRITTEN, len);
	} else {
		b->reads++;
		b->bytes_read += len;
		metrics_dev_add(b->dev.metrics, METRICS_DEV_BYTES_READ, len);
		*used += (uint32_t)len;
	}
	return VIRTIO_BLK_S_OK;
}

static uint8_t blk_segments(struct blk *b, const struct virtq_chain *c, uint32_t type)
{
	uint64_t bytes = c->read_len - sizeof(struct virtio_blk_req_hdr);
	if (b->file.read_only)
		return VIRTIO_BLK_S_IOERR;
	if (bytes == 0 || bytes % sizeof(struct virtio_blk_seg) ||
	    bytes / sizeof(struct virtio_blk_seg) > BLK_MAX_DISCARD_SEG)
		return VIRTIO_BLK_S_UNSUPP;
	struct virtio_blk_seg s;
	virtq_chain_read(c, sizeof(struct virtio_blk_req_hdr), &s, sizeof(s));
	uint32_t known = type == VIRTIO_BLK_T_WRITE_ZEROES ? VIRTIO_BLK_WZ_UNMAP : 0;
	if (s.flags & ~known)
		return VIRTIO_BLK_S_UNSUPP;
	if (s.num_sectors > BLK_MAX_DISCARD_SECTORS || !in_capacity(b, s.sector, s.num_sectors))
		return VIRTIO_BLK_S_IOERR;
	int r = type == VIRTIO_BLK_T_DISCARD
			? blkfile_discard(&b->file, s.sector * BLK_SECTOR,
					  (uint64_t)s.num_sectors * BLK_SECTOR)
			: blkfile_write_zeroes(&b->file, s.sector * BLK_SECTOR,
					       (uint64_t)s.num_sectors * BLK_SECTOR,
					       s.flags & VIRTIO_BLK_WZ_UNMAP);
	if (r < 0) {
		b->io_errors++;
		wlog_rl(WISP_LOG_WARN, "%s: host %s failed: %s", b->dev.name,
			type == VIRTIO_BLK_T_DISCARD ? "discard" : "write-zeroes", strerror(-r));
		return VIRTIO_BLK_S_IOERR;
	}
	return VIRTIO_BLK_S_OK;
}

/* Serve one request; returns the used length, or -1 when the chain is not a
 * request at all (the device has failed). */
static int blk_request(struct blk *b, const struct virtq_chain *c)
{
	struct virtio_blk_req_hdr h;
	if (c->read_len < sizeof(h) || c->write_len < 1) {
		virtio_mmio_fail(&b->dev, "block request without header or status byte");
		return -1;
	}
	virtq_chain_read(c, 0, &h, sizeof(h));
	uint64_t data_in = c->write_len - 1;   /* device-writable bytes before status */
	uint64_t data_out = c->read_len - sizeof(h);
	uint32_t used = 0;
	uint8_t st;
	switch (h.type) {
	case VIRTIO_BLK_T_IN:
		st = blk_rw(b, c, h.sector, false, data_in, &used);
		break;
	case VIRTIO_BLK_T_OUT:
		st = blk_rw(b, c, h.sector, true, data_out, &used);
		break;
	case VIRTIO_BLK_T_FLUSH: {
		int r = blkfile_flush(&b->file);
		b->flushes++;
		if (r < 0) {
			b->io_errors++;
			wlog_rl(WISP_LOG_WARN, "%s: flush failed: %s", b->dev.name, strerror(-r));
		}
		st = r < 0 ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
		break;
	}
	case VIRTIO_BLK_T_GET_ID: {
		size_t n = data_in < VIRTIO_BLK_ID_BYTES ? (size_t)data_in : VIRTIO_BLK_ID_BYTES;
		if (n == 0) {
			st = VIRTIO_BLK_S_IOERR;
			break;
		}
		virtq_chain_write(c, 0, b->id, n);
		used = (uint32_t)n;
		st = VIRTIO_BLK_S_OK;
		break;
	}
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		st = blk_segments(b, c, h.type);
		break;
	default:
		st = VIRTIO_BLK_S_UNSUPP;
		break;
	}
	virtq_chain_write(c, c->write_len - 1, &st, 1);
	return (int)(used + 1);
}

/* Tokens a request costs: its data bytes and one op. */
static uint64_t blk_cost(const struct virtq_chain *c)
{
	struct virtio_blk_req_hdr h = { 0 };
	if (c->read_len >= sizeof(h))
		virtq_chain_read(c, 0, &h, sizeof(h));
	if (h.type == VIRTIO_BLK_T_IN)
		return c->write_len ? c->write_len - 1 : 0;
	if (h.type == VIRTIO_BLK_T_OUT && c->read_len >= sizeof(h))
		return c->read_len - sizeof(h);
	return 0;
}

static void blk_process(struct virtio_mmio_dev *d, int qi)
{
	struct blk *b = d->priv;
	struct virtq *q = &d->queues[qi];
	bool done = false;
	for (;;) {
		if (b->rl.blocked)
			break;
		int r = virtio_mmio_pop(d, qi, &b->chain);
		if (r < 0)
			return;
		if (r == 0) {
			if (virtq_enable_notify(q))
				continue;
			break;
		}
		if (!ratelimit_consume(&b->rl, blk_cost(&b->chain), 1)) {
			metrics_dev_add(d->metrics, METRICS_DEV_THROTTLED, 1);
			virtq_unpop(q);
			break;
		}
		int used = blk_request(b, &b->chain);
		if (used < 0)
			return;
		virtq_push(q, b->chain.head, (uint32_t)used);
		done = true;
	}
	if (done)
		virtio_mmio_notify_queue(d, qi);
}

static void blk_rl_event(void *opaque, uint32_t events)
{
	(void)events;
	struct blk *b = opaque;
	pthread_mutex_lock(&b->dev.lock);
	ratelimit_timer_event(&b->rl);
	if (b->dev.active && !b->dev.failed)
		blk_process(&b->dev, 0);
	pthread_mutex_unlock(&b->dev.lock);
}

static void blk_destroy(struct virtio_mmio_dev *d)
{
	struct blk *b = d->priv;
	if (b->loop && b->rl.timer_fd >= 0)
		evloop_del(b->loop, b->rl.timer_fd);
	ratelimit_destroy(&b->rl);
	blkfile_close(&b->file);
}

/* Snapshot state (SNAP_SEC_VIRTIO_BLK): what the guest was told about the
 * disk. The transport saves features and queue positions. */
#define SNAP_BLK_VERSION 1u

struct snap_blk_state {
	char drive_id[VMCFG_ID_MAX + 1];
	uint8_t read_only;
	uint8_t pad[6];
	uint64_t capacity;               /* sectors */
	struct virtio_blk_config config;
	uint8_t pad2[4];
};
_Static_assert(sizeof(struct snap_blk_state) == 144, "snap_blk_state layout");

static int blk_snap_save(struct virtio_mmio_dev *d, uint32_t slot, struct snap_writer *w)
{
	const struct blk *b = d->priv;
	struct snap_blk_state s;
	memset(&s, 0, sizeof(s));
	snprintf(s.drive_id, sizeof(s.drive_id), "%s", b->drive_id);
	s.read_only = b->file.read_only;
	s.capacity = b->capacity;
	s.config = b->config;
	return snap_put(w, SNAP_SEC_VIRTIO_BLK, SNAP_BLK_VERSION, slot, &s, sizeof(s));
}

/* The disk the guest knew: same drive, mode and size. The drive may be
 * another file (drive_overrides), a copy of the disk at snapshot time. */
static int blk_snap_restore(struct virtio_mmio_dev *d, uint32_t slot, struct snap_image *img,
			    struct wisp_err *err)
{
	struct blk *b = d->priv;
	struct snap_blk_state s;
	int r = snap_get(img, SNAP_SEC_VIRTIO_BLK, SNAP_BLK_VERSION, slot, &s, sizeof(s), err);
	if (r < 0)
		return r;
	s.drive_id[sizeof(s.drive_id) - 1] = '\0';
	if (strcmp(s.drive_id, b->drive_id) != 0)
		return wisp_err_set(err, EINVAL,
				    "virtio slot %u: the snapshot has drive \"%s\" there, the restored VM has drive \"%s\"",
				    slot, s.drive_id, b->drive_id);
	if ((s.read_only != 0) != b->file.read_only)
		return wisp_err_set(err, EINVAL, "drive %s: %s in the snapshot, %s here", b->drive_id,
				    s.read_only ? "read-only" : "read-write",
				    b->file.read_only ? "read-only" : "read-write");
	if (s.capacity != b->capacity || s.config.capacity != s.capacity)
		return wisp_err_set(err, EINVAL,
				    "drive %s: the guest knows a disk of %llu sectors, its file here has %llu; give the clone a copy of the disk as it was at snapshot time",
				    b->drive_id, (unsigned long long)s.config.capacity,
				    (unsigned long long)b->capacity);
	b->config = s.config;
	return 0;
}

static const struct virtio_dev_ops blk_ops = {
	.name = "blk",
	.device_id = VIRTIO_ID_BLOCK,
	.nr_queues = 1,
	.queue_max = BLK_QUEUE_SIZE,
	.config_size = sizeof(struct virtio_blk_config),
	.config_read = blk_config_read,
	.queue_notify = blk_process,
	.destroy = blk_destroy,
	.snap_save = blk_snap_save,
	.snap_restore = blk_snap_restore,
};

int virtio_blk_create(const struct gmem *mem, struct evloop *loop, const struct vmcfg_drive *cfg,
		      struct virtio_mmio_dev **out, struct wisp_err *err)
{
	struct blk *b = calloc(1, sizeof(*b));
	if (!b)
		return wisp_err_set(err, ENOMEM, "drive %s: out of memory", cfg->drive_id);
	b->file.fd = -1;
	b->rl.timer_fd = -1;
	int r = blkfile_open(&b->file, cfg->path_on_host, cfg->is_read_only, err);
	if (r < 0)
		goto fail;
	r = ratelimit_init(&b->rl, &cfg->rate_limiter, err);
	if (r < 0)
		goto fail;
	b->capacity = b->file.size / BLK_SECTOR;
	/* the ID is 20 bytes, zero padded, not NUL terminated when full */
	snprintf(b->drive_id, sizeof(b->drive_id), "%s", cfg->drive_id);
	size_t idlen = strnlen(cfg->drive_id, sizeof(b->id));
	memcpy(b->id, cfg->drive_id, idlen);
	b->config.capacity = b->capacity;
	b->config.seg_max = VIRTQ_CHAIN_MAX - 2;
	b->config.num_queues = 1;
	b->config.max_discard_sectors = BLK_MAX_DISCARD_SECTORS;
	b->config.max_discard_seg = BLK_MAX_DISCARD_SEG;
	b->config.discard_sector_alignment = 8;
	b->config.max_write_zeroes_sectors = BLK_MAX_DISCARD_SECTORS;
	b->config.max_write_zeroes_seg = BLK_MAX_DISCARD_SEG;
	b->config.write_zeroes_may_unmap = 1;
	uint64_t features = VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC) |
			    VIRTIO_BIT(VIRTIO_BLK_F_SEG_MAX) | VIRTIO_BIT(VIRTIO_BLK_F_FLUSH);
	if (cfg->is_read_only)
		features |= VIRTIO_BIT(VIRTIO_BLK_F_RO);
	else
		features |= VIRTIO_BIT(VIRTIO_BLK_F_DISCARD) | VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES);
	r = virtio_mmio_init(&b->dev, &blk_ops, b, mem, features, err);
	if (r < 0)
		goto fail;
	snprintf(b->dev.name, sizeof(b->dev.name), "virtio-blk:%s", cfg->drive_id);
	char mname[VMCFG_ID_MAX + 8];
	snprintf(mname, sizeof(mname), "block_%s", cfg->drive_id);
	b->dev.metrics = metrics_dev_register(mname);
	if (loop && b->rl.timer_fd >= 0) {
		r = evloop_add(loop, b->rl.timer_fd, EPOLLIN, blk_rl_event, b);
		if (r < 0) {
			virtio_mmio_destroy(&b->dev);
			free(b);
			return wisp_err_sys(err, -r, "drive %s: rate limiter timer", cfg->drive_id);
		}
		b->loop = loop;
	}
	*out = &b->dev;
	return 0;
fail:
	ratelimit_destroy(&b->rl);
	blkfile_close(&b->file);
	free(b);
	return wisp_err_prefix(err, "drive %s", cfg->drive_id);
}

/* For the rate limiter and the tests: serve what is pending after the
 * limiter's timer fired (VMM thread). */
void virtio_blk_rl_timer(struct virtio_mmio_dev *d)
{
	blk_rl_event(d->priv, EPOLLIN);
}

/* PATCH /drives after boot (VMM thread): a new backing file (same
 * read-only mode; the guest is told the capacity may have changed) and/or
 * a new rate limiter. Nothing changes when any step fails. */
int virtio_blk_update(struct vm *vm, const char *drive_id, const char *path_on_host,
		      const struct vmcfg_rate_limiter *rl, struct wisp_err *err)
{
	struct blk *b = NULL;
	for (int i = 0; i < vm->nr_virtio; i++) {
		struct virtio_mmio_dev *d = vm->virtio[i];
		if (d->ops == &blk_ops && strcmp(((struct blk *)d->priv)->drive_id, drive_id) == 0)
			b = d->priv;
	}
	if (!b)
		return wisp_err_set(err, ENOENT, "drives: the VM has no block device \"%s\"",
				    drive_id);
	struct blkfile nf = { .fd = -1 };
	struct ratelimit nrl = { .timer_fd = -1 };
	int r;
	if (path_on_host && (r = blkfile_open(&nf, path_on_host, b->file.read_only, err)) < 0)
		return wisp_err_prefix(err, "drive %s", drive_id);
	if (rl) {
		if ((r = ratelimit_init(&nrl, rl, err)) < 0 ||
		    (nrl.timer_fd >= 0 &&
		     (r = evloop_add(&vm->loop, nrl.timer_fd, EPOLLIN, blk_rl_event, b)) < 0)) {
			if (r < 0 && nrl.timer_fd >= 0 && !err->msg[0])
				wisp_err_sys(err, -r, "rate limiter timer");
			ratelimit_destroy(&nrl);
			blkfile_close(&nf);
			return wisp_err_prefix(err, "drive %s", drive_id);
		}
	}
	pthread_mutex_lock(&b->dev.lock);
	if (path_on_host) {
		blkfile_close(&b->file);
		b->file = nf;
		b->capacity = b->file.size / BLK_SECTOR;
		b->config.capacity = b->capacity;
		virtio_mmio_config_changed(&b->dev);
	}
	if (rl) {
		if (b->loop && b->rl.timer_fd >= 0)
			evloop_del(b->loop, b->rl.timer_fd);
		ratelimit_destroy(&b->rl);
		b->rl = nrl;
		b->loop = &vm->loop;
		/* What waited for the old limiter goes through the new one. */
		if (b->dev.active && !b->dev.failed)
			blk_process(&b->dev, 0);
	}
	pthread_mutex_unlock(&b->dev.lock);
	wlog_info("drive %s updated:%s%s", drive_id, path_on_host ? " backing file" : "",
		  rl ? " rate limiter" : "");
	return 0;
}
