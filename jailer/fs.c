/* The jail's files: <base>/<exec name>/<id>/root, the copy of the exec file,
 * recursive removal for --cleanup. Every directory below the base is opened
 * with O_NOFOLLOW, so a planted symlink cannot redirect the jail. */
#include "jailer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/cleanup.h"

/* Open (optionally create) the directory name under dirfd, refusing a
 * symlink or anything else that is not a directory. */
static int open_subdir(int dirfd, const char *shown, const char *name, bool create,
		       bool *created, struct wisp_err *err)
{
	if (created)
		*created = false;
	int fd, tries = 0;
	do {
		if (create) {
			if (mkdirat(dirfd, name, 0755) == 0) {
				if (created)
					*created = true;
			} else if (errno != EEXIST) {
				return wisp_err_sys(err, errno, "create directory %s", shown);
			}
		}
		fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		/* ENOENT after mkdir: a --cleanup removed the empty exec-name
		 * directory in between; make it again. */
	} while (fd < 0 && errno == ENOENT && create && ++tries < 3);
	if (fd < 0) {
		if (errno == ELOOP || errno == ENOTDIR)
			return wisp_err_set(err, ENOTDIR,
					    "%s is a symlink or not a directory: refusing it", shown);
		return wisp_err_sys(err, errno, "open directory %s", shown);
	}
	return fd;
}

/* mkdir -p of an absolute path; the administrator's base directory may hold
 * symlinks, the levels the jailer owns below it may not. */
static int mkdir_p(const char *path, struct wisp_err *err)
{
	char buf[4096];
	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1;; p++) {
		if (*p == '/' || *p == '\0') {
			char saved = *p;
			*p = '\0';
			if (mkdir(buf, 0755) < 0 && errno != EEXIST)
				return wisp_err_sys(err, errno, "create directory %s", buf);
			*p = saved;
			if (!saved)
				return 0;
		}
	}
}

void jail_fs_paths(const struct jail_args *a, struct jail_fs *fs)
{
	snprintf(fs->exec_dir, sizeof(fs->exec_dir), "%s/%s", a->base, a->exec_name);
	snprintf(fs->id_dir, sizeof(fs->id_dir), "%s/%s", fs->exec_dir, a->id);
	snprintf(fs->root, sizeof(fs->root), "%s/root", fs->id_dir);
	snprintf(fs->exec_dst, sizeof(fs->exec_dst), "%s/%s", fs->root, a->exec_name);
}

/* The jail's root will be on the mount of its deepest existing ancestor:
 * on a noexec mount the VMM's exec would fail after every privilege is
 * gone. */
static int check_exec_mount(const struct jail_fs *fs, const char *base, struct wisp_err *err)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s", fs->root);
	struct statvfs sv;
	while (statvfs(path, &sv) < 0) {
		if (errno != ENOENT)
			return wisp_err_sys(err, errno, "statvfs %s", path);
		char *slash = strrchr(path, '/');
		if (!slash)
			return 0;
		slash[slash == path] = '\0';  /* "/x" -> "/" */
	}
	if (sv.f_flag & ST_NOEXEC)
		return wisp_err_set(err, EACCES,
				    "the jail would be on a noexec mount (%s holds %s): the VMM "
				    "could not be executed there; choose another "
				    "--chroot-base-dir", path, base);
	return 0;
}

int jail_fs_check(const struct jail_args *a, struct jail_fs *fs, struct wisp_err *err)
{
	jail_fs_paths(a, fs);
	int r = check_exec_mount(fs, a->base, err);
	if (r < 0)
		return r;
	const char *levels[] = { fs->exec_dir, fs->id_dir, fs->root };
	struct stat st;
	for (size_t i = 0; i < WISP_ARRAY_SIZE(levels); i++) {
		if (lstat(levels[i], &st) < 0) {
			if (errno == ENOENT)
				return 0;       /* nothing below exists either */
			return wisp_err_sys(err, errno, "stat %s", levels[i]);
		}
		if (!S_ISDIR(st.st_mode))
			return wisp_err_set(err, ENOTDIR,
					    "%s is a symlink or not a directory: refusing it",
					    levels[i]);
	}
	if (a->new_pid_ns) {
		/* A failed start removes the pid file: it must be this run's. */
		char pidfile[4400];
		snprintf(pidfile, sizeof(pidfile), "%s/%s.pid", fs->root, a->exec_name);
		if (lstat(pidfile, &st) == 0)
			return wisp_err_set(err, EEXIST,
					    "jail %s already has a pid file %s; remove the jail "
					    "with --cleanup first", a->id, pidfile);
	}
	if (lstat(fs->exec_dst, &st) == 0) {
		if (S_ISLNK(st.st_mode))
			return wisp_err_set(err, EEXIST,
					    "a symlink is planted at the exec destination %s: "
					    "refusing it", fs->exec_dst);
		return wisp_err_set(err, EEXIST,
				    "jail %s already exists (%s is present); remove it with "
				    "--cleanup first", a->id, fs->exec_dst);
	}
	if (errno != ENOENT)
		return wisp_err_sys(err, errno, "stat %s", fs->exec_dst);
	return 0;
}

static int copy_fd(int in, int out, struct wisp_err *err, const char *shown)
{
	if (lseek(in, 0, SEEK_SET) < 0)
		return wisp_err_sys(err, errno, "rewind the exec file");
	for (;;) {
		ssize_t n = sendfile(out, in, NULL, 1 << 30);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return wisp_err_sys(err, errno, "copy the exec file to %s", shown);
		}
		if (n == 0)
			return 0;
	}
}

int jail_fs_create(const struct jail_args *a, int exec_fd, struct jail_fs *fs,
		   struct wisp_err *err)
{
	if (mkdir_p(a->base, err) < 0)
		return -err->code;
	fs->base_fd = open(a->base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fs->base_fd < 0)
		return wisp_err_sys(err, errno, "open %s", a->base);
	fs->exec_dir_fd = open_subdir(fs->base_fd, fs->exec_dir, a->exec_name, true,
				      &fs->created_exec_dir, err);
	if (fs->exec_dir_fd < 0)
		return fs->exec_dir_fd;
	fs->id_dir_fd = open_subdir(fs->exec_dir_fd, fs->id_dir, a->id, true,
				    &fs->created_id_dir, err);
	if (fs->id_dir_fd < 0)
		return fs->id_dir_fd;
	fs->root_fd = open_subdir(fs->id_dir_fd, fs->root, "root", true, &fs->created_root,
				  err);
	if (fs->root_fd < 0)
		return fs->root_fd;
	/* The VMM creates its API socket and snapshot files in its root. */
	if (fchown(fs->root_fd, a->uid, a->gid) < 0)
		return wisp_err_sys(err, errno, "chown %s to %u:%u", fs->root,
				    (unsigned)a->uid, (unsigned)a->gid);
	/* O_EXCL|O_NOFOLLOW: a file or symlink placed there since the check is
	 * refused, never written through. */
	_cleanup_close_ int out = openat(fs->root_fd, a->exec_name,
					 O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
					 0700);
	if (out < 0) {
		if (errno == EEXIST)
			return wisp_err_set(err, EEXIST,
					    "%s already exists (file or symlink): refusing to "
					    "write through it", fs->exec_dst);
		return wisp_err_sys(err, errno, "create %s", fs->exec_dst);
	}
	fs->created_copy = true;
	if (copy_fd(exec_fd, out, err, fs->exec_dst) < 0)
		return -err->code;
	if (fchmod(out, 0755) < 0)
		return wisp_err_sys(err, errno, "chmod %s", fs->exec_dst);
	return 0;
}

void jail_fs_made(struct jail_fs *fs, const char *name, bool dir)
{
	if (fs->nr_made < JAIL_MADE_MAX) {
		fs->made[fs->nr_made] = name;
		fs->made_dir[fs->nr_made] = dir;
		fs->nr_made++;
	}
}

/* unlinkat that counts "already gone" as done. */
static bool remove_at(int dirfd, const char *name, int flags)
{
	return dirfd >= 0 && (unlinkat(dirfd, name, flags) == 0 || errno == ENOENT);
}

bool jail_fs_rollback(const struct jail_args *a, struct jail_fs *fs)
{
	bool all = true;
	while (fs->nr_made > 0) {
		fs->nr_made--;
		all &= remove_at(fs->root_fd, fs->made[fs->nr_made],
				 fs->made_dir[fs->nr_made] ? AT_REMOVEDIR : 0);
	}
	if (a->new_pid_ns && fs->root_fd >= 0) {
		char pidfile[JAIL_NAME_MAX + 8];
		snprintf(pidfile, sizeof(pidfile), "%s.pid", a->exec_name);
		all &= remove_at(fs->root_fd, pidfile, 0);
	}
	if (fs->created_copy)
		all &= remove_at(fs->root_fd, a->exec_name, 0);
	if (fs->created_root) {
		struct wisp_err e;
		all &= fs->id_dir_fd >= 0 && jail_rmtree_at(fs->id_dir_fd, "root", &e) == 0;
	}
	if (fs->created_id_dir)
		all &= remove_at(fs->exec_dir_fd, a->id, AT_REMOVEDIR);
	/* Another jail of the same exec file may have moved in meanwhile. */
	if (fs->created_exec_dir && fs->base_fd >= 0 &&
	    unlinkat(fs->base_fd, a->exec_name, AT_REMOVEDIR) < 0 && errno != ENOTEMPTY &&
	    errno != EEXIST && errno != ENOENT)
		all = false;
	fs->created_copy = fs->created_root = fs->created_id_dir = fs->created_exec_dir = false;
	return all;
}

void jail_fs_close(struct jail_fs *fs)
{
	int *fds[] = { &fs->root_fd, &fs->id_dir_fd, &fs->exec_dir_fd, &fs->base_fd };
	for (size_t i = 0; i < WISP_ARRAY_SIZE(fds); i++) {
		if (*fds[i] >= 0)
			close(*fds[i]);
		*fds[i] = -1;
	}
}

static int rmtree_depth(int parent, const char *name, dev_t dev, int depth,
			struct wisp_err *err)
{
	if (depth > 64)
		return wisp_err_set(err, ELOOP, "directory tree deeper than 64 levels at %s", name);
	int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOTDIR || errno == ELOOP)
			goto unlink_entry;
		if (errno == ENOENT)
			return 0;
		return wisp_err_sys(err, errno, "open %s", name);
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || st.st_dev != dev) {
		close(fd);
		return wisp_err_set(err, EXDEV, "%s is a mount point: not removing across it",
				    name);
	}
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return wisp_err_sys(err, errno, "read directory %s", name);
	}
	int r = 0;
	struct dirent *de;
	while (r == 0 && (de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		r = rmtree_depth(dirfd(d), de->d_name, dev, depth + 1, err);
	}
	closedir(d);
	if (r < 0)
		return r;
	if (unlinkat(parent, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		return wisp_err_sys(err, errno, "remove directory %s", name);
	return 0;
unlink_entry:
	if (unlinkat(parent, name, 0) < 0 && errno != ENOENT)
		return wisp_err_sys(err, errno, "remove %s", name);
	return 0;
}

int jail_rmtree_at(int parent, const char *name, struct wisp_err *err)
{
	struct stat st;
	if (fstat(parent, &st) < 0)
		return wisp_err_sys(err, errno, "stat the parent of %s", name);
	return rmtree_depth(parent, name, st.st_dev, 0, err);
}
