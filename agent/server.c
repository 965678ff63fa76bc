/* The agent's event loop: a listening socket (vsock or Unix), one state
 * machine per connection (header, body, dispatch), a signalfd for SIGCHLD
 * and the stop signals, and the handler pipes of job.c. Nothing blocks
 * except the short wait for a forked handler to exec. */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/io.h"
#include "common/log.h"

int agent_epoll_set(struct agent *a, int fd, struct ep_src *src, uint32_t events, int add)
{
	struct epoll_event ev = { .events = events, .data.ptr = src };
	return epoll_ctl(a->epfd, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

static int open_listener(const char *spec, struct wisp_err *err)
{
	if (!strncmp(spec, "unix:", 5)) {
		const char *path = spec + 5;
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		if (!*path || strlen(path) >= sizeof(sa.sun_path))
			return wisp_err_set(err, EINVAL, "bad Unix socket path \"%s\"", path);
		strcpy(sa.sun_path, path);
		_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0)
			return wisp_err_sys(err, errno, "socket(AF_UNIX)");
		unlink(path);
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			return wisp_err_sys(err, errno, "bind %s", path);
		if (listen(fd, 64) < 0)
			return wisp_err_sys(err, errno, "listen on %s", path);
		return wisp_steal_fd(fd);
	}
	if (!strncmp(spec, "vsock:", 6)) {
		char *end;
		unsigned long port = strtoul(spec + 6, &end, 10);
		if (spec[6] == '\0' || *end || port > 0xffffffffu)
			return wisp_err_set(err, EINVAL, "bad vsock port in \"%s\"", spec);
		struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY,
					  .svm_port = (unsigned)port };
		_cleanup_close_ int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0)
			return wisp_err_sys(err, errno, "socket(AF_VSOCK)");
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			return wisp_err_sys(err, errno, "bind vsock port %lu", port);
		if (listen(fd, 64) < 0)
			return wisp_err_sys(err, errno, "listen on vsock port %lu", port);
		return wisp_steal_fd(fd);
	}
	return wisp_err_set(err, EINVAL, "listen address \"%s\" is neither unix:PATH nor vsock:PORT",
			    spec);
}

/* Retried once a second until it works: as init, vsock may come up late,
 * and init must not give up. */
static void try_listen(struct agent *a)
{
	struct wisp_err err = { 0 };
	int fd = open_listener(a->listen, &err);
	if (fd < 0) {
		wlog_rl(WISP_LOG_ERROR, "listen: %s (retrying)", err.msg);
		a->next_listen_try_ns = wisp_now_ns() + 1000000000ull;
		return;
	}
	a->lfd = fd;
	a->listen_src = (struct ep_src){ EP_LISTEN, NULL };
	if (agent_epoll_set(a, fd, &a->listen_src, EPOLLIN, 1) < 0) {
		wlog_error("epoll add listener: %s", strerror(errno));
		close(fd);
		a->lfd = -1;
		a->next_listen_try_ns = wisp_now_ns() + 1000000000ull;
		return;
	}
	wlog_info("listening on %s", a->listen);
}

void conn_update_events(struct conn *c)
{
	size_t pending = c->out.len - c->out_off;
	uint32_t ev = 0;
	if (!c->closing && pending < AGENT_OUT_HIGH)
		ev |= EPOLLIN;
	if (pending)
		ev |= EPOLLOUT;
	if (ev != c->cur_events && agent_epoll_set(c->a, c->fd, &c->src, ev, 0) == 0)
		c->cur_events = ev;
}

void conn_send(struct conn *c, const struct wproto_msg *m)
{
	struct wisp_err err = { 0 };
	if (wproto_encode(&c->out, m, &err) < 0) {
		wlog_rl(WISP_LOG_ERROR, "encode %s: %s", wproto_type_name(m->type), err.msg);
		struct wisp_err e2 = { 0 };
		wproto_encode_error(&c->out, m->id, err.code, err.msg, &e2);
	}
	conn_update_events(c);
}

void conn_send_error(struct conn *c, uint32_t id, int errnum, const char *msg)
{
	struct wisp_err err = { 0 };
	if (wproto_encode_error(&c->out, id, errnum, msg, &err) < 0)
		wlog_rl(WISP_LOG_ERROR, "encode ERROR: %s", err.msg);
	conn_update_events(c);
}

static void conn_close(struct agent *a, struct conn *c)
{
	job_detach_conn(a, c);
	epoll_ctl(a->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		a->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	a->nconns--;
	wproto_buf_free(&c->out);
	free(c->body);
	free(c);
}

static void send_hello(struct agent *a, struct conn *c)
{
	struct wproto_msg m = { .type = WPROTO_HELLO, .id = 0,
				.proto_version = WPROTO_VERSION,
				.caps = WPROTO_CAP_INVOKE | WPROTO_CAP_EXEC | WPROTO_CAP_RESTORED |
					WPROTO_CAP_SHUTDOWN | (a->pid1 ? WPROTO_CAP_PID1 : 0),
				.agent_version = AGENT_VERSION,
				.max_body = WPROTO_MAX_BODY };
	WPROTO_SET(&m, WPROTO_T_PROTO_VERSION);
	WPROTO_SET(&m, WPROTO_T_CAPS);
	WPROTO_SET(&m, WPROTO_T_AGENT_VERSION);
	WPROTO_SET(&m, WPROTO_T_MAX_BODY);
	conn_send(c, &m);
}

static void accept_all(struct agent *a)
{
	for (;;) {
		int fd = accept4(a->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR)
				wlog_rl(WISP_LOG_WARN, "accept: %s", strerror(errno));
			return;
		}
		if (a->nconns >= AGENT_MAX_CONNS) {
			wlog_rl(WISP_LOG_WARN, "refusing a connection: %u open", a->nconns);
			close(fd);
			continue;
		}
		struct conn *c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->a = a;
		c->fd = fd;
		c->src = (struct ep_src){ EP_CONN, c };
		if (agent_epoll_set(a, fd, &c->src, EPOLLIN, 1) < 0) {
			close(fd);
			free(c);
			continue;
		}
		c->cur_events = EPOLLIN;
		c->next = a->conns;
		if (a->conns)
			a->conns->prev = c;
		a->conns = c;
		a->nconns++;
		send_hello(a, c);
	}
}

static void refuse(struct conn *c, uint32_t id, const struct wisp_err *err)
{
	wlog_rl(WISP_LOG_WARN, "connection %d: %s; closing it", c->fd, err->msg);
	conn_send_error(c, id, err->code ? err->code : EPROTO, err->msg);
	c->closing = 1;
	conn_update_events(c);
}

static void do_restored(struct agent *a, struct conn *c, const struct wproto_msg *m)
{
	struct wisp_err err = { 0 };
	struct wproto_msg ack = { .type = WPROTO_ACK, .id = m->id };
	if (sys_apply_restore(m, a->apply_restore, &ack, &err) < 0) {
		conn_send_error(c, m->id, err.code, err.msg);
		return;
	}
	conn_send(c, &ack);
}

/* One whole frame has arrived in c->body. A job that starts takes the
 * buffer (its stdin bytes live there); otherwise it stays for the next frame. */
static void dispatch(struct agent *a, struct conn *c)
{
	struct wisp_err err = { 0 };
	struct wproto_msg m;
	uint8_t *body = c->body;
	if (wproto_decode(&c->h, body, &m, &err) < 0) {
		refuse(c, c->h.id, &err);
		return;
	}
	switch (m.type) {
	case WPROTO_PING: {
		struct wproto_msg pong = { .type = WPROTO_PONG, .id = m.id, .payload = m.payload,
					   .present = m.present };
		conn_send(c, &pong);
		break;
	}
	case WPROTO_INVOKE:
	case WPROTO_EXEC:
		if (job_start(a, c, body, &m, &err) < 0) {
			conn_send_error(c, m.id, err.code, err.msg);
		} else {
			c->body = NULL;
			c->body_cap = 0;
		}
		break;
	case WPROTO_RESTORED:
		do_restored(a, c, &m);
		break;
	case WPROTO_SHUTDOWN: {
		struct wproto_msg ack = { .type = WPROTO_ACK, .id = m.id };
		conn_send(c, &ack);
		wlog_info("SHUTDOWN requested");
		a->stop = 1;
		break;
	}
	case WPROTO_ERROR:
		wlog_rl(WISP_LOG_WARN, "client sent ERROR %u: %s", m.errnum,
			m.message ? m.message : "");
		break;
	default:
		conn_send_error(c, m.id, EPROTO, "message type not accepted by the agent");
		break;
	}
	wproto_msg_free(&m);
	if (c->body_cap > AGENT_KEEP_RXBUF) { /* do not sit on a huge buffer */
		free(c->body);
		c->body = NULL;
		c->body_cap = 0;
	}
}

/* Returns -1 when the connection was closed. */
static int conn_read(struct agent *a, struct conn *c)
{
	for (int rounds = 0; rounds < 64 && !c->closing; rounds++) {
		if (c->out.len - c->out_off >= AGENT_OUT_HIGH)
			return 0; /* the client is not reading: stop taking requests */
		ssize_t n;
		if (c->hdr_got < WPROTO_HDR_SIZE) {
			n = read(c->fd, c->hdr + c->hdr_got, WPROTO_HDR_SIZE - c->hdr_got);
		} else {
			n = read(c->fd, c->body + c->body_got, c->h.length - c->body_got);
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			conn_close(a, c);
			return -1;
		}
		if (n == 0) {
			/* The client is gone (or half-closed): its handlers are
			 * killed, replies already queued still go out. */
			job_detach_conn(a, c);
			if (c->out.len == c->out_off) {
				conn_close(a, c);
				return -1;
			}
			c->closing = 1;
			conn_update_events(c);
			return 0;
		}
		if (c->hdr_got < WPROTO_HDR_SIZE) {
			c->hdr_got += (size_t)n;
			if (c->hdr_got < WPROTO_HDR_SIZE)
				continue;
			struct wisp_err err = { 0 };
			if (wproto_hdr_parse(c->hdr, &c->h, &err) < 0) {
				refuse(c, c->h.id, &err);
				return 0;
			}
			if (c->body_cap < c->h.length || !c->body) {
				free(c->body);
				c->body_cap = c->h.length ? c->h.length : 1;
				c->body = malloc(c->body_cap);
			}
			if (!c->body) {
				c->body_cap = 0;
				wisp_err_set(&err, ENOMEM, "no memory for a %u-byte frame", c->h.length);
				refuse(c, c->h.id, &err);
				return 0;
			}
			c->body_got = 0;
		} else {
			c->body_got += (size_t)n;
		}
		if (c->body_got == c->h.length) {
			c->hdr_got = 0;
			dispatch(a, c);
		}
	}
	return 0;
}

/* Returns -1 when the connection was closed. */
static int conn_write(struct agent *a, struct conn *c)
{
	while (c->out_off < c->out.len) {
		ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off,
				 MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			conn_close(a, c);
			return -1;
		}
		c->out_off += (size_t)n;
	}
	if (c->out_off == c->out.len) {
		wproto_buf_reset(&c->out);
		c->out_off = 0;
		if (c->closing) {
			conn_close(a, c);
			return -1;
		}
	} else if (c->out_off > c->out.len / 2) {
		memmove(c->out.data, c->out.data + c->out_off, c->out.len - c->out_off);
		c->out.len -= c->out_off;
		c->out_off = 0;
	}
	if (c->out.len - c->out_off < AGENT_OUT_LOW)
		job_resume_conn(a, c);
	conn_update_events(c);
	return 0;
}

static void on_signals(struct agent *a)
{
	struct signalfd_siginfo si;
	while (read(a->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
			wlog_info("signal %u: shutting down", si.ssi_signo);
			a->stop = 1;
		}
	}
	/* Handlers, and the orphans re-parented to the agent: what a handler
	 * that ended by itself left running, once it dies. */
	for (;;) {
		int status;
		struct rusage ru;
		pid_t pid = wait4(-1, &status, WNOHANG, &ru);
		if (pid <= 0)
			break;
		job_reaped(a, pid, status, &ru);
	}
}

/* Best effort: give replies queued before a stop (the SHUTDOWN ACK) up to a
 * second to leave. */
static void flush_all(struct agent *a)
{
	uint64_t end = wisp_now_ns() + 1000000000ull;
	for (struct conn *c = a->conns; c; c = c->next) {
		int fl = fcntl(c->fd, F_GETFL);
		if (fl >= 0)
			fcntl(c->fd, F_SETFL, fl & ~O_NONBLOCK);
		struct timeval tv = { 0, 200000 };
		setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		while (c->out_off < c->out.len && wisp_now_ns() < end) {
			ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off,
					 MSG_NOSIGNAL);
			if (n <= 0)
				break;
			c->out_off += (size_t)n;
		}
	}
}

int server_run(struct agent *a)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	a->lfd = -1;
	a->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (a->epfd < 0)
		return -errno;
	a->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (a->sigfd < 0)
		return -errno;
	a->signal_src = (struct ep_src){ EP_SIGNAL, NULL };
	if (agent_epoll_set(a, a->sigfd, &a->signal_src, EPOLLIN, 1) < 0)
		return -errno;
	try_listen(a);

	struct epoll_event evs[32];
	while (!a->stop) {
		uint64_t now = wisp_now_ns();
		int64_t timeout = job_next_deadline_ms(a, now);
		if (a->lfd < 0) {
			int64_t t = a->next_listen_try_ns > now
				? (int64_t)((a->next_listen_try_ns - now) / 1000000) + 1 : 0;
			if (timeout < 0 || t < timeout)
				timeout = t;
		}
		int n = epoll_wait(a->epfd, evs, 32, timeout > 60000 ? 60000 : (int)timeout);
		if (n < 0 && errno != EINTR) {
			wlog_rl(WISP_LOG_ERROR, "epoll_wait: %s", strerror(errno));
			continue;
		}
		/* Children are reaped after the batch: reaping frees jobs, and a
		 * later event of this batch may point at one. */
		int signalled = 0;
		for (int i = 0; i < n; i++) {
			struct ep_src *src = evs[i].data.ptr;
			uint32_t ev = evs[i].events;
			switch (src->kind) {
			case EP_LISTEN:
				accept_all(a);
				break;
			case EP_SIGNAL:
				signalled = 1;
				break;
			case EP_CONN: {
				struct conn *c = src->obj;
				if ((ev & EPOLLOUT) && conn_write(a, c) < 0)
					break;
				if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
					if (c->closing && (ev & (EPOLLHUP | EPOLLERR)))
						conn_close(a, c);
					else if (!c->closing)
						conn_read(a, c);
				}
				break;
			}
			case EP_JOB_IN:
			case EP_JOB_OUT:
			case EP_JOB_ERR:
				job_on_fd(src->obj, src->kind, ev);
				break;
			}
		}
		if (signalled)
			on_signals(a);
		job_check_timeouts(a, wisp_now_ns());
		if (a->lfd < 0 && wisp_now_ns() >= a->next_listen_try_ns)
			try_listen(a);
	}
	flush_all(a);
	job_kill_all(a);
	/* The rest of what the agent started: services that handlers left
	 * running. As init, sys_shutdown_pid1 ends every process instead (with
	 * a SIGTERM first). */
	if (!a->pid1) {
		int r = sweep_kill_tree("/proc", getpid());
		if (r != 0)
			wlog_warn("stopping: killing the agent's processes: %s",
				  r < 0 ? strerror(-r) : "some still alive");
	}
	while (a->conns)
		conn_close(a, a->conns);
	/* Reap the killed handlers and what is already dead (bounded: a
	 * process in uninterruptible sleep must not hold the stop up
	 * forever). */
	uint64_t end = wisp_now_ns() + 2000000000ull;
	for (;;) {
		int status;
		struct rusage ru;
		pid_t pid = wait4(-1, &status, WNOHANG, &ru);
		if (pid > 0) {
			job_reaped(a, pid, status, &ru);
			continue;
		}
		if ((pid < 0 && errno == ECHILD) || !a->jobs || wisp_now_ns() >= end)
			break;
		usleep(5000);
	}
	job_free_all(a);
	if (a->lfd >= 0)
		close(a->lfd);
	close(a->sigfd);
	close(a->epfd);
	return 0;
}
