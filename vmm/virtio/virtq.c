/* Split virtqueues (virtio 1.2 section 2.7). The rings live in guest memory
 * that the guest may change at any moment: every index and length is read
 * once, checked, and used from the local copy. */
#include <errno.h>
#include <string.h>
#include <sys/uio.h>

#include "vmm/virtio/virtio.h"

static inline uint16_t rd16(const void *p)
{
	return __atomic_load_n((const uint16_t *)p, __ATOMIC_RELAXED);
}

static inline void wr16(void *p, uint16_t v)
{
	__atomic_store_n((uint16_t *)p, v, __ATOMIC_RELAXED);
}

/* avail: flags, idx, ring[num], used_event */
#define AVAIL_FLAGS(q)      (&(q)->avail[0])
#define AVAIL_IDX(q)        (&(q)->avail[1])
#define AVAIL_RING(q, i)    (&(q)->avail[2 + (i)])
#define USED_EVENT(q)       (&(q)->avail[2 + (q)->num])
/* used: flags, idx, ring[num] of 8 bytes, avail_event */
#define USED_FLAGS(q)       ((uint16_t *)((q)->used))
#define USED_IDX(q)         ((uint16_t *)((q)->used + 2))
#define USED_ELEM(q, i)     ((struct virtq_used_elem *)((q)->used + 4 + 8 * (size_t)(i)))
#define AVAIL_EVENT(q)      ((uint16_t *)((q)->used + 4 + 8 * (size_t)(q)->num))

void virtq_reset(struct virtq *q)
{
	uint16_t max = q->num_max;
	memset(q, 0, sizeof(*q));
	q->num_max = max;
	q->num = max;
}

int virtq_setup(struct virtq *q, const struct gmem *mem)
{
	q->error = NULL;
	if (q->num == 0 || q->num > q->num_max || (q->num & (q->num - 1))) {
		q->error = "queue size is not a power of two within QueueNumMax";
		return -EINVAL;
	}
	if ((q->desc_gpa & 15) || (q->avail_gpa & 1) || (q->used_gpa & 3)) {
		q->error = "ring address misaligned";
		return -EINVAL;
	}
	uint64_t n = q->num;
	q->desc = gmem_ptr(mem, q->desc_gpa, 16 * n);
	q->avail = gmem_ptr(mem, q->avail_gpa, 6 + 2 * n);
	q->used = gmem_ptr(mem, q->used_gpa, 6 + 8 * n);
	if (!q->desc || !q->avail || !q->used) {
		q->desc = NULL;
		q->avail = NULL;
		q->used = NULL;
		q->error = "ring outside guest RAM";
		return -EINVAL;
	}
	q->last_avail = 0;
	q->used_idx = 0;
	q->signalled_used = 0;
	q->signalled_valid = false;
	return 0;
}

/* Read one descriptor from a table of n entries (the ring or an indirect
 * table), field by field into a private copy. */
static void desc_load(const struct virtq_desc *tab, uint32_t i, struct virtq_desc *out)
{
	memcpy(out, &tab[i], sizeof(*out));
}

static int add_buf(struct virtq *q, const struct gmem *mem, struct virtq_chain *c,
		   const struct virtq_desc *d)
{
	bool w = d->flags & VIRTQ_DESC_F_WRITE;
	if (d->len == 0)
		return 0; /* nothing to map; harmless */
	if (!w && c->nr > c->nr_read) {
		q->error = "device-readable buffer after a writable one";
		return -EINVAL;
	}
	if (c->nr >= VIRTQ_CHAIN_MAX) {
		q->error = "descriptor chain too long";
		return -EINVAL;
	}
	uint8_t *p = gmem_ptr(mem, d->addr, d->len);
	if (!p) {
		q->error = "buffer outside guest RAM";
		return -EINVAL;
	}
	/* lengths are u32 each and at most VIRTQ_CHAIN_MAX of them: sums in
	 * u64 cannot overflow */
	if (w)
		c->write_len += d->len;
	else {
		c->read_len += d->len;
		c->nr_read++;
	}
	c->bufs[c->nr++] = (struct virtq_buf){ .p = p, .len = d->len, .write = w };
	return 0;
}

static int walk_indirect(struct virtq *q, const struct gmem *mem, struct virtq_chain *c,
			 const struct virtq_desc *d)
{
	if (!q->indirect) {
		q->error = "indirect descriptor without VIRTIO_F_INDIRECT_DESC";
		return -EINVAL;
	}
	if (d->flags & VIRTQ_DESC_F_NEXT) {
		q->error = "indirect descriptor with NEXT";
		return -EINVAL;
	}
	if (d->len == 0 || (d->len % sizeof(struct virtq_desc))) {
		q->error = "indirect table length not a multiple of 16";
		return -EINVAL;
	}
	uint32_t n = d->len / sizeof(struct virtq_desc);
	if (n > VIRTQ_MAX_SIZE) {
		q->error = "indirect table too large";
		return -EINVAL;
	}
	const struct virtq_desc *tab = gmem_ptr(mem, d->addr, d->len);
	if (!tab) {
		q->error = "indirect table outside guest RAM";
		return -EINVAL;
	}
	uint32_t i = 0;
	for (uint32_t steps = 0;; steps++) {
		if (steps >= n) {
			q->error = "loop in indirect descriptor table";
			return -EINVAL;
		}
		struct virtq_desc e;
		desc_load(tab, i, &e);
		if (e.flags & VIRTQ_DESC_F_INDIRECT) {
			q->error = "nested indirect descriptor";
			return -EINVAL;
		}
		int r = add_buf(q, mem, c, &e);
		if (r < 0)
			return r;
		if (!(e.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		if (e.next >= n) {
			q->error = "indirect next index out of range";
			return -EINVAL;
		}
		i = e.next;
	}
}

bool virtq_has_avail(struct virtq *q)
{
	if (!q->ready || !q->avail)
		return false;
	return rd16(AVAIL_IDX(q)) != q->last_avail;
}

int virtq_pop(struct virtq *q, const struct gmem *mem, struct virtq_chain *c)
{
	if (!q->ready || !q->desc)
		return 0;
	uint16_t avail_idx = rd16(AVAIL_IDX(q));
	uint16_t pending = (uint16_t)(avail_idx - q->last_avail);
	if (pending == 0)
		return 0;
	if (pending > q->num) {
		q->error = "available index moved by more than the queue size";
		return -EINVAL;
	}
	/* ring entries are read only after the index that published them */
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	uint16_t head = rd16(AVAIL_RING(q, q->last_avail & (q->num - 1)));
	if (head >= q->num) {
		q->error = "available ring entry out of range";
		return -EINVAL;
	}
	c->head = head;
	c->nr = 0;
	c->nr_read = 0;
	c->read_len = 0;
	c->write_len = 0;
	uint16_t i = head;
	for (uint32_t steps = 0;; steps++) {
		if (steps >= q->num) {
			q->error = "loop in descriptor chain";
			return -EINVAL;
		}
		struct virtq_desc d;
		desc_load(q->desc, i, &d);
		int r;
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			if (steps != 0 || c->nr != 0) {
				/* the spec allows one indirect descriptor per chain,
				 * and only as its only element */
				q->error = "indirect descriptor inside a chain";
				return -EINVAL;
			}
			r = walk_indirect(q, mem, c, &d);
			if (r < 0)
				return r;
			break;
		}
		r = add_buf(q, mem, c, &d);
		if (r < 0)
			return r;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			break;
		if (d.next >= q->num) {
			q->error = "next descriptor index out of range";
			return -EINVAL;
		}
		i = d.next;
	}
	q->last_avail++;
	return 1;
}

void virtq_unpop(struct virtq *q)
{
	q->last_avail--;
}

void virtq_push(struct virtq *q, uint16_t head, uint32_t len)
{
	if (!q->used)
		return;
	struct virtq_used_elem *e = USED_ELEM(q, q->used_idx & (q->num - 1));
	__atomic_store_n(&e->id, (uint32_t)head, __ATOMIC_RELAXED);
	__atomic_store_n(&e->len, len, __ATOMIC_RELAXED);
	q->used_idx++;
	/* the element is visible before the index that publishes it */
	__atomic_store_n(USED_IDX(q), q->used_idx, __ATOMIC_RELEASE);
}

bool virtq_should_notify(struct virtq *q)
{
	if (!q->used)
		return false;
	/* the used index store is ordered before reading the driver's wish */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!q->event_idx)
		return !(rd16(AVAIL_FLAGS(q)) & VIRTQ_AVAIL_F_NO_INTERRUPT);
	uint16_t old = q->signalled_used, nw = q->used_idx;
	bool valid = q->signalled_valid;
	q->signalled_used = nw;
	q->signalled_valid = true;
	if (!valid)
		return true;
	uint16_t ev = rd16(USED_EVENT(q));
	/* vring_need_event: the driver's used_event lies in (old, new] */
	return (uint16_t)(nw - ev - 1) < (uint16_t)(nw - old);
}

bool virtq_enable_notify(struct virtq *q)
{
	if (!q->used)
		return false;
	if (q->event_idx)
		wr16(AVAIL_EVENT(q), q->last_avail);
	else
		wr16(USED_FLAGS(q), 0);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return rd16(AVAIL_IDX(q)) != q->last_avail;
}

void virtq_describe(const struct virtq *q, char *buf, size_t size)
{
	if (!q->ready || !q->avail || !q->used) {
		snprintf(buf, size, "not ready");
		return;
	}
	snprintf(buf, size,
		 "size %u, driver: avail idx %u flags 0x%x used_event %u; device: next avail %u, used idx %u (in memory %u) avail_event %u, last signalled %u%s",
		 q->num, rd16(AVAIL_IDX(q)), rd16(AVAIL_FLAGS(q)), rd16(USED_EVENT(q)), q->last_avail,
		 q->used_idx, rd16(USED_IDX(q)), rd16(AVAIL_EVENT(q)), q->signalled_used,
		 q->event_idx ? "" : " (no EVENT_IDX)");
}

size_t virtq_chain_read(const struct virtq_chain *c, size_t off, void *dst, size_t len)
{
	uint8_t *out = dst;
	size_t done = 0;
	for (int i = 0; i < c->nr_read && done < len; i++) {
		const struct virtq_buf *b = &c->bufs[i];
		if (off >= b->len) {
			off -= b->len;
			continue;
		}
		size_t n = b->len - off;
		if (n > len - done)
			n = len - done;
		memcpy(out + done, b->p + off, n);
		done += n;
		off = 0;
	}
	return done;
}

size_t virtq_chain_write(const struct virtq_chain *c, size_t off, const void *src, size_t len)
{
	const uint8_t *in = src;
	size_t done = 0;
	for (int i = c->nr_read; i < c->nr && done < len; i++) {
		const struct virtq_buf *b = &c->bufs[i];
		if (off >= b->len) {
			off -= b->len;
			continue;
		}
		size_t n = b->len - off;
		if (n > len - done)
			n = len - done;
		memcpy(b->p + off, in + done, n);
		done += n;
		off = 0;
	}
	return done;
}

int virtq_chain_iov(const struct virtq_chain *c, bool write, size_t off, size_t len,
		    struct iovec *iov, int max, size_t *got)
{
	int first = write ? c->nr_read : 0, last = write ? c->nr : c->nr_read;
	int n = 0;
	size_t done = 0;
	for (int i = first; i < last && done < len && n < max; i++) {
		const struct virtq_buf *b = &c->bufs[i];
		if (off >= b->len) {
			off -= b->len;
			continue;
		}
		size_t k = b->len - off;
		if (k > len - done)
			k = len - done;
		iov[n].iov_base = b->p + off;
		iov[n].iov_len = k;
		n++;
		done += k;
		off = 0;
	}
	*got = done;
	return n;
}
