/* wisp-jailer: builds a Firecracker-layout jail <base>/<exec name>/<id>/root,
 * puts itself in cgroups and namespaces, drops every privilege and execs the
 * VMM inside. Every privileged step runs in a fixed order (jail_run) and
 * names what failed. */
#ifndef WISP_JAILER_H
#define WISP_JAILER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"

#define JAIL_ID_MAX            64
#define JAIL_DEFAULT_BASE      "/srv/jailer"
#define JAIL_MAX_CGROUPS       32
#define JAIL_DEFAULT_NOFILE    2048
#define JAIL_NAME_MAX          255

struct jail_cgroup_kv {
	char controller[64];    /* "cpu" in "cpu.shares=512" */
	char key[129];          /* file name: "cpu.shares" */
	const char *value;      /* "512" (points into argv) */
};

struct jail_args {
	bool cleanup;                   /* --cleanup: remove a finished jail */
	const char *id;
	const char *exec_file;          /* path as given */
	char exec_name[JAIL_NAME_MAX + 1]; /* its last path component */
	uid_t uid;
	gid_t gid;
	bool have_uid, have_gid;
	const char *base;               /* --chroot-base-dir */
	const char *netns;              /* path of a netns handle, or NULL */
	bool daemonize;
	bool new_pid_ns;
	int cgroup_version;             /* 1 or 2 */
	const char *parent_cgroup;      /* relative path; default: exec name */
	bool parent_cgroup_default;     /* not given: --cleanup may remove it */
	struct jail_cgroup_kv cgroups[JAIL_MAX_CGROUPS];
	int nr_cgroups;
	bool have_fsize;
	uint64_t fsize;                 /* RLIMIT_FSIZE, bytes */
	uint64_t nofile;                /* RLIMIT_NOFILE */
	char **vmm_argv;                /* the flags after "--" */
	int vmm_argc;
};

/* Parse and validate the command line (pure: touches no file). Fills a and
 * returns 0, or returns -EINVAL with a message naming the bad flag. */
int jail_parse_args(int argc, char **argv, struct jail_args *a, struct wisp_err *err);

/* Validation helpers (exported for the unit tests). */
int jail_check_id(const char *id, struct wisp_err *err);
int jail_check_cgroup_kv(const char *arg, struct jail_cgroup_kv *kv, struct wisp_err *err);
int jail_check_rlimit(const char *arg, struct jail_args *a, struct wisp_err *err);
int jail_check_relpath(const char *what, const char *path, struct wisp_err *err);
/* Open the exec file for copying: a regular, executable file. Returns an
 * O_CLOEXEC fd or -errno. */
int jail_open_exec(const char *path, struct wisp_err *err);

/* Recursively remove dir_name under dirfd without following symlinks or
 * crossing mount points. */
int jail_rmtree_at(int parent, const char *dir_name, struct wisp_err *err);

/* The jail's directories (fs.c). */
struct jail_fs {
	char exec_dir[4096];    /* <base>/<exec name> */
	char id_dir[4096];      /* .../<id> */
	char root[4096];        /* .../<id>/root */
	char exec_dst[4096];    /* .../root/<exec name> */
	int base_fd, exec_dir_fd, id_dir_fd, root_fd;
	bool created_exec_dir, created_id_dir, created_root, created_copy;
};

void jail_fs_paths(const struct jail_args *a, struct jail_fs *fs);
/* Refuse a planted symlink on the way, an existing jail (its exec copy is
 * present) or a symlink at the exec destination. Creates nothing. */
int jail_fs_check(const struct jail_args *a, struct jail_fs *fs, struct wisp_err *err);
/* Create the directories (root/ owned by uid:gid) and copy the exec file in. */
int jail_fs_create(const struct jail_args *a, int exec_fd, struct jail_fs *fs,
		   struct wisp_err *err);
/* Remove what jail_fs_create made (best effort, for a failed start). */
void jail_fs_rollback(const struct jail_args *a, struct jail_fs *fs);
void jail_fs_close(struct jail_fs *fs);

/* cgroups (cgroup.c). A plan is validated before anything is created. */
struct jail_cg_dir {
	char path[4096];        /* <mount>/<parent>/<id> */
	char mount[4096];       /* the hierarchy's root */
	bool created;
	bool cpuset;            /* v1 hierarchy holding cpuset */
};

struct jail_cg_plan {
	int version;
	char mount_v2[4096];
	struct jail_cg_dir dirs[JAIL_MAX_CGROUPS];  /* one per v1 hierarchy used */
	int nr_dirs;
	int dir_of[JAIL_MAX_CGROUPS];               /* --cgroup index -> dirs[] */
};

/* Find the hierarchies, check every controller exists and that no cgroup
 * <parent>/<id> exists yet. Creates nothing. */
int jail_cg_plan(const struct jail_args *a, struct jail_cg_plan *p, struct wisp_err *err);
/* Create the cgroups, write the values, move the calling process in. */
int jail_cg_apply(const struct jail_args *a, struct jail_cg_plan *p, struct wisp_err *err);
/* Remove the cgroups created by jail_cg_apply (best effort, for rollback). */
void jail_cg_rollback(struct jail_cg_plan *p);
/* --cleanup: remove <parent>/<id> from every v1 and v2 hierarchy. Refuses
 * (removing nothing) when one of them still holds a process. */
int jail_cg_cleanup(const struct jail_args *a, struct wisp_err *err);

/* The whole jail: returns only on failure (after exec the VMM runs). */
int jail_run(struct jail_args *a, struct wisp_err *err);
/* --cleanup. */
int jail_cleanup(const struct jail_args *a, struct wisp_err *err);

#endif
