/* virtio-vsock internals shared by the device (vsock.c: queues, packets,
 * the connection state machine) and its hybrid Unix-socket backend
 * (vsock_uds.c: the listener at uds_path, per-connection sockets). */
#ifndef WISP_VIRTIO_VSOCK_H
#define WISP_VIRTIO_VSOCK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/un.h>

#include "vmm/metrics.h"
#include "vmm/virtio/virtio.h"

#define VSOCK_HOST_CID           2
#define VSOCK_TYPE_STREAM        1

#define VSOCK_OP_INVALID         0
#define VSOCK_OP_REQUEST         1
#define VSOCK_OP_RESPONSE        2
#define VSOCK_OP_RST             3
#define VSOCK_OP_SHUTDOWN        4
#define VSOCK_OP_RW              5
#define VSOCK_OP_CREDIT_UPDATE   6
#define VSOCK_OP_CREDIT_REQUEST  7

#define VSOCK_SHUTDOWN_RCV       1u
#define VSOCK_SHUTDOWN_SEND      2u

#define VSOCK_EVENT_TRANSPORT_RESET 0

#define VSOCK_RXQ                0
#define VSOCK_TXQ                1
#define VSOCK_EVQ                2

/* Limits: what one connection may hold on the host for the guest (its
 * advertised buf_alloc), how many connections exist at once, how long a
 * handshake or a close may take (a guest's connect to a host listener
 * whose backlog is full is retried that long too: Linux's own connect
 * timeout is 2 s), how many RSTs wait for RX buffers. */
#define VSOCK_BUF_ALLOC          (256u << 10)
#define VSOCK_MAX_CONNS          256
#define VSOCK_CONNECT_TIMEOUT_NS (2000ull * 1000000ull)
#define VSOCK_SHUTDOWN_TIMEOUT_NS (2000ull * 1000000ull)
#define VSOCK_DRAIN_TIMEOUT_NS   (10000ull * 1000000ull) /* a host socket taking nothing */
#define VSOCK_TICK_NS            (200ull * 1000000ull)
#define VSOCK_RETRY_MIN_NS       (1ull * 1000000ull)   /* first connect retry, doubling */
#define VSOCK_RETRY_MAX_NS       (50ull * 1000000ull)  /* ... up to this */
#define VSOCK_RST_QUEUE          128
#define VSOCK_MAX_PKT            (64u << 10)
#define VSOCK_LOCAL_PORT_BASE    (1u << 30)

struct vsock_hdr {
	uint64_t src_cid;
	uint64_t dst_cid;
	uint32_t src_port;
	uint32_t dst_port;
	uint32_t len;
	uint16_t type;
	uint16_t op;
	uint32_t flags;
	uint32_t buf_alloc;
	uint32_t fwd_cnt;
} __attribute__((packed));
_Static_assert(sizeof(struct vsock_hdr) == 44, "virtio_vsock_hdr is 44 bytes");

enum vconn_state {
	VC_HANDSHAKE,      /* host connected, waiting for "CONNECT <port>\n" */
	VC_CONNECTING,     /* REQUEST sent to the guest, waiting for RESPONSE */
	VC_LISTEN_WAIT,    /* the guest's REQUEST met a host listener with a full
			    * backlog (EAGAIN): connect() again until the deadline,
			    * then RESPONSE, or RST when it passes */
	VC_ESTABLISHED,
	VC_DRAINING,       /* nothing flows any more but what is buffered for the
			    * host: the guest got its RST and knows the connection
			    * no more; the socket closes when the buffer is empty */
	VC_CLOSING,        /* host closed; SHUTDOWN sent, waiting for the guest's RST */
};

/* control packets a connection owes the guest */
#define VC_SEND_REQUEST   1u
#define VC_SEND_RESPONSE  2u
#define VC_SEND_SHUTDOWN  4u
#define VC_SEND_CREDIT    8u

struct vsock;

struct vconn {
	struct vsock *vs;
	int fd;
	enum vconn_state state;
	bool host_initiated;
	uint32_t local_port;        /* the host side's port (src for packets we send) */
	uint32_t peer_port;         /* the guest's port */
	uint32_t send;              /* VC_SEND_* owed to the guest */
	uint32_t shut_flags;        /* SHUTDOWN flags to send */
	bool readable;              /* socket has data we have not read */
	bool host_eof;              /* the host stopped sending */
	bool host_hup;              /* the host socket is gone both ways */
	bool guest_shut_rcv, guest_shut_send;
	bool wr_shut;               /* shutdown(SHUT_WR) done */
	/* credit: the guest's receive buffer, and what we sent into it */
	uint32_t peer_buf_alloc, peer_fwd_cnt, tx_cnt;
	/* our receive side: bytes from the guest handed to the socket */
	uint32_t fwd_cnt, fwd_cnt_sent;
	/* guest data the socket has not taken yet (ring of VSOCK_BUF_ALLOC) */
	uint8_t *buf;
	uint32_t buf_head, buf_len;
	uint64_t deadline_ns;       /* 0: none */
	uint64_t retry_ns;          /* VC_LISTEN_WAIT: next connect() */
	uint32_t retries;
};

struct vsock_rst {
	uint32_t local_port, peer_port;
};

struct vsock {
	struct virtio_mmio_dev dev;
	struct evloop *loop;
	uint64_t guest_cid;
	char uds_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int listen_fd;
	int timer_fd;
	struct vconn *conns[VSOCK_MAX_CONNS];
	int nr_conns;
	int rr;                     /* round-robin start for RX */
	uint32_t next_local_port;
	struct vsock_rst rsts[VSOCK_RST_QUEUE];
	int nr_rsts;
	bool event_pending;         /* TRANSPORT_RESET to deliver */
	struct virtq_chain chain;
	struct iovec iov[VIRTQ_CHAIN_MAX];
	/* counters (the metrics block counts the same since its last flush) */
	uint64_t conns_total, conns_refused, rsts_sent, rsts_dropped, bad_packets;
	uint64_t rx_bytes, tx_bytes, connect_retries;
};

/* The device's metrics block (metrics_dev_add accepts NULL). */
static inline void vsock_count(struct vsock *vs, enum metrics_dev_counter c, uint64_t n)
{
	metrics_dev_add(vs->dev.metrics, c, n);
}

/* vsock.c */
void vsock_rx_pump(struct vsock *vs);
void vsock_queue_rst(struct vsock *vs, uint32_t local_port, uint32_t peer_port);
struct vconn *vsock_conn_find(struct vsock *vs, uint32_t local_port, uint32_t peer_port);
uint32_t vsock_alloc_local_port(struct vsock *vs);
/* Arm the device timer for the earliest connect retry due (it ticks every
 * VSOCK_TICK_NS otherwise). */
void vsock_timer_arm(struct vsock *vs);

/* vsock_uds.c */
int vsock_uds_listen(struct vsock *vs, struct wisp_err *err);
void vsock_uds_close(struct vsock *vs);
/* Guest connects to the host's port: connect to <uds_path>_<port>. The
 * connection comes back VC_ESTABLISHED, or VC_LISTEN_WAIT when the
 * listener's backlog is full; NULL when refused (no listener, no room). */
struct vconn *vsock_uds_connect(struct vsock *vs, uint32_t port, uint32_t peer_port);
/* A VC_LISTEN_WAIT connection tries connect() again: established (a
 * RESPONSE owed), still waiting (the next retry later), or killed with an
 * RST when the listener has gone. */
void vconn_retry(struct vconn *c, uint64_t now);
struct vconn *vconn_new(struct vsock *vs, int fd, enum vconn_state st);
/* Free the connection; rst: tell the guest (it knows the connection). */
void vconn_kill(struct vconn *c, bool rst);
void vconn_kill_all(struct vsock *vs);
/* Forward guest data to the socket, buffering what it does not take;
 * false when the guest overran its credit or the socket failed. */
bool vconn_from_guest(struct vconn *c, const struct virtq_chain *ch, size_t off, size_t len);
/* Write buffered guest data: 0 when the buffer is empty, 1 when some is
 * left (the socket is full), -1 when the socket failed. */
int vconn_flush(struct vconn *c);
/* Host accepted the guest's RESPONSE: tell it the port. */
bool vconn_send_ok(struct vconn *c);
void vsock_uds_event(void *opaque, uint32_t events);
void vsock_listen_event(void *opaque, uint32_t events);
void vsock_timer_event(void *opaque, uint32_t events);

#endif
