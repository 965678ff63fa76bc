/* Snapshot memory files: sparse full and diff writes with their footer,
 * checks before restore, merging a diff onto its base, and the atomic
 * commit of a state + memory pair. */
#include "snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/io.h"
#include "layout.h"

#define PAGE WISP_PAGE_SIZE
#define WRITE_CHUNK (64ull << 20)
#define COPY_BUF (1u << 20)

static int pwrite_all(int fd, const uint8_t *p, uint64_t len, uint64_t off)
{
	while (len > 0) {
		size_t n = len > WRITE_CHUNK ? WRITE_CHUNK : (size_t)len;
		ssize_t w = pwrite(fd, p, n, (off_t)off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		off += (uint64_t)w;
		len -= (uint64_t)w;
	}
	return 0;
}

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *q = (const uint64_t *)p;
	for (size_t i = 0; i < PAGE / sizeof(uint64_t); i += 8) {
		if (q[i] | q[i + 1] | q[i + 2] | q[i + 3] | q[i + 4] | q[i + 5] | q[i + 6] |
		    q[i + 7])
			return false;
	}
	return true;
}

static bool page_wanted(const uint8_t *host, const uint64_t *dirty, uint64_t pg)
{
	if (dirty)
		return (dirty[pg / 64] >> (pg % 64)) & 1;
	return !page_is_zero(host + pg * PAGE);
}

int snap_tmp_create(const char *path, char tmp[], size_t tmp_size, struct wisp_err *err)
{
	if (snprintf(tmp, tmp_size, "%s.tmp.XXXXXX", path) >= (int)tmp_size)
		return wisp_err_set(err, ENAMETOOLONG, "path too long: %s", path);
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		tmp[0] = '\0';
		return wisp_err_sys(err, e, "create a temporary file for %s", path);
	}
	return fd;
}

static struct snap_mem_footer footer_for(uint64_t mem_size, bool diff, uint64_t snap_id,
				       uint64_t base_id)
{
	struct snap_mem_footer f;
	memset(&f, 0, sizeof(f));
	memcpy(f.magic, SNAP_MEM_MAGIC, sizeof(f.magic));
	f.version = SNAP_MEM_VERSION;
	f.flags = diff ? SNAP_F_DIFF : 0;
	f.mem_size = mem_size;
	f.snap_id = snap_id;
	f.base_id = diff ? base_id : 0;
	return f;
}

/* A file of mem_size bytes of RAM and its footer page. */
static int write_footer(int fd, const struct snap_mem_footer *f, const char *path,
			struct wisp_err *err)
{
	if (ftruncate(fd, (off_t)(f->mem_size + SNAP_MEM_FOOTER_SIZE)) < 0)
		return wisp_err_sys(err, errno, "memory file %s: set size to %llu bytes", path,
				    (unsigned long long)(f->mem_size + SNAP_MEM_FOOTER_SIZE));
	int r = pwrite_all(fd, (const uint8_t *)f, sizeof(*f), f->mem_size);
	if (r < 0)
		return wisp_err_sys(err, -r, "memory file %s: write the footer", path);
	return 0;
}

int snap_mem_write(const struct gmem *m, const char *path,
		   const uint64_t *const dirty[GMEM_MAX_REGIONS], uint64_t snap_id,
		   uint64_t base_id, char *tmp_out, struct wisp_err *err)
{
	char tmp[PATH_MAX];
	_cleanup_close_ int fd = snap_tmp_create(path, tmp, sizeof(tmp), err);
	if (fd < 0)
		return fd;
	const struct snap_mem_footer ft = footer_for(m->ram_size, dirty != NULL, snap_id, base_id);
	int r = write_footer(fd, &ft, path, err);
	if (r < 0)
		goto fail;
	uint64_t file_off = 0;
	for (int i = 0; i < m->nr_regions; i++) {
		const struct gmem_region *reg = &m->regions[i];
		const uint64_t *bm = dirty ? dirty[i] : NULL;
		uint64_t pages = reg->size / PAGE;
		uint64_t pg = 0;
		while (pg < pages) {
			if (!page_wanted(reg->host, bm, pg)) {
				pg++;
				continue;
			}
			uint64_t start = pg;
			while (pg < pages && page_wanted(reg->host, bm, pg))
				pg++;
			r = pwrite_all(fd, reg->host + start * PAGE, (pg - start) * PAGE,
				       file_off + start * PAGE);
			if (r < 0) {
				wisp_err_sys(err, -r, "memory file %s: write", path);
				goto fail;
			}
		}
		file_off += reg->size;
	}
	if (tmp_out) {
		snprintf(tmp_out, PATH_MAX, "%s", tmp);
		return 0;
	}
	if (rename(tmp, path) < 0) {
		r = wisp_err_sys(err, errno, "memory file %s: rename into place", path);
		goto fail;
	}
	return 0;
fail:
	unlink(tmp);
	return r;
}

int snap_mem_footer_read(int fd, const char *path, uint64_t size, struct snap_mem_footer *out,
			 struct wisp_err *err)
{
	if (size < SNAP_MEM_FOOTER_SIZE + WISP_PAGE_SIZE)
		return wisp_err_set(err, EINVAL,
				    "memory file %s is %llu bytes, too small for guest RAM and a footer",
				    path, (unsigned long long)size);
	struct snap_mem_footer f;
	ssize_t n;
	do
		n = pread(fd, &f, sizeof(f), (off_t)(size - SNAP_MEM_FOOTER_SIZE));
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return wisp_err_sys(err, errno, "memory file %s: read the footer", path);
	if (n != (ssize_t)sizeof(f) || memcmp(f.magic, SNAP_MEM_MAGIC, sizeof(f.magic)) != 0)
		return wisp_err_set(err, EINVAL,
				    "memory file %s has no wisp memory footer: not a wisp snapshot memory file (or one from before format 2)",
				    path);
	if (f.version != SNAP_MEM_VERSION)
		return wisp_err_set(err, EPROTO,
				    "memory file %s has footer version %u; this wisp reads version %u",
				    path, f.version, SNAP_MEM_VERSION);
	if (f.mem_size != size - SNAP_MEM_FOOTER_SIZE || (f.flags & ~SNAP_F_KNOWN) ||
	    f.snap_id == 0 || ((f.flags & SNAP_F_DIFF) != 0) != (f.base_id != 0))
		return wisp_err_set(err, EINVAL,
				    "memory file %s: its footer is damaged (%llu bytes of RAM in a %llu-byte file, flags 0x%x)",
				    path, (unsigned long long)f.mem_size, (unsigned long long)size,
				    f.flags);
	*out = f;
	return 0;
}

int snap_mem_open(const char *path, const struct snap_header *h, struct wisp_err *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return wisp_err_sys(err, errno, "memory file %s", path);
	struct stat st;
	if (fstat(fd, &st) < 0)
		return wisp_err_sys(err, errno, "memory file %s: stat", path);
	if (!S_ISREG(st.st_mode))
		return wisp_err_set(err, EINVAL, "memory file %s is not a regular file", path);
	if ((uint64_t)st.st_size != h->mem_size + SNAP_MEM_FOOTER_SIZE)
		return wisp_err_set(err, EINVAL,
				    "memory file %s is %lld bytes; the snapshot's guest memory is %llu bytes (plus a %u-byte footer)",
				    path, (long long)st.st_size, (unsigned long long)h->mem_size,
				    SNAP_MEM_FOOTER_SIZE);
	struct snap_mem_footer f;
	int r = snap_mem_footer_read(fd, path, (uint64_t)st.st_size, &f, err);
	if (r < 0)
		return r;
	if (f.flags & SNAP_F_DIFF)
		return wisp_err_set(err, EINVAL,
				    "memory file %s is a Diff snapshot's: it holds only the pages written since snapshot %016llx, not a whole memory image; merge it onto that snapshot's memory file first (wisp-snap merge BASE_MEM %s) and load the merged file",
				    path, (unsigned long long)f.base_id, path);
	if (f.snap_id != h->snap_id) {
		if (h->base_id == f.snap_id)
			return wisp_err_set(err, EINVAL,
					    "memory file %s is the base (snapshot %016llx) of this Diff snapshot %016llx, not yet merged with the diff; merge the diff's memory file onto it first (wisp-snap merge %s DIFF_MEM)",
					    path, (unsigned long long)f.snap_id,
					    (unsigned long long)h->snap_id, path);
		return wisp_err_set(err, EINVAL,
				    "memory file %s belongs to snapshot %016llx; the state file is snapshot %016llx",
				    path, (unsigned long long)f.snap_id, (unsigned long long)h->snap_id);
	}
	return wisp_steal_fd(fd);
}

/* Copy every data extent of src's first size bytes into dst at the same
 * offsets. */
static int copy_extents(int dst, int src, uint64_t size, uint8_t *buf, const char *what,
			struct wisp_err *err)
{
	off_t off = 0;
	while ((uint64_t)off < size) {
		off_t data = lseek(src, off, SEEK_DATA);
		if (data < 0) {
			if (errno == ENXIO)
				break;  /* only a hole remains */
			return wisp_err_sys(err, errno, "%s: find data", what);
		}
		if ((uint64_t)data >= size)
			break;  /* the footer */
		off_t hole = lseek(src, data, SEEK_HOLE);
		if (hole < 0)
			return wisp_err_sys(err, errno, "%s: find hole", what);
		if ((uint64_t)hole > size)
			hole = (off_t)size;
		for (off_t pos = data; pos < hole;) {
			size_t n = (size_t)(hole - pos) > COPY_BUF ? COPY_BUF : (size_t)(hole - pos);
			ssize_t got = pread(src, buf, n, pos);
			if (got < 0) {
				if (errno == EINTR)
					continue;
				return wisp_err_sys(err, errno, "%s: read", what);
			}
			if (got == 0)
				return wisp_err_set(err, EIO, "%s: shrank while being copied", what);
			int r = pwrite_all(dst, buf, (uint64_t)got, (uint64_t)pos);
			if (r < 0)
				return wisp_err_sys(err, -r, "%s: write", what);
			pos += got;
		}
		off = hole;
	}
	return 0;
}

int snap_mem_merge(const char *base, const char *diff, struct snap_mem_footer *merged,
		   struct wisp_err *err)
{
	_cleanup_close_ int bfd = open(base, O_RDONLY | O_CLOEXEC);
	if (bfd < 0)
		return wisp_err_sys(err, errno, "base memory file %s", base);
	_cleanup_close_ int dfd = open(diff, O_RDONLY | O_CLOEXEC);
	if (dfd < 0)
		return wisp_err_sys(err, errno, "diff memory file %s", diff);
	struct stat bst, dst;
	if (fstat(bfd, &bst) < 0 || fstat(dfd, &dst) < 0)
		return wisp_err_sys(err, errno, "stat memory files");
	if (!S_ISREG(bst.st_mode) || !S_ISREG(dst.st_mode))
		return wisp_err_set(err, EINVAL, "memory files must be regular files");
	if (bst.st_dev == dst.st_dev && bst.st_ino == dst.st_ino)
		return wisp_err_set(err, EINVAL, "%s and %s are the same file", base, diff);
	if (bst.st_size != dst.st_size)
		return wisp_err_set(err, EINVAL,
				    "diff memory file %s is %lld bytes, its base %s is %lld bytes",
				    diff, (long long)dst.st_size, base, (long long)bst.st_size);
	struct snap_mem_footer bf, df;
	int r = snap_mem_footer_read(dfd, diff, (uint64_t)dst.st_size, &df, err);
	if (r == 0)
		r = snap_mem_footer_read(bfd, base, (uint64_t)bst.st_size, &bf, err);
	if (r < 0)
		return r;
	if (!(df.flags & SNAP_F_DIFF))
		return wisp_err_set(err, EINVAL,
				    "%s is a Full memory file (snapshot %016llx), not a diff: it loads as it is",
				    diff, (unsigned long long)df.snap_id);
	if (bf.flags & SNAP_F_DIFF)
		return wisp_err_set(err, EINVAL,
				    "base %s is itself a diff (of snapshot %016llx): merge it onto its own base first",
				    base, (unsigned long long)bf.base_id);
	if (df.base_id != bf.snap_id)
		return wisp_err_set(err, EINVAL,
				    "diff %s applies onto snapshot %016llx; base %s is snapshot %016llx",
				    diff, (unsigned long long)df.base_id, base,
				    (unsigned long long)bf.snap_id);
	const uint64_t ram = df.mem_size;
	const struct snap_mem_footer mf = footer_for(ram, false, df.snap_id, 0);
	/* The result goes to a new file renamed over base: VMs running from
	 * base keep their MAP_PRIVATE view of the old file, and a failure
	 * leaves base as it was. */
	char tmp[PATH_MAX];
	_cleanup_close_ int out = snap_tmp_create(base, tmp, sizeof(tmp), err);
	if (out < 0)
		return out;
	_cleanup_free_ uint8_t *buf = malloc(COPY_BUF);
	if (!buf) {
		r = wisp_err_set(err, ENOMEM, "no memory to merge");
		goto fail;
	}
	if (fchmod(out, bst.st_mode & 07777) < 0) {
		r = wisp_err_sys(err, errno, "prepare merged memory file for %s", base);
		goto fail;
	}
	r = write_footer(out, &mf, base, err);
	if (r == 0)
		r = copy_extents(out, bfd, ram, buf, base, err);
	if (r == 0)
		r = copy_extents(out, dfd, ram, buf, diff, err);
	if (r < 0)
		goto fail;
	if (fsync(out) < 0) {
		r = wisp_err_sys(err, errno, "fsync merged memory file");
		goto fail;
	}
	if (rename(tmp, base) < 0) {
		r = wisp_err_sys(err, errno, "rename merged memory file over %s", base);
		goto fail;
	}
	if (merged)
		*merged = mf;
	return 0;
fail:
	unlink(tmp);
	return r;
}

int snap_state_write_tmp(const char *path, const uint8_t *buf, size_t len, char tmp[],
			 size_t tmp_size, struct wisp_err *err)
{
	_cleanup_close_ int fd = snap_tmp_create(path, tmp, tmp_size, err);
	if (fd < 0)
		return fd;
	int r = wisp_write_all(fd, buf, len);
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (r < 0) {
		unlink(tmp);
		tmp[0] = '\0';
		return wisp_err_sys(err, -r, "state file %s: write", path);
	}
	return 0;
}

static void fsync_dir_of(const char *path)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", path);
	_cleanup_close_ int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0)
		fsync(dfd);
}

int snap_commit(const char *mem_tmp, const char *mem_path, const char *state_tmp,
		const char *state_path, struct wisp_err *err)
{
	if (mem_tmp && rename(mem_tmp, mem_path) < 0) {
		int e = errno;
		unlink(mem_tmp);
		if (state_tmp)
			unlink(state_tmp);
		return wisp_err_sys(err, e, "memory file %s: rename into place", mem_path);
	}
	if (state_tmp && rename(state_tmp, state_path) < 0) {
		int e = errno;
		unlink(state_tmp);
		return wisp_err_sys(err, e, "state file %s: rename into place", state_path);
	}
	if (mem_tmp)
		fsync_dir_of(mem_path);
	if (state_tmp)
		fsync_dir_of(state_path);
	return 0;
}
