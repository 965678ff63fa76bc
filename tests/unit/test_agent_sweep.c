/* The agent's search for processes left over from finished invocations
 * (agent/sweep.c): which processes of a process table it kills, and the
 * /proc/PID/stat reader. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent.h"

struct running_set {
	const pid_t *pids;
	size_t n;
};

static int is_running(void *ctx, pid_t pid)
{
	const struct running_set *r = ctx;
	for (size_t i = 0; i < r->n; i++)
		if (r->pids[i] == pid)
			return 1;
	return 0;
}

static const struct sweep_proc *row(const struct sweep_proc *p, size_t n, pid_t pid)
{
	for (size_t i = 0; i < n; i++)
		if (p[i].pid == pid)
			return &p[i];
	cr_assert_fail("pid %d is not in the table", pid);
	return NULL;
}

/* The agent as init (pid 1): two handlers running (10, 20), leftovers of
 * finished ones (30 and its tree, 40), kernel threads, a zombie. */
Test(agent_sweep, init_kills_only_what_finished_invocations_left)
{
	struct sweep_proc p[] = {
		{ .pid = 1, .ppid = 0, .state = 'S' },     /* the agent */
		{ .pid = 2, .ppid = 0, .state = 'S' },     /* kthreadd */
		{ .pid = 3, .ppid = 2, .state = 'I' },     /* a kernel thread */
		{ .pid = 10, .ppid = 1, .state = 'S' },    /* running handler */
		{ .pid = 11, .ppid = 10, .state = 'S' },   /* its child */
		{ .pid = 12, .ppid = 10, .state = 'S' },   /* its setsid daemon, re-parented to it */
		{ .pid = 13, .ppid = 12, .state = 'R' },
		{ .pid = 20, .ppid = 1, .state = 'S' },    /* another running handler */
		{ .pid = 21, .ppid = 20, .state = 'S' },
		{ .pid = 30, .ppid = 1, .state = 'S' },    /* left by a finished handler */
		{ .pid = 31, .ppid = 30, .state = 'S' },
		{ .pid = 32, .ppid = 31, .state = 'D' },
		{ .pid = 33, .ppid = 31, .state = 'Z' },   /* a zombie: nothing to kill */
		{ .pid = 40, .ppid = 1, .state = 'R' },    /* another leftover */
		{ .pid = 50, .ppid = 999, .state = 'S' },  /* parent gone during the scan */
	};
	size_t n = sizeof(p) / sizeof(p[0]);
	const pid_t run[] = { 20, 10 };
	struct running_set rs = { run, 2 };
	/* out of order on purpose: the table is sorted by the call */
	struct sweep_proc tmp = p[0];
	p[0] = p[n - 1];
	p[n - 1] = tmp;
	cr_assert_eq(sweep_classify(p, n, 1, is_running, &rs), 4);
	const pid_t killed[] = { 30, 31, 32, 40 };
	const pid_t kept[] = { 1, 2, 3, 10, 11, 12, 13, 20, 21, 33, 50 };
	for (size_t i = 0; i < sizeof(killed) / sizeof(killed[0]); i++)
		cr_expect(row(p, n, killed[i])->kill, "pid %d should be killed", killed[i]);
	for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
		cr_expect(!row(p, n, kept[i])->kill, "pid %d should be left alone", kept[i]);
	for (size_t i = 1; i < n; i++)
		cr_assert_lt(p[i - 1].pid, p[i].pid);
}

/* Once the last handler has ended, its whole former tree goes; one that is
 * still running keeps everything below it. */
Test(agent_sweep, a_handler_that_ends_releases_its_tree)
{
	struct sweep_proc p[] = {
		{ .pid = 1, .ppid = 0, .state = 'S' },
		{ .pid = 10, .ppid = 1, .state = 'S' },
		{ .pid = 11, .ppid = 10, .state = 'S' },
	};
	const pid_t run[] = { 10 };
	struct running_set rs = { run, 1 };
	cr_assert_eq(sweep_classify(p, 3, 1, is_running, &rs), 0);
	rs.n = 0;
	cr_assert_eq(sweep_classify(p, 3, 1, is_running, &rs), 2);
	cr_expect(p[1].kill && p[2].kill && !p[0].kill);
}

/* Not init (the host suite): the agent is one process among others; its
 * parent, siblings and init's other children are not its business. */
Test(agent_sweep, not_init_touches_nothing_outside_its_subtree)
{
	struct sweep_proc p[] = {
		{ .pid = 1, .ppid = 0, .state = 'S' },
		{ .pid = 400, .ppid = 1, .state = 'S' },   /* the agent's parent */
		{ .pid = 500, .ppid = 400, .state = 'S' }, /* the agent */
		{ .pid = 501, .ppid = 400, .state = 'S' }, /* a sibling */
		{ .pid = 502, .ppid = 501, .state = 'S' },
		{ .pid = 600, .ppid = 500, .state = 'S' }, /* a leftover */
		{ .pid = 601, .ppid = 1, .state = 'S' },   /* someone else's orphan */
	};
	struct running_set rs = { NULL, 0 };
	cr_assert_eq(sweep_classify(p, 7, 500, is_running, &rs), 1);
	cr_expect(row(p, 7, 600)->kill);
}

/* A table read while pids were reused can hold a loop of parents: judged
 * "not ours", without hanging. */
Test(agent_sweep, a_loop_of_parents_is_left_alone)
{
	struct sweep_proc p[] = {
		{ .pid = 1, .ppid = 0, .state = 'S' },
		{ .pid = 70, .ppid = 72, .state = 'S' },
		{ .pid = 71, .ppid = 70, .state = 'S' },
		{ .pid = 72, .ppid = 71, .state = 'S' },
		{ .pid = 73, .ppid = 71, .state = 'S' },
		{ .pid = 80, .ppid = 1, .state = 'S' },
	};
	struct running_set rs = { NULL, 0 };
	cr_assert_eq(sweep_classify(p, 6, 1, is_running, &rs), 1);
	cr_expect(row(p, 6, 80)->kill);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
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
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
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
	sweep_classify(p, n, 1, is_running, &(struct running_set){ NULL, 0 });
	cr_expect_eq(p[0].pid, 7);
	cr_expect_eq(p[0].ppid, 3);
	cr_expect_eq(p[0].state, 'S');
	cr_expect_eq(p[1].pid, 12);
	cr_expect_eq(p[1].ppid, 7);
	cr_expect_eq(p[1].state, 'Z');
	free(p);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
	cr_expect_lt(sweep_scan("/nonexistent-proc", &p, &n), 0);
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
