/* The hybrid Unix-socket backend of virtio-vsock (Firecracker's design):
 * the host connects to uds_path and writes "CONNECT <port>\n", the device
 * asks the guest and answers "OK <host port>\n"; a guest connection to
 * CID 2 port P is a connection to "<uds_path>_P". Sockets are
 * non-blocking and edge-triggered; nothing here waits. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/io.h"
#include "common/log.h"
#include "vmm/evloop.h"
#include "vmm/virtio/vsock.h"

#define HANDSHAKE_MAX 64   /* "CONNECT 4294967295\n" fits with room */

int vsock_uds_listen(struct vsock *vs, struct wisp_err *err)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	if (strlen(vs->uds_path) >= sizeof(a.sun_path))
		return wisp_err_set(err, ENAMETOOLONG, "vsock: uds_path too long");
	strcpy(a.sun_path, vs->uds_path);
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return wisp_err_sys(err, errno, "vsock: socket");
	/* a socket file left by an earlier run is replaced; anything else is not */
	struct stat st;
	if (lstat(vs->uds_path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(vs->uds_path);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		return wisp_err_sys(err, errno, "vsock: bind %s", vs->uds_path);
	if (listen(fd, 128) < 0)
		return wisp_err_sys(err, errno, "vsock: listen %s", vs->uds_path);
	vs->listen_fd = wisp_steal_fd(fd);
	return 0;
}

void vsock_uds_close(struct vsock *vs)
{
	if (vs->listen_fd < 0)
		return;
	if (vs->loop)
		evloop_del(vs->loop, vs->listen_fd);
	close(vs->listen_fd);
	vs->listen_fd = -1;
	unlink(vs->uds_path);
}

/* Edge-triggered events for the connection's socket. */
static int vconn_watch(struct vconn *c)
{
	if (!c->vs->loop)
		return 0;
	return evloop_add(c->vs->loop, c->fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
			  vsock_uds_event, c);
}

/* A VC_LISTEN_WAIT socket is not connected yet (epoll would report it hung
 * up): it is watched once connect() succeeds. */
struct vconn *vconn_new(struct vsock *vs, int fd, enum vconn_state st)
{
	int slot = -1;
	for (int i = 0; i < VSOCK_MAX_CONNS && slot < 0; i++)
		if (!vs->conns[i])
			slot = i;
	if (slot < 0)
		return NULL;
	struct vconn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->vs = vs;
	c->fd = fd;
	c->state = st;
	if (st != VC_LISTEN_WAIT && vconn_watch(c) < 0) {
		free(c);
		return NULL;
	}
	vs->conns[slot] = c;
	vs->nr_conns++;
	vs->conns_total++;
	return c;
}

void vconn_kill(struct vconn *c, bool rst)
{
	struct vsock *vs = c->vs;
	/* a draining connection's RST went out when it began draining */
	if (rst && c->state != VC_HANDSHAKE && c->state != VC_DRAINING)
		vsock_queue_rst(vs, c->local_port, c->peer_port);
	if (c->buf_len)
		wlog_rl(WISP_LOG_WARN, "%s: connection %u<->%u closed with %u bytes the host "
			"socket never took", vs->dev.name, c->local_port, c->peer_port, c->buf_len);
	switch (c->state) {
	case VC_HANDSHAKE:
		break;
	case VC_CONNECTING:
	case VC_LISTEN_WAIT:
		vs->conns_refused++;
		vsock_count(vs, METRICS_DEV_CONNS_REFUSED, 1);
		break;
	case VC_ESTABLISHED:
	case VC_DRAINING:
	case VC_CLOSING:
		vsock_count(vs, METRICS_DEV_CONNS_CLOSED, 1);
		break;
	}
	for (int i = 0; i < VSOCK_MAX_CONNS; i++) {
		if (vs->conns[i] == c) {
			vs->conns[i] = NULL;
			vs->nr_conns--;
			break;
		}
	}
	if (vs->loop)
		evloop_del(vs->loop, c->fd);
	close(c->fd);
	free(c->buf);
	free(c);
}

void vconn_kill_all(struct vsock *vs)
{
	for (int i = 0; i < VSOCK_MAX_CONNS; i++)
		if (vs->conns[i])
			vconn_kill(vs->conns[i], false);
}

/* connect() fd to <uds_path>_<port>: 0 or -errno. A Unix stream connect
 * completes or fails at once; -EAGAIN means the listener's backlog is full
 * (the socket stays unconnected and may try again). */
static int uds_connect(const struct vsock *vs, int fd, uint32_t port)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int n = snprintf(a.sun_path, sizeof(a.sun_path), "%s_%u", vs->uds_path, port);
	if (n < 0 || (size_t)n >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	int r;
	do
		r = connect(fd, (struct sockaddr *)&a, sizeof(a));
	while (r < 0 && errno == EINTR);
	if (r < 0 && errno != EAGAIN)
		wlog_rl(WISP_LOG_DEBUG, "vsock: guest connect to %s: %s", a.sun_path,
			strerror(errno));
	return r < 0 ? -errno : 0;
}

static void retry_later(struct vconn *c, uint64_t now)
{
	uint64_t delay = VSOCK_RETRY_MIN_NS << (c->retries < 16 ? c->retries : 16);
	if (delay > VSOCK_RETRY_MAX_NS)
		delay = VSOCK_RETRY_MAX_NS;
	c->retries++;
	c->retry_ns = now + delay;
}

struct vconn *vsock_uds_connect(struct vsock *vs, uint32_t port, uint32_t peer_port)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	/* A full backlog is a listener busy accepting, not a refusal: the
	 * guest's REQUEST waits (no RESPONSE yet) while connect() is retried,
	 * and gets an RST only when the deadline passes. */
	int r = uds_connect(vs, fd, port);
	if (r < 0 && r != -EAGAIN) {
		close(fd);
		return NULL;
	}
	struct vconn *c = vconn_new(vs, fd, r == 0 ? VC_ESTABLISHED : VC_LISTEN_WAIT);
	if (!c) {
		close(fd);
		return NULL;
	}
	c->local_port = port;
	c->peer_port = peer_port;
	if (r == 0) {
		vsock_count(vs, METRICS_DEV_CONNS_ADDED, 1);
		return c;
	}
	uint64_t now = wisp_now_ns();
	c->deadline_ns = now + VSOCK_CONNECT_TIMEOUT_NS;
	retry_later(c, now);
	vsock_timer_arm(vs);
	return c;
}

void vconn_retry(struct vconn *c, uint64_t now)
{
	struct vsock *vs = c->vs;
	vs->connect_retries++;
	vsock_count(vs, METRICS_DEV_CONNECT_RETRIES, 1);
	int r = uds_connect(vs, c->fd, c->local_port);
	if (r == -EAGAIN) {
		retry_later(c, now);
		return;
	}
	if (r == 0 && vconn_watch(c) == 0) {
		c->state = VC_ESTABLISHED;
		c->deadline_ns = 0;
		c->send |= VC_SEND_RESPONSE;
		vsock_count(vs, METRICS_DEV_CONNS_ADDED, 1);
		return;
	}
	/* the listener went away (or the loop had no room): refused */
	vconn_kill(c, true);
}

bool vconn_send_ok(struct vconn *c)
{
	char line[32];
	int n = snprintf(line, sizeof(line), "OK %u\n", c->local_port);
	ssize_t w = send(c->fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
	/* a fresh socket's buffer always takes a dozen bytes */
	return w == n;
}

static void buf_put(struct vconn *c, const struct virtq_chain *ch, size_t off, size_t len)
{
	while (len > 0) {
		uint32_t tail = (c->buf_head + c->buf_len) % VSOCK_BUF_ALLOC;
		size_t k = VSOCK_BUF_ALLOC - tail;
		if (k > len)
			k = len;
		virtq_chain_read(ch, off, c->buf + tail, k);
		c->buf_len += (uint32_t)k;
		off += k;
		len -= k;
	}
}

bool vconn_from_guest(struct vconn *c, const struct virtq_chain *ch, size_t off, size_t len)
{
	struct vsock *vs = c->vs;
	if (len == 0)
		return true;
	if ((uint64_t)c->buf_len + len > VSOCK_BUF_ALLOC) {
		wlog_rl(WISP_LOG_WARN, "%s: guest overran its credit on %u<->%u", vs->dev.name,
			c->local_port, c->peer_port);
		vsock_count(vs, METRICS_DEV_ERRORS, 1);
		return false;
	}
	size_t sent = 0;
	if (c->buf_len == 0) {
		size_t got;
		int k = virtq_chain_iov(ch, false, off, len, vs->iov, VIRTQ_CHAIN_MAX, &got);
		struct msghdr m = { .msg_iov = vs->iov, .msg_iovlen = (size_t)k };
		ssize_t w;
		do
			w = sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
		while (w < 0 && errno == EINTR);
		if (w < 0 && errno != EAGAIN) {
			vsock_count(vs, METRICS_DEV_ERRORS, 1);
			return false;
		}
		if (w > 0) {
			sent = (size_t)w;
			c->fwd_cnt += (uint32_t)w;
		}
	}
	if (sent < len) {
		if (!c->buf) {
			c->buf = malloc(VSOCK_BUF_ALLOC);
			if (!c->buf)
				return false;
			c->buf_head = 0;
		}
		buf_put(c, ch, off + sent, len - sent);
	}
	return true;
}

int vconn_flush(struct vconn *c)
{
	while (c->buf_len > 0) {
		size_t k = VSOCK_BUF_ALLOC - c->buf_head;
		if (k > c->buf_len)
			k = c->buf_len;
		ssize_t w = send(c->fd, c->buf + c->buf_head, k, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 1 : -1;
		}
		c->buf_head = (c->buf_head + (uint32_t)w) % VSOCK_BUF_ALLOC;
		c->buf_len -= (uint32_t)w;
		c->fwd_cnt += (uint32_t)w;
	}
	/* an idle connection holds no buffer */
	free(c->buf);
	c->buf = NULL;
	c->buf_head = 0;
	return 0;
}

/* "CONNECT <port>\n": peek, consume exactly the line, leave any data that
 * followed it in the socket for the guest. */
static void handshake(struct vconn *c)
{
	struct vsock *vs = c->vs;
	char line[HANDSHAKE_MAX + 1];
	ssize_t n = recv(c->fd, line, HANDSHAKE_MAX, MSG_PEEK | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		vconn_kill(c, false);
		return;
	}
	char *nl = memchr(line, '\n', (size_t)n);
	if (!nl) {
		if (n == HANDSHAKE_MAX)
			vconn_kill(c, false);
		return;
	}
	size_t len = (size_t)(nl - line) + 1;
	if (recv(c->fd, line, len, MSG_DONTWAIT) != (ssize_t)len) {
		vconn_kill(c, false);
		return;
	}
	line[len - 1] = '\0';
	unsigned long long port = 0;
	char *end = NULL;
	if (strncmp(line, "CONNECT ", 8) != 0 || line[8] < '0' || line[8] > '9') {
		wlog_rl(WISP_LOG_DEBUG, "%s: bad host handshake", vs->dev.name);
		vconn_kill(c, false);
		return;
	}
	errno = 0;
	port = strtoull(line + 8, &end, 10);
	if (errno || *end || port > 0xffffffffull) {
		wlog_rl(WISP_LOG_DEBUG, "%s: bad port in host handshake", vs->dev.name);
		vconn_kill(c, false);
		return;
	}
	c->peer_port = (uint32_t)port;
	c->local_port = vsock_alloc_local_port(vs);
	c->host_initiated = true;
	c->state = VC_CONNECTING;
	c->send |= VC_SEND_REQUEST;
	c->readable = true; /* bytes after the line are still to be read */
	c->deadline_ns = wisp_now_ns() + VSOCK_CONNECT_TIMEOUT_NS;
}

void vsock_uds_event(void *opaque, uint32_t events)
{
	struct vconn *c = opaque;
	struct vsock *vs = c->vs;
	pthread_mutex_lock(&vs->dev.lock);
	if (c->state == VC_HANDSHAKE) {
		handshake(c);
		goto out;
	}
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		c->readable = true;
	if (events & (EPOLLHUP | EPOLLERR))
		c->host_hup = true;
	if ((events & EPOLLOUT) && c->buf_len > 0) {
		uint32_t before = c->buf_len;
		int r = vconn_flush(c);
		if (r < 0) {
			vsock_count(vs, METRICS_DEV_ERRORS, 1);
			vconn_kill(c, true);
			goto out;
		}
		/* a done guest's bytes go to a host that keeps reading, however
		 * slowly: the deadline is for a host that takes nothing */
		if (r > 0 && c->state == VC_DRAINING && c->buf_len < before)
			c->deadline_ns = wisp_now_ns() + VSOCK_DRAIN_TIMEOUT_NS;
		if (r == 0) {
			if (c->state == VC_DRAINING) {
				vconn_kill(c, true);
				goto out;
			}
			if (c->guest_shut_send && !c->wr_shut) {
				shutdown(c->fd, SHUT_WR);
				c->wr_shut = true;
			}
		}
		if (c->fwd_cnt != c->fwd_cnt_sent &&
		    (r == 0 || c->fwd_cnt - c->fwd_cnt_sent >= VSOCK_BUF_ALLOC / 4))
			c->send |= VC_SEND_CREDIT;
	}
out:
	vsock_rx_pump(vs);
	pthread_mutex_unlock(&vs->dev.lock);
}

void vsock_listen_event(void *opaque, uint32_t events)
{
	(void)events;
	struct vsock *vs = opaque;
	pthread_mutex_lock(&vs->dev.lock);
	for (;;) {
		int fd = accept4(vs->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				wlog_rl(WISP_LOG_WARN, "%s: accept: %s", vs->dev.name, strerror(errno));
			break;
		}
		struct vconn *c = vs->nr_conns < VSOCK_MAX_CONNS ? vconn_new(vs, fd, VC_HANDSHAKE)
								 : NULL;
		if (!c) {
			vs->conns_refused++;
			vsock_count(vs, METRICS_DEV_CONNS_REFUSED, 1);
			wlog_rl(WISP_LOG_WARN, "%s: host connection refused (%d connections)",
				vs->dev.name, vs->nr_conns);
			close(fd);
			continue;
		}
		c->deadline_ns = wisp_now_ns() + VSOCK_CONNECT_TIMEOUT_NS;
		handshake(c);
	}
	vsock_rx_pump(vs);
	pthread_mutex_unlock(&vs->dev.lock);
}
