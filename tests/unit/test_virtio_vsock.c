/* virtio-vsock against a fake guest and real Unix sockets: the hybrid
 * backend's handshakes both ways, data and credit, RST for refused or bad
 * packets, the credit limit, and TRANSPORT_RESET. The device runs without
 * an event loop here; the tests call its socket handlers themselves. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include "common/io.h"
#include "virtio_fake.h"
#include "vmm/metrics.h"
#include "vmm/virtio/vsock.h"

#define CID     42
#define RXBUF   0x20000ull   /* RX buffer i at RXBUF + i * 0x2000 */
#define RXLEN   (4096 + 44)
#define TXPKT   0x40000ull   /* TX packet i at TXPKT + i * 0x1000 */
#define EVBUF   0x1f0000ull

static struct fake_guest g;
static struct virtio_mmio_dev *dev;
static struct vsock *vs;
static char dir[64], uds[128];
static uint16_t rx_seen, tx_next;

static void setup(void)
{
	fake_init(&g);
	snprintf(dir, sizeof(dir), "/tmp/wisp-vsock-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(uds, sizeof(uds), "%s/v.sock", dir);
	struct vmcfg_vsock cfg = { .present = true, .guest_cid = CID, .uds_path = uds };
	struct wisp_err e = { 0 };
	cr_assert_eq(virtio_vsock_create(&g.mem, NULL, &cfg, &dev, &e), 0, "%s", e.msg);
	vs = dev->priv;
	fake_bringup(dev, VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX), 16);
	/* 8 RX buffers of header + 4 KiB, like Linux */
	for (uint16_t i = 0; i < 8; i++) {
		fake_desc(&g, 0, i, RXBUF + i * 0x2000ull, RXLEN, VIRTQ_DESC_F_WRITE, 0);
		fake_avail(&g, 0, 16, i);
	}
	rx_seen = 0;
	tx_next = 0;
}

static void teardown(void)
{
	virtio_device_free(dev);
	char p[160];
	snprintf(p, sizeof(p), "rm -rf %s", dir);
	cr_assert_eq(system(p), 0);
	fake_fini(&g);
}

TestSuite(vsock, .init = setup, .fini = teardown);

/* The guest sends one packet on the TX queue. */
static void guest_send(uint16_t op, uint32_t src_port, uint32_t dst_port, const void *data,
		       uint32_t len, uint32_t flags, uint32_t buf_alloc, uint32_t fwd_cnt)
{
	struct vsock_hdr h = {
		.src_cid = CID, .dst_cid = 2, .src_port = src_port, .dst_port = dst_port,
		.len = len, .type = 1, .op = op, .flags = flags, .buf_alloc = buf_alloc,
		.fwd_cnt = fwd_cnt,
	};
	uint16_t slot = tx_next % 16;
	uint64_t at = TXPKT + slot * 0x10000ull;
	memcpy(fake_ptr(&g, at), &h, sizeof(h));
	if (len)
		memcpy(fake_ptr(&g, at + 0x100), data, len);
	fake_desc(&g, 1, slot, at, sizeof(h), len ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)((slot + 1) % 16));
	if (len) {
		fake_desc(&g, 1, (uint16_t)((slot + 1) % 16), at + 0x100, len, 0, 0);
		tx_next++;
	}
	tx_next++;
	fake_avail(&g, 1, 16, slot);
	virtio_mmio_kick(dev, 1);
}

static void guest_send_raw(const struct vsock_hdr *h, uint32_t payload_len)
{
	uint16_t slot = tx_next % 16;
	uint64_t at = TXPKT + slot * 0x10000ull;
	memcpy(fake_ptr(&g, at), h, sizeof(*h));
	fake_desc(&g, 1, slot, at, (uint32_t)sizeof(*h) + payload_len, 0, 0);
	tx_next++;
	fake_avail(&g, 1, 16, slot);
	virtio_mmio_kick(dev, 1);
}

/* Next packet the device put on the RX queue; false when none. The buffer
 * goes back to the guest right away. */
static bool guest_recv(struct vsock_hdr *h, uint8_t *data, size_t max)
{
	if (fake_used_idx(&g, 0) == rx_seen)
		return false;
	struct virtq_used_elem e = fake_used_elem(&g, 0, rx_seen, 16);
	rx_seen++;
	uint64_t at = RXBUF + e.id * 0x2000ull;
	memcpy(h, fake_ptr(&g, at), sizeof(*h));
	cr_assert_eq(e.len, sizeof(*h) + h->len);
	if (data && h->len)
		memcpy(data, fake_ptr(&g, at + sizeof(*h)), h->len < max ? h->len : max);
	fake_avail(&g, 0, 16, (uint16_t)e.id);
	return true;
}

static int listen_backlog(const char *path, int backlog)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(fd, backlog), 0);
	return fd;
}

static int listen_at(const char *path)
{
	return listen_backlog(path, 8);
}

static int connect_to(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

static struct vconn *only_conn(void)
{
	for (int i = 0; i < VSOCK_MAX_CONNS; i++)
		if (vs->conns[i])
			return vs->conns[i];
	return NULL;
}

/* Guest connects to host port 5000 where a listener waits. */
static int guest_connect(uint32_t gport, int *lfd)
{
	char p[160];
	snprintf(p, sizeof(p), "%s_5000", uds);
	*lfd = listen_at(p);
	guest_send(VSOCK_OP_REQUEST, gport, 5000, NULL, 0, 0, 65536, 0);
	struct vsock_hdr h;
	cr_assert(guest_recv(&h, NULL, 0));
	cr_assert_eq(h.op, VSOCK_OP_RESPONSE);
	cr_assert_eq(h.src_cid, 2);
	cr_assert_eq(h.dst_cid, CID);
	cr_assert_eq(h.src_port, 5000);
	cr_assert_eq(h.dst_port, gport);
	cr_assert_eq(h.buf_alloc, VSOCK_BUF_ALLOC);
	int fd = accept(*lfd, NULL, NULL);
	cr_assert_geq(fd, 0);
	return fd;
}

Test(vsock, config_space_holds_the_guest_cid)
{
	uint64_t cid = 0;
	virtio_mmio_read(dev, VIRTIO_MMIO_CONFIG, (uint8_t *)&cid, 8);
	cr_assert_eq(cid, CID);
	cr_assert_eq(mr32(dev, VIRTIO_MMIO_DEVICE_ID), 19);
}

Test(vsock, guest_connect_without_listener_gets_rst)
{
	guest_send(VSOCK_OP_REQUEST, 1234, 7777, NULL, 0, 0, 65536, 0);
	struct vsock_hdr h;
	cr_assert(guest_recv(&h, NULL, 0));
	cr_assert_eq(h.op, VSOCK_OP_RST);
	cr_assert_eq(h.src_port, 7777);
	cr_assert_eq(h.dst_port, 1234);
	cr_assert_eq(vs->nr_conns, 0);
}

Test(vsock, guest_connection_moves_data_both_ways_and_closes)
{
	int lfd, fd = guest_connect(1234, &lfd);
	guest_send(VSOCK_OP_RW, 1234, 5000, "hello", 5, 0, 65536, 0);
	char buf[16] = { 0 };
	cr_assert_eq(read(fd, buf, sizeof(buf)), 5);
	cr_assert_str_eq(buf, "hello");
	cr_assert_eq(write(fd, "world!", 6), 6);
	struct vconn *c = only_conn();
	cr_assert_not_null(c);
	vsock_uds_event(c, EPOLLIN);
	struct vsock_hdr h;
	uint8_t data[64];
	cr_assert(guest_recv(&h, data, sizeof(data)));
	cr_assert_eq(h.op, VSOCK_OP_RW);
	cr_assert_eq(h.len, 6);
	cr_assert_eq(memcmp(data, "world!", 6), 0);
	cr_assert_eq(h.fwd_cnt, 5, "the device forwarded the guest's 5 bytes");
	/* the guest closes: SHUTDOWN both ways is answered with RST */
	guest_send(VSOCK_OP_SHUTDOWN, 1234, 5000, NULL, 0, 3, 65536, 6);
	cr_assert(guest_recv(&h, NULL, 0));
	cr_assert_eq(h.op, VSOCK_OP_RST);
	cr_assert_eq(vs->nr_conns, 0);
	cr_assert_eq(read(fd, buf, sizeof(buf)), 0, "host side sees EOF");
	close(fd);
	close(lfd);
}

Test(vsock, host_eof_becomes_shutdown_send)
{
	int lfd, fd = guest_connect(1234, &lfd);
	shutdown(fd, SHUT_WR);
	vsock_uds_event(only_conn(), EPOLLIN | EPOLLRDHUP);
	struct vsock_hdr h;
	cr_assert(guest_recv(&h, NULL, 0));
	cr_assert_eq(h.op, VSOCK_OP_SHUTDOWN);
	cr_assert_eq(h.flags, VSOCK_SHUTDOWN_SEND);
	/* the other direction still works */
	guest_send(VSOCK_OP_RW, 1234, 5000, "late", 4, 0, 65536, 0);
	char buf[8] = { 0 };
	cr_assert_eq(read(fd, buf, sizeof(buf)), 4);
	close(fd);
	close(lfd);
}

Test(vsock, guest_without_credit_gets_no_data)
{
	char p[160];
	snprintf(p, sizeof(p), "%s_5000", uds);
	int lfd = listen_at(p);
	guest_send(VSOCK_OP_REQUEST, 99, 5000, NULL, 0, 0, 8, 0); /* 8 bytes of buffer */
	struct vsock_hdr h;
	cr_assert(guest_recv(&h, NULL, 0));
	int fd = accept(lfd, NULL, NULL);
	cr_assert_eq(write(fd, "0123456789abcdef", 16), 16);
	vsock_uds_event(only_conn(), EPOLLIN);
	uint8_t data[32];
	cr_assert(guest_recv(&h, data, sizeof(data)));
	cr_assert_eq(h.op, VSOCK_OP_RW);
	cr_assert_eq(h.len, 8, "only the guest's credit is sent");
	cr_assert_not(guest_recv(&h, data, sizeof(data)), "nothing more without credit");
	/* the guest consumed 8 bytes: the rest follows */
	guest_send(VSOCK_OP_CREDIT_UPDATE, 99, 5000, NULL, 0, 0, 8, 8);
	cr_assert(guest_recv(&h, data, sizeof(data)));
	cr_assert_eq(h.len, 8);
	cr_assert_eq(memcmp(data, "89abcdef", 8), 0);
	close(fd);
	close(lfd);
}

Test(vsock, host_connect_handshake)
{
	int fd = connect_to(uds);
	const char req[] = "CONNECT 52\nearly";
	cr_assert_eq(write(fd, req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
	vsock_listen_event(vs, EPOLLIN);
	struct vsock_hdr h;
	cr_assert(guest_recv(&h, NULL, 0));
	cr_assert_eq(h.op, VSOCK_OP_REQUEST);
	cr_assert_eq(h.dst_port, 52);
	cr_assert_geq(h.src_port, VSOCK_LOCAL_PORT_BASE);
	uint32_t hp = h.src_port;
	guest_send(VSOCK_OP_RESPONSE, 52, hp, NULL, 0, 0, 65536, 0);
	char line[32] = { 0 };
	cr_assert_gt(read(fd, line, sizeof(line) - 1), 0);
	char want[32];
	snprintf(want, sizeof(want), "OK %u\n", hp);
	cr_assert_str_eq(line, want);
	/* bytes written right after the CONNECT line reach the guest */
	uint8_t data[16];
	cr_assert(guest_recv(&h, data, sizeof(data)));
	cr_assert_eq(h.op, VSOCK_OP_RW);
	cr_assert_eq(h.len, 5);
	cr_assert_eq(memcmp(data, "early", 5), 0);
	close(fd);
}

Test(vsock, host_connect_refused_by_guest)
{
	int fd = connect_to(uds);
	cr_assert_eq(write(fd, "CONNECT 53\n", 11), 11);
	vsock_listen_event(vs, EPOLLIN);
	struct vsock_hdr h;
	cr_assert(guest_recv(&h, NULL, 0));
	guest_send(VSOCK_OP_RST, 53, h.src_port, NULL, 0, 0, 0, 0);
	char c;
	cr_assert_eq(read(fd, &c, 1), 0, "closed without OK");
	cr_assert_eq(vs->nr_conns, 0);
	close(fd);
}

Test(vsock, bad_host_handshakes_are_closed)
{
	const char *bad[] = { "HELLO 5\n", "CONNECT\n", "CONNECT x\n", "CONNECT 99999999999\n",
			      "CONNECT 5 6\n" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int fd = connect_to(uds);
		cr_assert_eq(write(fd, bad[i], strlen(bad[i])), (ssize_t)strlen(bad[i]));
		vsock_listen_event(vs, EPOLLIN);
		char c;
		/* EOF, or ECONNRESET when the device closed with bytes unread */
		cr_assert_leq(read(fd, &c, 1), 0, "%s", bad[i]);
		close(fd);
	}
	/* a line that never ends is cut at the handshake limit */
	int fd = connect_to(uds);
	char junk[100];
	memset(junk, 'A', sizeof(junk));
	cr_assert_eq(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	vsock_listen_event(vs, EPOLLIN);
	char c;
	cr_assert_leq(read(fd, &c, 1), 0);
	close(fd);
	cr_assert_eq(vs->nr_conns, 0);
	struct vsock_hdr h;
	cr_assert_not(guest_recv(&h, NULL, 0), "the guest never heard of them");
}

Test(vsock, handshake_times_out)
{
	int fd = connect_to(uds);
	cr_assert_eq(write(fd, "CONN", 4), 4);
	vsock_listen_event(vs, EPOLLIN);
	cr_assert_eq(vs->nr_conns, 1);
	only_conn()->deadline_ns = 1; /* long past */
	vsock_timer_event(vs, EPOLLIN);
	cr_assert_eq(vs->nr_conns, 0);
	char c;
	cr_assert_leq(read(fd, &c, 1), 0);
	close(fd);
}

Test(vsock, bad_packets_get_rst_not_a_crash)
{
	struct vsock_hdr h = { .src_cid = 7, .dst_cid = 2, .src_port = 1, .dst_port = 2,
			       .type = 1, .op = VSOCK_OP_REQUEST };
	guest_send_raw(&h, 0); /* spoofed source CID */
	h.src_cid = CID;
	h.dst_cid = 3;
	guest_send_raw(&h, 0); /* not for the host */
	h.dst_cid = 2;
	h.type = 2;
	guest_send_raw(&h, 0); /* seqpacket */
	h.type = 1;
	h.op = VSOCK_OP_RW;
	h.len = 1000;
	guest_send_raw(&h, 10); /* len beyond the payload */
	h.len = 0;
	h.op = 99;
	guest_send_raw(&h, 0); /* unknown op, no connection */
	h.op = VSOCK_OP_RST;
	guest_send_raw(&h, 0); /* RST for nothing: no answer */
	struct vsock_hdr r;
	int rsts = 0;
	while (guest_recv(&r, NULL, 0)) {
		cr_assert_eq(r.op, VSOCK_OP_RST);
		rsts++;
	}
	cr_assert_eq(rsts, 5);
	cr_assert_eq(vs->bad_packets, 4);
	cr_assert_not(dev->failed);
}

Test(vsock, short_tx_packet_fails_the_device)
{
	fake_desc(&g, 1, 0, TXPKT, 20, 0, 0);
	fake_avail(&g, 1, 16, 0);
	virtio_mmio_kick(dev, 1);
	cr_assert(dev->failed);
}

Test(vsock, credit_overrun_resets_the_connection)
{
	int lfd, fd = guest_connect(1234, &lfd);
	/* the host never reads: fill its socket buffer, then the device's */
	static uint8_t big[60000];
	int rst = 0;
	for (int i = 0; i < 100 && !rst; i++) {
		guest_send(VSOCK_OP_RW, 1234, 5000, big, sizeof(big), 0, 65536, 0);
		struct vsock_hdr h;
		while (guest_recv(&h, NULL, 0))
			rst |= h.op == VSOCK_OP_RST;
	}
	cr_assert(rst, "a guest past its credit is reset");
	cr_assert_eq(vs->nr_conns, 0);
	close(fd);
	close(lfd);
}

Test(vsock, transport_reset_event)
{
	int lfd, fd = guest_connect(1234, &lfd);
	fake_desc(&g, 2, 0, EVBUF, 4, VIRTQ_DESC_F_WRITE, 0);
	fake_avail(&g, 2, 16, 0);
	virtio_vsock_reset(dev);
	cr_assert_eq(vs->nr_conns, 0);
	cr_assert_eq(fake_used_idx(&g, 2), 1);
	uint32_t id = 0xffffffff;
	memcpy(&id, fake_ptr(&g, EVBUF), 4);
	cr_assert_eq(id, VSOCK_EVENT_TRANSPORT_RESET);
	char c;
	cr_assert_eq(read(fd, &c, 1), 0, "host sockets are closed");
	close(fd);
	close(lfd);
}

Test(vsock, device_reset_closes_everything)
{
	int lfd, fd = guest_connect(1234, &lfd);
	mw32(dev, VIRTIO_MMIO_STATUS, 0);
	cr_assert_eq(vs->nr_conns, 0);
	char c;
	cr_assert_eq(read(fd, &c, 1), 0);
	close(fd);
	close(lfd);
}

/* ---- many connections, full listeners, metrics ---- */

static int count_state(enum vconn_state st)
{
	int n = 0;
	for (int i = 0; i < VSOCK_MAX_CONNS; i++)
		n += vs->conns[i] && vs->conns[i]->state == st;
	return n;
}

/* Make every pending connect retry due and run the timer. */
static void retry_now(void)
{
	for (int i = 0; i < VSOCK_MAX_CONNS; i++)
		if (vs->conns[i] && vs->conns[i]->state == VC_LISTEN_WAIT)
			vs->conns[i]->retry_ns = 1;
	vsock_timer_event(vs, EPOLLIN);
}

/* Packets for the guest: RESPONSEs and RSTs counted per guest port
 * (base..base+n), buffers given back and the RX queue kicked for more. */
static void drain_control(uint32_t base, int n, int *resp, int *rst)
{
	struct vsock_hdr h;
	for (;;) {
		bool any = false;
		while (guest_recv(&h, NULL, 0)) {
			any = true;
			cr_assert_geq(h.dst_port, base);
			cr_assert_lt(h.dst_port, base + (uint32_t)n);
			if (h.op == VSOCK_OP_RESPONSE)
				resp[h.dst_port - base]++;
			else if (h.op == VSOCK_OP_RST)
				rst[h.dst_port - base]++;
			else
				cr_assert_fail("unexpected op %u", h.op);
		}
		if (!any)
			break;
		virtio_mmio_kick(dev, 0);
	}
}

#define NCONN 16

Test(vsock, a_full_listener_backlog_delays_connects_instead_of_refusing)
{
	char p[160];
	snprintf(p, sizeof(p), "%s_5000", uds);
	/* backlog 1: Linux queues two, a third connect() gets EAGAIN */
	int lfd = listen_backlog(p, 1);
	for (uint32_t i = 0; i < NCONN; i++)
		guest_send(VSOCK_OP_REQUEST, 2000 + i, 5000, NULL, 0, 0, 65536, 0);
	int resp[NCONN] = { 0 }, rst[NCONN] = { 0 };
	drain_control(2000, NCONN, resp, rst);
	int first = 0;
	for (int i = 0; i < NCONN; i++) {
		cr_assert_eq(rst[i], 0, "port %d refused while the listener only was busy", 2000 + i);
		first += resp[i];
	}
	cr_assert_lt(first, NCONN, "the backlog never filled: the test proves nothing");
	cr_assert_eq(vs->nr_conns, NCONN, "every REQUEST holds a connection");
	cr_assert_eq(count_state(VC_LISTEN_WAIT), NCONN - first);

	/* the host accepts what is queued, the device connects the rest */
	int fds[NCONN], nfds = 0;
	for (int round = 0; round < 4 * NCONN && nfds < NCONN; round++) {
		int fd;
		while (nfds < NCONN && (fd = accept(lfd, NULL, NULL)) >= 0)
			fds[nfds++] = fd;
		retry_now();
		drain_control(2000, NCONN, resp, rst);
	}
	cr_assert_eq(nfds, NCONN, "the host accepted %d of %d", nfds, NCONN);
	for (int i = 0; i < NCONN; i++) {
		cr_assert_eq(resp[i], 1, "port %d: %d RESPONSEs", 2000 + i, resp[i]);
		cr_assert_eq(rst[i], 0);
	}
	cr_assert_eq(count_state(VC_ESTABLISHED), NCONN);
	cr_assert_gt(vs->connect_retries, 0);

	/* every connection carries its own data both ways */
	for (uint32_t i = 0; i < NCONN; i++) {
		char msg[16];
		int n = snprintf(msg, sizeof(msg), "to host %02u", i);
		guest_send(VSOCK_OP_RW, 2000 + i, 5000, msg, (uint32_t)n, 0, 65536, 0);
	}
	bool seen[NCONN] = { false };
	for (int k = 0; k < NCONN; k++) {
		char buf[32] = { 0 };
		unsigned idx = NCONN;
		cr_assert_eq(read(fds[k], buf, sizeof(buf) - 1), 10);
		cr_assert_eq(sscanf(buf, "to host %02u", &idx), 1, "got '%s'", buf);
		cr_assert_lt(idx, NCONN);
		cr_assert_not(seen[idx], "two sockets got '%s'", buf);
		seen[idx] = true;
		char re[16];
		int n = snprintf(re, sizeof(re), "to guest %02u", idx);
		cr_assert_eq(write(fds[k], re, (size_t)n), n);
	}
	for (int i = 0; i < VSOCK_MAX_CONNS; i++)
		if (vs->conns[i])
			vsock_uds_event(vs->conns[i], EPOLLIN);
	int got = 0;
	for (;;) {
		struct vsock_hdr h;
		uint8_t data[32] = { 0 };
		bool any = false;
		while (guest_recv(&h, data, sizeof(data) - 1)) {
			any = true;
			cr_assert_eq(h.op, VSOCK_OP_RW);
			char want[16];
			snprintf(want, sizeof(want), "to guest %02u", h.dst_port - 2000);
			cr_assert_str_eq((char *)data, want, "port %u", h.dst_port);
			got++;
		}
		if (!any)
			break;
		virtio_mmio_kick(dev, 0);
	}
	cr_assert_eq(got, NCONN);
	for (int k = 0; k < NCONN; k++)
		close(fds[k]);
	close(lfd);
}

/* Fill a backlog-0 listener at port 5000 with connections the host never
 * accepts; the next REQUEST (guest port 999) waits. */
static int fill_listener(char *path, size_t len)
{
	snprintf(path, len, "%s_5000", uds);
	int lfd = listen_backlog(path, 0);
	for (uint32_t i = 0; count_state(VC_LISTEN_WAIT) == 0; i++) {
		cr_assert_lt(i, 8, "the backlog never filled");
		guest_send(VSOCK_OP_REQUEST, 3000 + i, 5000, NULL, 0, 0, 65536, 0);
	}
	struct vsock_hdr h;
	while (guest_recv(&h, NULL, 0))
		cr_assert_eq(h.op, VSOCK_OP_RESPONSE);
	guest_send(VSOCK_OP_REQUEST, 999, 5000, NULL, 0, 0, 65536, 0);
	cr_assert_eq(count_state(VC_LISTEN_WAIT), 2);
	cr_assert_not(guest_recv(&h, NULL, 0), "no answer while waiting");
	return lfd;
}

Test(vsock, a_listener_that_never_accepts_ends_in_rst_at_the_deadline)
{
	char p[160];
	int lfd = fill_listener(p, sizeof(p));
	uint64_t refused = vs->conns_refused;
	/* the device timer is armed for the earliest retry (not the tick) */
	uint64_t now = wisp_now_ns();
	for (int i = 0; i < VSOCK_MAX_CONNS; i++)
		if (vs->conns[i] && vs->conns[i]->state == VC_LISTEN_WAIT)
			vs->conns[i]->retry_ns = now + (10ull + (uint64_t)i) * 1000000000ull;
	vsock_timer_arm(vs);
	struct itimerspec its;
	cr_assert_eq(timerfd_gettime(vs->timer_fd, &its), 0);
	cr_assert(its.it_value.tv_sec >= 9 && its.it_value.tv_sec < 11, "armed for %lld s",
		  (long long)its.it_value.tv_sec);
	retry_now();
	struct vsock_hdr h;
	cr_assert_not(guest_recv(&h, NULL, 0), "still waiting after a retry");
	for (int i = 0; i < VSOCK_MAX_CONNS; i++)
		if (vs->conns[i] && vs->conns[i]->state == VC_LISTEN_WAIT)
			vs->conns[i]->deadline_ns = 1;
	vsock_timer_event(vs, EPOLLIN);
	int rsts = 0;
	while (guest_recv(&h, NULL, 0)) {
		cr_assert_eq(h.op, VSOCK_OP_RST);
		cr_assert_eq(h.src_port, 5000);
		rsts++;
	}
	cr_assert_eq(rsts, 2, "each waiting REQUEST gets its RST");
	cr_assert_eq(count_state(VC_LISTEN_WAIT), 0);
	cr_assert_eq(vs->conns_refused, refused + 2);
	close(lfd);
}

Test(vsock, a_listener_gone_while_waiting_is_a_refusal)
{
	char p[160];
	int lfd = fill_listener(p, sizeof(p));
	close(lfd);
	unlink(p);
	retry_now();
	struct vsock_hdr h;
	int rsts = 0;
	bool r999 = false;
	while (guest_recv(&h, NULL, 0)) {
		cr_assert_eq(h.op, VSOCK_OP_RST);
		r999 |= h.dst_port == 999;
		rsts++;
	}
	cr_assert_eq(rsts, 2, "both waiting REQUESTs refused");
	cr_assert(r999);
	cr_assert_eq(count_state(VC_LISTEN_WAIT), 0);
}

Test(vsock, the_guest_may_give_up_while_a_connect_waits)
{
	char p[160];
	int lfd = fill_listener(p, sizeof(p));
	int before = vs->nr_conns;
	guest_send(VSOCK_OP_RST, 999, 5000, NULL, 0, 0, 0, 0);
	cr_assert_eq(vs->nr_conns, before - 1);
	/* data before the RESPONSE is a protocol error: RST */
	guest_send(VSOCK_OP_REQUEST, 998, 5000, NULL, 0, 0, 65536, 0);
	cr_assert_eq(count_state(VC_LISTEN_WAIT), 2);
	guest_send(VSOCK_OP_RW, 998, 5000, "x", 1, 0, 65536, 0);
	struct vsock_hdr h;
	cr_assert(guest_recv(&h, NULL, 0));
	cr_assert_eq(h.op, VSOCK_OP_RST);
	cr_assert_eq(h.dst_port, 998);
	close(lfd);
}

Test(vsock, metrics_count_packets_bytes_and_connections)
{
	free(metrics_flush_to_string()); /* counters from setup's bring-up gone */
	int lfd, fd = guest_connect(1234, &lfd);
	guest_send(VSOCK_OP_RW, 1234, 5000, "hello", 5, 0, 65536, 0);
	char buf[8];
	cr_assert_eq(read(fd, buf, sizeof(buf)), 5);
	cr_assert_eq(write(fd, "abc", 3), 3);
	vsock_uds_event(only_conn(), EPOLLIN);
	struct vsock_hdr h;
	cr_assert(guest_recv(&h, NULL, 0));
	guest_send(VSOCK_OP_REQUEST, 77, 7777, NULL, 0, 0, 65536, 0); /* nobody listens */
	cr_assert(guest_recv(&h, NULL, 0));
	cr_assert_eq(h.op, VSOCK_OP_RST);
	guest_send(VSOCK_OP_SHUTDOWN, 1234, 5000, NULL, 0, 3, 65536, 3);
	cr_assert(guest_recv(&h, NULL, 0));
	cr_assert_eq(h.op, VSOCK_OP_RST);

	char *line = metrics_flush_to_string(), *line2;
	json_error_t je;
	json_t *m = json_loads(line, 0, &je);
	cr_assert_not_null(m, "%s", line);
	json_t *d = json_object_get(json_object_get(m, "devices"), "vsock");
	cr_assert_not_null(d, "no vsock block in %s", line);
#define C(name) json_integer_value(json_object_get(d, name))
	/* guest: REQUEST, RW, REQUEST, SHUTDOWN; device: RESPONSE, RW, RST, RST */
	cr_assert_eq(C("tx_packets"), 4, "%s", line);
	cr_assert_eq(C("rx_packets"), 4, "%s", line);
	cr_assert_eq(C("requests"), 8, "%s", line);
	cr_assert_eq(C("bytes_written"), 5, "%s", line);
	cr_assert_eq(C("bytes_read"), 3, "%s", line);
	cr_assert_eq(C("conns_added"), 1, "%s", line);
	cr_assert_eq(C("conns_closed"), 1, "%s", line);
	cr_assert_eq(C("conns_refused"), 1, "%s", line);
	cr_assert_eq(C("connect_retries"), 0, "%s", line);
	cr_assert_eq(C("errors"), 0, "%s", line);
#undef C
	cr_assert_eq(json_object_size(d), METRICS_DEV_COUNTER_COUNT);
	json_decref(m);
	/* block and net devices keep the common counters only */
	metrics_dev_register("block_unit");
	line2 = metrics_flush_to_string();
	m = json_loads(line2, 0, &je);
	cr_assert_not_null(m);
	d = json_object_get(json_object_get(m, "devices"), "block_unit");
	cr_assert_eq(json_object_size(d), METRICS_DEV_COMMON_COUNT, "%s", line2);
	cr_assert_null(json_object_get(d, "conns_added"));
	json_decref(m);
	free(line2);
	free(line);
	close(fd);
	close(lfd);
}

Test(vsock, a_closed_guests_data_drains_to_a_slow_host)
{
	int lfd, fd = guest_connect(1234, &lfd);
	/* the host reads nothing until the socket and part of the device's
	 * buffer are full, then the guest closes */
	static uint8_t big[32768];
	uint32_t sent = 0;
	for (int i = 0; i < 400 && only_conn()->buf_len < (128u << 10); i++) {
		for (size_t k = 0; k < sizeof(big); k++)
			big[k] = (uint8_t)(sent + k);
		guest_send(VSOCK_OP_RW, 1234, 5000, big, sizeof(big), 0, 65536, 0);
		sent += sizeof(big);
	}
	struct vconn *c = only_conn();
	cr_assert_geq(c->buf_len, 128u << 10, "the host socket never filled");
	struct vsock_hdr h;
	while (guest_recv(&h, NULL, 0))
		cr_assert_eq(h.op, VSOCK_OP_CREDIT_UPDATE);
	guest_send(VSOCK_OP_SHUTDOWN, 1234, 5000, NULL, 0, 3, 65536, 0);
	cr_assert_eq(c->state, VC_DRAINING);
	/* the guest is done: its RST comes now, not after the host read */
	cr_assert(guest_recv(&h, NULL, 0));
	cr_assert_eq(h.op, VSOCK_OP_RST);
	cr_assert_not(guest_recv(&h, NULL, 0));
	cr_assert_null(vsock_conn_find(vs, 5000, 1234), "the guest may reuse the ports");
	c->deadline_ns = 1; /* as if the host had read nothing for long */
	uint8_t *got = malloc(sent);
	size_t n = 0;
	ssize_t r;
	while (n < 65536 && (r = read(fd, got + n, 65536 - n)) > 0) /* the host takes a little */
		n += (size_t)r;
	vsock_uds_event(c, EPOLLOUT);
	cr_assert_eq(only_conn(), c);
	cr_assert_gt(c->deadline_ns, 1, "progress moves the deadline");
	vsock_timer_event(vs, EPOLLIN);
	cr_assert_eq(only_conn(), c, "a host that reads is not cut off");
	/* the host reads the rest: the device flushes, closes and resets */
	while (n < sent) {
		r = read(fd, got + n, sent - n);
		if (r <= 0)
			break;
		n += (size_t)r;
		if (only_conn())
			vsock_uds_event(c, EPOLLOUT);
	}
	cr_assert_eq(n, sent);
	for (size_t k = 0; k < sent; k++)
		cr_assert_eq(got[k], (uint8_t)k, "byte %zu", k);
	cr_assert_null(only_conn());
	cr_assert_not(guest_recv(&h, NULL, 0), "no second RST, no credit for a gone connection");
	free(got);
	close(fd);
	close(lfd);
}

Test(vsock, a_guest_done_sending_to_a_host_done_sending_loses_no_bytes)
{
	int lfd, fd = guest_connect(1234, &lfd);
	/* the host sends its request and half-closes, as a client does */
	shutdown(fd, SHUT_WR);
	vsock_uds_event(only_conn(), EPOLLIN | EPOLLRDHUP);
	struct vsock_hdr h;
	cr_assert(guest_recv(&h, NULL, 0));
	cr_assert_eq(h.op, VSOCK_OP_SHUTDOWN);
	/* the guest answers more than the host socket holds, then shuts its
	 * sending side down (SHUT_WR before close) */
	static uint8_t big[32768];
	uint32_t sent = 0;
	for (int i = 0; i < 400 && only_conn()->buf_len < (64u << 10); i++) {
		for (size_t k = 0; k < sizeof(big); k++)
			big[k] = (uint8_t)((sent + k) * 7);
		guest_send(VSOCK_OP_RW, 1234, 5000, big, sizeof(big), 0, 65536, 0);
		sent += sizeof(big);
	}
	cr_assert_gt(only_conn()->buf_len, 0, "the host socket never filled");
	guest_send(VSOCK_OP_SHUTDOWN, 1234, 5000, NULL, 0, VSOCK_SHUTDOWN_SEND, 65536, 0);
	bool rst = false;
	while (guest_recv(&h, NULL, 0))
		rst |= h.op == VSOCK_OP_RST;
	cr_assert(rst, "nothing flows any more: the guest is reset");
	/* the host reads every byte, then EOF */
	uint8_t *got = malloc(sent + 1);
	size_t n = 0;
	for (;;) {
		ssize_t r = read(fd, got + n, sent + 1 - n);
		if (r <= 0)
			break;
		n += (size_t)r;
		if (only_conn())
			vsock_uds_event(only_conn(), EPOLLOUT);
	}
	cr_assert_eq(n, sent, "the host got %zu of %u bytes", n, sent);
	for (size_t k = 0; k < sent; k++)
		cr_assert_eq(got[k], (uint8_t)(k * 7), "byte %zu", k);
	cr_assert_null(only_conn());
	free(got);
	close(fd);
	close(lfd);
}
