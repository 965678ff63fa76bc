/* A handler's whole process tree, found through /proc and killed.
 *
 * A handler can leave its process group (setsid, setpgid) and its parent
 * (double fork), so the group kill of job.c misses such processes, and the
 * guest kernel has neither cgroups nor PID namespaces to hold them. What it
 * has is the child subreaper: every handler runs as one (job.c sets it
 * between fork and exec; it survives exec), so while the handler lives,
 * anything it started, however detached, stays below it in the process
 * tree. The abnormal ends of an invocation (timeout, client gone, agent
 * stop) stop the handler, kill its tree from here, then kill the handler:
 * only that handler's tree, so concurrent invocations stay independent.
 *
 * A handler that ends by itself is not followed here: what it left
 * detached (a server started for later invocations) is re-parented to the
 * agent, keeps running, and is reaped when it dies.
 *
 * One scan reads /proc/PID/stat once per process, then judges from that
 * table. A process forked between a scan and the kills (by one not yet
 * signalled) is caught by the next scan; a process with SIGKILL pending can
 * fork no more, and a killed process's children go to the subreaper above
 * it, the handler, so they are still found. The scans repeat until one
 * finds nothing alive below the handler (what was killed has become a
 * zombie), within a bound: a process stuck in uninterruptible sleep must
 * not hold the agent's loop up for long. Pids are not pinned between the
 * scan and the kill: a pid freed and reused within that window would be
 * signalled by mistake, as with any /proc based kill. */
#include "agent.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"

enum { V_UNKNOWN = 0, V_OTHER, V_BELOW, V_BUSY };

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

static int stops_chain(const struct sweep_proc *e, pid_t root)
{
	return e->pid == root || e->ppid <= 0 || e->ppid == root;
}

/* The verdict of one process: walk up its parents until one is judged or
 * the chain ends, then give every process on the way that verdict. A chain
 * that loops (a pid reused while the table was read) is "not below". */
static void judge(struct sweep_proc *p, size_t n, struct sweep_proc *e, pid_t root)
{
	int v;
	for (struct sweep_proc *cur = e;;) {
		if (cur->verdict != V_UNKNOWN) {
			v = cur->verdict == V_BUSY ? V_OTHER : cur->verdict;
			break;
		}
		if (cur->pid == root || cur->ppid <= 0) {
			v = V_OTHER;
			break;
		}
		if (cur->ppid == root) {
			v = V_BELOW;
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
		if (stops_chain(cur, root))
			break;
	}
}

static int is_dead(char state)
{
	return state == 'Z' || state == 'X' || state == 'x';
}

size_t sweep_mark_tree(struct sweep_proc *p, size_t n, pid_t root)
{
	qsort(p, n, sizeof(*p), cmp_pid);
	for (size_t i = 0; i < n; i++)
		p[i].verdict = V_UNKNOWN;
	size_t live = 0;
	for (size_t i = 0; i < n; i++) {
		judge(p, n, &p[i], root);
		p[i].below = p[i].verdict == V_BELOW;
		live += p[i].below && !is_dead(p[i].state);
	}
	return live;
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

int sweep_kill_tree(const char *proc, pid_t root)
{
	for (unsigned pass = 1;; pass++) {
		_cleanup_free_ struct sweep_proc *p = NULL;
		size_t n;
		int r = sweep_scan(proc, &p, &n);
		if (r < 0)
			return r;
		size_t live = sweep_mark_tree(p, n, root);
		/* zombies too: a thread group whose leader exited shows as one
		 * while its other threads run (signalling a zombie does nothing) */
		for (size_t i = 0; i < n; i++)
			if (p[i].below && kill(p[i].pid, SIGKILL) < 0 && errno != ESRCH)
				wlog_rl(WISP_LOG_WARN, "kill pid %d below %d: %s", p[i].pid, root,
					strerror(errno));
		if (live == 0)
			return 0;
		if (pass == SWEEP_MAX_PASSES)
			return live > INT_MAX ? INT_MAX : (int)live;
		/* time for the killed ones to die (to become zombies) */
		usleep(pass < 5 ? 500u << pass : 10000u);
	}
}
