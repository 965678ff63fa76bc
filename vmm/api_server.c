/* The API server: libevent's evhttp on its own thread, on a Unix socket.
 *
 * Abuse limits: the body size (API_MAX_BODY) and header size caps are
 * evhttp's own, so no body larger than API_MAX_BODY is ever buffered;
 * connections are counted through one reference we hold on each
 * connection's bufferevent (see below), the listener is paused at
 * API_MAX_CONNS so more clients wait in the kernel's backlog, and every
 * connection must deliver each request within API_CONN_DEADLINE seconds or
 * it is shut down. The only blocking step is evloop_call(), which waits for
 * the VMM thread; a slow client only ever costs this thread an idle socket.
 *
 * Every error is JSON with a fault_message, including the requests evhttp
 * refuses itself (see "evhttp's own error pages" below). */
#include "api.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "metrics.h"
#include "seccomp.h"

struct api_conn {
	struct api_server *srv;
	struct bufferevent *bev;        /* evhttp's; we hold one reference */
	struct event *deadline;
	struct evbuffer_cb_entry *out_cb;
	bool used;
	bool ours;                      /* send_json() is writing our own reply */
	bool replaced;                  /* evhttp's error page became JSON: drop its rest */
	bool in_out_cb;
};

struct api_server {
	struct event_base *base;
	struct evhttp *http;
	struct evconnlistener *listener;
	bool listener_paused;
	struct event *stop_ev;
	struct event *sweep_ev;
	int stop_fd;
	pthread_t thread;
	bool thread_started;
	/* The thread loads its seccomp filter before serving and reports. */
	pthread_mutex_t ready_lock;
	pthread_cond_t ready_cond;
	bool ready;
	int ready_result;
	struct wisp_err ready_err;
	char *sock_path;
	struct api_ctl *ctl;
	struct evloop *loop;
	int nr_conns;
	/* One spare slot: a connection accepted in the same batch as the one
	 * that filled the table is closed at once. */
	struct api_conn conns[API_MAX_CONNS + 1];
};

/* ---- connection accounting ----
 *
 * evhttp 2.1 has no connection limit and no hook for a connection's end.
 * Each connection's socket bufferevent is created here (evhttp_set_bevcb)
 * and we keep one reference to it: when evhttp is done it calls
 * bufferevent_free(), which clears the callbacks, and our reference keeps
 * the object (and its fd) until the sweep sees that and drops it. The
 * sweep runs on every new connection and on a short timer while any
 * connection is open. */

#define API_SWEEP_MS 100

static bool conn_released(struct api_conn *c)
{
	bufferevent_data_cb rd, wr;
	bufferevent_event_cb ev;
	void *arg;
	bufferevent_getcb(c->bev, &rd, &wr, &ev, &arg);
	return !rd && !wr && !ev;
}

static void conn_drop(struct api_conn *c)
{
	struct api_server *s = c->srv;
	event_free(c->deadline);
	bufferevent_decref(c->bev);     /* the last reference: closes the fd */
	memset(c, 0, sizeof(*c));
	s->nr_conns--;
	if (s->listener && s->listener_paused && s->nr_conns < API_MAX_CONNS) {
		evconnlistener_enable(s->listener);
		s->listener_paused = false;
	}
}

static void conn_sweep(struct api_server *s)
{
	for (size_t i = 0; i < WISP_ARRAY_SIZE(s->conns); i++)
		if (s->conns[i].used && conn_released(&s->conns[i]))
			conn_drop(&s->conns[i]);
	if (s->nr_conns > 0) {
		struct timeval tv = { .tv_usec = API_SWEEP_MS * 1000 };
		evtimer_add(s->sweep_ev, &tv);
	}
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	conn_sweep(arg);
}

static void conn_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct api_conn *c = arg;
	if (conn_released(c))
		return;
	wlog_rl(WISP_LOG_WARN, "API: a client took more than %d s for a request; closing it",
		API_CONN_DEADLINE);
	int sfd = bufferevent_getfd(c->bev);
	if (sfd >= 0)
		shutdown(sfd, SHUT_RDWR);       /* evhttp sees end of file and frees it */
}

static void conn_arm(struct api_conn *c, int seconds)
{
	struct timeval tv = { .tv_sec = seconds };
	evtimer_add(c->deadline, &tv);
}

/* ---- evhttp's own error pages ----
 *
 * evhttp answers what it cannot parse itself (a bad request line or
 * header, an unknown method, a bad Content-Length or chunked body, a body
 * or headers over the limits) with an HTML page and "Connection: close";
 * libevent 2.1 has no hook for that. It writes a whole response into the
 * connection's output buffer in one synchronous run, and the socket is only
 * written later from the event loop, so a callback on that buffer sees the
 * page before any byte of it leaves. Everything this server sends itself is
 * written inside send_json() (c->ours); what is added outside it is
 * evhttp's: a "100 Continue" (kept) or an error page, replaced here by
 * api_http_fault()'s JSON answer, after which the rest of the page is
 * dropped as it is written. */

#define API_STR_(x) #x
#define API_STR(x) API_STR_(x)

static const struct {
	int evhttp_status;
	int status;
	const char *msg;
} http_faults[] = {
	{ 400, 400, "Invalid HTTP request: a malformed request line or header, an invalid "
		    "Content-Length, or more than " API_STR(API_MAX_HEADERS) " bytes of headers" },
	/* evhttp says 413 for a body over the limit and for a malformed
	 * chunked body; Firecracker says 400 to all of it. */
	{ 413, 400, "Request payload is larger than the limit of " API_STR(API_MAX_BODY)
		    " bytes allowed by the server, or its chunked encoding is malformed" },
	/* Every method evhttp knows reaches request_cb; the rest are 501. */
	{ 501, 400, "Invalid request method: unknown HTTP method (allowed: GET, PUT, PATCH)" },
};

size_t api_http_fault(int evhttp_status, char *buf, size_t size)
{
	int status = evhttp_status;
	const char *msg = "Invalid HTTP request";
	for (size_t i = 0; i < WISP_ARRAY_SIZE(http_faults); i++) {
		if (http_faults[i].evhttp_status == evhttp_status) {
			status = http_faults[i].status;
			msg = http_faults[i].msg;
		}
	}
	if (status < 400 || status > 599)
		status = 400;
	char body[256];
	int blen = snprintf(body, sizeof(body), "{\"fault_message\":\"%s\"}", msg);
	int n = snprintf(buf, size,
			 "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
			 "Connection: close\r\nContent-Length: %d\r\n\r\n%s",
			 status, status == 400 ? "Bad Request" : "Error", blen, body);
	return n < 0 || (size_t)n >= size ? 0 : (size_t)n;
}

/* Keep only the first len bytes of buf (evbuffer has no truncation). */
static void out_truncate(struct evbuffer *buf, size_t len)
{
	struct evbuffer *head = evbuffer_new();
	if (head)
		evbuffer_remove_buffer(buf, head, len);
	evbuffer_drain(buf, evbuffer_get_length(buf));
	if (head) {
		evbuffer_add_buffer(buf, head);
		evbuffer_free(head);
	}
}

static void out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct api_conn *c = arg;
	if (!info->n_added || c->ours || c->in_out_cb)
		return;
	size_t len = evbuffer_get_length(buf);
	size_t start = len >= info->n_added ? len - info->n_added : 0;
	c->in_out_cb = true;
	/* A socket bufferevent freezes its output's start between its writes
	 * (only it drains the buffer); this callback must read and cut it,
	 * then leaves it frozen as the socket's next write expects. */
	evbuffer_unfreeze(buf, 1);
	if (c->replaced) {
		out_truncate(buf, start);
	} else {
		/* evhttp writes the status line with one add. */
		char line[32] = "";
		struct evbuffer_ptr at;
		int status = 0;
		if (evbuffer_ptr_set(buf, &at, start, EVBUFFER_PTR_SET) == 0 &&
		    evbuffer_copyout_from(buf, &at, line, sizeof(line) - 1) > 0)
			sscanf(line, "HTTP/1.%*d %d", &status);
		if (status < 100 || status >= 200) {
			char resp[512];
			size_t n = api_http_fault(status, resp, sizeof(resp));
			out_truncate(buf, start);
			evbuffer_add(buf, resp, n);
			c->replaced = true;
			metrics_api_request("unknown", true);
			wlog_rl(WISP_LOG_WARN, "API: a request evhttp could not parse (its status %d)",
				status);
		}
	}
	evbuffer_freeze(buf, 1);
	c->in_out_cb = false;
}

static struct bufferevent *conn_new_cb(struct event_base *base, void *arg)
{
	struct api_server *s = arg;
	struct api_conn *c = NULL;

	conn_sweep(s);
	for (size_t i = 0; i < WISP_ARRAY_SIZE(s->conns); i++) {
		if (!s->conns[i].used) {
			c = &s->conns[i];
			break;
		}
	}
	/* evhttp cannot be told "no" here: with no slot (only when one accept
	 * batch overran the spare) it gets an untracked bufferevent, still
	 * bound by evhttp's own timeout. */
	if (!c)
		return NULL;
	c->deadline = evtimer_new(base, conn_deadline_cb, c);
	if (!c->deadline)
		return NULL;
	struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!bev) {
		event_free(c->deadline);
		c->deadline = NULL;
		return NULL;
	}
	c->out_cb = evbuffer_add_cb(bufferevent_get_output(bev), out_cb, c);
	if (!c->out_cb) {
		bufferevent_free(bev);
		event_free(c->deadline);
		c->deadline = NULL;
		return NULL;
	}
	bufferevent_incref(bev);
	c->srv = s;
	c->bev = bev;
	c->used = true;
	s->nr_conns++;
	if (s->nr_conns > API_MAX_CONNS) {
		conn_arm(c, 0);         /* over the limit: closed at once */
	} else {
		conn_arm(c, API_CONN_DEADLINE);
		if (s->nr_conns == API_MAX_CONNS && !s->listener_paused) {
			evconnlistener_disable(s->listener);
			s->listener_paused = true;
		}
	}
	struct timeval tv = { .tv_usec = API_SWEEP_MS * 1000 };
	evtimer_add(s->sweep_ev, &tv);
	return bev;
}

static struct api_conn *conn_of(struct api_server *s, struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
	for (size_t i = 0; i < WISP_ARRAY_SIZE(s->conns); i++)
		if (s->conns[i].used && s->conns[i].bev == bev)
			return &s->conns[i];
	return NULL;
}

/* ---- requests ---- */

struct api_job {
	struct api_ctl *ctl;
	struct api_action *act;
	struct api_reply *reply;
};

static int run_on_vmm_thread(void *arg)
{
	struct api_job *job = arg;
	api_ctl_execute(job->ctl, job->act, job->reply);
	return 0;
}

/* Our own replies, marked as ours for out_cb, with a Content-Length on
 * every reply that has a body (evhttp leaves it out for CONNECT and HEAD).
 * A HEAD request is refused like any other unserved method, with the
 * header fields the same request as GET would get and no content (RFC 9112
 * 6.3: a response to HEAD ends with its header block), so the connection
 * stays usable. */
static void send_json(struct evhttp_request *req, struct api_conn *c, int status, json_t *body)
{
	struct evbuffer *out = evbuffer_new();
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	bool head = evhttp_request_get_command(req) == EVHTTP_REQ_HEAD;
	if (out && text) {
		char clen[24];
		snprintf(clen, sizeof(clen), "%zu", strlen(text));
		evhttp_add_header(h, "Content-Type", "application/json");
		evhttp_add_header(h, "Content-Length", clen);
		if (!head)
			evbuffer_add(out, text, strlen(text));
	}
	const char *reason = status == 200 ? "OK" : status == 204 ? "No Content" : "Bad Request";
	if (c)
		c->ours = true;
	evhttp_send_reply(req, status, reason, status == 204 || head ? NULL : out);
	if (c)
		c->ours = false;
	free(text);
	if (out)
		evbuffer_free(out);
}

static enum api_method method_of(struct evhttp_request *req)
{
	switch (evhttp_request_get_command(req)) {
	case EVHTTP_REQ_GET: return API_GET;
	case EVHTTP_REQ_PUT: return API_PUT;
	case EVHTTP_REQ_PATCH: return API_PATCH;
	default: return API_OTHER;
	}
}

static void request_cb(struct evhttp_request *req, void *arg)
{
	struct api_server *s = arg;
	struct api_action act;
	struct api_reply reply = { 0 };
	struct wisp_err err = { 0 };
	char path[512];

	struct api_conn *c = conn_of(s, req);
	if (c)
		evtimer_del(c->deadline);

	const char *uri = evhttp_request_get_uri(req);
	size_t plen = strcspn(uri ? uri : "", "?#");
	if (!uri || plen >= sizeof(path)) {
		snprintf(path, sizeof(path), "(too long)");
		plen = 0;
	} else {
		memcpy(path, uri, plen);
	}
	path[plen] = '\0';

	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	const char *body = len ? (const char *)evbuffer_pullup(in, -1) : NULL;

	if (api_parse(method_of(req), path, body, len, &act, &err) < 0) {
		reply.status = 400;
		reply.body = api_fault(err.msg);
		wlog_rl(WISP_LOG_WARN, "API: %s: %s", path, err.msg);
	} else {
		struct api_job job = { .ctl = s->ctl, .act = &act, .reply = &reply };
		int r = evloop_call(s->loop, run_on_vmm_thread, &job);
		if (r < 0) {
			api_reply_free(&reply);
			reply.status = 400;
			reply.body = api_fault("the VMM is shutting down");
		}
	}
	api_action_free(&act);
	metrics_api_request(act.endpoint, reply.status >= 400);
	send_json(req, c, reply.status, reply.body);
	api_reply_free(&reply);
	if (c && c->used)
		conn_arm(c, API_CONN_DEADLINE);
}

/* ---- thread and setup ---- */

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

static void *server_thread(void *arg)
{
	struct api_server *s = arg;
	wisp_log_set_thread("fc_api");
	/* Before the first client byte: the API thread's own allow-list. */
	int r = seccomp_install(SECCOMP_API, &s->ready_err);
	pthread_mutex_lock(&s->ready_lock);
	s->ready = true;
	s->ready_result = r;
	pthread_cond_signal(&s->ready_cond);
	pthread_mutex_unlock(&s->ready_lock);
	if (r == 0)
		event_base_dispatch(s->base);
	return NULL;
}

static int listen_unix(const char *path, struct wisp_err *err)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct stat st;

	if (strlen(path) >= sizeof(addr.sun_path))
		return wisp_err_set(err, ENAMETOOLONG, "--api-sock: \"%s\" is longer than %zu bytes",
				    path, sizeof(addr.sun_path) - 1);
	if (lstat(path, &st) == 0)
		return wisp_err_set(err, EEXIST, "--api-sock: \"%s\" already exists; remove it first",
				    path);
	memcpy(addr.sun_path, path, strlen(path) + 1);
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return wisp_err_sys(err, errno, "--api-sock: socket");
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		return wisp_err_sys(err, errno, "--api-sock: bind \"%s\"", path);
	if (listen(fd, 128) < 0) {
		int e = errno;
		unlink(path);
		return wisp_err_sys(err, e, "--api-sock: listen");
	}
	return wisp_steal_fd(fd);
}

void api_server_stop(struct api_server *s)
{
	if (!s)
		return;
	if (s->thread_started) {
		uint64_t one = 1;
		if (write(s->stop_fd, &one, sizeof(one)) != sizeof(one))
			wlog_error("API: cannot signal the server thread: %s", strerror(errno));
		pthread_join(s->thread, NULL);
	}
	if (s->http)
		evhttp_free(s->http);   /* frees connections, bound listener */
	s->listener = NULL;
	s->listener_paused = false;
	for (size_t i = 0; i < WISP_ARRAY_SIZE(s->conns); i++)
		if (s->conns[i].used)
			conn_drop(&s->conns[i]);
	if (s->sweep_ev)
		event_free(s->sweep_ev);
	if (s->stop_ev)
		event_free(s->stop_ev);
	if (s->stop_fd >= 0)
		close(s->stop_fd);
	if (s->base)
		event_base_free(s->base);
	if (s->sock_path) {
		unlink(s->sock_path);
		free(s->sock_path);
	}
	pthread_mutex_destroy(&s->ready_lock);
	pthread_cond_destroy(&s->ready_cond);
	free(s);
}

int api_server_start(struct api_server **out, const char *sock_path, struct api_ctl *ctl,
		     struct evloop *loop, struct wisp_err *err)
{
	int r;
	struct api_server *s = calloc(1, sizeof(*s));
	if (!s)
		return wisp_err_set(err, ENOMEM, "API: out of memory");
	s->stop_fd = -1;
	pthread_mutex_init(&s->ready_lock, NULL);
	pthread_cond_init(&s->ready_cond, NULL);
	s->ctl = ctl;
	s->loop = loop;

	int fd = listen_unix(sock_path, err);
	if (fd < 0) {
		api_server_stop(s);
		return fd;
	}
	s->sock_path = strdup(sock_path);
	s->base = event_base_new();
	s->http = s->base ? evhttp_new(s->base) : NULL;
	s->listener = s->http ? evconnlistener_new(s->base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE, -1,
						   fd) : NULL;
	if (!s->sock_path || !s->listener) {
		if (!s->listener)
			close(fd);
		r = wisp_err_set(err, ENOMEM, "API: cannot set up libevent");
		goto fail;
	}
	if (!evhttp_bind_listener(s->http, s->listener)) {
		evconnlistener_free(s->listener);
		r = wisp_err_set(err, ENOMEM, "API: cannot bind evhttp to the socket");
		goto fail;
	}
	evhttp_set_max_body_size(s->http, API_MAX_BODY);
	evhttp_set_max_headers_size(s->http, API_MAX_HEADERS);
	evhttp_set_timeout(s->http, API_CONN_DEADLINE);
	/* Every method reaches request_cb, which answers a wrong one with 400
	 * and a fault_message instead of evhttp's bare 405. */
	evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
				   EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
				   EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_bevcb(s->http, conn_new_cb, s);
	evhttp_set_gencb(s->http, request_cb, s);

	s->sweep_ev = evtimer_new(s->base, sweep_cb, s);
	if (!s->sweep_ev) {
		r = wisp_err_set(err, ENOMEM, "API: sweep timer");
		goto fail;
	}
	s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	s->stop_ev = s->stop_fd >= 0 ? event_new(s->base, s->stop_fd, EV_READ, stop_cb, s->base)
				     : NULL;
	if (!s->stop_ev || event_add(s->stop_ev, NULL) < 0) {
		r = wisp_err_sys(err, errno ? errno : ENOMEM, "API: stop event");
		goto fail;
	}
	r = pthread_create(&s->thread, NULL, server_thread, s);
	if (r != 0) {
		r = wisp_err_sys(err, r, "API: pthread_create");
		goto fail;
	}
	s->thread_started = true;
	pthread_mutex_lock(&s->ready_lock);
	while (!s->ready)
		pthread_cond_wait(&s->ready_cond, &s->ready_lock);
	pthread_mutex_unlock(&s->ready_lock);
	if (s->ready_result < 0) {
		*err = s->ready_err;
		r = s->ready_result;
		goto fail;
	}
	wlog_info("API server listening on %s", sock_path);
	*out = s;
	return 0;
fail:
	api_server_stop(s);
	return r;
}
