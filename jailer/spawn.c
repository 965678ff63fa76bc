/* Step 8's forks (--daemonize, --new-pid-ns) and how a failure after them
 * still reaches the caller. The process the caller started (the parent)
 * holds the read end of an O_CLOEXEC pipe, the children the write end: a
 * child that fails writes one report (errno and message) and exits; the
 * exec of the VMM closes its end. The parent reads to end of file: nothing
 * read means the VMM runs; a report becomes the parent's own error, printed
 * on the caller's stderr with exit status 1, after the parent (which kept
 * its privileges) has removed the jail. Neither the parent nor a middle
 * child ever enters the jail's cgroups (only the process that execs the
 * VMM does, jail_cg_enter), so a pids.max or memory limit that fits the VMM
 * alone is enough. */
#include "jailer.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/io.h"

struct jail_report {
	int32_t code;
	char msg[WISP_ERR_MSG_MAX];
};

/* One write of at most PIPE_BUF bytes is atomic: a report never interleaves. */
_Static_assert(sizeof(struct jail_report) <= 4096, "a report must fit PIPE_BUF");

int jail_spawn_prepare(const struct jail_args *a, struct jail_spawn *sp, struct wisp_err *err)
{
	sp->rd = sp->wr = -1;
	sp->child = false;
	sp->first = -1;
	if (!a->daemonize && !a->new_pid_ns)
		return 0;
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return wisp_err_sys(err, errno, "create the pipe that reports the start");
	sp->rd = p[0];
	sp->wr = p[1];
	return 0;
}

static void become_child(struct jail_spawn *sp)
{
	sp->child = true;
	if (sp->rd >= 0)
		close(sp->rd);
	sp->rd = -1;
}

/* As Firecracker's jailer: the VMM's host pid in /<exec name>.pid (in the
 * jail; validation refused one already there). */
static int write_pidfile(const struct jail_args *a, pid_t pid, struct wisp_err *err)
{
	char path[JAIL_NAME_MAX + 8], buf[32];
	snprintf(path, sizeof(path), "/%s.pid", a->exec_name);
	snprintf(buf, sizeof(buf), "%d\n", (int)pid);
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
				      0644);
	if (fd < 0)
		return wisp_err_sys(err, errno, "write the pid file %s", path);
	int r = wisp_write_all(fd, buf, strlen(buf));
	if (r < 0)
		return wisp_err_sys(err, -r, "write the pid file %s", path);
	return 0;
}

int jail_spawn_fork(const struct jail_args *a, struct jail_spawn *sp, int devnull,
		    struct wisp_err *err)
{
	if (a->daemonize) {
		pid_t pid = fork();
		if (pid < 0)
			return wisp_err_sys(err, errno, "fork to daemonize");
		if (pid > 0) {
			sp->first = pid;
			return JAIL_RUN_DONE;
		}
		become_child(sp);
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
		if (pid == 0) {
			become_child(sp);
			return 0;
		}
		if (!sp->child)
			sp->first = pid;
		int r = write_pidfile(a, pid, err);
		if (r < 0) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			return r;
		}
		return JAIL_RUN_DONE;
	}
	return 0;
}

int jail_spawn_wait(struct jail_spawn *sp, struct wisp_err *err)
{
	close(sp->wr);
	sp->wr = -1;
	struct jail_report rep;
	size_t got = 0;
	char rest[64];
	for (;;) {
		/* Read to end of file: every child has exec'd or exited then. */
		void *to = got < sizeof(rep) ? (char *)&rep + got : rest;
		size_t len = got < sizeof(rep) ? sizeof(rep) - got : sizeof(rest);
		ssize_t n = read(sp->rd, to, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (got < sizeof(rep))
			got += (size_t)n;
	}
	close(sp->rd);
	sp->rd = -1;
	if (got == 0)
		return 0;
	/* The child that failed is gone (or going) before the jail is undone. */
	if (sp->first > 0)
		waitpid(sp->first, NULL, 0);
	if (got < sizeof(rep))
		return wisp_err_set(err, EPIPE, "a jailer child ended in the middle of its report");
	rep.msg[sizeof(rep.msg) - 1] = '\0';
	return wisp_err_set(err, rep.code > 0 ? rep.code : EIO, "%s", rep.msg);
}

void jail_spawn_report(struct jail_spawn *sp, const struct wisp_err *err)
{
	if (sp->wr < 0)
		return;
	struct jail_report rep = { .code = err->code > 0 ? err->code : EIO };
	snprintf(rep.msg, sizeof(rep.msg), "%s", err->msg);
	/* The parent may be gone (killed): nothing else to tell then. */
	wisp_write_all(sp->wr, &rep, sizeof(rep));
	close(sp->wr);
	sp->wr = -1;
}
