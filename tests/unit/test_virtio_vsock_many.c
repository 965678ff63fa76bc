/* virtio-vsock with many connections at once, end to end without KVM: the
 * device on a real event loop thread, the test thread playing both a
 * Linux-like guest driver (per-connection credit, RX buffers of a header
 * plus 4 KiB, credit updates when its buffer runs low, SHUT_WR then close)
 * and the host programs on the Unix sockets. 16 host-initiated connections
 * to a guest echo server whose host side reads nothing until the guest has
 * closed (the device holds the tail of each echo), and 16 guest-initiated
 * connections to a host echo server. Every byte must come back in order. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vsock_fixture.h"

#define CID      42
#define QSZ      64
#define NRX      32
#define RXBUF    0x40000ull   /* RX buffer i: header at +0, data at +64 */
#define RXSZ     4096
#define NTX      16
#define TXBUF    0x100000ull  /* TX slot s: header at +0, data at +64 */
#define TXMAX    32768
#define GALLOC   (256u << 10)
#define NC       16
#define BYTES    (256u << 10)
#define ECHO     5000         /* the guest's echo server */
#define HPORT    6000         /* the host's echo server */
#define GBASE    7000         /* guest-initiated connections' guest ports */


static uint16_t rx_seen, tx_slot;

static void rx_post(uint16_t i)
{
	fake_desc(&g, 0, (uint16_t)(2 * i), RXBUF + i * 0x2000ull, 44,
		  VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, (uint16_t)(2 * i + 1));
	fake_desc(&g, 0, (uint16_t)(2 * i + 1), RXBUF + i * 0x2000ull + 64, RXSZ,
		  VIRTQ_DESC_F_WRITE, 0);
	fake_avail(&g, 0, QSZ, (uint16_t)(2 * i));
}

static void setup(void)
{
	vsock_fixture_setup("/tmp/wisp-vmany-XXXXXX", CID);
	rx_seen = tx_slot = 0;
	fake_bringup(dev, VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX), QSZ);
	for (uint16_t i = 0; i < NRX; i++)
		rx_post(i);
	mw32(dev, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
}

static void teardown(void)
{
	vsock_fixture_teardown();
}

TestSuite(vmany, .init = setup, .fini = teardown, .timeout = 120);

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* byte k of stream i */
static uint8_t pat(int i, size_t k)
{
	return (uint8_t)(k * 31u + (unsigned)i * 101u + (k >> 9));
}

/* ---- the guest: per-connection state, as Linux keeps it ---- */

struct gconn {
	bool used, rst, host_shut, shut_sent, close_sent;
	uint32_t gport, hport;
	uint32_t h_buf_alloc, h_fwd_cnt, tx_cnt;  /* credit toward the host */
	uint32_t fwd_cnt, fwd_sent;               /* our receive side */
	uint8_t *rx;                              /* everything received */
	size_t rx_len, done;                      /* done: echoed, or consumed */
	int idx;                                  /* client: which stream */
	size_t out_off;                           /* client: bytes sent */
};

static struct gconn gcs[2 * NC];

static struct gconn *gfind(uint32_t gport, uint32_t hport)
{
	for (int i = 0; i < 2 * NC; i++)
		if (gcs[i].used && gcs[i].gport == gport && gcs[i].hport == hport)
			return &gcs[i];
	return NULL;
}

static struct gconn *gnew(uint32_t gport, uint32_t hport)
{
	for (int i = 0; i < 2 * NC; i++)
		if (!gcs[i].used) {
			memset(&gcs[i], 0, sizeof(gcs[i]));
			gcs[i].used = true;
			gcs[i].gport = gport;
			gcs[i].hport = hport;
			gcs[i].rx = malloc(BYTES);
			cr_assert_not_null(gcs[i].rx);
			return &gcs[i];
		}
	cr_assert_fail("too many guest connections");
	return NULL;
}

static void gtx(struct gconn *c, uint16_t op, const void *data, uint32_t len, uint32_t flags)
{
	while ((uint16_t)(tx_slot - fake_used_idx(&g, 1)) >= NTX)
		usleep(20);
	struct vsock_hdr h = {
		.src_cid = CID, .dst_cid = 2, .src_port = c->gport, .dst_port = c->hport,
		.len = len, .type = 1, .op = op, .flags = flags, .buf_alloc = GALLOC,
		.fwd_cnt = c->fwd_cnt,
	};
	uint16_t s = tx_slot % NTX;
	uint64_t at = TXBUF + s * 0x9000ull;
	memcpy(fake_ptr(&g, at), &h, sizeof(h));
	if (len)
		memcpy(fake_ptr(&g, at + 64), data, len);
	fake_desc(&g, 1, (uint16_t)(2 * s), at, sizeof(h), len ? VIRTQ_DESC_F_NEXT : 0,
		  (uint16_t)(2 * s + 1));
	if (len)
		fake_desc(&g, 1, (uint16_t)(2 * s + 1), at + 64, len, 0, 0);
	fake_avail(&g, 1, QSZ, (uint16_t)(2 * s));
	tx_slot++;
	c->fwd_sent = c->fwd_cnt;
	if (len)
		c->tx_cnt += len;
	mw32(dev, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
}

static uint32_t gcredit(const struct gconn *c)
{
	uint32_t in_flight = c->tx_cnt - c->h_fwd_cnt;
	return in_flight >= c->h_buf_alloc ? 0 : c->h_buf_alloc - in_flight;
}

static void guest_rx(void)
{
	while (fake_used_idx(&g, 0) != rx_seen) {
		struct virtq_used_elem e = fake_used_elem(&g, 0, rx_seen, QSZ);
		rx_seen++;
		uint16_t i = (uint16_t)(e.id / 2);
		struct vsock_hdr h;
		memcpy(&h, fake_ptr(&g, RXBUF + i * 0x2000ull), sizeof(h));
		cr_assert_eq(e.len, sizeof(h) + h.len);
		cr_assert_eq(h.dst_cid, CID);
		struct gconn *c = gfind(h.dst_port, h.src_port);
		if (h.op == VSOCK_OP_REQUEST) {
			cr_assert_null(c, "a second REQUEST for %u<->%u", h.src_port, h.dst_port);
			cr_assert_eq(h.dst_port, ECHO);
			c = gnew(ECHO, h.src_port);
		}
		if (!c) {
			/* a connection the guest closed and forgot: RST only */
			cr_assert_eq(h.op, VSOCK_OP_RST, "op %u for a closed %u<->%u", h.op,
				     h.src_port, h.dst_port);
		} else {
			c->h_buf_alloc = h.buf_alloc;
			c->h_fwd_cnt = h.fwd_cnt;
			switch (h.op) {
			case VSOCK_OP_REQUEST:
				gtx(c, VSOCK_OP_RESPONSE, NULL, 0, 0);
				break;
			case VSOCK_OP_RW:
				cr_assert_leq(c->rx_len - c->done + h.len, GALLOC,
					      "the device overran the guest's credit");
				cr_assert_leq(c->rx_len + h.len, BYTES, "more bytes than were sent");
				memcpy(c->rx + c->rx_len, fake_ptr(&g, RXBUF + i * 0x2000ull + 64),
				       h.len);
				c->rx_len += h.len;
				break;
			case VSOCK_OP_SHUTDOWN:
				if (h.flags & VSOCK_SHUTDOWN_SEND)
					c->host_shut = true;
				break;
			case VSOCK_OP_RST:
				c->rst = true;
				break;
			case VSOCK_OP_CREDIT_REQUEST:
				gtx(c, VSOCK_OP_CREDIT_UPDATE, NULL, 0, 0);
				break;
			default:
				break;
			}
		}
		rx_post(i);
		mw32(dev, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	}
}

/* Send from src[*off, total) within the host's credit. */
static void gsend(struct gconn *c, const uint8_t *src, size_t total, size_t *off)
{
	while (*off < total) {
		uint32_t n = gcredit(c);
		if (n == 0)
			break;
		if (n > total - *off)
			n = (uint32_t)(total - *off);
		if (n > TXMAX)
			n = TXMAX;
		gtx(c, VSOCK_OP_RW, src + *off, n, 0);
		*off += n;
	}
}

/* Linux sends a credit update when its free space runs low. */
static void gcredit_update(struct gconn *c)
{
	if (!c->close_sent && !c->rst && GALLOC - (c->fwd_cnt - c->fwd_sent) < 64 * 1024)
		gtx(c, VSOCK_OP_CREDIT_UPDATE, NULL, 0, 0);
}

/* The echo server's side of c: what came goes back; after the host's EOF
 * and the last byte, SHUT_WR then close (two SHUTDOWNs, like Linux). */
static void gecho(struct gconn *c)
{
	size_t off = c->done;
	gsend(c, c->rx, c->rx_len, &off);
	c->fwd_cnt += (uint32_t)(off - c->done);
	c->done = off;
	gcredit_update(c);
	if (c->host_shut && c->done == c->rx_len && !c->close_sent && !c->rst) {
		gtx(c, VSOCK_OP_SHUTDOWN, NULL, 0, VSOCK_SHUTDOWN_SEND);
		gtx(c, VSOCK_OP_SHUTDOWN, NULL, 0, VSOCK_SHUTDOWN_SEND | VSOCK_SHUTDOWN_RCV);
		c->close_sent = true;
	}
}

/* ---- the host's side ---- */

struct hconn {
	int fd;
	size_t sent, got;
	uint8_t *out, *in;
	bool shut, eof;
};

static void hwrite(struct hconn *h, size_t total)
{
	while (h->sent < total) {
		ssize_t w = write(h->fd, h->out + h->sent, total - h->sent);
		if (w <= 0) {
			cr_assert(w < 0 && errno == EAGAIN, "host write: %s", strerror(errno));
			return;
		}
		h->sent += (size_t)w;
	}
	if (!h->shut) {
		shutdown(h->fd, SHUT_WR);
		h->shut = true;
	}
}

static void hread(struct hconn *h, size_t cap)
{
	while (!h->eof && h->got < cap) {
		ssize_t r = read(h->fd, h->in + h->got, cap - h->got);
		if (r == 0)
			h->eof = true;
		if (r <= 0) {
			cr_assert(r == 0 || errno == EAGAIN, "host read: %s", strerror(errno));
			return;
		}
		h->got += (size_t)r;
	}
}

Test(vmany, sixteen_host_connections_to_a_guest_echo_server_with_slow_host_readers)
{
	struct hconn hc[NC];
	const size_t line_max = 32, total = 13 + BYTES;
	for (int i = 0; i < NC; i++) {
		hc[i] = (struct hconn){ .fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0) };
		struct sockaddr_un a = { .sun_family = AF_UNIX };
		snprintf(a.sun_path, sizeof(a.sun_path), "%s", uds);
		cr_assert_eq(connect(hc[i].fd, (struct sockaddr *)&a, sizeof(a)), 0);
		fcntl(hc[i].fd, F_SETFL, O_NONBLOCK);
		hc[i].out = malloc(total);
		hc[i].in = malloc(line_max + BYTES + 1);
		memcpy(hc[i].out, "CONNECT 5000\n", 13);
		for (size_t k = 0; k < BYTES; k++)
			hc[i].out[13 + k] = pat(i, k);
	}
	/* the host writes everything and reads nothing until the guest has
	 * closed every connection: the device must keep each echo's tail */
	int closed = 0, eofs = 0;
	double t0 = now();
	while (eofs < NC && now() - t0 < 90) {
		for (int i = 0; i < NC; i++) {
			hwrite(&hc[i], total);
			if (closed == NC)
				hread(&hc[i], line_max + BYTES + 1);
		}
		guest_rx();
		closed = eofs = 0;
		for (int i = 0; i < 2 * NC; i++)
			if (gcs[i].used) {
				gecho(&gcs[i]);
				closed += gcs[i].close_sent;
			}
		for (int i = 0; i < NC; i++)
			eofs += hc[i].eof;
		usleep(50);
	}
	cr_assert_eq(closed, NC, "the guest closed %d of %d", closed, NC);
	for (int i = 0; i < NC; i++) {
		struct hconn *h = &hc[i];
		cr_assert(h->eof, "connection %d never ended: %zu bytes back", i, h->got);
		uint8_t *nl = memchr(h->in, '\n', h->got < line_max ? h->got : line_max);
		cr_assert(nl && !memcmp(h->in, "OK ", 3), "connection %d: no OK line", i);
		size_t line = (size_t)(nl - h->in) + 1;
		cr_assert_eq(h->got - line, BYTES, "connection %d: %zu of %u bytes back", i,
			     h->got - line, BYTES);
		for (size_t k = 0; k < BYTES; k++)
			if (h->in[line + k] != pat(i, k))
				cr_assert_fail("connection %d: byte %zu differs", i, k);
		close(h->fd);
		free(h->out);
		free(h->in);
	}
	int rsts = 0;
	for (int i = 0; i < 2 * NC; i++) {
		rsts += gcs[i].used && gcs[i].rst;
		free(gcs[i].rx);
	}
	cr_assert_eq(rsts, NC, "each close answered with RST");
}

Test(vmany, sixteen_guest_connections_to_a_host_echo_server)
{
	char p[160];
	snprintf(p, sizeof(p), "%s_%d", uds, HPORT);
	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", p);
	cr_assert_eq(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(lfd, 64), 0);
	static uint8_t out[NC][BYTES];
	struct gconn *cl[NC];
	for (int i = 0; i < NC; i++) {
		for (size_t k = 0; k < BYTES; k++)
			out[i][k] = pat(i, k);
		cl[i] = gnew(GBASE + (uint32_t)i, HPORT);
		cl[i]->idx = i;
		gtx(cl[i], VSOCK_OP_REQUEST, NULL, 0, 0);
	}
	/* the host echoes whatever comes and closes after the peer's EOF */
	struct hconn hc[NC];
	int nh = 0, done = 0;
	static uint8_t hbuf[NC][BYTES + 1];
	double t0 = now();
	while (done < NC && now() - t0 < 90) {
		int fd;
		while (nh < NC && (fd = accept(lfd, NULL, NULL)) >= 0) {
			fcntl(fd, F_SETFL, O_NONBLOCK);
			hc[nh] = (struct hconn){ .fd = fd, .in = hbuf[nh], .out = hbuf[nh] };
			nh++;
		}
		for (int i = 0; i < nh; i++) {
			struct hconn *h = &hc[i];
			if (h->fd < 0)
				continue;
			hread(h, BYTES + 1);
			while (h->sent < h->got) {
				ssize_t w = write(h->fd, h->out + h->sent, h->got - h->sent);
				if (w <= 0)
					break;
				h->sent += (size_t)w;
			}
			if (h->eof && h->sent == h->got) {
				close(h->fd);
				h->fd = -1;
			}
		}
		guest_rx();
		done = 0;
		for (int i = 0; i < NC; i++) {
			struct gconn *c = cl[i];
			cr_assert_not(c->rst && !c->close_sent, "connection %d reset", i);
			if (c->h_buf_alloc)
				gsend(c, out[i], BYTES, &c->out_off);
			c->fwd_cnt += (uint32_t)(c->rx_len - c->done); /* consumed at once */
			c->done = c->rx_len;
			gcredit_update(c);
			if (c->out_off == BYTES && !c->shut_sent) {
				gtx(c, VSOCK_OP_SHUTDOWN, NULL, 0, VSOCK_SHUTDOWN_SEND);
				c->shut_sent = true;
			}
			if (c->host_shut && !c->close_sent) {
				gtx(c, VSOCK_OP_SHUTDOWN, NULL, 0,
				    VSOCK_SHUTDOWN_SEND | VSOCK_SHUTDOWN_RCV);
				c->close_sent = true;
			}
			done += c->close_sent && c->rst;
		}
		usleep(50);
	}
	cr_assert_eq(nh, NC, "the host accepted %d of %d", nh, NC);
	for (int i = 0; i < NC; i++) {
		struct gconn *c = cl[i];
		cr_assert(c->close_sent && c->rst, "connection %d did not finish: sent %zu, got %zu",
			  i, c->out_off, c->rx_len);
		cr_assert_eq(c->rx_len, BYTES, "connection %d: %zu bytes back", i, c->rx_len);
		cr_assert_eq(memcmp(c->rx, out[i], BYTES), 0, "connection %d: echo differs", i);
		free(c->rx);
	}
	close(lfd);
}
