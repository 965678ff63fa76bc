#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"

int wisp_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int wisp_read_exact(int fd, void *buf, size_t len)
{
	char *p = buf;
	while (len > 0) {
		ssize_t n = read(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EPIPE;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int wisp_read_file(const char *path, size_t max, char **out, size_t *len,
		   struct wisp_err *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return wisp_err_sys(err, errno, "open %s", path);
	struct stat st;
	if (fstat(fd, &st) < 0)
		return wisp_err_sys(err, errno, "stat %s", path);
	if (!S_ISREG(st.st_mode))
		return wisp_err_set(err, EINVAL, "%s is not a regular file", path);
	if ((unsigned long long)st.st_size > max)
		return wisp_err_set(err, EFBIG, "%s is %lld bytes, more than the limit of %zu",
				    path, (long long)st.st_size, max);
	_cleanup_free_ char *buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		return wisp_err_set(err, ENOMEM, "no memory to read %s", path);
	size_t got = 0;
	for (;;) {
		if (got > (size_t)st.st_size)
			break;
		ssize_t n = read(fd, buf + got, (size_t)st.st_size + 1 - got);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return wisp_err_sys(err, errno, "read %s", path);
		}
		if (n == 0)
			break;
		got += (size_t)n;
		if (got > (size_t)st.st_size)
			return wisp_err_set(err, EFBIG, "%s grew while being read", path);
	}
	buf[got] = '\0';
	if (len)
		*len = got;
	*out = wisp_steal_ptr(buf);
	return 0;
}

int wisp_write_file_atomic(const char *path, const void *buf, size_t len,
			   mode_t mode, struct wisp_err *err)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) >= (int)sizeof(tmp))
		return wisp_err_set(err, ENAMETOOLONG, "path too long: %s", path);
	_cleanup_close_ int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return wisp_err_sys(err, errno, "create temporary file for %s", path);
	int r = wisp_write_all(fd, buf, len);
	if (r == 0 && fchmod(fd, mode) < 0)
		r = -errno;
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0) {
		unlink(tmp);
		return wisp_err_sys(err, -r, "write %s", path);
	}
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", path);
	_cleanup_close_ int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0)
		fsync(dfd);
	return 0;
}

unsigned long long wisp_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}
