/* Command line of wisp-jailer: Firecracker jailer's flags, every value
 * checked before anything on the host is touched. */
#include "jailer.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
	OPT_ID = 0x100, OPT_EXEC, OPT_UID, OPT_GID, OPT_BASE, OPT_NETNS,
	OPT_DAEMONIZE, OPT_NEWPID, OPT_CGROUP, OPT_CGVER, OPT_PARENT,
	OPT_RLIMIT, OPT_CLEANUP,
};

static const struct option long_opts[] = {
	{ "id",              required_argument, NULL, OPT_ID },
	{ "exec-file",       required_argument, NULL, OPT_EXEC },
	{ "uid",             required_argument, NULL, OPT_UID },
	{ "gid",             required_argument, NULL, OPT_GID },
	{ "chroot-base-dir", required_argument, NULL, OPT_BASE },
	{ "netns",           required_argument, NULL, OPT_NETNS },
	{ "daemonize",       no_argument,       NULL, OPT_DAEMONIZE },
	{ "new-pid-ns",      no_argument,       NULL, OPT_NEWPID },
	{ "cgroup",          required_argument, NULL, OPT_CGROUP },
	{ "cgroup-version",  required_argument, NULL, OPT_CGVER },
	{ "parent-cgroup",   required_argument, NULL, OPT_PARENT },
	{ "resource-limit",  required_argument, NULL, OPT_RLIMIT },
	{ "cleanup",         no_argument,       NULL, OPT_CLEANUP },
	{ NULL, 0, NULL, 0 },
};

int jail_check_id(const char *id, struct wisp_err *err)
{
	size_t n = strlen(id);
	if (n == 0)
		return wisp_err_set(err, EINVAL, "--id is empty");
	if (n > JAIL_ID_MAX)
		return wisp_err_set(err, EINVAL, "--id is %zu characters, more than %d",
				    n, JAIL_ID_MAX);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)id[i];
		if (!isascii(c) || !(isalnum(c) || c == '-'))
			return wisp_err_set(err, EINVAL,
					    "--id may hold only letters, digits and '-' "
					    "(found %s at offset %zu)",
					    c == '/' ? "'/'" : c == '.' ? "'.'" : "another character", i);
	}
	return 0;
}

/* "1000" -> 1000; refuses signs, blanks, overflow and the value -1. */
static int parse_u32(const char *what, const char *s, uint32_t *out, struct wisp_err *err)
{
	if (!*s || !isdigit((unsigned char)*s))
		return wisp_err_set(err, EINVAL, "%s '%s' is not a decimal number", what, s);
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || v >= UINT32_MAX)
		return wisp_err_set(err, EINVAL, "%s '%s' is not a number below %u", what, s,
				    UINT32_MAX);
	*out = (uint32_t)v;
	return 0;
}

static int parse_u64(const char *what, const char *s, uint64_t *out, struct wisp_err *err)
{
	if (!*s || !isdigit((unsigned char)*s))
		return wisp_err_set(err, EINVAL, "%s '%s' is not a decimal number", what, s);
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end)
		return wisp_err_set(err, EINVAL, "%s '%s' is not a 64-bit number", what, s);
	*out = v;
	return 0;
}

/* A cgroup file name (v1 or v2): "<controller>.<rest>", lower-case letters,
 * digits, '_' and '.', no path separators; the value is one line. */
int jail_check_cgroup_kv(const char *arg, struct jail_cgroup_kv *kv, struct wisp_err *err)
{
	const char *eq = strchr(arg, '=');
	if (!eq)
		return wisp_err_set(err, EINVAL, "--cgroup '%s' is not key=value", arg);
	size_t klen = (size_t)(eq - arg);
	if (klen == 0 || klen > 128)
		return wisp_err_set(err, EINVAL, "--cgroup '%s': the key must be 1-128 characters",
				    arg);
	const char *dot = memchr(arg, '.', klen);
	if (!dot || dot == arg || dot == eq - 1)
		return wisp_err_set(err, EINVAL,
				    "--cgroup '%s': the key must be <controller>.<file>, "
				    "as in cpu.shares or pids.max", arg);
	for (size_t i = 0; i < klen; i++) {
		char c = arg[i];
		if (!(islower((unsigned char)c) || isdigit((unsigned char)c) || c == '_' || c == '.'))
			return wisp_err_set(err, EINVAL,
					    "--cgroup '%s': the key may hold only a-z, 0-9, '_' "
					    "and '.'", arg);
	}
	if (strstr(arg, "..") && strstr(arg, "..") < eq)
		return wisp_err_set(err, EINVAL, "--cgroup '%s': '..' in the key", arg);
	const char *val = eq + 1;
	size_t vlen = strlen(val);
	if (vlen == 0)
		return wisp_err_set(err, EINVAL, "--cgroup '%s': the value is empty", arg);
	if (vlen > 256 || strchr(val, '\n'))
		return wisp_err_set(err, EINVAL,
				    "--cgroup '%s': the value must be one line of at most "
				    "256 characters", arg);
	size_t clen = (size_t)(dot - arg);
	if (clen >= sizeof(kv->controller))
		return wisp_err_set(err, EINVAL, "--cgroup '%s': controller name too long", arg);
	memcpy(kv->controller, arg, clen);
	kv->controller[clen] = '\0';
	memcpy(kv->key, arg, klen);
	kv->key[klen] = '\0';
	kv->value = val;
	return 0;
}

int jail_check_rlimit(const char *arg, struct jail_args *a, struct wisp_err *err)
{
	const char *eq = strchr(arg, '=');
	if (!eq)
		return wisp_err_set(err, EINVAL,
				    "--resource-limit '%s' is not fsize=N or no-file=N", arg);
	size_t klen = (size_t)(eq - arg);
	uint64_t v;
	if (klen == 5 && strncmp(arg, "fsize", 5) == 0) {
		if (parse_u64("--resource-limit fsize", eq + 1, &v, err) < 0)
			return -EINVAL;
		a->fsize = v;
		a->have_fsize = true;
		return 0;
	}
	if (klen == 7 && strncmp(arg, "no-file", 7) == 0) {
		if (parse_u64("--resource-limit no-file", eq + 1, &v, err) < 0)
			return -EINVAL;
		if (v == 0 || v > INT_MAX)
			return wisp_err_set(err, EINVAL,
					    "--resource-limit no-file=%s: must be 1 to %d",
					    eq + 1, INT_MAX);
		a->nofile = v;
		return 0;
	}
	return wisp_err_set(err, EINVAL,
			    "--resource-limit '%s': unknown resource (fsize or no-file)", arg);
}

/* A relative path below some directory: no leading '/', no empty, '.' or
 * '..' component, only [A-Za-z0-9._-]. */
int jail_check_relpath(const char *what, const char *path, struct wisp_err *err)
{
	size_t n = strlen(path);
	if (n == 0 || n > 1024)
		return wisp_err_set(err, EINVAL, "%s must be 1-1024 characters", what);
	if (path[0] == '/')
		return wisp_err_set(err, EINVAL, "%s '%s' must be a relative path", what, path);
	const char *p = path;
	while (*p) {
		const char *slash = strchrnul(p, '/');
		size_t len = (size_t)(slash - p);
		if (len == 0 || (len == 1 && p[0] == '.') ||
		    (len == 2 && p[0] == '.' && p[1] == '.'))
			return wisp_err_set(err, EINVAL,
					    "%s '%s' has an empty, '.' or '..' component", what, path);
		for (size_t i = 0; i < len; i++) {
			char c = p[i];
			if (!(isalnum((unsigned char)c) || c == '.' || c == '_' || c == '-'))
				return wisp_err_set(err, EINVAL,
						    "%s '%s' may hold only letters, digits, '.', "
						    "'_', '-' and '/'", what, path);
		}
		p = *slash ? slash + 1 : slash;
		if (*slash && !*p)
			return wisp_err_set(err, EINVAL, "%s '%s' ends with '/'", what, path);
	}
	return 0;
}

static int set_exec_name(struct jail_args *a, struct wisp_err *err)
{
	const char *path = a->exec_file;
	size_t n = strlen(path);
	while (n > 1 && path[n - 1] == '/')
		n--;
	size_t start = n;
	while (start > 0 && path[start - 1] != '/')
		start--;
	size_t len = n - start;
	if (len == 0 || len > JAIL_NAME_MAX ||
	    (len == 1 && path[start] == '.') ||
	    (len == 2 && path[start] == '.' && path[start + 1] == '.'))
		return wisp_err_set(err, EINVAL, "--exec-file '%s' does not name a file", path);
	memcpy(a->exec_name, path + start, len);
	a->exec_name[len] = '\0';
	return 0;
}

static int check_abs(const char *what, const char *path, struct wisp_err *err)
{
	if (path[0] != '/')
		return wisp_err_set(err, EINVAL, "%s '%s' must be an absolute path", what, path);
	if (strlen(path) > 1024)
		return wisp_err_set(err, EINVAL, "%s is longer than 1024 characters", what);
	for (const char *p = path; (p = strstr(p, "..")) != NULL; p += 2) {
		if (p[-1] == '/' && (p[2] == '/' || p[2] == '\0'))
			return wisp_err_set(err, EINVAL, "%s '%s' has a '..' component", what, path);
	}
	return 0;
}

int jail_parse_args(int argc, char **argv, struct jail_args *a, struct wisp_err *err)
{
	memset(a, 0, sizeof(*a));
	a->base = JAIL_DEFAULT_BASE;
	a->cgroup_version = 1;
	a->nofile = JAIL_DEFAULT_NOFILE;

	optind = 0;     /* full reset: the unit tests parse many times */
	opterr = 0;
	int c;
	uint32_t v;
	while ((c = getopt_long(argc, argv, "+:", long_opts, NULL)) != -1) {
		const char *arg = optarg;
		switch (c) {
		case OPT_ID:
			if (jail_check_id(arg, err) < 0)
				return -EINVAL;
			a->id = arg;
			break;
		case OPT_EXEC:
			a->exec_file = arg;
			if (set_exec_name(a, err) < 0)
				return -EINVAL;
			break;
		case OPT_UID:
			if (parse_u32("--uid", arg, &v, err) < 0)
				return -EINVAL;
			a->uid = v;
			a->have_uid = true;
			break;
		case OPT_GID:
			if (parse_u32("--gid", arg, &v, err) < 0)
				return -EINVAL;
			a->gid = v;
			a->have_gid = true;
			break;
		case OPT_BASE:
			if (check_abs("--chroot-base-dir", arg, err) < 0)
				return -EINVAL;
			a->base = arg;
			break;
		case OPT_NETNS:
			if (check_abs("--netns", arg, err) < 0)
				return -EINVAL;
			a->netns = arg;
			break;
		case OPT_DAEMONIZE:
			a->daemonize = true;
			break;
		case OPT_NEWPID:
			a->new_pid_ns = true;
			break;
		case OPT_CGROUP:
			if (a->nr_cgroups >= JAIL_MAX_CGROUPS)
				return wisp_err_set(err, EINVAL, "more than %d --cgroup flags",
						    JAIL_MAX_CGROUPS);
			if (jail_check_cgroup_kv(arg, &a->cgroups[a->nr_cgroups], err) < 0)
				return -EINVAL;
			a->nr_cgroups++;
			break;
		case OPT_CGVER:
			if (strcmp(arg, "1") == 0)
				a->cgroup_version = 1;
			else if (strcmp(arg, "2") == 0)
				a->cgroup_version = 2;
			else
				return wisp_err_set(err, EINVAL, "--cgroup-version '%s' is not 1 or 2",
						    arg);
			break;
		case OPT_PARENT:
			if (jail_check_relpath("--parent-cgroup", arg, err) < 0)
				return -EINVAL;
			a->parent_cgroup = arg;
			break;
		case OPT_RLIMIT:
			if (jail_check_rlimit(arg, a, err) < 0)
				return -EINVAL;
			break;
		case OPT_CLEANUP:
			a->cleanup = true;
			break;
		case ':':
			return wisp_err_set(err, EINVAL, "%s needs a value", argv[optind - 1]);
		default:
			return wisp_err_set(err, EINVAL, "unknown flag '%s'", argv[optind - 1]);
		}
	}
	/* getopt stops at "--" (consumed) or at the first non-flag. */
	if (optind < argc) {
		if (strcmp(argv[optind - 1], "--") != 0)
			return wisp_err_set(err, EINVAL,
					    "unexpected argument '%s' (VMM flags go after --)",
					    argv[optind]);
		a->vmm_argv = &argv[optind];
		a->vmm_argc = argc - optind;
	}
	if (!a->id)
		return wisp_err_set(err, EINVAL, "--id is required");
	if (!a->exec_file)
		return wisp_err_set(err, EINVAL, "--exec-file is required");
	if (!a->cleanup) {
		if (!a->have_uid)
			return wisp_err_set(err, EINVAL, "--uid is required");
		if (!a->have_gid)
			return wisp_err_set(err, EINVAL, "--gid is required");
	}
	if (!a->parent_cgroup) {
		a->parent_cgroup = a->exec_name;
		a->parent_cgroup_default = true;
	}
	if (strlen(a->base) + strlen(a->exec_name) + strlen(a->id) + 16 > PATH_MAX / 2)
		return wisp_err_set(err, EINVAL, "the jail path would be too long");
	return 0;
}
