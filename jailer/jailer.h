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

/* The exec file (execfile.c). Open it for copying: a regular, executable
 * file. Returns an O_CLOEXEC fd or -errno. */
int jail_open_exec(const char *path, struct wisp_err *err);
/* Will the copy exec inside the jail? After the privileges are dropped a
 * failed exec could not be undone, so refuse up front what would fail: a
 * format the kernel does not run (neither a native ELF nor a #! script), a
 * dynamic ELF whose interpreter (or a script whose interpreter) is not in
 * the jail. root_fd: the jail's root/ when it exists already (pre-staged
 * files), else -1: nothing is in the jail yet. */
int jail_check_exec(int exec_fd, const char *shown, int root_fd, struct wisp_err *err);

/* Recursively remove dir_name under dirfd without following symlinks or
 * crossing mount points. */
int jail_rmtree_at(int parent, const char *dir_name, struct wisp_err *err);

/* The jail's directories (fs.c). The fds stay open past pivot_root (they
 * are O_CLOEXEC: the VMM never sees them), so that a failed start can still
 * remove what it made from inside the jail. */
#define JAIL_MADE_MAX 8
struct jail_fs {
	char exec_dir[4096];    /* <base>/<exec name> */
	char id_dir[4096];      /* .../<id> */
	char root[4096];        /* .../<id>/root */
	char exec_dst[4096];    /* .../root/<exec name> */
	int base_fd, exec_dir_fd, id_dir_fd, root_fd;
	bool created_exec_dir, created_id_dir, created_root, created_copy;
	/* Made inside root/ after the copy (device nodes and their
	 * directories), names relative to root/, in the order made. */
	const char *made[JAIL_MADE_MAX];
	bool made_dir[JAIL_MADE_MAX];
	int nr_made;
};

void jail_fs_paths(const struct jail_args *a, struct jail_fs *fs);
/* Refuse a planted symlink on the way, an existing jail (its exec copy is
 * present, or with --new-pid-ns its pid file), a symlink at the exec
 * destination, or a jail on a noexec mount. Creates nothing. */
int jail_fs_check(const struct jail_args *a, struct jail_fs *fs, struct wisp_err *err);
/* Create the directories (root/ owned by uid:gid) and copy the exec file in. */
int jail_fs_create(const struct jail_args *a, int exec_fd, struct jail_fs *fs,
		   struct wisp_err *err);
/* Note that name (relative to root/, a string that outlives fs) was made. */
void jail_fs_made(struct jail_fs *fs, const char *name, bool dir);
/* Remove what this run made: the entries noted, the pid file (with
 * --new-pid-ns), the copy, and the directories it created. Works before and
 * after pivot_root (through the fds). Returns false if something it made
 * could not be removed. */
bool jail_fs_rollback(const struct jail_args *a, struct jail_fs *fs);
void jail_fs_close(struct jail_fs *fs);

/* cgroups (cgroup.c). A plan is validated before anything is created. */
struct jail_cg_dir {
	char path[4096];        /* <mount>/<parent>/<id> */
	char mount[4096];       /* the hierarchy's root */
	int mount_fd;           /* the hierarchy's root, open from jail_cg_apply on */
	bool created;
	bool joined;            /* this process moved itself in (jail_cg_enter) */
	int made_from;          /* first level of <parent> this run created, or -1 */
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
/* Create the cgroups and write the values; nobody is moved in yet. */
int jail_cg_apply(const struct jail_args *a, struct jail_cg_plan *p, struct wisp_err *err);
/* Move the calling process into the jail's cgroups (through the mount fds,
 * so also after pivot_root). Called only by the process that goes on to
 * exec the VMM, after step 8's forks: the cgroups' limits (pids.max,
 * memory) then count the VMM alone, never a jailer process waiting on it. */
int jail_cg_enter(const struct jail_args *a, struct jail_cg_plan *p, struct wisp_err *err);
/* Remove the cgroups (and parent levels) jail_cg_apply created, after
 * moving the calling process back to each hierarchy's root if it entered;
 * waits a moment for exiting children to leave. Works after pivot_root
 * (through the mount fds). Returns false if one could not be removed. */
bool jail_cg_rollback(const struct jail_args *a, struct jail_cg_plan *p);
void jail_cg_close(struct jail_cg_plan *p);
/* --cleanup: remove <parent>/<id> from every v1 and v2 hierarchy. Refuses
 * (removing nothing) when one of them still holds a process. */
int jail_cg_cleanup(const struct jail_args *a, struct wisp_err *err);

/* Step 8's forks (spawn.c). With --daemonize or --new-pid-ns the process
 * the caller started (the parent) waits, outside the jail's cgroups, until
 * the VMM is exec'd: a child
 * that fails sends its error up an O_CLOEXEC pipe, which a successful exec
 * closes. So the jailer's exit status and stderr always say what failed,
 * and the parent, which keeps its privileges, undoes the jail. */
struct jail_spawn {
	int rd, wr;             /* the report pipe; -1 without forks */
	bool child;             /* this process is a forked child */
	pid_t first;            /* in the parent: the child it forked */
};
/* In validation (before the rlimits): the pipe, when there will be forks. */
int jail_spawn_prepare(const struct jail_args *a, struct jail_spawn *sp, struct wisp_err *err);
/* --daemonize and --new-pid-ns. Returns 0 in the process that goes on to
 * exec the VMM, JAIL_RUN_DONE in a process that is done (the parent, which
 * must then jail_spawn_wait; a middle child whose part succeeded), or
 * -errno (sp->child says in which). */
int jail_spawn_fork(const struct jail_args *a, struct jail_spawn *sp, int devnull,
		    struct wisp_err *err);
/* The parent: 0 once the VMM was exec'd, or the child's error (its child
 * has exited then). */
int jail_spawn_wait(struct jail_spawn *sp, struct wisp_err *err);
/* A child: send err to the parent. */
void jail_spawn_report(struct jail_spawn *sp, const struct wisp_err *err);

/* jail_run's results besides -errno (after a successful exec it does not
 * return): */
#define JAIL_RUN_DONE     1     /* this process's part succeeded: exit 0 */
#define JAIL_RUN_REPORTED 2     /* a child whose failure the parent reports: exit 1 */

/* The whole jail. */
int jail_run(struct jail_args *a, struct wisp_err *err);
/* --cleanup. */
int jail_cleanup(const struct jail_args *a, struct wisp_err *err);

#endif
