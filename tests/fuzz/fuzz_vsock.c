/* libFuzzer target: virtio-vsock packet headers and the connection state
 * machine. The input is a sequence of guest packets (a 44-byte header and
 * its payload) put on the TX queue of a live device, interleaved with RX
 * buffers of fuzzed sizes; guest connections to port 1000 reach a real
 * listening Unix socket so established connections are fuzzed too, and
 * those to port 1001 a listener whose backlog is full (connects that wait
 * and are retried). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "vmm/mem.h"
#include "vmm/virtio/vsock.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RAM (512u << 10)
#define CID 3
#define QN 64

static uint8_t *ram;
static struct gmem mem;
static struct virtio_mmio_dev *dev;
static int lfd = -1, full_fd = -1;

static void w32(uint64_t off, uint32_t v)
{
	virtio_mmio_write(dev, off, (const uint8_t *)&v, 4);
}

static void init_once(void)
{
	if (ram)
		return;
	ram = calloc(1, RAM);
	gmem_add_region(&mem, 0, ram, RAM);
	char dir[] = "/tmp/wisp-fuzz-vsock-XXXXXX";
	if (!mkdtemp(dir))
		abort();
	static char uds[80];
	snprintf(uds, sizeof(uds), "%s/v", dir);
	struct vmcfg_vsock vc = { .present = true, .guest_cid = CID, .uds_path = uds };
	struct wisp_err e = { 0 };
	if (virtio_vsock_create(&mem, NULL, &vc, &dev, &e) < 0)
		abort();
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s_1000", uds);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 4096) < 0)
		abort();
	/* backlog 0, never accepted: full after one connection */
	snprintf(a.sun_path, sizeof(a.sun_path), "%s_1001", uds);
	full_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (bind(full_fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(full_fd, 0) < 0)
		abort();
	int c = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (connect(c, (struct sockaddr *)&a, sizeof(a)) < 0)
		abort();
}

static void bringup(void)
{
	w32(VIRTIO_MMIO_STATUS, 0);
	w32(VIRTIO_MMIO_STATUS, 1);
	w32(VIRTIO_MMIO_STATUS, 3);
	w32(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	w32(VIRTIO_MMIO_DRIVER_FEATURES, 1);
	w32(VIRTIO_MMIO_STATUS, 11);
	for (uint32_t q = 0; q < 3; q++) {
		w32(VIRTIO_MMIO_QUEUE_SEL, q);
		w32(VIRTIO_MMIO_QUEUE_NUM, QN);
		w32(VIRTIO_MMIO_QUEUE_DESC_LOW, 0x1000 + q * 0x2000);
		w32(VIRTIO_MMIO_QUEUE_AVAIL_LOW, 0x8000 + q * 0x1000);
		w32(VIRTIO_MMIO_QUEUE_USED_LOW, 0xc000 + q * 0x1000);
		w32(VIRTIO_MMIO_QUEUE_READY, 1);
	}
	w32(VIRTIO_MMIO_STATUS, 15);
}

static uint16_t avail_idx[3];

static void put(int q, uint16_t head, uint64_t addr, uint32_t len, uint16_t flags)
{
	struct virtq_desc d = { .addr = addr, .len = len, .flags = flags };
	memcpy(ram + 0x1000 + q * 0x2000 + head * 16, &d, sizeof(d));
	uint16_t *avail = (uint16_t *)(ram + 0x8000 + q * 0x1000);
	avail[2 + avail_idx[q] % QN] = head;
	avail[1] = ++avail_idx[q];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	init_once();
	memset(ram, 0, RAM);
	memset(avail_idx, 0, sizeof(avail_idx));
	bringup();
	/* drain the host side of earlier connections */
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
		if (fd < 0)
			break;
		close(fd);
	}
	uint16_t n = 0;
	while (size >= 2 + sizeof(struct vsock_hdr) && n < 40) {
		uint8_t ctl = data[0], rxsz = data[1];
		data += 2;
		size -= 2;
		struct vsock_hdr h;
		memcpy(&h, data, sizeof(h));
		data += sizeof(h);
		size -= sizeof(h);
		/* steer most packets at real addresses so the state machine runs */
		if (ctl & 1) {
			h.src_cid = CID;
			h.dst_cid = 2;
			h.type = 1;
		}
		if (ctl & 2)
			h.dst_port = ctl & 16 ? 1001 : 1000;
		uint32_t payload = h.len < size ? h.len : (uint32_t)size;
		if (payload > 0x8000)
			payload = 0x8000;
		uint64_t at = 0x20000 + (uint64_t)(n % 8) * 0x9000;
		memcpy(ram + at, &h, sizeof(h));
		memcpy(ram + at + sizeof(h), data, payload);
		data += payload;
		size -= payload;
		put(VSOCK_TXQ, (uint16_t)(n % QN), at, (uint32_t)sizeof(h) + payload, 0);
		/* an RX buffer of a fuzzed size, sometimes too small */
		put(VSOCK_RXQ, (uint16_t)(n % QN), 0x70000 + (uint64_t)(n % 8) * 0x1000,
		    (uint32_t)rxsz * 16 + (ctl & 4 ? 0 : 44), VIRTQ_DESC_F_WRITE);
		virtio_mmio_kick(dev, VSOCK_TXQ);
		virtio_mmio_kick(dev, VSOCK_RXQ);
		if (ctl & 8) {
			/* waiting connects are due, and with ctl & 32 past their deadline */
			struct vsock *vs = dev->priv;
			for (int i = 0; i < VSOCK_MAX_CONNS; i++) {
				struct vconn *c = vs->conns[i];
				if (c && c->state == VC_LISTEN_WAIT) {
					c->retry_ns = 1;
					if (ctl & 32)
						c->deadline_ns = 1;
				}
			}
			vsock_timer_event(vs, 1);
		}
		n++;
	}
	return 0;
}
