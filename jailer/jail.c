/* The jail, step by step, in the fixed order of the design:
 *   (1 in main: inherited fds closed, environment cleared)
 *   2 validate every input against the host, creating nothing
 *   3 create <base>/<exec name>/<id>/root and copy the exec file in
 *   4 join the network namespace, set resource limits
 *   5 create the cgroups, write the values
 *   6 private mount namespace, bind the jail onto itself, pivot_root, detach
 *     the old root
 *   7 device nodes owned by the jailed user
 *   8 daemonize / new PID namespace; the process that will be the VMM
 *     (and no other) moves into the cgroups; drop every capability,
 *     no_new_privs, switch uid/gid, exec the VMM
 * A failure undoes what this run created, also after pivot_root (through
 * fds opened before it) and after the forks of step 8 (the parent, which
 * keeps its privileges, hears of a child's failure: spawn.c). Only an exec
 * that fails after the privileges are gone in the jailer's own process
 * leaves the jail for --cleanup (the message says so); validation refuses
 * what would make it fail (execfile.c). */
#include "jailer.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
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
#include <unistd.h>

#include "common/cleanup.h"

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
		    const struct jail_args *a, struct jail_fs *fs, struct wisp_err *err)
{
	if (mknod(path, S_IFCHR | 0600, makedev(ma, mi)) < 0)
		return wisp_err_sys(err, errno, "mknod %s (%u,%u) in the jail", path, ma, mi);
	jail_fs_made(fs, path + 1, false);
	if (lchown(path, a->uid, a->gid) < 0)
		return wisp_err_sys(err, errno, "chown %s to %u:%u", path, (unsigned)a->uid,
				    (unsigned)a->gid);
	return 0;
}

static int step_devices(const struct jail_args *a, struct jail_fs *fs, const struct stat *uffd,
			struct wisp_err *err)
{
	static const char *dirs[] = { "/dev", "/dev/net" };
	for (size_t i = 0; i < WISP_ARRAY_SIZE(dirs); i++) {
		if (mkdir(dirs[i], 0755) == 0)
			jail_fs_made(fs, dirs[i] + 1, true);
		else if (errno != EEXIST)
			return wisp_err_sys(err, errno, "create %s in the jail", dirs[i]);
	}
	if (make_dev(jail_kvm.path, jail_kvm.major, jail_kvm.minor, a, fs, err) < 0 ||
	    make_dev(jail_tun.path, jail_tun.major, jail_tun.minor, a, fs, err) < 0)
		return -err->code;
	/* userfaultfd's minor is dynamic: copy the host's node when it has one. */
	if (uffd && make_dev("/dev/userfaultfd", major(uffd->st_rdev), minor(uffd->st_rdev),
			     a, fs, err) < 0)
		return -err->code;
	return 0;
}

/* *switched: the uid is the jailed one; nothing can be undone after that. */
static int step_drop_privileges(const struct jail_args *a, bool *switched,
				struct wisp_err *err)
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
	*switched = true;
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

/* Append to the message (wisp_err_prefix only prepends). */
static void err_append(struct wisp_err *err, const char *what)
{
	size_t n = strlen(err->msg);
	snprintf(err->msg + n, sizeof(err->msg) - n, "%s", what);
}

/* Step 2: everything checked against the host; creates nothing. */
static int step_validate(const struct jail_args *a, int exec_fd, struct jail_fs *fs,
			 struct jail_cg_plan *cg, struct jail_spawn *sp, struct wisp_err *err)
{
	int r = jail_fs_check(a, fs, err);
	if (r < 0)
		return r;
	/* Pre-staged files may hold the exec file's interpreter. */
	_cleanup_close_ int root_fd = open(fs->root, O_PATH | O_DIRECTORY | O_NOFOLLOW |
					   O_CLOEXEC);
	if (root_fd < 0 && errno != ENOENT)
		return wisp_err_sys(err, errno, "open %s", fs->root);
	if ((r = jail_check_exec(exec_fd, a->exec_file, root_fd, err)) < 0 ||
	    (r = jail_cg_plan(a, cg, err)) < 0)
		return r;
	/* Before the rlimits: a small no-file limit must not fail it later. */
	return jail_spawn_prepare(a, sp, err);
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
	struct jail_spawn sp = { .rd = -1, .wr = -1, .first = -1 };
	bool switched = false, undone_all = true;
	struct jail_cg_plan *cg = calloc(1, sizeof(*cg));
	if (!cg)
		return wisp_err_set(err, ENOMEM, "validate: no memory for the cgroup plan");
	int r = step_validate(a, exec_fd, &fs, cg, &sp, err);
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
	if ((r = step_netns(a, netns_fd, err)) < 0)
		goto undo;
	/* 5 */
	if ((r = jail_cg_apply(a, cg, err)) < 0) {
		wisp_err_prefix(err, "cgroup");
		goto undo;
	}
	/* 6: from here the host's paths are out of sight; the fds in fs and
	 * cg still reach the jail and the cgroups, for the undo. */
	if ((r = step_pivot(&fs, err)) < 0)
		goto undo;
	/* 7 */
	if ((r = step_devices(a, &fs, have_uffd ? &uffd_st : NULL, err)) < 0)
		goto undo;
	/* 8 */
	r = jail_spawn_fork(a, &sp, devnull, err);
	if (!sp.child && r == JAIL_RUN_DONE) {
		/* The parent waits outside the jail's cgroups. */
		r = jail_spawn_wait(&sp, err);
		if (r < 0)
			goto undo;
		r = JAIL_RUN_DONE;
		goto out;
	}
	/* Only the process that execs the VMM joins: the limits count it
	 * alone. */
	if (r == 0 && (r = jail_cg_enter(a, cg, err)) < 0)
		wisp_err_prefix(err, "cgroup");
	if (sp.child) {
		/* A child never undoes: it reports, its parent undoes. */
		jail_fs_close(&fs);
		jail_cg_close(cg);
	}
	if (r == JAIL_RUN_DONE)
		goto out;               /* a middle child: the pid file is written */
	if (r == 0)
		r = step_drop_privileges(a, &switched, err);
	if (r == 0)
		r = step_exec(a, err);
	if (sp.child) {
		jail_spawn_report(&sp, err);
		r = JAIL_RUN_REPORTED;
		goto out;
	}
	if (switched) {
		wisp_err_prefix(err, "jail %s is left in place (remove it with --cleanup)", a->id);
		goto out;
	}
undo:
	if (!jail_cg_rollback(a, cg))
		undone_all = false;
	if (!jail_fs_rollback(a, &fs))
		undone_all = false;
	if (!undone_all)
		err_append(err, "; some of what this run made could not be removed: run "
			   "wisp-jailer --cleanup");
out:
	jail_fs_close(&fs);
	jail_cg_close(cg);
	free(cg);
	if (sp.rd >= 0)
		close(sp.rd);
	if (sp.wr >= 0)
		close(sp.wr);
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
