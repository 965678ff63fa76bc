/* What is left of finished invocations, found and killed.
 *
 * A handler can leave its process group (setsid, setpgid) and its parent
 * (double fork), so the group kill of job.c misses such processes, and the
 * guest kernel has neither cgroups nor PID namespaces to hold them. What it
 * has is the child subreaper: every handler runs as one (job.c sets it
 * between fork and exec; it survives exec), so while the handler lives,
 * anything it started, however detached, stays below it in the process
 * tree. When the handler ends, the rest is re-parented to the agent (itself
 * a subreaper, or init). So a process whose chain of parents reaches the
 * agent without passing through a running handler belongs to an invocation
 * that is over, and is killed; the processes of running handlers are left
 * alone, which keeps concurrent invocations independent.
 *
 * The scan reads /proc/PID/stat once per process, then judges from that
 * table. A process forked between the scan and the kill is caught by the
 * next sweep: its parent's death re-parents it to the agent and is reported
 * (SIGCHLD), and server.c sweeps again after every reap and, while sweeps
 * keep finding something, on a short timer. A handler that drops its own
 * subreaper attribute lets its detached processes reach the agent while it
 * runs; those are then killed by the next sweep, like any leftover. */
#include "agent.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"

enum { V_UNKNOWN = 0, V_OTHER, V_RUNNING, V_LEFTOVER, V_BUSY };

static int cmp_pid(const void *x, const void *y)
{
	pid_t a = ((const struct sweep_proc *)x)->pid, b = ((const struct sweep_proc *)y)->pid;
	return a < b ? -1 : a > b;
}

static struct sweep_proc *find(struct sweep_proc *p, size_t n, pid_t pid)
{
	struct sweep_proc key = { .pid = pid };
	return bsearch(&key, p, n, sizeof(*p), cmp_pid);
}

/* The verdict of one process: walk up its parents until one is judged or
 * the chain ends, then give every process on the way that verdict. A chain
 * that loops (a pid reused while the table was read) is "not ours". */
static void judge(struct sweep_proc *p, size_t n, struct sweep_proc *e, pid_t self,
		  int (*running)(void *ctx, pid_t pid), void *ctx)
{
	int v;
	for (struct sweep_proc *cur = e;;) {
		if (cur->verdict != V_UNKNOWN) {
			v = cur->verdict == V_BUSY ? V_OTHER : cur->verdict;
			break;
		}
		if (cur->pid == self || cur->ppid <= 0) {
			v = V_OTHER;
			break;
		}
		if (cur->ppid == self) {
			v = running(ctx, cur->pid) ? V_RUNNING : V_LEFTOVER;
			break;
		}
		cur->verdict = V_BUSY;
		cur = find(p, n, cur->ppid);
		if (!cur) {
			v = V_OTHER;
			break;
		}
	}
	for (struct sweep_proc *cur = e; cur && (cur->verdict == V_BUSY || cur->verdict == V_UNKNOWN);
	     cur = find(p, n, cur->ppid)) {
		cur->verdict = (signed char)v;
		if (cur->pid == self || cur->ppid <= 0 || cur->ppid == self)
			break;
	}
}

size_t sweep_classify(struct sweep_proc *p, size_t n, pid_t self,
		      int (*running)(void *ctx, pid_t pid), void *ctx)
{
	qsort(p, n, sizeof(*p), cmp_pid);
	for (size_t i = 0; i < n; i++)
		p[i].verdict = V_UNKNOWN;
	size_t kill_n = 0;
	for (size_t i = 0; i < n; i++) {
		judge(p, n, &p[i], self, running, ctx);
		p[i].kill = p[i].verdict == V_LEFTOVER && p[i].state != 'Z' && p[i].state != 'X';
		kill_n += p[i].kill;
	}
	return kill_n;
}

/* "PID (COMM) S PPID ...": COMM may hold spaces and ')', the fields after
 * it never hold ')'. */
static int parse_stat(const char *buf, struct sweep_proc *e)
{
	const char *close = strrchr(buf, ')');
	if (!close || close[1] != ' ' || !close[2] || close[3] != ' ')
		return -EINVAL;
	char *end;
	long ppid = strtol(close + 4, &end, 10);
	if (end == close + 4 || *end != ' ')
		return -EINVAL;
	e->state = close[2];
	e->ppid = (pid_t)ppid;
	return 0;
}

int sweep_scan(const char *proc, struct sweep_proc **out, size_t *n_out)
{
	*out = NULL;
	*n_out = 0;
	DIR *d = opendir(proc);
	if (!d)
		return -errno;
	struct sweep_proc *p = NULL;
	size_t n = 0, cap = 0;
	int r = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);
		if (de->d_name[0] < '1' || de->d_name[0] > '9' || *end || pid <= 0)
			continue;
		char path[64], buf[256];
		snprintf(path, sizeof(path), "%s/stat", de->d_name);
		_cleanup_close_ int fd = openat(dirfd(d), path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue; /* gone since readdir */
		ssize_t len = read(fd, buf, sizeof(buf) - 1);
		if (len <= 0)
			continue;
		buf[len] = '\0';
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 128;
			struct sweep_proc *np = realloc(p, ncap * sizeof(*p));
			if (!np) {
				r = -ENOMEM;
				break;
			}
			p = np;
			cap = ncap;
		}
		struct sweep_proc e = { .pid = (pid_t)pid };
		if (parse_stat(buf, &e) == 0)
			p[n++] = e;
	}
	closedir(d);
	if (r < 0) {
		free(p);
		return r;
	}
	*out = p;
	*n_out = n;
	return 0;
}

static int job_running(void *ctx, pid_t pid)
{
	for (struct job *j = ((struct agent *)ctx)->jobs; j; j = j->next)
		if (j->pid == pid)
			return 1;
	return 0;
}

int sweep_orphans(struct agent *a)
{
	/* No handler running and no child at all: nothing can be left over
	 * (the common case of invocations one after the other, at no cost). */
	if (!a->jobs) {
		siginfo_t si;
		if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0 && errno == ECHILD)
			return 0;
	}
	_cleanup_free_ struct sweep_proc *p = NULL;
	size_t n;
	int r = sweep_scan("/proc", &p, &n);
	if (r < 0) {
		wlog_rl(WISP_LOG_WARN, "scanning /proc for leftover processes: %s", strerror(-r));
		return r;
	}
	if (sweep_classify(p, n, getpid(), job_running, a) == 0)
		return 0;
	int killed = 0;
	for (size_t i = 0; i < n; i++) {
		if (!p[i].kill)
			continue;
		if (kill(p[i].pid, SIGKILL) == 0) {
			killed++;
			wlog_debug("killed pid %d, left over from a finished invocation", p[i].pid);
		} else if (errno != ESRCH) {
			wlog_rl(WISP_LOG_WARN, "kill leftover pid %d: %s", p[i].pid, strerror(errno));
		}
	}
	return killed;
}
