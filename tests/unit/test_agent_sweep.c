/* The agent's kill of a handler's process tree (agent/sweep.c): which
 * processes of a process table are below a root, the /proc/PID/stat
 * reader, and the kill itself on real processes that left their group and
 * session after a double fork. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/agent.h"

static const struct sweep_proc *row(const struct sweep_proc *p, size_t n, pid_t pid)
{
	for (size_t i = 0; i < n; i++)
		if (p[i].pid == pid)
			return &p[i];
	cr_assert_fail("pid %d is not in the table", pid);
	return NULL;
}

static void expect_below(const struct sweep_proc *p, size_t n, const pid_t *pids, size_t k, int want)
{
	for (size_t i = 0; i < k; i++)
		cr_expect_eq(row(p, n, pids[i])->below, want, "pid %d should %sbe below the root",
			     pids[i], want ? "" : "not ");
}
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* The agent as init (pid 1) with two handlers (10, 20), a service a
 * finished handler left (30 and its tree), kernel threads. */
static const struct sweep_proc guest[] = {
	{ .pid = 50, .ppid = 999, .state = 'S' },  /* parent gone during the scan */
	{ .pid = 2, .ppid = 0, .state = 'S' },     /* kthreadd */
	{ .pid = 3, .ppid = 2, .state = 'I' },     /* a kernel thread */
	{ .pid = 10, .ppid = 1, .state = 'T' },    /* a handler (stopped) */
	{ .pid = 11, .ppid = 10, .state = 'S' },   /* its child */
	{ .pid = 12, .ppid = 10, .state = 'S' },   /* its setsid daemon, re-parented to it */
	{ .pid = 13, .ppid = 12, .state = 'R' },
	{ .pid = 14, .ppid = 13, .state = 'D' },
	{ .pid = 15, .ppid = 12, .state = 'Z' },   /* a zombie: below, not alive */
	{ .pid = 20, .ppid = 1, .state = 'S' },    /* another handler */
	{ .pid = 21, .ppid = 20, .state = 'S' },
	{ .pid = 30, .ppid = 1, .state = 'S' },    /* a service a finished handler left */
	{ .pid = 31, .ppid = 30, .state = 'S' },
	{ .pid = 1, .ppid = 0, .state = 'S' },     /* the agent */
};

Test(agent_sweep, the_tree_of_one_handler_only)
{
	struct sweep_proc p[COUNT(guest)];
	size_t n = COUNT(guest);
	memcpy(p, guest, sizeof(p));
	cr_assert_eq(sweep_mark_tree(p, n, 10), 4);
	const pid_t below[] = { 11, 12, 13, 14, 15 };
	const pid_t other[] = { 1, 2, 3, 10, 20, 21, 30, 31, 50 };
	expect_below(p, n, below, COUNT(below), 1);
	expect_below(p, n, other, COUNT(other), 0);
	for (size_t i = 1; i < n; i++)
		cr_assert_lt(p[i - 1].pid, p[i].pid, "the table is sorted by pid");

	memcpy(p, guest, sizeof(p));
	cr_assert_eq(sweep_mark_tree(p, n, 20), 1);
	cr_expect(row(p, n, 21)->below && !row(p, n, 11)->below && !row(p, n, 31)->below);
}

/* The agent's own tree (its stop, not as init): everything it started,
 * handlers and services, never its parent, siblings or kernel threads. */
Test(agent_sweep, the_agents_own_tree)
{
	struct sweep_proc p[COUNT(guest)];
	size_t n = COUNT(guest);
	memcpy(p, guest, sizeof(p));
	cr_assert_eq(sweep_mark_tree(p, n, 1), 9, "10 below the agent, one a zombie");
	const pid_t other[] = { 1, 2, 3, 50 };
	expect_below(p, n, other, COUNT(other), 0);
	cr_expect(row(p, n, 31)->below && row(p, n, 15)->below);

	struct sweep_proc q[] = {
		{ .pid = 1, .ppid = 0, .state = 'S' },
		{ .pid = 400, .ppid = 1, .state = 'S' },   /* the agent's parent */
		{ .pid = 500, .ppid = 400, .state = 'S' }, /* the agent */
		{ .pid = 501, .ppid = 400, .state = 'S' }, /* a sibling */
		{ .pid = 502, .ppid = 501, .state = 'S' },
		{ .pid = 600, .ppid = 500, .state = 'S' },
		{ .pid = 601, .ppid = 1, .state = 'S' },   /* someone else's orphan */
	};
	cr_assert_eq(sweep_mark_tree(q, COUNT(q), 500), 1);
	cr_expect(row(q, COUNT(q), 600)->below);
}

/* A table read while pids were reused can hold a loop of parents: judged
 * "not below", without hanging. */
Test(agent_sweep, a_loop_of_parents_is_not_below)
{
	struct sweep_proc p[] = {
		{ .pid = 1, .ppid = 0, .state = 'S' },
		{ .pid = 70, .ppid = 72, .state = 'S' },
		{ .pid = 71, .ppid = 70, .state = 'S' },
		{ .pid = 72, .ppid = 71, .state = 'S' },
		{ .pid = 73, .ppid = 71, .state = 'S' },
		{ .pid = 80, .ppid = 1, .state = 'S' },
		{ .pid = 81, .ppid = 80, .state = 'S' },
	};
	cr_assert_eq(sweep_mark_tree(p, COUNT(p), 80), 1);
	cr_expect(row(p, COUNT(p), 81)->below);
	cr_expect(!row(p, COUNT(p), 70)->below && !row(p, COUNT(p), 73)->below);
	cr_assert_eq(sweep_mark_tree(p, COUNT(p), 1), 2);
	const pid_t loop[] = { 70, 71, 72, 73 };
	expect_below(p, COUNT(p), loop, COUNT(loop), 0);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "we");
	cr_assert_not_null(f, "%s", path);
	fputs(text, f);
	fclose(f);
}

/* The stat reader: a command name holding ") " and spaces, entries that are
 * not processes, unreadable or malformed lines. */
Test(agent_sweep, scan_reads_pid_state_and_parent)
{
	char dir[] = "/tmp/wisp-sweep-XXXXXX", path[256];
	cr_assert_not_null(mkdtemp(dir));
	const char *names[] = { "7", "12", "13", "self", "0x1", "14" };
	for (size_t i = 0; i < COUNT(names); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		cr_assert_eq(mkdir(path, 0755), 0);
	}
	snprintf(path, sizeof(path), "%s/7/stat", dir);
	write_file(path, "7 (a) b) (c) S 3 7 7 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0\n");
	snprintf(path, sizeof(path), "%s/12/stat", dir);
	write_file(path, "12 (sleep) Z 7 12 12 0 -1\n");
	snprintf(path, sizeof(path), "%s/13/stat", dir);
	write_file(path, "13 (broken\n");
	snprintf(path, sizeof(path), "%s/self/stat", dir);
	write_file(path, "99 (x) S 1 1 1\n");
	/* 14 has no stat file (a process gone since readdir) */
	struct sweep_proc *p = NULL;
	size_t n = 0;
	cr_assert_eq(sweep_scan(dir, &p, &n), 0);
	cr_assert_eq(n, 2);
	cr_expect_eq(sweep_mark_tree(p, n, 3), 1, "12 is a zombie: below 3, not alive");
	cr_expect_eq(p[0].pid, 7);
	cr_expect_eq(p[0].ppid, 3);
	cr_expect_eq(p[0].state, 'S');
	cr_expect_eq(p[1].pid, 12);
	cr_expect_eq(p[1].ppid, 7);
	cr_expect_eq(p[1].state, 'Z');
	cr_expect(p[0].below && p[1].below);
	free(p);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
	cr_expect_lt(sweep_scan("/nonexistent-proc", &p, &n), 0);
	cr_expect_lt(sweep_kill_tree("/nonexistent-proc", 1), 0);
}

/* The real /proc: this process is there, with its real parent. */
Test(agent_sweep, scan_of_proc_finds_this_process)
{
	struct sweep_proc *p = NULL;
	size_t n = 0;
	cr_assert_eq(sweep_scan("/proc", &p, &n), 0);
	int found = 0;
	for (size_t i = 0; i < n; i++)
		if (p[i].pid == getpid()) {
			found = 1;
			cr_expect_eq(p[i].ppid, getppid());
			cr_expect_eq(p[i].state, 'R');
		}
	cr_expect(found);
	free(p);
}

/* --- real processes ------------------------------------------------------ */

static void idle_forever(void)
{
	for (;;)
		pause();
}

/* A stand-in for a handler: a child subreaper whose child forks a daemon
 * that leaves the session (setsid) and, with fork_more, a second one that
 * keeps forking more children, then exits (the double fork): the daemons
 * are re-parented to the handler. The handler reports the first daemon's
 * pid on fd `report` once its child has exited, then idles. */
static pid_t start_handler(int fork_more)
{
	int fds[2];
	cr_assert_eq(pipe2(fds, O_CLOEXEC), 0);
	pid_t h = fork();
	cr_assert_geq(h, 0);
	if (h == 0) {
		close(fds[0]);
		if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
			_exit(1);
		int dp[2];
		if (pipe2(dp, O_CLOEXEC) < 0)
			_exit(1);
		pid_t mid = fork();
		if (mid == 0) {
			if (fork() == 0) {
				setsid();
				pid_t me = getpid();
				if (write(dp[1], &me, sizeof(me)) != sizeof(me))
					_exit(1);
				idle_forever();
			}
			if (fork_more && fork() == 0) {
				setsid();
				for (;;) {
					if (fork() == 0)
						idle_forever();
					usleep(1000);
				}
			}
			_exit(0);
		}
		pid_t d = 0;
		if (mid < 0 || waitpid(mid, NULL, 0) != mid || read(dp[0], &d, sizeof(d)) != sizeof(d))
			_exit(1);
		if (write(fds[1], &d, sizeof(d)) != sizeof(d))
			_exit(1);
		idle_forever();
	}
	close(fds[1]);
	pid_t d = 0;
	ssize_t got = read(fds[0], &d, sizeof(d));
	close(fds[0]);
	cr_assert_eq(got, (ssize_t)sizeof(d), "the handler stand-in did not start");
	/* the first daemon left the session and is the handler's child now */
	cr_assert_eq(getsid(d), d);
	return h;
}

static char state_of(pid_t pid, pid_t *ppid)
{
	char path[64], buf[256];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	size_t len = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[len] = '\0';
	char *close = strrchr(buf, ')');
	if (!close || !close[1] || !close[2])
		return 0;
	if (ppid)
		*ppid = (pid_t)strtol(close + 4, NULL, 10);
	return close[2];
}

static size_t live_below(pid_t root)
{
	struct sweep_proc *p = NULL;
	size_t n = 0;
	cr_assert_eq(sweep_scan("/proc", &p, &n), 0);
	size_t live = sweep_mark_tree(p, n, root);
	free(p);
	return live;
}

static void end_handler(pid_t h)
{
	sweep_kill_tree("/proc", h);
	kill(h, SIGKILL);
	waitpid(h, NULL, 0);
}

Test(agent_sweep, kill_tree_kills_detached_daemons_of_one_handler_only)
{
	pid_t a = start_handler(1), b = start_handler(0);
	usleep(20000); /* let the forking daemon fork some */
	cr_expect_gt(live_below(a), 2, "handler a's daemons run");
	size_t b_live = live_below(b);
	cr_expect_eq(b_live, 1, "handler b has its one daemon");

	cr_expect_eq(kill(a, SIGSTOP), 0);
	cr_expect_eq(sweep_kill_tree("/proc", a), 0);
	cr_expect_eq(live_below(a), 0, "nothing alive below handler a");
	pid_t ppid = 0;
	cr_expect_eq(state_of(a, NULL), 'T', "the handler itself is left alone (stopped)");
	cr_expect_eq(live_below(b), b_live, "handler b's daemon is untouched");
	struct sweep_proc *p = NULL;
	size_t n = 0;
	cr_assert_eq(sweep_scan("/proc", &p, &n), 0);
	sweep_mark_tree(p, n, b);
	for (size_t i = 0; i < n; i++)
		if (p[i].below) {
			char s = state_of(p[i].pid, &ppid);
			cr_expect(s && s != 'Z' && ppid == b, "b's daemon %d: state %c, parent %d",
				  p[i].pid, s ? s : '?', ppid);
		}
	free(p);
	end_handler(a);
	end_handler(b);
	cr_expect_eq(waitpid(-1, NULL, WNOHANG), -1, "no child left");
	cr_expect_eq(errno, ECHILD);
}
