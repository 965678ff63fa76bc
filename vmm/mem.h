/* Guest memory: up to two RAM regions around the MMIO gap. Nothing touches
 * guest memory except through gmem_ptr(), which checks the whole range. */
#ifndef WISP_MEM_H
#define WISP_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"

#define GMEM_MAX_REGIONS 2

struct gmem_region {
	uint64_t gpa;     /* guest physical start */
	uint64_t size;    /* bytes, page aligned */
	uint8_t *host;    /* host mapping */
	uint64_t file_off;/* offset of this region in a snapshot memory file */
};

struct gmem {
	struct gmem_region regions[GMEM_MAX_REGIONS];
	int nr_regions;
	uint64_t ram_size;  /* sum of region sizes */
	bool owned;         /* mappings are munmap'ed by gmem_destroy */
	/* With track_dirty_pages: one bit per page of each region that the VMM
	 * itself may have written through gmem_ptr() (device DMA, which KVM's
	 * dirty log does not see). Diff snapshots take these with KVM's. */
	uint64_t *vmm_dirty[GMEM_MAX_REGIONS];
};

/* Lay out ram_size bytes of anonymous memory: [0, min(ram, GAP_START)) and,
 * for larger guests, the rest from 4 GiB. */
int gmem_init_anon(struct gmem *m, uint64_t ram_size, struct wisp_err *err);
/* Same layout over a file mapped MAP_PRIVATE (snapshot restore): pages load
 * on demand and clean pages are shared through the page cache. */
int gmem_init_file(struct gmem *m, uint64_t ram_size, int fd, struct wisp_err *err);
/* Describe caller-owned host memory as guest RAM (unit tests, fuzzers). */
int gmem_add_region(struct gmem *m, uint64_t gpa, void *host, uint64_t size);
void gmem_destroy(struct gmem *m);
/* Start marking, in vmm_dirty, every page gmem_ptr() hands out. */
int gmem_track_dirty(struct gmem *m, struct wisp_err *err);

/* Host pointer for [gpa, gpa+len) or NULL when any byte of it is outside
 * one RAM region (including overflow of gpa+len). len 0 is refused. */
void *gmem_ptr(const struct gmem *m, uint64_t gpa, uint64_t len);

/* Copy helpers built on gmem_ptr(): -EFAULT when the range is not RAM. */
int gmem_read(const struct gmem *m, uint64_t gpa, void *dst, size_t len);
int gmem_write(const struct gmem *m, uint64_t gpa, const void *src, size_t len);

/* Layout helpers for boot code: the e820 entries the RAM layout implies. */
struct gmem_e820 {
	uint64_t addr, size;
	uint32_t type; /* 1 RAM, 2 reserved */
};
int gmem_e820(const struct gmem *m, struct gmem_e820 *out, int max);

#endif
