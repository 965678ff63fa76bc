/* The jail, step by step, in the fixed order of the design:
 *   (1 in main: inherited fds closed, environment cleared)
 *   2 validate every input against the host, creating nothing
 *   3 create <base>/<exec name>/<id>/root and copy the exec file in
 *   4 join the network namespace, set resource limits
 *   5 create the cgroups, write the values, move in
 *   6 private mount namespace, bind the jail onto itself, pivot_root, detach
 *     the old root
 *   7 device nodes owned by the jailed user
 *   8 daemonize / new PID namespace, drop every capability, no_new_privs,
 *     switch uid/gid, exec the VMM
 * Until step 6 a failure undoes what this run created; after it the jail is
 * left for --cleanup (the message says so). */
#include "jailer.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <linux/magic.h>
#include <sys/capability.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/io.h"

struct jail_dev {
	const char *path;
	unsigned int major, minor;
};

/* Fixed misc-device numbers (Documentation/admin-guide/devices.txt). */
static const struct jail_dev jail_kvm = { "/dev/kvm", 10, 232 };
static const struct jail_dev jail_tun = { "/dev/net/tun", 10, 200 };

static int step_netns(const struct jail_args *a, int netns_fd, struct wisp_err *err)
{
	if (netns_fd >= 0 && setns(netns_fd, CLONE_NEWNET) < 0)
		return wisp_err_sys(err, errno, "join network namespace %s", a->netns);
	struct rlimit rl = { .rlim_cur = a->nofile, .rlim_max = a->nofile };
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		return wisp_err_sys(err, errno, "set resource limit no-file=%llu",
				    (unsigned long long)a->nofile);
	if (a->have_fsize) {
		rl.rlim_cur = rl.rlim_max = a->fsize;
		if (setrlimit(RLIMIT_FSIZE, &rl) < 0)
			return wisp_err_sys(err, errno, "set resource limit fsize=%llu",
					    (unsigned long long)a->fsize);
	}
	return 0;
}

static int step_pivot(const struct jail_fs *fs, struct wisp_err *err)
{
	if (unshare(CLONE_NEWNS) < 0)
		return wisp_err_sys(err, errno, "unshare the mount namespace");
	/* Nothing mounted from here on may propagate back to the host. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return wisp_err_sys(err, errno, "make / private in the new mount namespace");
	if (mount(fs->root, fs->root, NULL, MS_BIND | MS_NOSUID, NULL) < 0)
		return wisp_err_sys(err, errno, "bind %s onto itself", fs->root);
	if (chdir(fs->root) < 0)
		return wisp_err_sys(err, errno, "chdir %s", fs->root);
	/* The bind mount must be the directory the jailer created. */
	struct stat here, made;
	if (stat(".", &here) < 0 || fstat(fs->root_fd, &made) < 0 || here.st_ino != made.st_ino)
		return wisp_err_set(err, EXDEV, "%s changed under the jailer", fs->root);
	/* pivot_root(".", "."): the old root ends up stacked on the new one and
	 * is detached right away (pivot_root(2)). */
	if (syscall(SYS_pivot_root, ".", ".") < 0) {
		int e = errno;
		struct statfs sf;
		/* The initramfs (rootfs) cannot be pivoted away from: move the
		 * jail over / and chroot into it, as switch_root does. With every
		 * capability dropped later (CAP_SYS_CHROOT included) the chroot
		 * cannot be left. */
		if (e != EINVAL || statfs("/", &sf) < 0 ||
		    (sf.f_type != RAMFS_MAGIC && sf.f_type != TMPFS_MAGIC))
			return wisp_err_sys(err, e, "pivot_root into %s", fs->root);
		fprintf(stderr, "wisp-jailer: / is the initramfs: moving the jail over it and "
			"chrooting instead of pivot_root\n");
		if (mount(".", "/", NULL, MS_MOVE, NULL) < 0)
			return wisp_err_sys(err, errno, "move %s over / (initramfs root)", fs->root);
		if (chroot(".") < 0)
			return wisp_err_sys(err, errno, "chroot into %s", fs->root);
	} else if (umount2(".", MNT_DETACH) < 0) {
		return wisp_err_sys(err, errno, "detach the old root");
	}
	if (chdir("/") < 0)
		return wisp_err_sys(err, errno, "chdir / in the jail");
	return 0;
}

static int make_dev(const char *path, unsigned int ma, unsigned int mi,
		    const struct jail_args *a, struct wisp_err *err)
{
	if (mknod(path, S_IFCHR | 0600, makedev(ma, mi)) < 0)
		return wisp_err_sys(err, errno, "mknod %s (%u,%u) in the jail", path, ma, mi);
	if (chown(path, a->uid, a->gid) < 0)
		return wisp_err_sys(err, errno, "chown %s to %u:%u", path, (unsigned)a->uid,
				    (unsigned)a->gid);
	return 0;
}

static int step_devices(const struct jail_args *a, const struct stat *uffd,
			struct wisp_err *err)
{
	static const char *dirs[] = { "/dev", "/dev/net" };
	for (size_t i = 0; i < WISP_ARRAY_SIZE(dirs); i++) {
		if (mkdir(dirs[i], 0755) < 0 && errno != EEXIST)
			return wisp_err_sys(err, errno, "create %s in the jail", dirs[i]);
	}
	if (make_dev(jail_kvm.path, jail_kvm.major, jail_kvm.minor, a, err) < 0 ||
	    make_dev(jail_tun.path, jail_tun.major, jail_tun.minor, a, err) < 0)
		return -err->code;
	/* userfaultfd's minor is dynamic: copy the host's node when it has one. */
	if (uffd && make_dev("/dev/userfaultfd", major(uffd->st_rdev), minor(uffd->st_rdev),
			     a, err) < 0)
		return -err->code;
	return 0;
}

/* Returns 1 in a parent that must now exit 0, 0 in the process that goes on
 * to exec the VMM. */
static int step_daemonize(const struct jail_args *a, int devnull, struct wisp_err *err)
{
	if (a->daemonize) {
		pid_t pid = fork();
		if (pid < 0)
			return wisp_err_sys(err, errno, "fork to daemonize");
		if (pid > 0)
			return 1;
		if (setsid() < 0)
			return wisp_err_sys(err, errno, "setsid");
		for (int fd = 0; fd < 3; fd++)
			if (dup2(devnull, fd) < 0)
				return wisp_err_sys(err, errno, "redirect fd %d to /dev/null", fd);
	}
	if (a->new_pid_ns) {
		if (unshare(CLONE_NEWPID) < 0)
			return wisp_err_sys(err, errno, "unshare the PID namespace");
		pid_t pid = fork();
		if (pid < 0)
			return wisp_err_sys(err, errno, "fork into the new PID namespace");
		if (pid > 0) {
			/* As Firecracker's jailer: the VMM's host pid in <exec name>.pid. */
			char path[JAIL_NAME_MAX + 8], buf[32];
			snprintf(path, sizeof(path), "/%s.pid", a->exec_name);
			snprintf(buf, sizeof(buf), "%d\n", (int)pid);
			_cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
						      O_CLOEXEC, 0644);
			if (fd < 0 || wisp_write_all(fd, buf, strlen(buf)) < 0) {
				wisp_err_sys(err, errno, "write the pid file %s", path);
				kill(pid, SIGKILL);
				return -err->code;
			}
			return 1;
		}
	}
	return 0;
}

static int step_drop_privileges(const struct jail_args *a, struct wisp_err *err)
{
	/* Bounding and ambient sets first: dropping them needs CAP_SETPCAP,
	 * which setuid takes away. */
	for (cap_value_t c = 0; CAP_IS_SUPPORTED(c); c++) {
		if (cap_drop_bound(c) < 0)
			return wisp_err_sys(err, errno, "drop %s from the bounding set",
					    cap_to_name(c));
	}
	if (CAP_AMBIENT_SUPPORTED() && cap_reset_ambient() < 0)
		return wisp_err_sys(err, errno, "clear the ambient capabilities");
	cap_t caps = cap_get_proc();
	if (!caps)
		return wisp_err_sys(err, errno, "read the process capabilities");
	int r = cap_clear_flag(caps, CAP_INHERITABLE) < 0 || cap_set_proc(caps) < 0 ? -errno : 0;
	cap_free(caps);
	if (r < 0)
		return wisp_err_sys(err, -r, "clear the inheritable capabilities");
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return wisp_err_sys(err, errno, "set no_new_privs");
	/* setgroups/setgid/setuid need CAP_SETGID/CAP_SETUID: they come before
	 * the effective and permitted sets are emptied. */
	if (setgroups(0, NULL) < 0)
		return wisp_err_sys(err, errno, "clear the supplementary groups");
	if (setresgid(a->gid, a->gid, a->gid) < 0)
		return wisp_err_sys(err, errno, "switch to gid %u", (unsigned)a->gid);
	if (setresuid(a->uid, a->uid, a->uid) < 0)
		return wisp_err_sys(err, errno, "switch to uid %u", (unsigned)a->uid);
	/* Leaving uid 0 already emptied them; uid 0 as target keeps them, so
	 * empty them in every case and check. */
	cap_t none = cap_init();
	if (!none)
		return wisp_err_sys(err, errno, "allocate an empty capability set");
	r = cap_set_proc(none) < 0 ? -errno : 0;
	cap_t now = r == 0 ? cap_get_proc() : NULL;
	bool empty = now && cap_compare(now, none) == 0;
	cap_free(now);
	cap_free(none);
	if (r < 0)
		return wisp_err_sys(err, -r, "drop the effective and permitted capabilities");
	if (!empty)
		return wisp_err_set(err, EPERM, "capabilities remain after dropping them");
	return 0;
}

static int step_exec(const struct jail_args *a, struct wisp_err *err)
{
	/* argv: <exec name> --id <id> <flags after -->, as Firecracker's jailer. */
	size_t n = (size_t)a->vmm_argc + 4;
	_cleanup_free_ char **argv = calloc(n, sizeof(*argv));
	if (!argv)
		return wisp_err_set(err, ENOMEM, "no memory for the VMM's arguments");
	char path[JAIL_NAME_MAX + 2];
	snprintf(path, sizeof(path), "/%s", a->exec_name);
	size_t i = 0;
	argv[i++] = (char *)a->exec_name;
	argv[i++] = (char *)"--id";
	argv[i++] = (char *)a->id;
	for (int k = 0; k < a->vmm_argc; k++)
		argv[i++] = a->vmm_argv[k];
	argv[i] = NULL;
	char *envp[] = { NULL };
	execve(path, argv, envp);
	return wisp_err_sys(err, errno, "exec %s in the jail", path);
}

int jail_run(struct jail_args *a, struct wisp_err *err)
{
	/* 2: validate against the host; nothing is created yet. */
	_cleanup_close_ int exec_fd = jail_open_exec(a->exec_file, err);
	if (exec_fd < 0)
		return wisp_err_prefix(err, "validate");
	_cleanup_close_ int netns_fd = -1;
	if (a->netns) {
		netns_fd = open(a->netns, O_RDONLY | O_CLOEXEC);
		if (netns_fd < 0)
			return wisp_err_sys(err, errno, "validate: network namespace %s", a->netns);
		struct statfs sf;
		if (fstatfs(netns_fd, &sf) < 0 || sf.f_type != NSFS_MAGIC)
			return wisp_err_set(err, EINVAL,
					    "validate: %s is not a network namespace handle", a->netns);
	}
	_cleanup_close_ int devnull = -1;
	if (a->daemonize) {
		devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (devnull < 0)
			return wisp_err_sys(err, errno, "validate: open /dev/null");
	}
	struct stat uffd_st;
	bool have_uffd = stat("/dev/userfaultfd", &uffd_st) == 0 && S_ISCHR(uffd_st.st_mode);
	struct jail_fs fs = { .base_fd = -1, .exec_dir_fd = -1, .id_dir_fd = -1, .root_fd = -1 };
	if (jail_fs_check(a, &fs, err) < 0)
		return wisp_err_prefix(err, "validate");
	struct jail_cg_plan *cg = calloc(1, sizeof(*cg));
	if (!cg)
		return wisp_err_set(err, ENOMEM, "validate: no memory for the cgroup plan");
	int r = jail_cg_plan(a, cg, err);
	if (r < 0) {
		wisp_err_prefix(err, "validate");
		goto out;
	}

	/* 3 */
	r = jail_fs_create(a, exec_fd, &fs, err);
	if (r < 0) {
		wisp_err_prefix(err, "create the jail");
		goto undo;
	}
	/* 4 */
	r = step_netns(a, netns_fd, err);
	if (r < 0)
		goto undo;
	/* 5 */
	r = jail_cg_apply(a, cg, err);
	if (r < 0) {
		wisp_err_prefix(err, "cgroup");
		goto undo;
	}
	/* 6 */
	r = step_pivot(&fs, err);
	if (r < 0)
		goto undo;
	/* From here the host's paths are out of sight: leave the jail. */
	jail_fs_close(&fs);
	free(cg);
	cg = NULL;
	/* 7 */
	r = step_devices(a, have_uffd ? &uffd_st : NULL, err);
	/* 8 */
	if (r == 0)
		r = step_daemonize(a, devnull, err);
	if (r == 1)
		return 1;
	if (r == 0)
		r = step_drop_privileges(a, err);
	if (r == 0)
		r = step_exec(a, err);
	wisp_err_prefix(err, "jail %s is left in place (remove it with --cleanup)", a->id);
	return r;
undo:
	/* Out of the cgroup we are about to remove: back to the root ones. */
	jail_cg_rollback(cg);
	jail_fs_rollback(a, &fs);
out:
	jail_fs_close(&fs);
	free(cg);
	return r;
}

int jail_cleanup(const struct jail_args *a, struct wisp_err *err)
{
	if (jail_cg_cleanup(a, err) < 0)
		return wisp_err_prefix(err, "cleanup");
	struct jail_fs fs;
	jail_fs_paths(a, &fs);
	_cleanup_close_ int exec_dir = open(fs.exec_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
					    O_CLOEXEC);
	if (exec_dir < 0) {
		if (errno == ENOENT)
			return 0;
		return wisp_err_sys(err, errno, "cleanup: open %s", fs.exec_dir);
	}
	if (jail_rmtree_at(exec_dir, a->id, err) < 0)
		return wisp_err_prefix(err, "cleanup: remove %s", fs.id_dir);
	/* <base>/<exec name> goes with its last jail. */
	_cleanup_close_ int base = open(a->base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (base >= 0)
		unlinkat(base, a->exec_name, AT_REMOVEDIR);
	return 0;
}
