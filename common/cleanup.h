/* Cleanup attributes: resources released when their variable leaves scope. */
#ifndef WISP_CLEANUP_H
#define WISP_CLEANUP_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <errno.h>

static inline void wisp_freep(void *p)
{
	free(*(void **)p);
}

static inline void wisp_closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}

static inline void wisp_fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}

#define _cleanup_free_   __attribute__((cleanup(wisp_freep)))
#define _cleanup_close_  __attribute__((cleanup(wisp_closep)))
#define _cleanup_fclose_ __attribute__((cleanup(wisp_fclosep)))

/* Hand ownership out of a cleanup variable: returns the value, leaves a
 * value the cleanup ignores. */
#define wisp_steal_fd(fd) ({ int _f = (fd); (fd) = -1; _f; })
#define wisp_steal_ptr(p) ({ __typeof__(p) _p = (p); (p) = NULL; _p; })

#define WISP_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
