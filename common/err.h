/* Errors: functions return 0 or a negative errno and fill a wisp_err with a
 * message that names what failed (crun style). */
#ifndef WISP_ERR_H
#define WISP_ERR_H

#include <stddef.h>

#define WISP_ERR_MSG_MAX 512

struct wisp_err {
	int code;                     /* positive errno, 0 when unset */
	char msg[WISP_ERR_MSG_MAX];
};

/* Record an error and return -errnum, so callers can write
 * `return wisp_err_set(err, EINVAL, "bad %s", x);`.
 * err may be NULL. The first error recorded wins: later calls that wrap
 * an already set error keep the original message and prepend context via
 * wisp_err_prefix(). */
int wisp_err_set(struct wisp_err *err, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Like wisp_err_set, with ": strerror(errnum)" appended. */
int wisp_err_sys(struct wisp_err *err, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prepend "context: " to an existing message. Returns -err->code. */
int wisp_err_prefix(struct wisp_err *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

void wisp_err_clear(struct wisp_err *err);

#endif
