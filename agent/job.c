/* Handlers: each INVOKE or EXEC runs in a child that leads its own process
 * group and is a child subreaper, with pipes for stdin, stdout and stderr
 * watched by the agent's epoll loop.
 *
 * On the abnormal ends of an invocation (timeout, client gone, agent stop)
 * everything the handler started goes: its whole process tree, even what
 * left the group after a double fork and setsid (sweep.c), then the
 * handler and its group. When the handler exits by itself only what is
 * left of its group is killed: a process it detached (its own session or
 * group) keeps running, re-parented to the agent, which reaps it when it
 * dies. That is how an invocation starts a service in the guest for later
 * ones. */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/io.h"
#include "common/log.h"

#define DEFAULT_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

struct job *job_find(struct agent *a, struct conn *c, uint32_t id)
{
	for (struct job *j = a->jobs; j; j = j->next)
		if (j->conn == c && j->id == id)
			return j;
	return NULL;
}

static void close_fd(struct agent *a, int *fd)
{
	if (*fd >= 0) {
		epoll_ctl(a->epfd, EPOLL_CTL_DEL, *fd, NULL);
		close(*fd);
		*fd = -1;
	}
}

static void kill_group(struct job *j)
{
	if (j->pid > 0 && kill(-j->pid, SIGKILL) < 0 && errno != ESRCH)
		wlog_rl(WISP_LOG_WARN, "kill process group %d: %s", j->pid, strerror(errno));
}

/* The handler is stopped first: it forks no more, and it stays alive, so as
 * a subreaper it keeps below it everything it started, whatever sweep.c
 * kills in between (a killed process's children go to it). Then the
 * handler itself, and its group (it may have left the group itself). Its
 * pid cannot be reused before the agent reaps it. Only this handler's tree
 * is touched: concurrent invocations keep theirs. */
static void kill_job(struct job *j)
{
	if (j->pid <= 0 || j->killed)
		return;
	j->killed = 1;
	if (kill(j->pid, SIGSTOP) < 0 && errno != ESRCH)
		wlog_rl(WISP_LOG_WARN, "stop handler %d: %s", j->pid, strerror(errno));
	int r = sweep_kill_tree("/proc", j->pid);
	if (r < 0)
		wlog_rl(WISP_LOG_WARN, "job %u: scanning /proc for what handler %d started: %s",
			j->id, j->pid, strerror(-r));
	else if (r > 0)
		wlog_rl(WISP_LOG_WARN, "job %u: %d processes below handler %d still alive "
			"after %d scans; killing the handler anyway", j->id, r, j->pid,
			SWEEP_MAX_PASSES);
	kill_group(j);
	if (kill(j->pid, SIGKILL) < 0 && errno != ESRCH)
		wlog_rl(WISP_LOG_WARN, "kill handler %d: %s", j->pid, strerror(errno));
}

/* In the child, between fork and exec: only async-signal-safe calls. */
static void child_exec(const struct wproto_msg *m, int in, int out, int errfd, int report,
		       char **argv, char **envp)
{
	sigset_t none;
	sigemptyset(&none);
	for (int s = 1; s < NSIG; s++)
		signal(s, SIG_DFL);
	sigprocmask(SIG_SETMASK, &none, NULL);
	setpgid(0, 0);
	/* Orphans of the handler's descendants stay below it (kill_job). */
	prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
	if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(errfd, 2) < 0)
		goto fail;
	if (m->cwd && chdir(m->cwd) < 0)
		goto fail;
	if (strchr(m->path, '/')) {
		execve(m->path, argv, envp);
	} else {
		extern char **environ;
		environ = envp;
		execvp(m->path, argv);
	}
fail:;
	int e = errno;
	ssize_t n = write(report, &e, sizeof(e));
	(void)n;
	_exit(127);
}

/* Build argv (path, then ARG entries) and envp (ENV entries, plus a default
 * PATH when they carry none) in one allocation. */
static char **build_vectors(const struct wproto_msg *m, char ***envp_out)
{
	size_t n = 1 + m->argc + 1 + m->envc + 2;
	char **v = calloc(n, sizeof(*v));
	if (!v)
		return NULL;
	size_t k = 0;
	v[k++] = (char *)m->path;
	for (uint32_t i = 0; i < m->argc; i++)
		v[k++] = (char *)m->argv[i];
	v[k++] = NULL;
	char **envp = v + k;
	int has_path = 0;
	for (uint32_t i = 0; i < m->envc; i++) {
		if (!strncmp(m->env[i], "PATH=", 5))
			has_path = 1;
		v[k++] = (char *)m->env[i];
	}
	if (!has_path)
		v[k++] = (char *)DEFAULT_PATH;
	v[k] = NULL;
	*envp_out = envp;
	return v;
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -errno : 0;
}

static void job_free(struct agent *a, struct job *j)
{
	close_fd(a, &j->in_fd);
	close_fd(a, &j->out_fd[0]);
	close_fd(a, &j->out_fd[1]);
	if (j->prev)
		j->prev->next = j->next;
	else
		a->jobs = j->next;
	if (j->next)
		j->next->prev = j->prev;
	if (j->conn)
		j->conn->njobs--;
	wproto_buf_free(&j->cap[0]);
	wproto_buf_free(&j->cap[1]);
	free(j->frame);
	free(j);
}

int job_start(struct agent *a, struct conn *c, uint8_t *frame,
	      const struct wproto_msg *m, struct wisp_err *err)
{
	int streaming = m->type == WPROTO_EXEC;
	uint32_t limit = m->output_limit;
	if (!streaming && limit == 0)
		limit = WPROTO_DEFAULT_OUTPUT_LIMIT;
	if (!streaming && limit > WPROTO_MAX_OUTPUT_LIMIT)
		return wisp_err_set(err, EINVAL, "output limit %u is over the maximum of %u",
				    limit, WPROTO_MAX_OUTPUT_LIMIT);
	if (c->njobs >= AGENT_MAX_JOBS_PER_CONN)
		return wisp_err_set(err, EBUSY, "%u handlers already running on this connection",
				    c->njobs);
	if (job_find(a, c, m->id))
		return wisp_err_set(err, EEXIST, "request id %u is already running", m->id);

	_cleanup_free_ char **argv = NULL;
	char **envp = NULL;
	argv = build_vectors(m, &envp);
	if (!argv)
		return wisp_err_set(err, ENOMEM, "no memory for the handler's argv");
	int pin[2] = { -1, -1 }, pout[2] = { -1, -1 }, perr[2] = { -1, -1 }, rep[2] = { -1, -1 };
	if (pipe2(pin, O_CLOEXEC) < 0 || pipe2(pout, O_CLOEXEC) < 0 ||
	    pipe2(perr, O_CLOEXEC) < 0 || pipe2(rep, O_CLOEXEC) < 0) {
		int e = errno;
		int *all[] = { pin, pout, perr, rep };
		for (size_t i = 0; i < 4; i++)
			for (int k = 0; k < 2; k++)
				if (all[i][k] >= 0)
					close(all[i][k]);
		return wisp_err_sys(err, e, "pipes for %s", m->path);
	}
	uint64_t start = wisp_now_ns();
	pid_t pid = fork();
	if (pid == 0)
		child_exec(m, pin[0], pout[1], perr[1], rep[1], argv, envp);
	int fork_errno = errno;
	close(pin[0]);
	close(pout[1]);
	close(perr[1]);
	close(rep[1]);
	int exec_errno = 0;
	if (pid > 0) {
		setpgid(pid, pid); /* both sides set it: no window where kill(-pid) misses */
		ssize_t n;
		do
			n = read(rep[0], &exec_errno, sizeof(exec_errno));
		while (n < 0 && errno == EINTR);
		if (n != (ssize_t)sizeof(exec_errno))
			exec_errno = 0;
	}
	close(rep[0]);
	if (pid < 0 || exec_errno) {
		close(pin[1]);
		close(pout[0]);
		close(perr[0]);
		/* a child that failed to exec is reaped by the SIGCHLD path and
		 * matches no job */
		if (pid < 0)
			return wisp_err_sys(err, fork_errno, "fork for %s", m->path);
		return wisp_err_sys(err, exec_errno, "start %s", m->path);
	}

	struct job *j = calloc(1, sizeof(*j));
	if (!j) {
		kill(-pid, SIGKILL);
		close(pin[1]);
		close(pout[0]);
		close(perr[0]);
		return wisp_err_set(err, ENOMEM, "no memory for a job");
	}
	j->a = a;
	j->conn = c;
	j->id = m->id;
	j->streaming = streaming;
	j->pid = pid;
	j->in_fd = pin[1];
	j->out_fd[0] = pout[0];
	j->out_fd[1] = perr[0];
	j->frame = frame;
	j->in_ptr = m->stdin_data.ptr;
	j->in_left = m->stdin_data.len;
	j->limit = limit;
	j->start_ns = start;
	j->deadline_ns = m->timeout_ms ? start + (uint64_t)m->timeout_ms * 1000000ull : 0;
	j->in_src = (struct ep_src){ EP_JOB_IN, j };
	j->out_src[0] = (struct ep_src){ EP_JOB_OUT, j };
	j->out_src[1] = (struct ep_src){ EP_JOB_ERR, j };
	j->next = a->jobs;
	if (a->jobs)
		a->jobs->prev = j;
	a->jobs = j;
	c->njobs++;

	set_nonblock(j->in_fd);
	set_nonblock(j->out_fd[0]);
	set_nonblock(j->out_fd[1]);
	if (j->in_left == 0)
		close_fd(a, &j->in_fd);
	else if (agent_epoll_set(a, j->in_fd, &j->in_src, EPOLLOUT, 1) < 0)
		close_fd(a, &j->in_fd);
	for (int s = 0; s < 2; s++)
		if (agent_epoll_set(a, j->out_fd[s], &j->out_src[s], EPOLLIN, 1) < 0)
			wlog_rl(WISP_LOG_ERROR, "epoll add for job %u: %s", j->id, strerror(errno));
	wlog_debug("job %u: started %s as pid %d", j->id, m->path, pid);
	return 0;
}

static void feed_stdin(struct job *j)
{
	while (j->in_left > 0) {
		ssize_t n = write(j->in_fd, j->in_ptr, j->in_left);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return;
			break; /* EPIPE: the handler does not want its input */
		}
		j->in_ptr += n;
		j->in_left -= (size_t)n;
	}
	close_fd(j->a, &j->in_fd);
}

static void send_chunk(struct job *j, int s, const uint8_t *p, size_t n)
{
	struct wproto_msg m = { .type = WPROTO_OUTPUT, .id = j->id,
				.stream = (uint32_t)s + 1,
				.data = { p, (uint32_t)n } };
	WPROTO_SET(&m, WPROTO_T_STREAM);
	WPROTO_SET(&m, WPROTO_T_DATA);
	conn_send(j->conn, &m);
}

/* Take what a pipe holds now (all of it when draining after exit). */
static void pump_output(struct job *j, int s)
{
	struct agent *a = j->a;
	while (j->out_fd[s] >= 0) {
		if (j->paused && j->conn)
			return;
		ssize_t n = read(j->out_fd[s], a->scratch, sizeof(a->scratch));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return;
			n = 0;
		}
		if (n == 0) {
			close_fd(a, &j->out_fd[s]);
			return;
		}
		size_t keep = (size_t)n;
		if (j->limit) {
			uint64_t room = j->total[s] < j->limit ? j->limit - j->total[s] : 0;
			if (keep > room) {
				keep = (size_t)room;
				j->flags |= s ? WPROTO_F_STDERR_TRUNCATED : WPROTO_F_STDOUT_TRUNCATED;
			}
		}
		j->total[s] += (uint64_t)n;
		if (!keep || !j->conn)
			continue;
		if (j->streaming) {
			send_chunk(j, s, a->scratch, keep);
			if (j->conn->out.len - j->conn->out_off > AGENT_OUT_HIGH) {
				j->paused = 1;
				for (int k = 0; k < 2; k++)
					if (j->out_fd[k] >= 0)
						agent_epoll_set(a, j->out_fd[k], &j->out_src[k], 0, 0);
			}
		} else {
			struct wproto_buf *b = &j->cap[s];
			if (b->cap - b->len < keep) {
				size_t cap = b->cap ? b->cap : 4096;
				while (cap - b->len < keep)
					cap *= 2;
				uint8_t *d = realloc(b->data, cap);
				if (!d) {
					j->flags |= s ? WPROTO_F_STDERR_TRUNCATED
						      : WPROTO_F_STDOUT_TRUNCATED;
					continue;
				}
				b->data = d;
				b->cap = cap;
			}
			memcpy(b->data + b->len, a->scratch, keep);
			b->len += keep;
		}
	}
}

void job_on_fd(struct job *j, enum ep_kind kind, uint32_t events)
{
	(void)events;
	if (kind == EP_JOB_IN)
		feed_stdin(j);
	else
		pump_output(j, kind == EP_JOB_ERR);
}

void job_resume_conn(struct agent *a, struct conn *c)
{
	for (struct job *j = a->jobs; j; j = j->next) {
		if (j->conn != c || !j->paused)
			continue;
		j->paused = 0;
		for (int k = 0; k < 2; k++)
			if (j->out_fd[k] >= 0)
				agent_epoll_set(a, j->out_fd[k], &j->out_src[k], EPOLLIN, 0);
	}
}

static void send_status(struct job *j, int status, const struct rusage *ru)
{
	struct wproto_msg m = { .type = j->streaming ? WPROTO_EXIT : WPROTO_RESULT, .id = j->id };
	if (WIFSIGNALED(status)) {
		m.signal = (uint32_t)WTERMSIG(status);
		m.exit_code = -1;
		if (WCOREDUMP(status))
			j->flags |= WPROTO_F_CORE_DUMPED;
	} else {
		m.exit_code = WEXITSTATUS(status);
	}
	m.flags = j->flags;
	m.wall_ns = wisp_now_ns() - j->start_ns;
	m.max_rss_kb = ru ? (uint64_t)ru->ru_maxrss : 0;
	WPROTO_SET(&m, WPROTO_T_EXIT_CODE);
	WPROTO_SET(&m, WPROTO_T_SIGNAL);
	WPROTO_SET(&m, WPROTO_T_FLAGS);
	WPROTO_SET(&m, WPROTO_T_WALL_NS);
	WPROTO_SET(&m, WPROTO_T_MAX_RSS_KB);
	if (!j->streaming) {
		m.stdout_data = (struct wproto_bytes){ j->cap[0].data, (uint32_t)j->cap[0].len };
		m.stderr_data = (struct wproto_bytes){ j->cap[1].data, (uint32_t)j->cap[1].len };
		WPROTO_SET(&m, WPROTO_T_STDOUT);
		WPROTO_SET(&m, WPROTO_T_STDERR);
	}
	conn_send(j->conn, &m);
}

void job_reaped(struct agent *a, pid_t pid, int status, const struct rusage *ru)
{
	struct job *j;
	for (j = a->jobs; j; j = j->next)
		if (j->pid == pid)
			break;
	if (!j)
		return; /* an orphan re-parented to init, or a failed exec */
	/* The leader is gone: end what is left of its group (what it
	 * detached stays), then take what the pipes still hold. */
	kill_group(j);
	j->paused = 0;
	pump_output(j, 0);
	pump_output(j, 1);
	if (j->conn) {
		send_status(j, status, ru);
		conn_update_events(j->conn);
	}
	wlog_debug("job %u: pid %d ended, status 0x%x", j->id, pid, status);
	job_free(a, j);
}

void job_detach_conn(struct agent *a, struct conn *c)
{
	for (struct job *j = a->jobs; j; j = j->next) {
		if (j->conn != c)
			continue;
		kill_job(j);
		j->conn = NULL;
		j->paused = 0;
		close_fd(a, &j->in_fd);
		for (int k = 0; k < 2; k++)
			if (j->out_fd[k] >= 0)
				agent_epoll_set(a, j->out_fd[k], &j->out_src[k], EPOLLIN, 0);
	}
	c->njobs = 0;
}

void job_check_timeouts(struct agent *a, uint64_t now)
{
	for (struct job *j = a->jobs; j; j = j->next) {
		if (!j->deadline_ns || now < j->deadline_ns || (j->flags & WPROTO_F_TIMED_OUT))
			continue;
		j->flags |= WPROTO_F_TIMED_OUT;
		wlog_debug("job %u: timed out, killing pid %d and its tree", j->id, j->pid);
		kill_job(j);
	}
}

int64_t job_next_deadline_ms(struct agent *a, uint64_t now)
{
	int64_t best = -1;
	for (struct job *j = a->jobs; j; j = j->next) {
		if (!j->deadline_ns || (j->flags & WPROTO_F_TIMED_OUT))
			continue;
		int64_t ms = j->deadline_ns <= now ? 0 : (int64_t)((j->deadline_ns - now + 999999) / 1000000);
		if (best < 0 || ms < best)
			best = ms;
	}
	return best;
}

void job_kill_all(struct agent *a)
{
	for (struct job *j = a->jobs; j; j = j->next)
		kill_job(j);
}

void job_free_all(struct agent *a)
{
	while (a->jobs)
		job_free(a, a->jobs);
}
