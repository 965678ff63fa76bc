/* Raw image file backend of virtio-blk. */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/virtio/backend.h"

int blkfile_open(struct blkfile *f, const char *path, bool read_only, struct wisp_err *err)
{
	f->fd = open(path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (f->fd < 0)
		return wisp_err_sys(err, errno, "opening drive image %s", path);
	struct stat st;
	if (fstat(f->fd, &st) < 0) {
		int e = errno;
		blkfile_close(f);
		return wisp_err_sys(err, e, "stat %s", path);
	}
	if (S_ISBLK(st.st_mode)) {
		uint64_t sz = 0;
		if (ioctl(f->fd, BLKGETSIZE64, &sz) < 0) {
			int e = errno;
			blkfile_close(f);
			return wisp_err_sys(err, e, "BLKGETSIZE64 %s", path);
		}
		f->size = sz;
	} else if (S_ISREG(st.st_mode)) {
		f->size = (uint64_t)st.st_size;
	} else {
		blkfile_close(f);
		return wisp_err_set(err, EINVAL, "drive image %s is not a file or block device",
				    path);
	}
	f->read_only = read_only;
	return 0;
}

void blkfile_close(struct blkfile *f)
{
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
}

/* Drop the first n bytes of an iovec array in place. */
static int iov_advance(struct iovec **iov, int *n, size_t k)
{
	while (*n > 0 && k >= (*iov)->iov_len) {
		k -= (*iov)->iov_len;
		(*iov)++;
		(*n)--;
	}
	if (*n > 0) {
		(*iov)->iov_base = (uint8_t *)(*iov)->iov_base + k;
		(*iov)->iov_len -= k;
	}
	return *n;
}

int blkfile_preadv(struct blkfile *f, struct iovec *iov, int n, uint64_t off)
{
	while (n > 0) {
		ssize_t r = preadv(f->fd, iov, n, (off_t)off);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0) {
			/* end of file: the rest reads as zeros */
			for (int i = 0; i < n; i++)
				memset(iov[i].iov_base, 0, iov[i].iov_len);
			return 0;
		}
		off += (uint64_t)r;
		iov_advance(&iov, &n, (size_t)r);
	}
	return 0;
}

int blkfile_pwritev(struct blkfile *f, struct iovec *iov, int n, uint64_t off)
{
	if (f->read_only)
		return -EROFS;
	while (n > 0) {
		ssize_t r = pwritev(f->fd, iov, n, (off_t)off);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO;
		off += (uint64_t)r;
		iov_advance(&iov, &n, (size_t)r);
	}
	return 0;
}

int blkfile_flush(struct blkfile *f)
{
	if (f->read_only)
		return 0;
	return fdatasync(f->fd) < 0 ? -errno : 0;
}

int blkfile_discard(struct blkfile *f, uint64_t off, uint64_t len)
{
	if (f->read_only)
		return -EROFS;
	if (fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
		      (off_t)len) < 0) {
		/* discard is a hint: a file system without hole punching keeps
		 * the data, which is allowed */
		if (errno == EOPNOTSUPP)
			return 0;
		return -errno;
	}
	return 0;
}

int blkfile_write_zeroes(struct blkfile *f, uint64_t off, uint64_t len, bool unmap)
{
	if (f->read_only)
		return -EROFS;
	int mode = unmap ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
			 : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
	if (fallocate(f->fd, mode, (off_t)off, (off_t)len) == 0)
		return 0;
	if (errno != EOPNOTSUPP)
		return -errno;
	static const uint8_t zeros[65536];
	while (len > 0) {
		size_t k = len < sizeof(zeros) ? (size_t)len : sizeof(zeros);
		ssize_t r = pwrite(f->fd, zeros, k, (off_t)off);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		off += (uint64_t)r;
		len -= (uint64_t)r;
	}
	return 0;
}
