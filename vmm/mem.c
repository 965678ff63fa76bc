/* Guest memory: the RAM layout around the MMIO gap and the one checked
 * accessor everything else goes through. */
#include "mem.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "layout.h"

/* Split ram_size into the regions the layout implies. Returns the count. */
static int gmem_layout(uint64_t ram_size, uint64_t gpa[2], uint64_t size[2])
{
	if (ram_size <= WISP_MMIO_GAP_START) {
		gpa[0] = 0;
		size[0] = ram_size;
		return 1;
	}
	gpa[0] = 0;
	size[0] = WISP_MMIO_GAP_START;
	gpa[1] = WISP_HIGH_RAM_START;
	size[1] = ram_size - WISP_MMIO_GAP_START;
	return 2;
}

static int gmem_check_size(uint64_t ram_size, struct wisp_err *err)
{
	if (ram_size == 0 || ram_size % WISP_PAGE_SIZE)
		return wisp_err_set(err, EINVAL, "guest RAM size %llu is not a positive multiple of 4 KiB",
				    (unsigned long long)ram_size);
	if (ram_size < (WISP_MIN_MEM_MIB << 20) || ram_size > (WISP_MAX_MEM_MIB << 20))
		return wisp_err_set(err, EINVAL, "guest RAM size %llu MiB outside %llu..%llu MiB",
				    (unsigned long long)(ram_size >> 20), WISP_MIN_MEM_MIB,
				    WISP_MAX_MEM_MIB);
	return 0;
}

static int gmem_map(struct gmem *m, uint64_t ram_size, int fd, struct wisp_err *err)
{
	uint64_t gpa[2], size[2];
	int r = gmem_check_size(ram_size, err);
	if (r)
		return r;
	memset(m, 0, sizeof(*m));
	m->owned = true;
	int n = gmem_layout(ram_size, gpa, size);
	uint64_t off = 0;
	for (int i = 0; i < n; i++) {
		void *p;
		if (fd >= 0)
			p = mmap(NULL, size[i], PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE,
				 fd, (off_t)off);
		else
			p = mmap(NULL, size[i], PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p == MAP_FAILED) {
			int e = errno;
			gmem_destroy(m);
			return wisp_err_sys(err, e, "mapping %llu MiB of guest RAM",
					    (unsigned long long)(size[i] >> 20));
		}
		/* Guest RAM never belongs in a core dump or a forked child. */
		madvise(p, size[i], MADV_DONTDUMP);
		madvise(p, size[i], MADV_DONTFORK);
		m->regions[i] = (struct gmem_region){
			.gpa = gpa[i], .size = size[i], .host = p, .file_off = off,
		};
		m->nr_regions = i + 1;
		m->ram_size += size[i];
		off += size[i];
	}
	return 0;
}

int gmem_init_anon(struct gmem *m, uint64_t ram_size, struct wisp_err *err)
{
	return gmem_map(m, ram_size, -1, err);
}

int gmem_init_file(struct gmem *m, uint64_t ram_size, int fd, struct wisp_err *err)
{
	if (fd < 0)
		return wisp_err_set(err, EBADF, "guest memory file descriptor is invalid");
	return gmem_map(m, ram_size, fd, err);
}

int gmem_add_region(struct gmem *m, uint64_t gpa, void *host, uint64_t size)
{
	if (size == 0 || !host)
		return -EINVAL;
	if (gpa + size < gpa)
		return -EOVERFLOW;
	for (int i = 0; i < m->nr_regions; i++) {
		const struct gmem_region *r = &m->regions[i];
		if (gpa < r->gpa + r->size && r->gpa < gpa + size)
			return -EEXIST;
	}
	if (m->nr_regions >= GMEM_MAX_REGIONS)
		return -ENOSPC;
	m->regions[m->nr_regions++] = (struct gmem_region){
		.gpa = gpa, .size = size, .host = host, .file_off = m->ram_size,
	};
	m->ram_size += size;
	return 0;
}

int gmem_track_dirty(struct gmem *m, struct wisp_err *err)
{
	for (int i = 0; i < m->nr_regions; i++) {
		if (m->vmm_dirty[i])
			continue;
		size_t words = (m->regions[i].size / WISP_PAGE_SIZE + 63) / 64;
		m->vmm_dirty[i] = calloc(words ? words : 1, sizeof(uint64_t));
		if (!m->vmm_dirty[i])
			return wisp_err_set(err, ENOMEM, "no memory for the dirty page bitmap");
	}
	return 0;
}

static void gmem_mark_dirty(const struct gmem *m, int i, uint64_t off, uint64_t len)
{
	uint64_t *bm = m->vmm_dirty[i];
	for (uint64_t pg = off / WISP_PAGE_SIZE; pg <= (off + len - 1) / WISP_PAGE_SIZE; pg++)
		__atomic_fetch_or(&bm[pg / 64], 1ull << (pg % 64), __ATOMIC_RELAXED);
}

void gmem_destroy(struct gmem *m)
{
	for (int i = 0; i < GMEM_MAX_REGIONS; i++)
		free(m->vmm_dirty[i]);
	if (m->owned) {
		for (int i = 0; i < m->nr_regions; i++)
			if (m->regions[i].host)
				munmap(m->regions[i].host, m->regions[i].size);
	}
	memset(m, 0, sizeof(*m));
}

void *gmem_ptr(const struct gmem *m, uint64_t gpa, uint64_t len)
{
	if (len == 0 || gpa + len < gpa)
		return NULL;
	for (int i = 0; i < m->nr_regions; i++) {
		const struct gmem_region *r = &m->regions[i];
		if (gpa >= r->gpa && gpa - r->gpa <= r->size && len <= r->size - (gpa - r->gpa)) {
			/* Any pointer handed out may be written through. */
			if (m->vmm_dirty[i])
				gmem_mark_dirty(m, i, gpa - r->gpa, len);
			return r->host + (gpa - r->gpa);
		}
	}
	return NULL;
}

int gmem_read(const struct gmem *m, uint64_t gpa, void *dst, size_t len)
{
	if (len == 0)
		return 0;
	const void *p = gmem_ptr(m, gpa, len);
	if (!p)
		return -EFAULT;
	memcpy(dst, p, len);
	return 0;
}

int gmem_write(const struct gmem *m, uint64_t gpa, const void *src, size_t len)
{
	if (len == 0)
		return 0;
	void *p = gmem_ptr(m, gpa, len);
	if (!p)
		return -EFAULT;
	memcpy(p, src, len);
	return 0;
}

static int e820_add(struct gmem_e820 *out, int max, int *n, uint64_t addr, uint64_t size,
		    uint32_t type)
{
	if (size == 0)
		return 0;
	if (*n >= max)
		return -ENOSPC;
	out[(*n)++] = (struct gmem_e820){ .addr = addr, .size = size, .type = type };
	return 0;
}

/* The region that starts at 0 is split around the legacy hole: RAM up to
 * the EBDA (where the MP table lives), reserved up to 1 MiB, RAM above.
 * Other regions are RAM as they are. */
int gmem_e820(const struct gmem *m, struct gmem_e820 *out, int max)
{
	int n = 0, r = 0;
	for (int i = 0; i < m->nr_regions && !r; i++) {
		const struct gmem_region *g = &m->regions[i];
		uint64_t end = g->gpa + g->size;
		if (g->gpa == 0 && end > WISP_EBDA_START) {
			r = e820_add(out, max, &n, 0, WISP_EBDA_START, 1);
			if (!r)
				r = e820_add(out, max, &n, WISP_EBDA_START,
					     (end < WISP_HIMEM_START ? end : WISP_HIMEM_START) -
						     WISP_EBDA_START, 2);
			if (!r && end > WISP_HIMEM_START)
				r = e820_add(out, max, &n, WISP_HIMEM_START, end - WISP_HIMEM_START, 1);
		} else {
			r = e820_add(out, max, &n, g->gpa, g->size, 1);
		}
	}
	return r ? r : n;
}
