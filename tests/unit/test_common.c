#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "common/io.h"
#include "common/log.h"

Test(err, set_returns_negative_errno_and_message)
{
	struct wisp_err e = { 0 };
	int r = wisp_err_set(&e, EINVAL, "bad key %s", "vcpu_count");
	cr_assert_eq(r, -EINVAL);
	cr_assert_eq(e.code, EINVAL);
	cr_assert_str_eq(e.msg, "bad key vcpu_count");
	wisp_err_prefix(&e, "machine-config");
	cr_assert_str_eq(e.msg, "machine-config: bad key vcpu_count");
}

Test(io, atomic_write_and_capped_read)
{
	char dir[] = "/tmp/wisp-io-XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	char path[256];
	snprintf(path, sizeof(path), "%s/f", dir);
	struct wisp_err e = { 0 };
	cr_assert_eq(wisp_write_file_atomic(path, "hello", 5, 0600, &e), 0);
	char *buf = NULL;
	size_t len = 0;
	cr_assert_eq(wisp_read_file(path, 16, &buf, &len, &e), 0);
	cr_assert_eq(len, 5);
	cr_assert_str_eq(buf, "hello");
	free(buf);
	cr_assert_eq(wisp_read_file(path, 4, &buf, &len, &e), -EFBIG);
	cr_assert(strstr(e.msg, "limit") != NULL);
	unlink(path);
	rmdir(dir);
}

Test(log, level_parse)
{
	enum wisp_log_level l;
	cr_assert_eq(wisp_log_level_parse("Warning", &l), 0);
	cr_assert_eq(l, WISP_LOG_WARN);
	cr_assert_eq(wisp_log_level_parse("loud", &l), -EINVAL);
}

Test(log, rate_limit_drops_after_burst)
{
	struct wisp_log_rl rl = { 0 };
	for (int i = 0; i < WISP_LOG_RL_BURST; i++)
		cr_assert_geq(wisp_log_rl_check(&rl), 0);
	cr_assert_eq(wisp_log_rl_check(&rl), -1);
	cr_assert_eq(wisp_log_rl_check(&rl), -1);
}
