/* virtio-net (virtio 1.2 section 5.1) over a tap. One RX and one TX queue;
 * the 12-byte virtio-net header passes through the tap unchanged (the tap
 * speaks the same header with IFF_VNET_HDR), and the tap's offloads follow
 * what the guest negotiated. RX is edge-triggered on the tap fd: the device
 * reads until EAGAIN, or until the guest runs out of buffers, in which case
 * the frame in hand waits and the guest's next RX kick resumes the reads. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/log.h"
#include "vmm/evloop.h"
#include "vmm/metrics.h"
#include "vmm/ratelimit.h"
#include "vmm/snapshot.h"
#include "vmm/vm.h"
#include "vmm/virtio/backend.h"
#include "vmm/virtio/virtio.h"

#define VIRTIO_NET_F_CSUM        0
#define VIRTIO_NET_F_GUEST_CSUM  1
#define VIRTIO_NET_F_MAC         5
#define VIRTIO_NET_F_GUEST_TSO4  7
#define VIRTIO_NET_F_GUEST_TSO6  8
#define VIRTIO_NET_F_HOST_TSO4   11
#define VIRTIO_NET_F_HOST_TSO6   12

#define NET_QUEUE_SIZE   256
#define NET_RXQ          0
#define NET_TXQ          1
#define NET_HDR_LEN      12          /* struct virtio_net_hdr with num_buffers */
#define NET_FRAME_MAX    (65535 + 14 + 4)
#define NET_BUF_MAX      (NET_HDR_LEN + NET_FRAME_MAX)

struct virtio_net_config {
	uint8_t mac[6];
	uint16_t status;
	uint16_t max_virtqueue_pairs;
} __attribute__((packed));

struct net {
	struct virtio_mmio_dev dev;
	int tap_fd;
	struct virtio_net_config config;
	char ifname[16];
	struct ratelimit rx_rl, tx_rl;
	struct evloop *loop;
	struct virtq_chain chain;
	struct iovec iov[VIRTQ_CHAIN_MAX];
	uint8_t rxbuf[NET_BUF_MAX];
	size_t rx_len;                    /* a frame read from the tap, not yet delivered */
	bool offload_pending;             /* activated; TUNSETOFFLOAD not yet done */
	char iface_id[VMCFG_ID_MAX + 1];  /* for PATCH /network-interfaces */
	/* counters */
	uint64_t rx_frames, rx_bytes, rx_dropped, tx_frames, tx_bytes, tx_dropped;
};

static void net_config_read(struct virtio_mmio_dev *d, uint32_t off, uint8_t *data, uint32_t len)
{
	struct net *n = d->priv;
	memcpy(data, (const uint8_t *)&n->config + off, len);
}

static bool net_apply_offload(struct net *n);

static void net_tx(struct net *n)
{
	struct virtio_mmio_dev *d = &n->dev;
	struct virtq *q = &d->queues[NET_TXQ];
	bool done = false;
	if (!net_apply_offload(n))
		return;
	for (;;) {
		if (n->tx_rl.blocked)
			break;
		int r = virtio_mmio_pop(d, NET_TXQ, &n->chain);
		if (r < 0)
			return;
		if (r == 0) {
			if (virtq_enable_notify(q))
				continue;
			break;
		}
		struct virtq_chain *c = &n->chain;
		if (c->nr != c->nr_read || c->read_len < NET_HDR_LEN) {
			virtio_mmio_fail(d, "TX chain with writable buffers or without a header");
			return;
		}
		if (!ratelimit_consume(&n->tx_rl, c->read_len - NET_HDR_LEN, 1)) {
			metrics_dev_add(d->metrics, METRICS_DEV_THROTTLED, 1);
			virtq_unpop(q);
			break;
		}
		if (c->read_len > NET_BUF_MAX) {
			n->tx_dropped++;
			wlog_rl(WISP_LOG_DEBUG, "%s: TX frame of %llu bytes dropped", d->name,
				(unsigned long long)c->read_len);
		} else {
			size_t got;
			int k = virtq_chain_iov(c, false, 0, c->read_len, n->iov, VIRTQ_CHAIN_MAX, &got);
			ssize_t w;
			do
				w = writev(n->tap_fd, n->iov, k);
			while (w < 0 && errno == EINTR);
			if (w < 0) {
				/* the tap drops what its queue cannot take; so do we */
				n->tx_dropped++;
				metrics_dev_add(d->metrics, METRICS_DEV_ERRORS, 1);
				wlog_rl(WISP_LOG_DEBUG, "%s: tap write: %s", d->name, strerror(errno));
			} else {
				n->tx_frames++;
				n->tx_bytes += c->read_len - NET_HDR_LEN;
				metrics_dev_add(d->metrics, METRICS_DEV_REQUESTS, 1);
				metrics_dev_add(d->metrics, METRICS_DEV_BYTES_WRITTEN,
						c->read_len - NET_HDR_LEN);
			}
		}
		virtq_push(q, c->head, 0);
		done = true;
	}
	if (done)
		virtio_mmio_notify_queue(d, NET_TXQ);
}

static void net_rx(struct net *n)
{
	struct virtio_mmio_dev *d = &n->dev;
	struct virtq *q = &d->queues[NET_RXQ];
	bool done = false;
	if (!net_apply_offload(n))
		return;
	for (;;) {
		if (n->rx_len == 0) {
			ssize_t r = read(n->tap_fd, n->rxbuf, sizeof(n->rxbuf));
			if (r < 0) {
				if (errno == EINTR)
					continue;
				if (errno != EAGAIN)
					wlog_rl(WISP_LOG_WARN, "%s: tap read: %s", d->name,
						strerror(errno));
				break; /* drained: the next frame brings a new edge */
			}
			if (r <= NET_HDR_LEN) {
				n->rx_dropped++;
				continue;
			}
			n->rx_len = (size_t)r;
		}
		if (n->rx_rl.blocked)
			break;
		int r = virtio_mmio_pop(d, NET_RXQ, &n->chain);
		if (r < 0)
			return;
		if (r == 0) {
			/* no buffer: keep the frame; the guest's kick resumes us */
			if (virtq_enable_notify(q))
				continue;
			break;
		}
		struct virtq_chain *c = &n->chain;
		if (c->nr_read != 0) {
			virtio_mmio_fail(d, "RX chain with device-readable buffers");
			return;
		}
		if (c->write_len < n->rx_len) {
			/* too small for this frame: drop the frame, keep the buffer */
			virtq_unpop(q);
			n->rx_dropped++;
			n->rx_len = 0;
			wlog_rl(WISP_LOG_DEBUG, "%s: RX buffer of %llu bytes too small", d->name,
				(unsigned long long)c->write_len);
			continue;
		}
		if (!ratelimit_consume(&n->rx_rl, n->rx_len - NET_HDR_LEN, 1)) {
			metrics_dev_add(d->metrics, METRICS_DEV_THROTTLED, 1);
			virtq_unpop(q);
			break;
		}
		/* num_buffers: 1 without VIRTIO_NET_F_MRG_RXBUF (the tap leaves it 0) */
		uint16_t one = 1;
		memcpy(n->rxbuf + 10, &one, 2);
		virtq_chain_write(c, 0, n->rxbuf, n->rx_len);
		virtq_push(q, c->head, (uint32_t)n->rx_len);
		n->rx_frames++;
		n->rx_bytes += n->rx_len - NET_HDR_LEN;
		metrics_dev_add(d->metrics, METRICS_DEV_REQUESTS, 1);
		metrics_dev_add(d->metrics, METRICS_DEV_BYTES_READ, n->rx_len - NET_HDR_LEN);
		n->rx_len = 0;
		done = true;
	}
	if (done)
		virtio_mmio_notify_queue(d, NET_RXQ);
}

static void net_notify(struct virtio_mmio_dev *d, int qi)
{
	struct net *n = d->priv;
	if (qi == NET_TXQ)
		net_tx(n);
	else
		net_rx(n);
}

static void net_tap_event(void *opaque, uint32_t events)
{
	(void)events;
	struct net *n = opaque;
	pthread_mutex_lock(&n->dev.lock);
	if (n->dev.active && !n->dev.failed)
		net_rx(n);
	pthread_mutex_unlock(&n->dev.lock);
}

static void net_rx_rl_event(void *opaque, uint32_t events)
{
	(void)events;
	struct net *n = opaque;
	pthread_mutex_lock(&n->dev.lock);
	ratelimit_timer_event(&n->rx_rl);
	if (n->dev.active && !n->dev.failed)
		net_rx(n);
	pthread_mutex_unlock(&n->dev.lock);
}

static void net_tx_rl_event(void *opaque, uint32_t events)
{
	(void)events;
	struct net *n = opaque;
	pthread_mutex_lock(&n->dev.lock);
	ratelimit_timer_event(&n->tx_rl);
	if (n->dev.active && !n->dev.failed)
		net_tx(n);
	pthread_mutex_unlock(&n->dev.lock);
}

/* The tap's offloads follow the negotiated features. Activation runs on a
 * vCPU thread (the guest's DRIVER_OK write), which must not make slow or
 * device ioctls: the VMM thread applies them before it moves a frame. */
static int net_activate(struct virtio_mmio_dev *d)
{
	struct net *n = d->priv;
	n->offload_pending = true;
	return 0;
}

/* TUN_F_* for what the guest accepts. */
static unsigned int net_offload_flags(const struct virtio_mmio_dev *d)
{
	unsigned int off = 0;
	if (virtio_has_feature(d, VIRTIO_NET_F_GUEST_CSUM)) {
		off |= TAP_OFFLOAD_CSUM;
		if (virtio_has_feature(d, VIRTIO_NET_F_GUEST_TSO4))
			off |= TAP_OFFLOAD_TSO4;
		if (virtio_has_feature(d, VIRTIO_NET_F_GUEST_TSO6))
			off |= TAP_OFFLOAD_TSO6;
	}
	return off;
}

static bool net_apply_offload(struct net *n)
{
	struct virtio_mmio_dev *d = &n->dev;
	if (!n->offload_pending)
		return true;
	unsigned int off = net_offload_flags(d);
	struct wisp_err e = { 0 };
	if (tap_set_offload(n->tap_fd, off, &e) < 0) {
		wlog_warn("%s: %s", d->name, e.msg);
		virtio_mmio_fail(d, "tap refused the negotiated offloads");
		return false;
	}
	n->offload_pending = false;
	return true;
}

static void net_reset(struct virtio_mmio_dev *d)
{
	struct net *n = d->priv;
	n->rx_len = 0;
	n->offload_pending = false;
}

static void net_destroy(struct virtio_mmio_dev *d)
{
	struct net *n = d->priv;
	if (n->loop) {
		if (n->tap_fd >= 0)
			evloop_del(n->loop, n->tap_fd);
		if (n->rx_rl.timer_fd >= 0)
			evloop_del(n->loop, n->rx_rl.timer_fd);
		if (n->tx_rl.timer_fd >= 0)
			evloop_del(n->loop, n->tx_rl.timer_fd);
	}
	ratelimit_destroy(&n->rx_rl);
	ratelimit_destroy(&n->tx_rl);
	if (n->tap_fd >= 0)
		close(n->tap_fd);
	n->tap_fd = -1;
}

/* Snapshot state (SNAP_SEC_VIRTIO_NET): the config space the guest read
 * (its MAC) and the offloads it negotiated. The transport saves features
 * and queue positions; a frame read from the tap and not yet delivered is
 * dropped, as a network may. */
#define SNAP_NET_VERSION 1u

struct snap_net_state {
	char iface_id[VMCFG_ID_MAX + 1];
	uint8_t pad[3];
	uint32_t tap_offload;            /* TUN_F_* the negotiated features give the tap */
	struct virtio_net_config config;
	uint8_t pad2[6];
};
_Static_assert(sizeof(struct snap_net_state) == 88, "snap_net_state layout");

static int net_snap_save(struct virtio_mmio_dev *d, uint32_t slot, struct snap_writer *w)
{
	const struct net *n = d->priv;
	struct snap_net_state s;
	memset(&s, 0, sizeof(s));
	snprintf(s.iface_id, sizeof(s.iface_id), "%s", n->iface_id);
	s.tap_offload = (d->status & VIRTIO_STATUS_DRIVER_OK) ? net_offload_flags(d) : 0;
	s.config = n->config;
	return snap_put(w, SNAP_SEC_VIRTIO_NET, SNAP_NET_VERSION, slot, &s, sizeof(s));
}

/* Same interface, the MAC the guest knows; the tap (perhaps another one,
 * network_overrides) gets the saved offloads when the device starts. */
static int net_snap_restore(struct virtio_mmio_dev *d, uint32_t slot, struct snap_image *img,
			    struct wisp_err *err)
{
	struct net *n = d->priv;
	struct snap_net_state s;
	int r = snap_get(img, SNAP_SEC_VIRTIO_NET, SNAP_NET_VERSION, slot, &s, sizeof(s), err);
	if (r < 0)
		return r;
	s.iface_id[sizeof(s.iface_id) - 1] = '\0';
	if (strcmp(s.iface_id, n->iface_id) != 0)
		return wisp_err_set(err, EINVAL,
				    "virtio slot %u: the snapshot has network interface \"%s\" there, the restored VM has \"%s\"",
				    slot, s.iface_id, n->iface_id);
	const uint8_t *m = s.config.mac, *c = n->config.mac;
	if ((d->device_features & VIRTIO_BIT(VIRTIO_NET_F_MAC)) && memcmp(m, c, 6) != 0)
		return wisp_err_set(err, EINVAL,
				    "network interface %s: the guest has MAC %02x:%02x:%02x:%02x:%02x:%02x, the configuration gives %02x:%02x:%02x:%02x:%02x:%02x",
				    n->iface_id, m[0], m[1], m[2], m[3], m[4], m[5], c[0], c[1], c[2],
				    c[3], c[4], c[5]);
	unsigned int off = (d->status & VIRTIO_STATUS_DRIVER_OK) ? net_offload_flags(d) : 0;
	if (s.tap_offload != off)
		return wisp_err_set(err, EINVAL,
				    "network interface %s: saved offloads 0x%x do not match the negotiated features (0x%x)",
				    n->iface_id, s.tap_offload, off);
	n->config = s.config;
	return 0;
}

static const struct virtio_dev_ops net_ops = {
	.name = "net",
	.device_id = VIRTIO_ID_NET,
	.nr_queues = 2,
	.queue_max = NET_QUEUE_SIZE,
	.config_size = sizeof(struct virtio_net_config),
	.config_read = net_config_read,
	.activate = net_activate,
	.reset = net_reset,
	.queue_notify = net_notify,
	.destroy = net_destroy,
	.snap_save = net_snap_save,
	.snap_restore = net_snap_restore,
};

int virtio_net_create(const struct gmem *mem, struct evloop *loop, const struct vmcfg_net *cfg,
		      struct virtio_mmio_dev **out, struct wisp_err *err)
{
	struct net *n = calloc(1, sizeof(*n));
	if (!n)
		return wisp_err_set(err, ENOMEM, "network interface %s: out of memory", cfg->iface_id);
	n->rx_rl.timer_fd = n->tx_rl.timer_fd = -1;
	snprintf(n->iface_id, sizeof(n->iface_id), "%s", cfg->iface_id);
	int r = tap_open(cfg->host_dev_name, NET_HDR_LEN, err);
	if (r < 0) {
		free(n);
		return wisp_err_prefix(err, "network interface %s", cfg->iface_id);
	}
	n->tap_fd = r;
	if ((r = ratelimit_init(&n->rx_rl, &cfg->rx_rate_limiter, err)) < 0 ||
	    (r = ratelimit_init(&n->tx_rl, &cfg->tx_rate_limiter, err)) < 0) {
		net_destroy(&n->dev);
		free(n);
		return wisp_err_prefix(err, "network interface %s", cfg->iface_id);
	}
	uint64_t features = VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC) |
			    VIRTIO_BIT(VIRTIO_NET_F_CSUM) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM) |
			    VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO6) |
			    VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO4) | VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO6);
	if (cfg->has_guest_mac) {
		features |= VIRTIO_BIT(VIRTIO_NET_F_MAC);
		memcpy(n->config.mac, cfg->guest_mac, 6);
	}
	n->config.status = 1; /* VIRTIO_NET_S_LINK_UP (read only with F_STATUS) */
	n->config.max_virtqueue_pairs = 1;
	r = virtio_mmio_init(&n->dev, &net_ops, n, mem, features, err);
	if (r < 0) {
		net_destroy(&n->dev);
		free(n);
		return wisp_err_prefix(err, "network interface %s", cfg->iface_id);
	}
	snprintf(n->dev.name, sizeof(n->dev.name), "virtio-net:%s", cfg->iface_id);
	char mname[VMCFG_ID_MAX + 8];
	snprintf(mname, sizeof(mname), "net_%s", cfg->iface_id);
	n->dev.metrics = metrics_dev_register(mname);
	if (loop) {
		n->loop = loop;
		r = evloop_add(loop, n->tap_fd, EPOLLIN | EPOLLET, net_tap_event, n);
		if (r >= 0 && n->rx_rl.timer_fd >= 0)
			r = evloop_add(loop, n->rx_rl.timer_fd, EPOLLIN, net_rx_rl_event, n);
		if (r >= 0 && n->tx_rl.timer_fd >= 0)
			r = evloop_add(loop, n->tx_rl.timer_fd, EPOLLIN, net_tx_rl_event, n);
		if (r < 0) {
			virtio_device_free(&n->dev);
			return wisp_err_sys(err, -r, "network interface %s: event loop",
					    cfg->iface_id);
		}
	}
	*out = &n->dev;
	return 0;
}

/* One limiter swapped for a new one whose timer is already on the loop. */
static void net_swap_rl(struct net *n, struct ratelimit *cur, struct ratelimit *nrl)
{
	if (n->loop && cur->timer_fd >= 0)
		evloop_del(n->loop, cur->timer_fd);
	ratelimit_destroy(cur);
	*cur = *nrl;
}

/* PATCH /network-interfaces after boot (VMM thread): new rx and/or tx rate
 * limiters (NULL: keep). Nothing changes when any step fails. */
int virtio_net_update(struct vm *vm, const char *iface_id, const struct vmcfg_rate_limiter *rx,
		      const struct vmcfg_rate_limiter *tx, struct wisp_err *err)
{
	struct net *n = NULL;
	for (int i = 0; i < vm->nr_virtio; i++) {
		struct virtio_mmio_dev *d = vm->virtio[i];
		if (d->ops == &net_ops && strcmp(((struct net *)d->priv)->iface_id, iface_id) == 0)
			n = d->priv;
	}
	if (!n)
		return wisp_err_set(err, ENOENT,
				    "network-interfaces: the VM has no interface \"%s\"", iface_id);
	struct ratelimit nrx = { .timer_fd = -1 }, ntx = { .timer_fd = -1 };
	int r = 0;
	if (rx && (r = ratelimit_init(&nrx, rx, err)) == 0 && nrx.timer_fd >= 0)
		r = evloop_add(&vm->loop, nrx.timer_fd, EPOLLIN, net_rx_rl_event, n);
	if (r == 0 && tx && (r = ratelimit_init(&ntx, tx, err)) == 0 && ntx.timer_fd >= 0)
		r = evloop_add(&vm->loop, ntx.timer_fd, EPOLLIN, net_tx_rl_event, n);
	if (r < 0) {
		if (!err->msg[0])
			wisp_err_sys(err, -r, "rate limiter timer");
		if (nrx.timer_fd >= 0)
			evloop_del(&vm->loop, nrx.timer_fd);
		if (ntx.timer_fd >= 0)
			evloop_del(&vm->loop, ntx.timer_fd);
		ratelimit_destroy(&nrx);
		ratelimit_destroy(&ntx);
		return wisp_err_prefix(err, "network interface %s", iface_id);
	}
	pthread_mutex_lock(&n->dev.lock);
	n->loop = &vm->loop;
	if (rx)
		net_swap_rl(n, &n->rx_rl, &nrx);
	if (tx)
		net_swap_rl(n, &n->tx_rl, &ntx);
	/* What waited for the old limiters goes through the new ones. */
	if (n->dev.active && !n->dev.failed) {
		net_rx(n);
		net_tx(n);
	}
	pthread_mutex_unlock(&n->dev.lock);
	wlog_info("network interface %s: rate limiters updated", iface_id);
	return 0;
}
