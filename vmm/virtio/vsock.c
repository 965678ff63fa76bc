/* virtio-vsock (virtio 1.2 section 5.10) with Firecracker's hybrid design:
 * the host side of every connection is a Unix socket (vsock_uds.c). This
 * file holds the device: the RX pump that builds packets for the guest
 * (control packets first, then data while the guest has credit and RX
 * buffers), the TX path that runs the connection state machine for the
 * guest's packets, and the event queue.
 *
 * Flow control both ways: data for the guest is read from a socket only
 * when the guest has credit and a buffer, so a slow guest leaves it in the
 * host socket; data from the guest goes straight to the socket, and what
 * the socket does not take is buffered up to the buf_alloc we advertised,
 * so a slow host peer costs at most VSOCK_BUF_ALLOC per connection. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/io.h"
#include "common/log.h"
#include "vmm/evloop.h"
#include "vmm/snapshot.h"
#include "vmm/virtio/vsock.h"

#define VSOCK_QUEUE_SIZE 256

static void vsock_config_read(struct virtio_mmio_dev *d, uint32_t off, uint8_t *data,
			      uint32_t len)
{
	struct vsock *vs = d->priv;
	uint64_t cid = vs->guest_cid;
	memcpy(data, (const uint8_t *)&cid + off, len);
}

static const char *vconn_state_name(enum vconn_state st)
{
	switch (st) {
	case VC_HANDSHAKE: return "handshake";
	case VC_CONNECTING: return "connecting";
	case VC_LISTEN_WAIT: return "listen-wait";
	case VC_ESTABLISHED: return "established";
	case VC_DRAINING: return "draining";
	case VC_CLOSING: return "closing";
	}
	return "?";
}

/* A DRAINING connection is the host's alone: the guest may reuse its ports. */
struct vconn *vsock_conn_find(struct vsock *vs, uint32_t local_port, uint32_t peer_port)
{
	for (int i = 0; i < VSOCK_MAX_CONNS; i++) {
		struct vconn *c = vs->conns[i];
		if (c && c->state != VC_HANDSHAKE && c->state != VC_DRAINING &&
		    c->local_port == local_port && c->peer_port == peer_port)
			return c;
	}
	return NULL;
}

uint32_t vsock_alloc_local_port(struct vsock *vs)
{
	for (;;) {
		uint32_t p = vs->next_local_port++;
		if (vs->next_local_port < VSOCK_LOCAL_PORT_BASE)
			vs->next_local_port = VSOCK_LOCAL_PORT_BASE;
		bool used = false;
		for (int i = 0; i < VSOCK_MAX_CONNS && !used; i++)
			used = vs->conns[i] && vs->conns[i]->local_port == p;
		if (!used)
			return p;
	}
}

void vsock_queue_rst(struct vsock *vs, uint32_t local_port, uint32_t peer_port)
{
	if (vs->nr_rsts >= VSOCK_RST_QUEUE) {
		/* the guest is not taking RX buffers; it times out instead */
		vs->rsts_dropped++;
		vsock_count(vs, METRICS_DEV_ERRORS, 1);
		return;
	}
	vs->rsts[vs->nr_rsts++] = (struct vsock_rst){ local_port, peer_port };
}

static uint32_t conn_credit(const struct vconn *c)
{
	uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;
	return in_flight >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

static bool conn_wants_rx(const struct vconn *c)
{
	if (c->state == VC_HANDSHAKE || c->state == VC_LISTEN_WAIT || c->state == VC_DRAINING)
		return false;
	if (c->send)
		return true;
	return c->state == VC_ESTABLISHED && c->readable && !c->host_eof && !c->guest_shut_rcv &&
	       conn_credit(c) > 0;
}

static void hdr_for(const struct vsock *vs, const struct vconn *c, struct vsock_hdr *h,
		    uint16_t op)
{
	memset(h, 0, sizeof(*h));
	h->src_cid = VSOCK_HOST_CID;
	h->dst_cid = vs->guest_cid;
	h->src_port = c->local_port;
	h->dst_port = c->peer_port;
	h->type = VSOCK_TYPE_STREAM;
	h->op = op;
	h->buf_alloc = VSOCK_BUF_ALLOC;
	h->fwd_cnt = c->fwd_cnt;
}

/* Nothing will flow between the guest and the host any more except the
 * guest's bytes the host socket has not taken yet. The guest gets its RST
 * now, not once the host has read them (a slow reader would hold the
 * guest's close open, and Linux gives up on a close after 8 s with an RST
 * of its own); the host gets the bytes, then EOF. */
static void conn_finish(struct vconn *c)
{
	struct vsock *vs = c->vs;
	if (vconn_flush(c) <= 0) {
		vconn_kill(c, true);
		return;
	}
	vsock_queue_rst(vs, c->local_port, c->peer_port);
	c->state = VC_DRAINING;
	c->send = 0;
	c->deadline_ns = wisp_now_ns() + VSOCK_DRAIN_TIMEOUT_NS;
}

/* The host side stopped sending (read returned 0). False when c is gone
 * or draining: an RST is owed instead of more packets. */
static bool conn_host_eof(struct vconn *c)
{
	c->host_eof = true;
	c->readable = false;
	if (c->guest_shut_send && !c->host_hup && c->buf_len > 0) {
		conn_finish(c);
		return false;
	}
	if (c->guest_shut_send || c->host_hup) {
		/* nothing can flow either way any more: close, wait for RST */
		c->shut_flags = VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND;
		c->state = VC_CLOSING;
		c->deadline_ns = wisp_now_ns() + VSOCK_SHUTDOWN_TIMEOUT_NS;
	} else {
		c->shut_flags = VSOCK_SHUTDOWN_SEND;
	}
	c->send |= VC_SEND_SHUTDOWN;
	return true;
}

/* Fill one RX chain for c. Returns the used length, 0 when c had nothing
 * after all (the chain stays unused), -1 when c was killed or reset (an
 * RST waits). */
static int conn_rx_packet(struct vsock *vs, struct vconn *c, const struct virtq_chain *ch)
{
	struct vsock_hdr h;
	uint32_t len = 0;
	if (c->send & VC_SEND_REQUEST) {
		c->send &= ~VC_SEND_REQUEST;
		hdr_for(vs, c, &h, VSOCK_OP_REQUEST);
	} else if (c->send & VC_SEND_RESPONSE) {
		c->send &= ~VC_SEND_RESPONSE;
		hdr_for(vs, c, &h, VSOCK_OP_RESPONSE);
	} else if (c->send & VC_SEND_SHUTDOWN) {
		c->send &= ~VC_SEND_SHUTDOWN;
		hdr_for(vs, c, &h, VSOCK_OP_SHUTDOWN);
		h.flags = c->shut_flags;
	} else if (c->send & VC_SEND_CREDIT) {
		c->send &= ~VC_SEND_CREDIT;
		hdr_for(vs, c, &h, VSOCK_OP_CREDIT_UPDATE);
	} else {
		uint64_t room = ch->write_len - sizeof(h);
		uint32_t want = conn_credit(c);
		if (want > room)
			want = (uint32_t)room;
		if (want > VSOCK_MAX_PKT)
			want = VSOCK_MAX_PKT;
		if (want == 0)
			return 0;
		size_t got;
		int k = virtq_chain_iov(ch, true, sizeof(h), want, vs->iov, VIRTQ_CHAIN_MAX, &got);
		ssize_t r;
		do
			r = readv(c->fd, vs->iov, k);
		while (r < 0 && errno == EINTR);
		if (r < 0) {
			if (errno == EAGAIN) {
				c->readable = false;
				return 0;
			}
			vsock_count(vs, METRICS_DEV_ERRORS, 1);
			vconn_kill(c, true);
			return -1;
		}
		if (r == 0)
			return conn_host_eof(c) ? conn_rx_packet(vs, c, ch) : -1;
		hdr_for(vs, c, &h, VSOCK_OP_RW);
		h.len = (uint32_t)r;
		len = (uint32_t)r;
		c->tx_cnt += (uint32_t)r;
		vs->rx_bytes += (uint64_t)r;
		vsock_count(vs, METRICS_DEV_BYTES_READ, (uint64_t)r);
	}
	c->fwd_cnt_sent = c->fwd_cnt;
	virtq_chain_write(ch, 0, &h, sizeof(h));
	return (int)(sizeof(h) + len);
}

static bool any_rx_work(struct vsock *vs)
{
	if (vs->nr_rsts)
		return true;
	for (int i = 0; i < VSOCK_MAX_CONNS; i++)
		if (vs->conns[i] && conn_wants_rx(vs->conns[i]))
			return true;
	return false;
}

void vsock_rx_pump(struct vsock *vs)
{
	struct virtio_mmio_dev *d = &vs->dev;
	struct virtq *q = &d->queues[VSOCK_RXQ];
	bool done = false;
	if (!d->active || d->failed)
		return;
	while (any_rx_work(vs)) {
		int r = virtio_mmio_pop(d, VSOCK_RXQ, &vs->chain);
		if (r < 0)
			return;
		if (r == 0) {
			if (virtq_enable_notify(q))
				continue;
			break;
		}
		struct virtq_chain *ch = &vs->chain;
		if (ch->nr_read != 0 || ch->write_len < sizeof(struct vsock_hdr)) {
			virtio_mmio_fail(d, "vsock RX buffer readable or shorter than a header");
			return;
		}
		int used = 0;
		if (vs->nr_rsts) {
			struct vsock_rst rs = vs->rsts[0];
			memmove(&vs->rsts[0], &vs->rsts[1], sizeof(vs->rsts[0]) * (size_t)--vs->nr_rsts);
			struct vconn tmp = { .local_port = rs.local_port, .peer_port = rs.peer_port };
			struct vsock_hdr h;
			hdr_for(vs, &tmp, &h, VSOCK_OP_RST);
			virtq_chain_write(ch, 0, &h, sizeof(h));
			used = sizeof(h);
			vs->rsts_sent++;
		} else {
			bool killed = false;
			for (int n = 0; n < VSOCK_MAX_CONNS && used <= 0; n++) {
				int i = (vs->rr + n) % VSOCK_MAX_CONNS;
				struct vconn *c = vs->conns[i];
				if (!c || !conn_wants_rx(c))
					continue;
				used = conn_rx_packet(vs, c, ch);
				if (used > 0)
					vs->rr = (i + 1) % VSOCK_MAX_CONNS;
				killed |= used < 0;
			}
			if (used <= 0) {
				/* every candidate came up empty (drained sockets);
				 * only a kill left something new to send (its RST) */
				virtq_unpop(q);
				if (killed)
					continue;
				break;
			}
		}
		virtq_push(q, ch->head, (uint32_t)used);
		vsock_count(vs, METRICS_DEV_RX_PACKETS, 1);
		vsock_count(vs, METRICS_DEV_REQUESTS, 1);
		done = true;
	}
	if (done)
		virtio_mmio_notify_queue(d, VSOCK_RXQ);
}

/* Deliver a pending TRANSPORT_RESET event if the guest gave a buffer. */
static void vsock_send_event(struct vsock *vs)
{
	struct virtio_mmio_dev *d = &vs->dev;
	if (!vs->event_pending || !d->active || d->failed)
		return;
	int r = virtio_mmio_pop(d, VSOCK_EVQ, &vs->chain);
	if (r <= 0)
		return;
	uint32_t id = VSOCK_EVENT_TRANSPORT_RESET;
	if (vs->chain.write_len < sizeof(id)) {
		virtio_mmio_fail(d, "vsock event buffer shorter than an event");
		return;
	}
	virtq_chain_write(&vs->chain, 0, &id, sizeof(id));
	virtq_push(&d->queues[VSOCK_EVQ], vs->chain.head, sizeof(id));
	vs->event_pending = false;
	virtio_mmio_notify_queue(d, VSOCK_EVQ);
}

static void guest_shutdown(struct vconn *c, uint32_t flags)
{
	if (flags & VSOCK_SHUTDOWN_RCV)
		c->guest_shut_rcv = true;
	if (flags & VSOCK_SHUTDOWN_SEND)
		c->guest_shut_send = true;
	/* the guest closed, or stopped sending to a host that stopped too */
	if (c->guest_shut_send && (c->guest_shut_rcv || c->host_eof)) {
		conn_finish(c);
		return;
	}
	if (c->guest_shut_send && c->buf_len == 0 && !c->wr_shut) {
		shutdown(c->fd, SHUT_WR);
		c->wr_shut = true;
	}
}

static void vsock_packet(struct vsock *vs, const struct vsock_hdr *h, const struct virtq_chain *ch,
			 uint64_t payload)
{
	if (h->dst_cid != VSOCK_HOST_CID || h->src_cid != vs->guest_cid ||
	    h->type != VSOCK_TYPE_STREAM || h->len > payload) {
		vs->bad_packets++;
		vsock_count(vs, METRICS_DEV_ERRORS, 1);
		wlog_rl(WISP_LOG_DEBUG, "%s: bad packet (cid %llu->%llu type %u op %u len %u)",
			vs->dev.name, (unsigned long long)h->src_cid,
			(unsigned long long)h->dst_cid, h->type, h->op, h->len);
		struct vconn *c = vsock_conn_find(vs, h->dst_port, h->src_port);
		if (c)
			vconn_kill(c, true);
		else if (h->op != VSOCK_OP_RST)
			vsock_queue_rst(vs, h->dst_port, h->src_port);
		return;
	}
	struct vconn *c = vsock_conn_find(vs, h->dst_port, h->src_port);
	if (h->op == VSOCK_OP_REQUEST) {
		if (c) {
			vconn_kill(c, true);
			return;
		}
		if (vs->nr_conns >= VSOCK_MAX_CONNS ||
		    !(c = vsock_uds_connect(vs, h->dst_port, h->src_port))) {
			vs->conns_refused++;
			vsock_count(vs, METRICS_DEV_CONNS_REFUSED, 1);
			vsock_queue_rst(vs, h->dst_port, h->src_port);
			return;
		}
		c->peer_buf_alloc = h->buf_alloc;
		c->peer_fwd_cnt = h->fwd_cnt;
		/* VC_LISTEN_WAIT: the RESPONSE waits for connect() */
		if (c->state == VC_ESTABLISHED)
			c->send |= VC_SEND_RESPONSE;
		return;
	}
	if (!c) {
		if (h->op != VSOCK_OP_RST)
			vsock_queue_rst(vs, h->dst_port, h->src_port);
		return;
	}
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	/* before our RESPONSE the guest may only give up or talk credit */
	if (c->state == VC_LISTEN_WAIT && h->op != VSOCK_OP_RST &&
	    h->op != VSOCK_OP_CREDIT_UPDATE && h->op != VSOCK_OP_CREDIT_REQUEST) {
		vconn_kill(c, true);
		return;
	}
	switch (h->op) {
	case VSOCK_OP_RESPONSE:
		if (c->state != VC_CONNECTING) {
			vconn_kill(c, true);
			return;
		}
		c->state = VC_ESTABLISHED;
		c->deadline_ns = 0;
		vsock_count(vs, METRICS_DEV_CONNS_ADDED, 1);
		if (!vconn_send_ok(c))
			vconn_kill(c, true);
		return;
	case VSOCK_OP_RW:
		if (c->state != VC_ESTABLISHED || c->guest_shut_send) {
			vconn_kill(c, true);
			return;
		}
		if (!vconn_from_guest(c, ch, sizeof(*h), h->len)) {
			vconn_kill(c, true);
			return;
		}
		vs->tx_bytes += h->len;
		vsock_count(vs, METRICS_DEV_BYTES_WRITTEN, h->len);
		if (c->fwd_cnt - c->fwd_cnt_sent >= VSOCK_BUF_ALLOC / 4)
			c->send |= VC_SEND_CREDIT;
		return;
	case VSOCK_OP_CREDIT_UPDATE:
		return; /* the credit fields above are the update */
	case VSOCK_OP_CREDIT_REQUEST:
		c->send |= VC_SEND_CREDIT;
		return;
	case VSOCK_OP_SHUTDOWN:
		if (c->state == VC_CLOSING) {
			vconn_kill(c, true);
			return;
		}
		guest_shutdown(c, h->flags);
		return;
	case VSOCK_OP_RST:
		vconn_kill(c, false);
		return;
	default:
		vs->bad_packets++;
		vsock_count(vs, METRICS_DEV_ERRORS, 1);
		vconn_kill(c, true);
		return;
	}
}

static void vsock_tx(struct vsock *vs)
{
	struct virtio_mmio_dev *d = &vs->dev;
	struct virtq *q = &d->queues[VSOCK_TXQ];
	bool done = false;
	for (;;) {
		int r = virtio_mmio_pop(d, VSOCK_TXQ, &vs->chain);
		if (r < 0)
			return;
		if (r == 0) {
			if (virtq_enable_notify(q))
				continue;
			break;
		}
		struct virtq_chain *ch = &vs->chain;
		if (ch->read_len < sizeof(struct vsock_hdr)) {
			virtio_mmio_fail(d, "vsock TX packet shorter than a header");
			return;
		}
		struct vsock_hdr h;
		virtq_chain_read(ch, 0, &h, sizeof(h));
		vsock_count(vs, METRICS_DEV_TX_PACKETS, 1);
		vsock_count(vs, METRICS_DEV_REQUESTS, 1);
		vsock_packet(vs, &h, ch, ch->read_len - sizeof(h));
		virtq_push(q, ch->head, 0);
		done = true;
	}
	if (done)
		virtio_mmio_notify_queue(d, VSOCK_TXQ);
}

static void vsock_notify(struct virtio_mmio_dev *d, int qi)
{
	struct vsock *vs = d->priv;
	if (qi == VSOCK_TXQ)
		vsock_tx(vs);
	else if (qi == VSOCK_EVQ)
		vsock_send_event(vs);
	vsock_rx_pump(vs);
}

void vsock_timer_arm(struct vsock *vs)
{
	uint64_t next = 0;
	for (int i = 0; i < VSOCK_MAX_CONNS; i++) {
		struct vconn *c = vs->conns[i];
		if (c && c->state == VC_LISTEN_WAIT && (!next || c->retry_ns < next))
			next = c->retry_ns;
	}
	if (!next || vs->timer_fd < 0)
		return; /* the tick goes on at its interval */
	struct itimerspec its = {
		.it_interval = { .tv_nsec = (long)VSOCK_TICK_NS },
		.it_value = { .tv_sec = (time_t)(next / 1000000000ull),
			      .tv_nsec = (long)(next % 1000000000ull) },
	};
	if (timerfd_settime(vs->timer_fd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
		wlog_rl(WISP_LOG_WARN, "%s: timer: %s", vs->dev.name, strerror(errno));
}

void vsock_timer_event(void *opaque, uint32_t events)
{
	(void)events;
	struct vsock *vs = opaque;
	uint64_t v;
	if (read(vs->timer_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		wlog_rl(WISP_LOG_WARN, "%s: timer read: %s", vs->dev.name, strerror(errno));
	pthread_mutex_lock(&vs->dev.lock);
	uint64_t now = wisp_now_ns();
	/* retries first: a connect that succeeds at the deadline counts */
	for (int i = 0; i < VSOCK_MAX_CONNS; i++) {
		struct vconn *c = vs->conns[i];
		if (c && c->state == VC_LISTEN_WAIT && now >= c->retry_ns)
			vconn_retry(c, now);
	}
	for (int i = 0; i < VSOCK_MAX_CONNS; i++) {
		struct vconn *c = vs->conns[i];
		if (!c || !c->deadline_ns || now < c->deadline_ns)
			continue;
		wlog_rl(WISP_LOG_WARN, "%s: connection %u<->%u timed out in state %s",
			vs->dev.name, c->local_port, c->peer_port, vconn_state_name(c->state));
		vconn_kill(c, c->state != VC_HANDSHAKE);
	}
	vsock_timer_arm(vs);
	vsock_rx_pump(vs);
	pthread_mutex_unlock(&vs->dev.lock);
}

static void vsock_reset_dev(struct virtio_mmio_dev *d)
{
	struct vsock *vs = d->priv;
	vconn_kill_all(vs);
	vs->nr_rsts = 0;
	vs->event_pending = false;
}

void virtio_vsock_reset(struct virtio_mmio_dev *d)
{
	struct vsock *vs = d->priv;
	pthread_mutex_lock(&d->lock);
	vconn_kill_all(vs);
	vs->nr_rsts = 0;
	vs->event_pending = true;
	vsock_send_event(vs);
	pthread_mutex_unlock(&d->lock);
}

static void vsock_destroy(struct virtio_mmio_dev *d)
{
	struct vsock *vs = d->priv;
	vconn_kill_all(vs);
	vsock_uds_close(vs);
	if (vs->timer_fd >= 0) {
		if (vs->loop)
			evloop_del(vs->loop, vs->timer_fd);
		close(vs->timer_fd);
		vs->timer_fd = -1;
	}
}

/* Snapshot state (SNAP_SEC_VIRTIO_VSOCK): the guest's CID. Connections
 * are host sockets of the VMM that took the snapshot: a restored device
 * has none, and snap_vm_load sends the guest TRANSPORT_RESET so it drops
 * its side of them (virtio 1.2 5.10.6.6); listeners, the guest's and the
 * host's Unix socket, carry on. The transport saves queue positions. */
#define SNAP_VSOCK_VERSION 1u

struct snap_vsock_state {
	uint64_t guest_cid;
	uint32_t nr_conns;               /* at snapshot time: reset on restore */
	uint32_t pad;
};

static int vsock_snap_save(struct virtio_mmio_dev *d, uint32_t slot, struct snap_writer *w)
{
	const struct vsock *vs = d->priv;
	struct snap_vsock_state s = { .guest_cid = vs->guest_cid, .nr_conns = (uint32_t)vs->nr_conns };
	return snap_put(w, SNAP_SEC_VIRTIO_VSOCK, SNAP_VSOCK_VERSION, slot, &s, sizeof(s));
}

static int vsock_snap_restore(struct virtio_mmio_dev *d, uint32_t slot, struct snap_image *img,
			      struct wisp_err *err)
{
	const struct vsock *vs = d->priv;
	struct snap_vsock_state s;
	int r = snap_get(img, SNAP_SEC_VIRTIO_VSOCK, SNAP_VSOCK_VERSION, slot, &s, sizeof(s), err);
	if (r < 0)
		return r;
	if (s.guest_cid != vs->guest_cid)
		return wisp_err_set(err, EINVAL,
				    "vsock (virtio slot %u): the guest has CID %llu, the configuration gives %llu",
				    slot, (unsigned long long)s.guest_cid,
				    (unsigned long long)vs->guest_cid);
	if (s.nr_conns)
		wlog_info("%s: %u connection(s) of the snapshot are reset", d->name, s.nr_conns);
	return 0;
}

static const struct virtio_dev_ops vsock_ops = {
	.name = "vsock",
	.device_id = VIRTIO_ID_VSOCK,
	.nr_queues = 3,
	.queue_max = VSOCK_QUEUE_SIZE,
	.config_size = sizeof(uint64_t),
	.config_read = vsock_config_read,
	.reset = vsock_reset_dev,
	.queue_notify = vsock_notify,
	.destroy = vsock_destroy,
	.snap_save = vsock_snap_save,
	.snap_restore = vsock_snap_restore,
};

int virtio_vsock_create(const struct gmem *mem, struct evloop *loop,
			const struct vmcfg_vsock *cfg, struct virtio_mmio_dev **out,
			struct wisp_err *err)
{
	if (cfg->guest_cid < 3 || cfg->guest_cid > 0xffffffffu)
		return wisp_err_set(err, EINVAL, "vsock: guest_cid %u out of range", cfg->guest_cid);
	if (!cfg->uds_path || !*cfg->uds_path)
		return wisp_err_set(err, EINVAL, "vsock: uds_path missing");
	struct vsock *vs = calloc(1, sizeof(*vs));
	if (!vs)
		return wisp_err_set(err, ENOMEM, "vsock: out of memory");
	vs->listen_fd = vs->timer_fd = -1;
	vs->guest_cid = cfg->guest_cid;
	vs->next_local_port = VSOCK_LOCAL_PORT_BASE;
	/* room for "_<port>" after the path */
	if (strlen(cfg->uds_path) + 12 > sizeof(vs->uds_path)) {
		free(vs);
		return wisp_err_set(err, ENAMETOOLONG, "vsock: uds_path %s too long", cfg->uds_path);
	}
	strcpy(vs->uds_path, cfg->uds_path);
	int r = virtio_mmio_init(&vs->dev, &vsock_ops, vs, mem,
				 VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC),
				 err);
	if (r < 0) {
		free(vs);
		return r;
	}
	vs->dev.metrics = metrics_dev_register_n("vsock", METRICS_DEV_COUNTER_COUNT);
	vs->loop = loop;
	r = vsock_uds_listen(vs, err);
	if (r < 0) {
		virtio_device_free(&vs->dev);
		return r;
	}
	vs->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (vs->timer_fd < 0) {
		int e = errno;
		virtio_device_free(&vs->dev);
		return wisp_err_sys(err, e, "vsock: timerfd");
	}
	struct itimerspec its = {
		.it_interval = { .tv_nsec = (long)VSOCK_TICK_NS },
		.it_value = { .tv_nsec = (long)VSOCK_TICK_NS },
	};
	timerfd_settime(vs->timer_fd, 0, &its, NULL);
	if (loop) {
		r = evloop_add(loop, vs->listen_fd, EPOLLIN, vsock_listen_event, vs);
		if (r >= 0)
			r = evloop_add(loop, vs->timer_fd, EPOLLIN, vsock_timer_event, vs);
		if (r < 0) {
			virtio_device_free(&vs->dev);
			return wisp_err_sys(err, -r, "vsock: event loop");
		}
	}
	*out = &vs->dev;
	return 0;
}
