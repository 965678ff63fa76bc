#include "agent_client.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cleanup.h"
#include "io.h"

/* Read exactly len bytes before deadline_ns (0 = none). */
static int read_deadline(int fd, void *buf, size_t len, uint64_t deadline_ns)
{
	uint8_t *p = buf;
	while (len > 0) {
		if (deadline_ns) {
			uint64_t now = wisp_now_ns();
			if (now >= deadline_ns)
				return -ETIMEDOUT;
			struct pollfd pfd = { .fd = fd, .events = POLLIN };
			int ms = (int)((deadline_ns - now + 999999) / 1000000);
			int r = poll(&pfd, 1, ms);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				return -errno;
			if (r == 0)
				return -ETIMEDOUT;
		}
		ssize_t n = read(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ECONNRESET;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static uint64_t deadline_after(int ms)
{
	return ms > 0 ? wisp_now_ns() + (uint64_t)ms * 1000000ull : 0;
}

static int recv_until(struct agentc *c, struct wproto_msg *m, uint8_t **body,
		      uint64_t deadline, struct wisp_err *err)
{
	uint8_t raw[WPROTO_HDR_SIZE];
	struct wproto_hdr h;
	*body = NULL;
	int r = read_deadline(c->fd, raw, sizeof(raw), deadline);
	if (r == -ETIMEDOUT)
		return wisp_err_set(err, ETIMEDOUT, "no reply from the agent in time");
	if (r == -ECONNRESET)
		return wisp_err_set(err, ECONNRESET, "the agent closed the connection");
	if (r < 0)
		return wisp_err_sys(err, -r, "read from the agent");
	r = wproto_hdr_parse(raw, &h, err);
	if (r < 0)
		return wisp_err_prefix(err, "frame from the agent");
	_cleanup_free_ uint8_t *b = malloc(h.length ? h.length : 1);
	if (!b)
		return wisp_err_set(err, ENOMEM, "no memory for a %u-byte frame", h.length);
	r = read_deadline(c->fd, b, h.length, deadline);
	if (r < 0)
		return wisp_err_sys(err, -r, "read a %u-byte frame body", h.length);
	r = wproto_decode(&h, b, m, err);
	if (r < 0)
		return wisp_err_prefix(err, "%s from the agent", wproto_type_name(h.type));
	*body = wisp_steal_ptr(b);
	return 0;
}

int agentc_recv(struct agentc *c, struct wproto_msg *m, uint8_t **body, struct wisp_err *err)
{
	return recv_until(c, m, body, deadline_after(c->timeout_ms), err);
}

int agentc_send(struct agentc *c, struct wproto_msg *m, struct wisp_err *err)
{
	if (m->id == 0) {
		if (++c->next_id == 0)
			c->next_id = 1;
		m->id = c->next_id;
	}
	struct wproto_buf buf = { 0 };
	int r = wproto_encode(&buf, m, err);
	if (r == 0) {
		r = wisp_write_all(c->fd, buf.data, buf.len);
		if (r < 0)
			wisp_err_sys(err, -r, "send %s to the agent", wproto_type_name(m->type));
	}
	wproto_buf_free(&buf);
	return r;
}

static int finish_connect(int fd, int timeout_ms, struct agentc **out, struct wisp_err *err)
{
	struct agentc *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return wisp_err_set(err, ENOMEM, "no memory for a client");
	}
	c->fd = fd;
	c->timeout_ms = timeout_ms;
	int r = recv_until(c, &c->hello, &c->hello_body, deadline_after(timeout_ms), err);
	if (r == 0 && c->hello.type != WPROTO_HELLO)
		r = wisp_err_set(err, EPROTO, "the agent sent %s before HELLO",
				 wproto_type_name(c->hello.type));
	else if (r == 0 && c->hello.proto_version != WPROTO_VERSION)
		r = wisp_err_set(err, EPROTONOSUPPORT, "the agent speaks protocol %u, not %u",
				 c->hello.proto_version, WPROTO_VERSION);
	if (r < 0) {
		agentc_close(c);
		return r;
	}
	*out = c;
	return 0;
}

static int unix_connect(const char *path, struct wisp_err *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path))
		return wisp_err_set(err, ENAMETOOLONG, "socket path too long: %s", path);
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return wisp_err_sys(err, errno, "socket(AF_UNIX)");
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(fd);
		return wisp_err_sys(err, e, "connect %s", path);
	}
	return fd;
}

int agentc_connect_unix(const char *path, int timeout_ms, struct agentc **out,
			struct wisp_err *err)
{
	int fd = unix_connect(path, err);
	if (fd < 0)
		return fd;
	return finish_connect(fd, timeout_ms, out, err);
}

int agentc_connect_vsock(const char *uds_path, uint32_t port, int timeout_ms,
			 struct agentc **out, struct wisp_err *err)
{
	_cleanup_close_ int fd = unix_connect(uds_path, err);
	if (fd < 0)
		return fd;
	char line[64];
	int n = snprintf(line, sizeof(line), "CONNECT %u\n", port);
	int r = wisp_write_all(fd, line, (size_t)n);
	if (r < 0)
		return wisp_err_sys(err, -r, "send CONNECT to %s", uds_path);
	/* The answer is one line; read it byte by byte so no frame byte that
	 * follows it is consumed here. */
	uint64_t deadline = deadline_after(timeout_ms);
	size_t got = 0;
	for (;;) {
		if (got == sizeof(line) - 1)
			return wisp_err_set(err, EPROTO, "%s: over-long answer to CONNECT", uds_path);
		r = read_deadline(fd, line + got, 1, deadline);
		if (r == -ECONNRESET)
			return wisp_err_set(err, ECONNREFUSED,
					    "%s: the VMM closed the connection (nothing listens on guest port %u?)",
					    uds_path, port);
		if (r < 0)
			return wisp_err_sys(err, -r, "%s: read the answer to CONNECT", uds_path);
		if (line[got] == '\n')
			break;
		got++;
	}
	line[got] = '\0';
	if (strncmp(line, "OK ", 3) != 0)
		return wisp_err_set(err, EPROTO, "%s: CONNECT %u answered \"%s\"", uds_path, port, line);
	return finish_connect(wisp_steal_fd(fd), timeout_ms, out, err);
}

void agentc_close(struct agentc *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	wproto_msg_free(&c->hello);
	free(c->hello_body);
	free(c);
}

void agentc_result_free(struct agentc_result *res)
{
	free(res->out);
	free(res->err);
	res->out = res->err = NULL;
	res->out_len = res->err_len = 0;
}

static int agent_error(const struct wproto_msg *m, const char *what, struct wisp_err *err)
{
	int e = m->errnum > 0 && m->errnum < 4096 ? (int)m->errnum : EPROTO;
	return wisp_err_set(err, e, "%s: agent: %s", what, m->message ? m->message : "error");
}

/* Wait for the reply to request id of type want; other frames are refused. */
static int wait_reply(struct agentc *c, uint32_t id, uint16_t want, uint64_t deadline,
		      struct wproto_msg *m, uint8_t **body, struct wisp_err *err)
{
	int r = recv_until(c, m, body, deadline, err);
	if (r < 0)
		return r;
	if (m->type == WPROTO_ERROR && (m->id == id || m->id == 0)) {
		r = agent_error(m, wproto_type_name(want), err);
	} else if (m->id != id || m->type != want) {
		r = wisp_err_set(err, EPROTO, "expected %s for request %u, got %s for %u",
				 wproto_type_name(want), id, wproto_type_name(m->type), m->id);
	}
	if (r < 0) {
		wproto_msg_free(m);
		free(*body);
		*body = NULL;
	}
	return r;
}

int agentc_ping(struct agentc *c, const void *payload, size_t len, struct wisp_err *err)
{
	struct wproto_msg m = { .type = WPROTO_PING };
	if (len) {
		m.payload = (struct wproto_bytes){ payload, (uint32_t)len };
		WPROTO_SET(&m, WPROTO_T_PAYLOAD);
	}
	int r = agentc_send(c, &m, err);
	if (r < 0)
		return r;
	struct wproto_msg rep;
	_cleanup_free_ uint8_t *body = NULL;
	r = wait_reply(c, m.id, WPROTO_PONG, deadline_after(c->timeout_ms), &rep, &body, err);
	if (r < 0)
		return r;
	if (rep.payload.len != len || (len && memcmp(rep.payload.ptr, payload, len)))
		r = wisp_err_set(err, EPROTO, "PONG payload differs from the PING's");
	wproto_msg_free(&rep);
	return r;
}

static void fill_run(struct wproto_msg *m, const struct agentc_run *run)
{
	m->path = run->path;
	WPROTO_SET(m, WPROTO_T_PATH);
	m->argv = (const char **)run->argv;
	m->argc = (uint32_t)run->argc;
	m->env = (const char **)run->env;
	m->envc = (uint32_t)run->envc;
	if (run->cwd) {
		m->cwd = run->cwd;
		WPROTO_SET(m, WPROTO_T_CWD);
	}
	if (run->stdin_len) {
		m->stdin_data = (struct wproto_bytes){ run->stdin_data, (uint32_t)run->stdin_len };
		WPROTO_SET(m, WPROTO_T_STDIN);
	}
	m->timeout_ms = run->timeout_ms;
	WPROTO_SET(m, WPROTO_T_TIMEOUT_MS);
	m->output_limit = run->output_limit;
	WPROTO_SET(m, WPROTO_T_OUTPUT_LIMIT);
}

static uint64_t run_deadline(struct agentc *c, const struct agentc_run *run)
{
	if (c->timeout_ms <= 0)
		return 0;
	return deadline_after(c->timeout_ms + (int)(run->timeout_ms > 86400000 ? 86400000 : run->timeout_ms));
}

static void fill_status(struct agentc_result *res, const struct wproto_msg *m)
{
	res->exit_code = m->exit_code;
	res->signal = m->signal;
	res->flags = m->flags;
	res->wall_ns = m->wall_ns;
	res->max_rss_kb = m->max_rss_kb;
}

static int copy_bytes(uint8_t **dst, size_t *dlen, const struct wproto_bytes *b)
{
	*dst = malloc(b->len ? b->len : 1);
	if (!*dst)
		return -ENOMEM;
	if (b->len)
		memcpy(*dst, b->ptr, b->len);
	*dlen = b->len;
	return 0;
}

int agentc_invoke(struct agentc *c, const struct agentc_run *run,
		  struct agentc_result *res, struct wisp_err *err)
{
	memset(res, 0, sizeof(*res));
	struct wproto_msg m = { .type = WPROTO_INVOKE };
	fill_run(&m, run);
	int r = agentc_send(c, &m, err);
	if (r < 0)
		return r;
	struct wproto_msg rep;
	_cleanup_free_ uint8_t *body = NULL;
	r = wait_reply(c, m.id, WPROTO_RESULT, run_deadline(c, run), &rep, &body, err);
	if (r < 0)
		return r;
	fill_status(res, &rep);
	if (copy_bytes(&res->out, &res->out_len, &rep.stdout_data) < 0 ||
	    copy_bytes(&res->err, &res->err_len, &rep.stderr_data) < 0) {
		agentc_result_free(res);
		r = wisp_err_set(err, ENOMEM, "no memory for the handler's output");
	}
	wproto_msg_free(&rep);
	return r;
}

int agentc_exec(struct agentc *c, const struct agentc_run *run, agentc_output_fn fn,
		void *ctx, struct agentc_result *res, struct wisp_err *err)
{
	memset(res, 0, sizeof(*res));
	struct wproto_msg m = { .type = WPROTO_EXEC };
	fill_run(&m, run);
	int r = agentc_send(c, &m, err);
	if (r < 0)
		return r;
	uint64_t deadline = run_deadline(c, run);
	for (;;) {
		struct wproto_msg rep;
		_cleanup_free_ uint8_t *body = NULL;
		r = recv_until(c, &rep, &body, deadline, err);
		if (r < 0)
			return r;
		if (rep.id != m.id) {
			wproto_msg_free(&rep);
			return wisp_err_set(err, EPROTO, "frame for request %u during EXEC %u",
					    rep.id, m.id);
		}
		if (rep.type == WPROTO_OUTPUT) {
			r = fn ? fn(ctx, rep.stream, rep.data.ptr, rep.data.len) : 0;
			wproto_msg_free(&rep);
			if (r < 0)
				return wisp_err_sys(err, -r, "output callback");
			continue;
		}
		if (rep.type == WPROTO_EXIT)
			fill_status(res, &rep);
		else if (rep.type == WPROTO_ERROR)
			r = agent_error(&rep, "EXEC", err);
		else
			r = wisp_err_set(err, EPROTO, "unexpected %s during EXEC",
					 wproto_type_name(rep.type));
		wproto_msg_free(&rep);
		return r;
	}
}

int agentc_restored(struct agentc *c, const void *entropy, size_t len, int set_clock,
		    uint64_t realtime_ns, struct agentc_ack *ack, struct wisp_err *err)
{
	struct wproto_msg m = { .type = WPROTO_RESTORED, .realtime_ns = realtime_ns };
	if (set_clock)
		WPROTO_SET(&m, WPROTO_T_REALTIME_NS);
	if (len) {
		m.entropy = (struct wproto_bytes){ entropy, (uint32_t)len };
		WPROTO_SET(&m, WPROTO_T_ENTROPY);
	}
	int r = agentc_send(c, &m, err);
	if (r < 0)
		return r;
	struct wproto_msg rep;
	_cleanup_free_ uint8_t *body = NULL;
	r = wait_reply(c, m.id, WPROTO_ACK, deadline_after(c->timeout_ms), &rep, &body, err);
	if (r < 0)
		return r;
	if (ack) {
		ack->flags = rep.flags;
		ack->realtime_ns = rep.realtime_ns;
		ack->clock_step_ns = rep.clock_step_ns;
	}
	wproto_msg_free(&rep);
	return 0;
}

int agentc_shutdown(struct agentc *c, struct wisp_err *err)
{
	struct wproto_msg m = { .type = WPROTO_SHUTDOWN };
	int r = agentc_send(c, &m, err);
	if (r < 0)
		return r;
	struct wproto_msg rep;
	_cleanup_free_ uint8_t *body = NULL;
	r = wait_reply(c, m.id, WPROTO_ACK, deadline_after(c->timeout_ms), &rep, &body, err);
	if (r == 0)
		wproto_msg_free(&rep);
	return r;
}
