/* wisp-jailer argument checks: everything refused before any file is
 * touched. No root needed. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jailer/jailer.h"


static int parse(char **argv, int argc, struct jail_args *a, struct wisp_err *e)
{
	wisp_err_clear(e);
	return jail_parse_args(argc, argv, a, e);
}

/* The compound literal lives as long as the test's block: a and its
 * pointers into argv stay valid. */
#define PARSE(a, e, ...) \
	parse((char *[]){ "wisp-jailer", __VA_ARGS__, NULL }, \
	      (int)(sizeof((char *[]){ "wisp-jailer", __VA_ARGS__, NULL }) / sizeof(char *)) - 1, \
	      a, e)

Test(jailer_args, full_command_line)
{
	struct jail_args a;
	struct wisp_err e;
	int r = PARSE(&a, &e, "--id", "vm-1", "--exec-file", "/usr/bin/wisp-vmm", "--uid", "123",
		      "--gid", "456", "--chroot-base-dir", "/tmp/j", "--netns", "/var/run/netns/x",
		      "--daemonize", "--new-pid-ns", "--cgroup", "cpu.shares=512", "--cgroup",
		      "pids.max=64", "--cgroup-version", "2", "--parent-cgroup", "wisp/vms",
		      "--resource-limit", "fsize=4096", "--resource-limit", "no-file=100", "--",
		      "--api-sock", "/run/api.sock");
	cr_assert_eq(r, 0, "%s", e.msg);
	cr_assert_str_eq(a.id, "vm-1");
	cr_assert_str_eq(a.exec_name, "wisp-vmm");
	cr_assert_eq(a.uid, 123);
	cr_assert_eq(a.gid, 456);
	cr_assert_str_eq(a.base, "/tmp/j");
	cr_assert_str_eq(a.netns, "/var/run/netns/x");
	cr_assert(a.daemonize && a.new_pid_ns);
	cr_assert_eq(a.nr_cgroups, 2);
	cr_assert_str_eq(a.cgroups[0].controller, "cpu");
	cr_assert_str_eq(a.cgroups[0].key, "cpu.shares");
	cr_assert_str_eq(a.cgroups[0].value, "512");
	cr_assert_str_eq(a.cgroups[1].controller, "pids");
	cr_assert_eq(a.cgroup_version, 2);
	cr_assert_str_eq(a.parent_cgroup, "wisp/vms");
	cr_assert(!a.parent_cgroup_default);
	cr_assert(a.have_fsize);
	cr_assert_eq(a.fsize, 4096);
	cr_assert_eq(a.nofile, 100);
	cr_assert_eq(a.vmm_argc, 2);
	cr_assert_str_eq(a.vmm_argv[0], "--api-sock");
}

Test(jailer_args, defaults)
{
	struct jail_args a;
	struct wisp_err e;
	cr_assert_eq(PARSE(&a, &e, "--id", "a", "--exec-file", "vmm", "--uid", "1", "--gid", "1"),
		     0, "%s", e.msg);
	cr_assert_str_eq(a.base, "/srv/jailer");
	cr_assert_eq(a.cgroup_version, 1);
	cr_assert_str_eq(a.parent_cgroup, "vmm");
	cr_assert(a.parent_cgroup_default);
	cr_assert_eq(a.nofile, JAIL_DEFAULT_NOFILE);
	cr_assert(!a.have_fsize);
	cr_assert_eq(a.vmm_argc, 0);
}

Test(jailer_args, ids_that_could_escape_are_refused)
{
	struct jail_args a;
	struct wisp_err e;
	const char *bad[] = { "a/b", "..", "../x", "a.b", "", "a b", "id\n", "é" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = PARSE(&a, &e, "--id", (char *)bad[i], "--exec-file", "/bin/true", "--uid",
			      "1", "--gid", "1");
		cr_assert_eq(r, -EINVAL, "id '%s' accepted", bad[i]);
		cr_assert(strstr(e.msg, "--id") != NULL, "message: %s", e.msg);
	}
	char longid[JAIL_ID_MAX + 2];
	memset(longid, 'a', sizeof(longid) - 1);
	longid[sizeof(longid) - 1] = '\0';
	cr_assert_eq(PARSE(&a, &e, "--id", longid, "--exec-file", "/bin/true", "--uid", "1",
			   "--gid", "1"), -EINVAL);
	cr_assert(strstr(e.msg, "more than 64") != NULL, "%s", e.msg);
	longid[JAIL_ID_MAX] = '\0';     /* exactly 64 is fine */
	cr_assert_eq(PARSE(&a, &e, "--id", longid, "--exec-file", "/bin/true", "--uid", "1",
			   "--gid", "1"), 0, "%s", e.msg);
	cr_assert_eq(jail_check_id("a/b", &e), -EINVAL);
	cr_assert(strstr(e.msg, "'/'") != NULL, "%s", e.msg);
}

Test(jailer_args, required_flags)
{
	struct jail_args a;
	struct wisp_err e;
	cr_assert_eq(PARSE(&a, &e, "--exec-file", "/bin/true", "--uid", "1", "--gid", "1"),
		     -EINVAL);
	cr_assert_str_eq(e.msg, "--id is required");
	cr_assert_eq(PARSE(&a, &e, "--id", "x", "--uid", "1", "--gid", "1"), -EINVAL);
	cr_assert_str_eq(e.msg, "--exec-file is required");
	cr_assert_eq(PARSE(&a, &e, "--id", "x", "--exec-file", "/bin/true", "--gid", "1"),
		     -EINVAL);
	cr_assert_str_eq(e.msg, "--uid is required");
	/* --cleanup needs only the id and the exec file's name */
	cr_assert_eq(PARSE(&a, &e, "--cleanup", "--id", "x", "--exec-file", "/bin/true"), 0,
		     "%s", e.msg);
	cr_assert(a.cleanup);
}

Test(jailer_args, bad_numbers_flags_and_paths)
{
	struct jail_args a;
	struct wisp_err e;
	cr_assert_eq(PARSE(&a, &e, "--id", "x", "--exec-file", "/bin/true", "--uid", "-1",
			   "--gid", "1"), -EINVAL);
	cr_assert(strstr(e.msg, "--uid") != NULL, "%s", e.msg);
	cr_assert_eq(PARSE(&a, &e, "--id", "x", "--exec-file", "/bin/true", "--uid", "1",
			   "--gid", "4294967295"), -EINVAL);
	cr_assert_eq(PARSE(&a, &e, "--id", "x", "--exec-file", "/bin/true", "--uid", "1x",
			   "--gid", "1"), -EINVAL);
	cr_assert_eq(PARSE(&a, &e, "--id", "x", "--bogus"), -EINVAL);
	cr_assert(strstr(e.msg, "unknown flag '--bogus'") != NULL, "%s", e.msg);
	cr_assert_eq(PARSE(&a, &e, "--id"), -EINVAL);
	cr_assert(strstr(e.msg, "needs a value") != NULL, "%s", e.msg);
	cr_assert_eq(PARSE(&a, &e, "--id", "x", "--exec-file", "/bin/true", "--uid", "1",
			   "--gid", "1", "stray"), -EINVAL);
	cr_assert(strstr(e.msg, "after --") != NULL, "%s", e.msg);
	cr_assert_eq(PARSE(&a, &e, "--id", "x", "--exec-file", "/bin/true", "--uid", "1",
			   "--gid", "1", "--chroot-base-dir", "rel/dir"), -EINVAL);
	cr_assert_eq(PARSE(&a, &e, "--id", "x", "--exec-file", "/bin/true", "--uid", "1",
			   "--gid", "1", "--chroot-base-dir", "/srv/../etc"), -EINVAL);
	cr_assert_eq(PARSE(&a, &e, "--id", "x", "--exec-file", "/bin/", "--uid", "1", "--gid",
			   "1"), 0, "%s", e.msg);
	cr_assert_str_eq(a.exec_name, "bin");
	cr_assert_eq(PARSE(&a, &e, "--id", "x", "--exec-file", "/usr/..", "--uid", "1",
			   "--gid", "1"), -EINVAL);
	cr_assert_eq(PARSE(&a, &e, "--id", "x", "--exec-file", "/bin/true", "--uid", "1",
			   "--gid", "1", "--cgroup-version", "3"), -EINVAL);
	cr_assert(strstr(e.msg, "--cgroup-version") != NULL, "%s", e.msg);
	const char *parents[] = { "/abs", "a/../b", "..", "a//b", "a/", "a b" };
	for (size_t i = 0; i < sizeof(parents) / sizeof(parents[0]); i++) {
		cr_assert_eq(PARSE(&a, &e, "--id", "x", "--exec-file", "/bin/true", "--uid", "1",
				   "--gid", "1", "--parent-cgroup", (char *)parents[i]),
			     -EINVAL, "parent '%s' accepted", parents[i]);
		cr_assert(strstr(e.msg, "--parent-cgroup") != NULL, "%s", e.msg);
	}
}

Test(jailer_args, bad_cgroup_syntax)
{
	struct jail_cgroup_kv kv;
	struct wisp_err e;
	const char *bad[] = { "cpu.shares", "=5", "cpushares=5", ".shares=5", "cpu.=5",
			      "cpu.shares=", "../cpu.x=1", "cpu/x.y=1", "CPU.shares=1",
			      "cpu.shares=1\n2", "pids..max=1" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		wisp_err_clear(&e);
		cr_assert_eq(jail_check_cgroup_kv(bad[i], &kv, &e), -EINVAL, "'%s' accepted",
			     bad[i]);
		cr_assert(strstr(e.msg, "--cgroup") != NULL, "%s", e.msg);
	}
	cr_assert_eq(jail_check_cgroup_kv("cpuset.cpus=0-1", &kv, &e), 0, "%s", e.msg);
	cr_assert_str_eq(kv.controller, "cpuset");
	cr_assert_str_eq(kv.key, "cpuset.cpus");
	cr_assert_str_eq(kv.value, "0-1");
	cr_assert_eq(jail_check_cgroup_kv("cpu.max=100000 100000", &kv, &e), 0, "%s", e.msg);
	cr_assert_str_eq(kv.value, "100000 100000");
}

Test(jailer_args, bad_resource_limits)
{
	struct jail_args a;
	struct wisp_err e;
	memset(&a, 0, sizeof(a));
	const char *bad[] = { "fsize", "fsize=", "fsize=-1", "fsize=1k", "nofile=5",
			      "no-file=0", "no-file=99999999999", "cpu=1",
			      "fsize=99999999999999999999" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		wisp_err_clear(&e);
		cr_assert_eq(jail_check_rlimit(bad[i], &a, &e), -EINVAL, "'%s' accepted", bad[i]);
		cr_assert(strstr(e.msg, "--resource-limit") != NULL, "%s", e.msg);
	}
	cr_assert_eq(jail_check_rlimit("fsize=0", &a, &e), 0);
	cr_assert(a.have_fsize);
	cr_assert_eq(a.fsize, 0);
	cr_assert_eq(jail_check_rlimit("no-file=4096", &a, &e), 0);
	cr_assert_eq(a.nofile, 4096);
}

Test(jailer_args, missing_or_unusable_exec_file)
{
	struct wisp_err e = { 0 };
	cr_assert_eq(jail_open_exec("/nonexistent/wisp-vmm", &e), -ENOENT);
	cr_assert(strstr(e.msg, "exec file /nonexistent/wisp-vmm") != NULL, "%s", e.msg);
	cr_assert_eq(jail_open_exec("/", &e), -EINVAL);
	cr_assert(strstr(e.msg, "not an executable regular file") != NULL, "%s", e.msg);
	char path[] = "/tmp/wisp-jail-XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(jail_open_exec(path, &e), -EINVAL, "a file without x bits accepted");
	chmod(path, 0755);
	fd = jail_open_exec(path, &e);
	cr_assert_geq(fd, 0, "%s", e.msg);
	cr_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	close(fd);
	unlink(path);
}

Test(jailer_fs, existing_jail_and_planted_symlink_are_refused)
{
	char base[] = "/tmp/wisp-jailbase-XXXXXX";
	cr_assert_not_null(mkdtemp(base));
	struct jail_args a;
	struct wisp_err e;
	cr_assert_eq(PARSE(&a, &e, "--id", "j1", "--exec-file", "/bin/true", "--uid", "1",
			   "--gid", "1", "--chroot-base-dir", base), 0, "%s", e.msg);
	struct jail_fs fs;
	cr_assert_eq(jail_fs_check(&a, &fs, &e), 0, "%s", e.msg);
	char p[4200];
	snprintf(p, sizeof(p), "%s/true", base);
	cr_assert_eq(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/true/j1", base);
	cr_assert_eq(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/true/j1/root", base);
	cr_assert_eq(symlink("/etc", p), 0);
	cr_assert_eq(jail_fs_check(&a, &fs, &e), -ENOTDIR);
	cr_assert(strstr(e.msg, "symlink") != NULL, "%s", e.msg);
	cr_assert_eq(unlink(p), 0);
	cr_assert_eq(mkdir(p, 0755), 0);
	cr_assert_eq(jail_fs_check(&a, &fs, &e), 0, "a pre-staged root is allowed: %s", e.msg);
	snprintf(p, sizeof(p), "%s/true/j1/root/true", base);
	cr_assert_eq(symlink("/etc/shadow", p), 0);
	cr_assert_eq(jail_fs_check(&a, &fs, &e), -EEXIST);
	cr_assert(strstr(e.msg, "symlink is planted") != NULL, "%s", e.msg);
	cr_assert_eq(unlink(p), 0);
	int fd = open(p, O_CREAT | O_WRONLY, 0755);
	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(jail_fs_check(&a, &fs, &e), -EEXIST);
	cr_assert(strstr(e.msg, "already exists") != NULL, "%s", e.msg);
	snprintf(p, sizeof(p), "%s/true", base);
	int dfd = open(base, O_RDONLY | O_DIRECTORY);
	cr_assert_eq(jail_rmtree_at(dfd, "true", &e), 0, "%s", e.msg);
	close(dfd);
	cr_assert_eq(access(p, F_OK), -1);
	cr_assert_eq(rmdir(base), 0);
}

Test(jailer_fs, rmtree_does_not_follow_symlinks)
{
	char base[] = "/tmp/wisp-rmtree-XXXXXX";
	cr_assert_not_null(mkdtemp(base));
	char victim[] = "/tmp/wisp-victim-XXXXXX";
	cr_assert_not_null(mkdtemp(victim));
	char p[4200];
	snprintf(p, sizeof(p), "%s/keep", victim);
	int fd = open(p, O_CREAT | O_WRONLY, 0644);
	cr_assert_geq(fd, 0);
	close(fd);
	snprintf(p, sizeof(p), "%s/t", base);
	cr_assert_eq(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/t/link", base);
	cr_assert_eq(symlink(victim, p), 0);
	struct wisp_err e;
	int dfd = open(base, O_RDONLY | O_DIRECTORY);
	cr_assert_eq(jail_rmtree_at(dfd, "t", &e), 0, "%s", e.msg);
	close(dfd);
	snprintf(p, sizeof(p), "%s/keep", victim);
	cr_assert_eq(access(p, F_OK), 0, "rmtree followed a symlink");
	unlink(p);
	rmdir(victim);
	rmdir(base);
}
