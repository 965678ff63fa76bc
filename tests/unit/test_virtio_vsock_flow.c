/* virtio-vsock end to end without KVM: the device runs on a real event loop
 * thread (edge-triggered sockets, kick eventfds, the timer), the test
 * thread plays a Linux-like guest driver over the fake guest memory (RX
 * buffers of a header plus 4 KiB, credit accounting, credit updates when
 * its buffer runs low) running an echo server, and a host program pushes
 * megabytes through the hybrid Unix socket. Nothing may stall or corrupt. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vsock_fixture.h"

#define CID      42
#define NRX      16
#define RXBUF    0x40000ull
#define RXSZ     4096
#define TXBUF    0x100000ull
#define TXMAX    32768
#define GALLOC   (256u << 10)
#define GPORT    5000
#define TOTAL    (3u << 20)


static void setup(void)
{
	vsock_fixture_setup("/tmp/wisp-vflow-XXXXXX", CID);
}

static void teardown(void)
{
	vsock_fixture_teardown();
}

TestSuite(vflow, .init = setup, .fini = teardown, .timeout = 60);

/* ---- the guest driver ---- */

struct gconn {
	bool open, host_shut_send;
	uint32_t host_port;
	uint32_t h_buf_alloc, h_fwd_cnt, tx_cnt;  /* credit toward the host */
	uint32_t fwd_cnt, fwd_sent;               /* our receive side */
	uint8_t *pending;                          /* received, not yet echoed */
	size_t pend_len;
	bool closed_sent, rst_seen;
};

static struct gconn gc;
static uint16_t rx_used_seen, tx_slot;

static void rx_post(uint16_t i)
{
	fake_desc(&g, 0, (uint16_t)(2 * i), RXBUF + i * 0x2000ull, 44,
		  VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, (uint16_t)(2 * i + 1));
	fake_desc(&g, 0, (uint16_t)(2 * i + 1), RXBUF + i * 0x2000ull + 64, RXSZ, VIRTQ_DESC_F_WRITE,
		  0);
	fake_avail(&g, 0, 64, (uint16_t)(2 * i));
}

static void guest_tx_from(uint32_t sport, uint32_t dport, uint16_t op, const void *data,
			  uint32_t len, uint32_t flags)
{
	/* wait for a free TX slot (the device completes them asynchronously) */
	while ((uint16_t)(tx_slot - fake_used_idx(&g, 1)) >= 16)
		usleep(20);
	struct vsock_hdr h = {
		.src_cid = CID, .dst_cid = 2, .src_port = sport, .dst_port = dport,
		.len = len, .type = 1, .op = op, .flags = flags, .buf_alloc = GALLOC,
		.fwd_cnt = gc.fwd_cnt,
	};
	uint16_t s = tx_slot % 16;
	uint64_t at = TXBUF + s * 0x9000ull;
	memcpy(fake_ptr(&g, at), &h, sizeof(h));
	if (len)
		memcpy(fake_ptr(&g, at + 64), data, len);
	fake_desc(&g, 1, (uint16_t)(2 * s), at, sizeof(h), len ? VIRTQ_DESC_F_NEXT : 0,
		  (uint16_t)(2 * s + 1));
	if (len)
		fake_desc(&g, 1, (uint16_t)(2 * s + 1), at + 64, len, 0, 0);
	fake_avail(&g, 1, 64, (uint16_t)(2 * s));
	tx_slot++;
	gc.fwd_sent = gc.fwd_cnt;
	mw32(dev, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
}

static void guest_tx(uint16_t op, const void *data, uint32_t len, uint32_t flags)
{
	guest_tx_from(GPORT, gc.host_port, op, data, len, flags);
}

static void guest_rx(void)
{
	while (fake_used_idx(&g, 0) != rx_used_seen) {
		struct virtq_used_elem e = fake_used_elem(&g, 0, rx_used_seen, 64);
		rx_used_seen++;
		uint16_t i = (uint16_t)(e.id / 2);
		struct vsock_hdr h;
		memcpy(&h, fake_ptr(&g, RXBUF + i * 0x2000ull), sizeof(h));
		cr_assert_eq(e.len, sizeof(h) + h.len);
		cr_assert_eq(h.dst_cid, CID);
		cr_assert_eq(h.dst_port, GPORT);
		gc.h_buf_alloc = h.buf_alloc;
		gc.h_fwd_cnt = h.fwd_cnt;
		switch (h.op) {
		case VSOCK_OP_REQUEST:
			gc.open = true;
			gc.host_port = h.src_port;
			guest_tx(VSOCK_OP_RESPONSE, NULL, 0, 0);
			break;
		case VSOCK_OP_RW:
			cr_assert_leq(gc.pend_len + h.len, GALLOC, "host overran the guest's credit");
			memcpy(gc.pending + gc.pend_len, fake_ptr(&g, RXBUF + i * 0x2000ull + 64), h.len);
			gc.pend_len += h.len;
			break;
		case VSOCK_OP_SHUTDOWN:
			if (h.flags & VSOCK_SHUTDOWN_SEND)
				gc.host_shut_send = true;
			break;
		case VSOCK_OP_RST:
			gc.rst_seen = true;
			break;
		case VSOCK_OP_CREDIT_REQUEST:
			guest_tx(VSOCK_OP_CREDIT_UPDATE, NULL, 0, 0);
			break;
		default:
			break;
		}
		rx_post(i);
		mw32(dev, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	}
}

/* The echo server: send back what came, within the host's credit. */
static void guest_echo(void)
{
	while (gc.pend_len) {
		uint32_t credit = gc.h_buf_alloc - (gc.tx_cnt - gc.h_fwd_cnt);
		if (gc.tx_cnt - gc.h_fwd_cnt >= gc.h_buf_alloc || credit == 0)
			break;
		uint32_t n = (uint32_t)gc.pend_len;
		if (n > credit)
			n = credit;
		if (n > TXMAX)
			n = TXMAX;
		gc.fwd_cnt += n; /* consumed by the application... */
		guest_tx(VSOCK_OP_RW, gc.pending, n, 0);
		gc.tx_cnt += n;
		memmove(gc.pending, gc.pending + n, gc.pend_len - n);
		gc.pend_len -= n;
	}
	/* Linux sends a credit update when its free space runs low */
	if (gc.open && GALLOC - (gc.fwd_cnt - gc.fwd_sent) < 64 * 1024)
		guest_tx(VSOCK_OP_CREDIT_UPDATE, NULL, 0, 0);
	if (gc.open && gc.host_shut_send && !gc.pend_len && !gc.closed_sent) {
		guest_tx(VSOCK_OP_SHUTDOWN, NULL, 0, VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND);
		gc.closed_sent = true;
	}
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

Test(vflow, host_initiated_echo_of_megabytes)
{
	memset(&gc, 0, sizeof(gc));
	gc.pending = malloc(GALLOC);
	fake_bringup(dev, VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX), 64);
	for (uint16_t i = 0; i < NRX; i++)
		rx_post(i);
	mw32(dev, VIRTIO_MMIO_QUEUE_NOTIFY, 0);

	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", uds);
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	uint8_t *out = malloc(TOTAL), *back = malloc(TOTAL + 64);
	for (size_t i = 0; i < TOTAL; i++)
		out[i] = (uint8_t)(i * 2654435761u >> 13);
	cr_assert_eq(write(fd, "CONNECT 5000\n", 13), 13);
	fcntl(fd, F_SETFL, O_NONBLOCK);
	size_t sent = 0, got = 0;
	bool shut = false, eof = false;
	double t0 = now();
	while (!eof && now() - t0 < 40) {
		if (sent < TOTAL) {
			ssize_t w = write(fd, out + sent, TOTAL - sent > 65536 ? 65536 : TOTAL - sent);
			if (w > 0)
				sent += (size_t)w;
		} else if (!shut) {
			shutdown(fd, SHUT_WR);
			shut = true;
		}
		ssize_t r = read(fd, back + got, TOTAL + 64 - got);
		if (r > 0)
			got += (size_t)r;
		else if (r == 0)
			eof = true;
		guest_rx();
		guest_echo();
		usleep(50);
	}
	cr_assert(eof, "the connection never closed: sent %zu, got back %zu", sent, got);
	cr_assert_geq(got, 3);
	cr_assert_eq(memcmp(back, "OK ", 3), 0);
	uint8_t *nl = memchr(back, '\n', got);
	cr_assert_not_null(nl);
	size_t line = (size_t)(nl - back) + 1;
	cr_assert_eq(got - line, TOTAL, "echoed %zu of %u bytes", got - line, TOTAL);
	cr_assert_eq(memcmp(back + line, out, TOTAL), 0, "echo corrupted");
	cr_assert(gc.rst_seen, "the device answered the guest's close with RST");
	close(fd);
	free(out);
	free(back);
	free(gc.pending);
}

/* ---- many guest connections at once, to a listener with backlog 1 ---- */

#define NC     16
#define CPORT  7000

struct cstate {
	int resp, rst;
	char data[32];
};

/* Take what the device put on the RX queue for the CPORT.. connections. */
static void guest_rx_many(struct cstate *cs)
{
	while (fake_used_idx(&g, 0) != rx_used_seen) {
		struct virtq_used_elem e = fake_used_elem(&g, 0, rx_used_seen, 64);
		rx_used_seen++;
		uint16_t i = (uint16_t)(e.id / 2);
		struct vsock_hdr h;
		memcpy(&h, fake_ptr(&g, RXBUF + i * 0x2000ull), sizeof(h));
		cr_assert_geq(h.dst_port, CPORT);
		cr_assert_lt(h.dst_port, CPORT + NC);
		struct cstate *c = &cs[h.dst_port - CPORT];
		if (h.op == VSOCK_OP_RESPONSE)
			c->resp++;
		else if (h.op == VSOCK_OP_RST)
			c->rst++;
		else if (h.op == VSOCK_OP_RW && h.len < sizeof(c->data) - strlen(c->data))
			memcpy(c->data + strlen(c->data), fake_ptr(&g, RXBUF + i * 0x2000ull + 64), h.len);
		rx_post(i);
		mw32(dev, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	}
}

Test(vflow, sixteen_guest_connections_to_a_listener_with_backlog_one)
{
	memset(&gc, 0, sizeof(gc));
	fake_bringup(dev, VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX), 64);
	for (uint16_t i = 0; i < NRX; i++)
		rx_post(i);
	mw32(dev, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	char p[160];
	snprintf(p, sizeof(p), "%s_6000", uds);
	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", p);
	cr_assert_eq(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(lfd, 1), 0);

	/* every REQUEST before the host accepts anything: the backlog fills */
	for (uint32_t i = 0; i < NC; i++)
		guest_tx_from(CPORT + i, 6000, VSOCK_OP_REQUEST, NULL, 0, 0);
	struct cstate cs[NC];
	memset(cs, 0, sizeof(cs));
	int fds[NC], nfds = 0, responded = 0;
	double t0 = now();
	while ((nfds < NC || responded < NC) && now() - t0 < 30) {
		int fd;
		while (nfds < NC && (fd = accept(lfd, NULL, NULL)) >= 0)
			fds[nfds++] = fd;
		guest_rx_many(cs);
		responded = 0;
		for (int i = 0; i < NC; i++) {
			cr_assert_eq(cs[i].rst, 0, "port %d refused", CPORT + i);
			responded += cs[i].resp;
		}
		usleep(1000);
	}
	cr_assert_eq(nfds, NC, "accepted %d", nfds);
	cr_assert_eq(responded, NC, "%d RESPONSEs", responded);
	pthread_mutex_lock(&dev->lock);
	uint64_t retries = ((struct vsock *)dev->priv)->connect_retries;
	pthread_mutex_unlock(&dev->lock);
	cr_assert_gt(retries, 0, "no connect was retried: the backlog never filled");

	/* data both ways on each */
	for (uint32_t i = 0; i < NC; i++) {
		char m[16];
		int n = snprintf(m, sizeof(m), "guest %02u", i);
		guest_tx_from(CPORT + i, 6000, VSOCK_OP_RW, m, (uint32_t)n, 0);
	}
	for (int k = 0; k < NC; k++) {
		char b[16] = { 0 };
		unsigned idx = NC;
		cr_assert_eq(read(fds[k], b, 8), 8);
		cr_assert_eq(sscanf(b, "guest %02u", &idx), 1, "'%s'", b);
		char m[16];
		int n = snprintf(m, sizeof(m), "host %02u", idx);
		cr_assert_eq(write(fds[k], m, (size_t)n), n);
	}
	int complete = 0;
	t0 = now();
	while (complete < NC && now() - t0 < 30) {
		guest_rx_many(cs);
		complete = 0;
		for (int i = 0; i < NC; i++)
			complete += strlen(cs[i].data) == 7;
		usleep(1000);
	}
	for (int i = 0; i < NC; i++) {
		char want[16];
		snprintf(want, sizeof(want), "host %02d", i);
		cr_assert_str_eq(cs[i].data, want, "port %d", CPORT + i);
	}
	for (int k = 0; k < NC; k++)
		close(fds[k]);
	close(lfd);
}
