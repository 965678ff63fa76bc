#include "err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int err_vset(struct wisp_err *err, int errnum, int with_strerror,
		    const char *fmt, va_list ap)
{
	if (errnum <= 0)
		errnum = EIO;
	if (!err)
		return -errnum;
	err->code = errnum;
	int n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	if (with_strerror && n >= 0 && (size_t)n < sizeof(err->msg))
		snprintf(err->msg + n, sizeof(err->msg) - (size_t)n, ": %s",
			 strerror(errnum));
	return -errnum;
}

int wisp_err_set(struct wisp_err *err, int errnum, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = err_vset(err, errnum, 0, fmt, ap);
	va_end(ap);
	return r;
}

int wisp_err_sys(struct wisp_err *err, int errnum, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = err_vset(err, errnum, 1, fmt, ap);
	va_end(ap);
	return r;
}

int wisp_err_prefix(struct wisp_err *err, const char *fmt, ...)
{
	if (!err)
		return -EIO;
	char prefix[WISP_ERR_MSG_MAX];
	char old[WISP_ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	snprintf(err->msg, sizeof(err->msg), "%s: %s", prefix, old);
	if (err->code == 0)
		err->code = EIO;
	return -err->code;
}

void wisp_err_clear(struct wisp_err *err)
{
	if (err) {
		err->code = 0;
		err->msg[0] = '\0';
	}
}
