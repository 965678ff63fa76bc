/* Safe I/O: full reads and writes across EINTR and short transfers, whole
 * file reads with a size cap, and atomic file replacement. */
#ifndef WISP_IO_H
#define WISP_IO_H

#include <stddef.h>
#include <sys/types.h>

#include "err.h"

/* Write all of buf; returns 0 or -errno. */
int wisp_write_all(int fd, const void *buf, size_t len);
/* Read exactly len bytes; -EPIPE on early end of file. */
int wisp_read_exact(int fd, void *buf, size_t len);
/* Read a whole file of at most max bytes into a NUL-terminated malloc'd
 * buffer. Refuses larger files with -EFBIG before reading them. */
int wisp_read_file(const char *path, size_t max, char **out, size_t *len,
		   struct wisp_err *err);
/* Write a file atomically: a temporary file in the same directory, fsync,
 * rename over path, fsync the directory. Nothing is left half-written. */
int wisp_write_file_atomic(const char *path, const void *buf, size_t len,
			   mode_t mode, struct wisp_err *err);
/* Monotonic clock in nanoseconds. */
unsigned long long wisp_now_ns(void);

#endif
