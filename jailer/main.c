/* wisp-jailer: see jailer.h and jail.c for the steps, in order. */
#include "jailer.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char usage[] =
	"usage: wisp-jailer --id ID --exec-file PATH --uid UID --gid GID\n"
	"         [--chroot-base-dir DIR] [--netns PATH] [--daemonize] [--new-pid-ns]\n"
	"         [--cgroup-version 1|2] [--cgroup FILE=VALUE]... [--parent-cgroup PATH]\n"
	"         [--resource-limit fsize=N|no-file=N]... [-- VMM FLAGS]\n"
	"       wisp-jailer --cleanup --id ID --exec-file PATH [--chroot-base-dir DIR]\n"
	"         [--parent-cgroup PATH]\n"
	"The jail is <chroot-base-dir>/<exec file name>/<id>/root (base /srv/jailer).\n"
	"Exit status: 0 once the VMM is exec'd (with --daemonize or --new-pid-ns the\n"
	"jailer waits for its child's exec); 1 with the failed step on stderr, after\n"
	"removing what this run made.\n";

/* Step 1: nothing inherited reaches the VMM. */
static int close_inherited_fds(void)
{
	if (syscall(SYS_close_range, 3U, ~0U, 0U) == 0)
		return 0;
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -errno;
	int self = dirfd(d);
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		int fd = atoi(de->d_name);
		if (fd > 2 && fd != self)
			close(fd);
	}
	closedir(d);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		fputs(usage, stdout);
		return 0;
	}
	int r = close_inherited_fds();
	if (r < 0) {
		fprintf(stderr, "wisp-jailer: close inherited file descriptors: %s\n",
			strerror(-r));
		return 1;
	}
	if (clearenv() != 0) {
		fprintf(stderr, "wisp-jailer: clear the environment failed\n");
		return 1;
	}
	umask(022);

	struct jail_args a;
	struct wisp_err err = { 0 };
	if (jail_parse_args(argc, argv, &a, &err) < 0) {
		fprintf(stderr, "wisp-jailer: %s\n%s", err.msg, usage);
		return 1;
	}
	r = a.cleanup ? jail_cleanup(&a, &err) : jail_run(&a, &err);
	if (r == JAIL_RUN_DONE)
		return 0;       /* the VMM runs (in a daemonized or new-PID-namespace jail) */
	if (r == JAIL_RUN_REPORTED)
		return 1;       /* a forked child: its parent prints the error */
	if (r < 0) {
		fprintf(stderr, "wisp-jailer: %s\n", err.msg);
		return 1;
	}
	return 0;
}
