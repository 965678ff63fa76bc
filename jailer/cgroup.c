/* cgroups for a jail, v1 (one hierarchy per controller, found through
 * /proc/self/mountinfo) or v2 (the unified hierarchy). The cgroup of a jail
 * is <hierarchy>/<parent cgroup>/<id>, as with Firecracker's jailer. */
#include "jailer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/io.h"

struct cg_mount {
	char path[4096];
	char opts[1024];        /* super options: "rw,cpu" for v1 */
	bool v2;
};

#define CG_MAX_MOUNTS 64

/* Undo mountinfo's octal escapes (\040 for a space) in place. */
static void unescape(char *s)
{
	char *w = s;
	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
		    r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
}

/* Every cgroup (v1) and cgroup2 mount of this mount namespace. */
static int cg_mounts(struct cg_mount *m, int max, struct wisp_err *err)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return wisp_err_sys(err, errno, "open /proc/self/mountinfo");
	_cleanup_free_ char *line = NULL;
	size_t cap = 0;
	int n = 0;
	while (getline(&line, &cap, f) > 0) {
		/* id parent maj:min root mountpoint opts [optional...] - fstype src superopts */
		char *sep = strstr(line, " - ");
		if (!sep)
			continue;
		*sep = '\0';
		char fstype[32], src[256], sopts[1024];
		if (sscanf(sep + 3, "%31s %255s %1023s", fstype, src, sopts) != 3)
			continue;
		bool v2 = strcmp(fstype, "cgroup2") == 0;
		if (!v2 && strcmp(fstype, "cgroup") != 0)
			continue;
		char mnt[4096];
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1)
			continue;
		if (n >= max)
			break;
		unescape(mnt);
		snprintf(m[n].path, sizeof(m[n].path), "%s", mnt);
		snprintf(m[n].opts, sizeof(m[n].opts), "%s", sopts);
		m[n].v2 = v2;
		n++;
	}
	return n;
}

static bool word_in(const char *list, char sep, const char *word)
{
	size_t wl = strlen(word);
	const char *p = list;
	while (*p) {
		const char *e = strchrnul(p, sep);
		if ((size_t)(e - p) == wl && strncmp(p, word, wl) == 0)
			return true;
		p = *e ? e + 1 : e;
	}
	return false;
}

static int write_str(const char *path, const char *s, struct wisp_err *err)
{
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return wisp_err_sys(err, errno, "open %s", path);
	int r = wisp_write_all(fd, s, strlen(s));
	if (r < 0)
		return wisp_err_sys(err, -r, "write '%s' to %s", s, path);
	return 0;
}

static int read_small(const char *path, char *buf, size_t len)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, len - 1);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return (int)n;
}

/* A v1 cpuset cgroup starts with empty cpus and mems and refuses tasks
 * until they are set: copy them from the parent when empty. */
static int cpuset_inherit(const char *dir, struct wisp_err *err)
{
	static const char *files[] = { "cpuset.cpus", "cpuset.mems" };
	for (size_t i = 0; i < WISP_ARRAY_SIZE(files); i++) {
		char path[4200], ppath[4200], buf[4096];
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		if (read_small(path, buf, sizeof(buf)) < 0 || (buf[0] && buf[0] != '\n'))
			continue;
		snprintf(ppath, sizeof(ppath), "%s/../%s", dir, files[i]);
		int r = read_small(ppath, buf, sizeof(buf));
		if (r < 0)
			return wisp_err_sys(err, -r, "read %s", ppath);
		if (write_str(path, buf, err) < 0)
			return -err->code;
	}
	return 0;
}

int jail_cg_plan(const struct jail_args *a, struct jail_cg_plan *p, struct wisp_err *err)
{
	struct cg_mount *m = calloc(CG_MAX_MOUNTS, sizeof(*m));
	if (!m)
		return wisp_err_set(err, ENOMEM, "no memory for the cgroup mounts");
	memset(p, 0, sizeof(*p));
	for (int d = 0; d < JAIL_MAX_CGROUPS; d++) {
		p->dirs[d].mount_fd = -1;
		p->dirs[d].made_from = -1;
	}
	p->version = a->cgroup_version;
	int r = 0;
	int nm = cg_mounts(m, CG_MAX_MOUNTS, err);
	if (nm < 0) {
		r = nm;
		goto out;
	}
	if (p->version == 2) {
		for (int i = 0; i < nm; i++) {
			if (m[i].v2) {
				snprintf(p->mount_v2, sizeof(p->mount_v2), "%s", m[i].path);
				break;
			}
		}
		if (!p->mount_v2[0]) {
			r = wisp_err_set(err, ENOENT, "no cgroup2 (unified) hierarchy is mounted");
			goto out;
		}
		char path[4200], ctrls[1024];
		snprintf(path, sizeof(path), "%s/cgroup.controllers", p->mount_v2);
		int n = read_small(path, ctrls, sizeof(ctrls));
		if (n < 0) {
			r = wisp_err_sys(err, -n, "read %s", path);
			goto out;
		}
		ctrls[strcspn(ctrls, "\n")] = '\0';
		for (int k = 0; k < a->nr_cgroups; k++) {
			if (!word_in(ctrls, ' ', a->cgroups[k].controller)) {
				r = wisp_err_set(err, ENOENT,
						 "cgroup controller '%s' (from --cgroup %s) is not "
						 "available in the cgroup2 hierarchy %s (it has: %s)",
						 a->cgroups[k].controller, a->cgroups[k].key,
						 p->mount_v2, ctrls[0] ? ctrls : "none");
				goto out;
			}
			p->dir_of[k] = 0;
		}
		snprintf(p->dirs[0].path, sizeof(p->dirs[0].path), "%s/%s/%s", p->mount_v2,
			 a->parent_cgroup, a->id);
		snprintf(p->dirs[0].mount, sizeof(p->dirs[0].mount), "%s", p->mount_v2);
		p->nr_dirs = 1;
	} else {
		for (int k = 0; k < a->nr_cgroups; k++) {
			int mi = -1;
			for (int i = 0; i < nm && mi < 0; i++)
				if (!m[i].v2 && word_in(m[i].opts, ',', a->cgroups[k].controller))
					mi = i;
			if (mi < 0) {
				r = wisp_err_set(err, ENOENT,
						 "cgroup controller '%s' (from --cgroup %s) has no "
						 "cgroup v1 hierarchy mounted",
						 a->cgroups[k].controller, a->cgroups[k].key);
				goto out;
			}
			char dir[4096];
			snprintf(dir, sizeof(dir), "%s/%s/%s", m[mi].path, a->parent_cgroup, a->id);
			int d = 0;
			while (d < p->nr_dirs && strcmp(p->dirs[d].path, dir) != 0)
				d++;
			if (d == p->nr_dirs) {
				snprintf(p->dirs[d].path, sizeof(p->dirs[d].path), "%s", dir);
				snprintf(p->dirs[d].mount, sizeof(p->dirs[d].mount), "%s", m[mi].path);
				p->dirs[d].cpuset = word_in(m[mi].opts, ',', "cpuset");
				p->nr_dirs++;
			}
			p->dir_of[k] = d;
		}
	}
	for (int d = 0; d < p->nr_dirs; d++) {
		struct stat st;
		if (lstat(p->dirs[d].path, &st) == 0) {
			r = wisp_err_set(err, EEXIST,
					 "cgroup %s already exists (a jail with this id is running "
					 "or was not cleaned up)", p->dirs[d].path);
			goto out;
		}
	}
out:
	free(m);
	return r;
}

/* mkdir -p of <mount>/<parent>; for v2, enable the controllers in every
 * level above the jail's cgroup. Notes in cd->made_from the first level
 * this run created. */
static int cg_make_parents(struct jail_cg_dir *cd, const struct jail_args *a, bool v2,
			   const char *subtree, struct wisp_err *err)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s", cd->mount);
	const char *p = a->parent_cgroup;
	for (int level = 0;; level++) {
		if (v2 && subtree[0]) {
			/* "+pids +cpu" in one write: each controller as its own word */
			char f[4200];
			snprintf(f, sizeof(f), "%s/cgroup.subtree_control", path);
			if (write_str(f, subtree, err) < 0)
				return wisp_err_prefix(err, "enable cgroup controllers");
		}
		if (!*p)
			return 0;
		const char *slash = strchrnul(p, '/');
		size_t len = strlen(path);
		snprintf(path + len, sizeof(path) - len, "/%.*s", (int)(slash - p), p);
		if (mkdir(path, 0755) == 0) {
			if (cd->made_from < 0 || level < cd->made_from)
				cd->made_from = level;
		} else if (errno != EEXIST) {
			return wisp_err_sys(err, errno, "create cgroup %s", path);
		}
		if (cd->cpuset && cpuset_inherit(path, err) < 0)
			return -err->code;
		p = *slash ? slash + 1 : slash;
	}
}

int jail_cg_apply(const struct jail_args *a, struct jail_cg_plan *p, struct wisp_err *err)
{
	char subtree[1024] = "";
	if (p->version == 2) {
		for (int k = 0; k < a->nr_cgroups; k++) {
			char word[80];
			snprintf(word, sizeof(word), "+%s", a->cgroups[k].controller);
			if (word_in(subtree, ' ', word))
				continue;
			size_t len = strlen(subtree);
			snprintf(subtree + len, sizeof(subtree) - len, "%s%s", len ? " " : "", word);
		}
	}
	for (int d = 0; d < p->nr_dirs; d++) {
		struct jail_cg_dir *cd = &p->dirs[d];
		/* For the rollback, also from inside the jail. */
		cd->mount_fd = open(cd->mount, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (cd->mount_fd < 0)
			return wisp_err_sys(err, errno, "open cgroup hierarchy %s", cd->mount);
		if (cg_make_parents(cd, a, p->version == 2, subtree, err) < 0)
			return -err->code;
		/* A --cleanup of the last jail may remove the default parent
		 * between the two mkdirs: make the parents again. */
		int tries = 0;
		while (mkdir(cd->path, 0755) < 0) {
			if (errno != ENOENT || ++tries > 3)
				return wisp_err_sys(err, errno, "create cgroup %s", cd->path);
			if (cg_make_parents(cd, a, p->version == 2, subtree, err) < 0)
				return -err->code;
		}
		cd->created = true;
		if (cd->cpuset && cpuset_inherit(cd->path, err) < 0)
			return -err->code;
	}
	for (int k = 0; k < a->nr_cgroups; k++) {
		char f[4300];
		snprintf(f, sizeof(f), "%s/%s", p->dirs[p->dir_of[k]].path, a->cgroups[k].key);
		if (write_str(f, a->cgroups[k].value, err) < 0)
			return wisp_err_prefix(err, "set --cgroup %s=%s", a->cgroups[k].key,
					       a->cgroups[k].value);
	}
	return 0;
}

int jail_cg_enter(const struct jail_args *a, struct jail_cg_plan *p, struct wisp_err *err)
{
	char rel[4200];
	snprintf(rel, sizeof(rel), "%s/%s/cgroup.procs", a->parent_cgroup, a->id);
	for (int d = 0; d < p->nr_dirs; d++) {
		struct jail_cg_dir *cd = &p->dirs[d];
		/* Through the hierarchy's fd: the host's paths are out of sight
		 * after pivot_root. */
		_cleanup_close_ int fd = openat(cd->mount_fd, rel, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0)
			return wisp_err_sys(err, errno, "open %s/cgroup.procs", cd->path);
		/* "0" is the writer itself (v1 and v2), whatever its pid is in the
		 * PID namespace it may be pid 1 of. */
		int r = wisp_write_all(fd, "0", 1);
		if (r < 0)
			return wisp_err_sys(err, -r, "move the VMM's process into cgroup %s",
					    cd->path);
		cd->joined = true;
	}
	return 0;
}

/* rmdir relative to a hierarchy's root, up to tries times 5 ms: a cgroup
 * whose last process is still exiting, or whose removed child is still
 * being torn down, answers EBUSY for a moment. */
static bool cg_rmdir_at(int mount_fd, const char *rel, int tries)
{
	for (int t = 0; t < tries; t++) {
		if (unlinkat(mount_fd, rel, AT_REMOVEDIR) == 0 || errno == ENOENT)
			return true;
		if (errno != EBUSY)
			return false;
		usleep(5000);
	}
	return false;
}

bool jail_cg_rollback(const struct jail_args *a, struct jail_cg_plan *p)
{
	char pid[32];
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	bool all = true;
	for (int d = 0; d < p->nr_dirs; d++) {
		struct jail_cg_dir *cd = &p->dirs[d];
		if (cd->mount_fd < 0)
			continue;
		/* Out of the cgroup (if this process got in: a waiting parent
		 * never does) before removing it: back to the hierarchy's root,
		 * which takes processes in v1 and v2. */
		int fd = cd->joined ? openat(cd->mount_fd, "cgroup.procs", O_WRONLY | O_CLOEXEC) : -1;
		if (fd >= 0) {
			if (wisp_write_all(fd, pid, strlen(pid)) < 0)
				all = false;
			else
				cd->joined = false;
			close(fd);
		}
		char rel[4200];
		snprintf(rel, sizeof(rel), "%s/%s", a->parent_cgroup, a->id);
		if (cd->created) {
			if (cg_rmdir_at(cd->mount_fd, rel, 200))
				cd->created = false;
			else
				all = false;
		}
		if (cd->made_from < 0)
			continue;
		/* The parent levels this run made, deepest first; one that
		 * another jail moved into meanwhile (EBUSY) stays, as it should. */
		snprintf(rel, sizeof(rel), "%s", a->parent_cgroup);
		int levels = 1;
		for (const char *c = rel; *c; c++)
			levels += *c == '/';
		for (int level = levels - 1; level >= cd->made_from; level--) {
			cg_rmdir_at(cd->mount_fd, rel, 40);
			char *slash = strrchr(rel, '/');
			if (slash)
				*slash = '\0';
		}
		cd->made_from = -1;
	}
	return all;
}

void jail_cg_close(struct jail_cg_plan *p)
{
	if (!p)
		return;
	for (int d = 0; d < p->nr_dirs; d++) {
		if (p->dirs[d].mount_fd >= 0)
			close(p->dirs[d].mount_fd);
		p->dirs[d].mount_fd = -1;
	}
}

int jail_cg_cleanup(const struct jail_args *a, struct wisp_err *err)
{
	struct cg_mount *m = calloc(CG_MAX_MOUNTS, sizeof(*m));
	if (!m)
		return wisp_err_set(err, ENOMEM, "no memory for the cgroup mounts");
	int r = 0;
	int nm = cg_mounts(m, CG_MAX_MOUNTS, err);
	if (nm < 0) {
		r = nm;
		goto out;
	}
	/* First pass: refuse while any of them still holds a process. */
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < nm; i++) {
			char dir[4096], f[4200], buf[64];
			snprintf(dir, sizeof(dir), "%s/%s/%s", m[i].path, a->parent_cgroup, a->id);
			struct stat st;
			if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
				continue;
			if (pass == 0) {
				snprintf(f, sizeof(f), "%s/cgroup.procs", dir);
				int n = read_small(f, buf, sizeof(buf));
				if (n > 0) {
					buf[strcspn(buf, "\n")] = '\0';
					r = wisp_err_set(err, EBUSY,
							 "cgroup %s still holds process %s: stop the "
							 "VMM before --cleanup", dir, buf);
					goto out;
				}
			} else if (rmdir(dir) < 0 && errno != ENOENT) {
				r = wisp_err_sys(err, errno, "remove cgroup %s", dir);
				goto out;
			} else if (a->parent_cgroup_default) {
				/* The default parent (the exec name) goes with its last
				 * jail; one still in use stays (ENOTEMPTY/EBUSY). */
				snprintf(dir, sizeof(dir), "%s/%s", m[i].path, a->parent_cgroup);
				/* A removed child is torn down asynchronously: its parent
				 * answers EBUSY for a moment. */
				for (int t = 0; t < 40 && rmdir(dir) < 0 && errno == EBUSY; t++)
					usleep(5000);
			}
		}
	}
out:
	free(m);
	return r;
}
