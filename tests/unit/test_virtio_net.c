/* virtio-net over a real tap (skipped without /dev/net/tun and root): the
 * virtio-net header on both paths, RX that waits for buffers without
 * losing the frame, frames too big for a buffer, hostile TX chains. A
 * packet socket on the tap plays the host's network. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "virtio_fake.h"

#define ETH_TEST 0x88b5   /* IEEE local experimental ethertype */
#define RXBUF    0x20000ull
#define TXBUF    0x40000ull

static struct fake_guest g;
static struct virtio_mmio_dev *dev;
static char ifname[IFNAMSIZ];
static int pkt = -1, ifindex;
static uint16_t rx_seen;

static void set_up(const char *name)
{
	char p[128];
	snprintf(p, sizeof(p), "/proc/sys/net/ipv6/conf/%s/disable_ipv6", name);
	int fd = open(p, O_WRONLY);
	if (fd >= 0) {
		(void)!write(fd, "1", 1);
		close(fd);
	}
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	struct ifreq ifr = { 0 };
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	cr_assert_eq(ioctl(s, SIOCGIFFLAGS, &ifr), 0);
	ifr.ifr_flags |= IFF_UP;
	cr_assert_eq(ioctl(s, SIOCSIFFLAGS, &ifr), 0);
	cr_assert_eq(ioctl(s, SIOCGIFINDEX, &ifr), 0);
	ifindex = ifr.ifr_ifindex;
	close(s);
}

static void setup(void)
{
	fake_init(&g);
	if (access("/dev/net/tun", R_OK | W_OK) != 0 || geteuid() != 0)
		cr_skip_test("needs root and /dev/net/tun");
	snprintf(ifname, sizeof(ifname), "wnt%d", getpid() % 100000);
	struct vmcfg_net cfg = { .has_guest_mac = true,
				 .guest_mac = { 0x06, 0, 0xac, 0x10, 0, 2 } };
	snprintf(cfg.iface_id, sizeof(cfg.iface_id), "eth0");
	snprintf(cfg.host_dev_name, sizeof(cfg.host_dev_name), "%s", ifname);
	struct wisp_err e = { 0 };
	cr_assert_eq(virtio_net_create(&g.mem, NULL, &cfg, &dev, &e), 0, "%s", e.msg);
	set_up(ifname);
	pkt = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK, htons(ETH_TEST));
	cr_assert_geq(pkt, 0);
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_TEST),
				   .sll_ifindex = ifindex };
	cr_assert_eq(bind(pkt, (struct sockaddr *)&sll, sizeof(sll)), 0);
	rx_seen = 0;
}

static void teardown(void)
{
	if (pkt >= 0)
		close(pkt);
	if (dev)
		virtio_device_free(dev);
	fake_fini(&g);
}

TestSuite(net, .init = setup, .fini = teardown);

#define FEATS (VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(5) | VIRTIO_BIT(0) | VIRTIO_BIT(1))

static size_t frame(uint8_t *f, uint8_t tag, size_t payload)
{
	memset(f, 0xff, 6);                                /* broadcast */
	memcpy(f + 6, "\x06\x00\xac\x10\x00\x02", 6);
	f[12] = ETH_TEST >> 8;
	f[13] = ETH_TEST & 0xff;
	memset(f + 14, tag, payload);
	return 14 + payload;
}

/* The host sends a frame into the tap (the guest's RX direction). */
static void host_send(uint8_t tag, size_t payload)
{
	uint8_t f[2048];
	size_t n = frame(f, tag, payload);
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_ifindex = ifindex, .sll_halen = 6 };
	memset(sll.sll_addr, 0xff, 6);
	cr_assert_eq(sendto(pkt, f, n, 0, (struct sockaddr *)&sll, sizeof(sll)), (ssize_t)n);
}

static void post_rx(uint16_t i, uint32_t len)
{
	fake_desc(&g, 0, i, RXBUF + i * 0x1000ull, len, VIRTQ_DESC_F_WRITE, 0);
	fake_avail(&g, 0, 16, i);
}

Test(net, mac_in_config_and_features)
{
	uint8_t mac[6];
	for (int i = 0; i < 6; i++)
		virtio_mmio_read(dev, VIRTIO_MMIO_CONFIG + (uint64_t)i, &mac[i], 1);
	cr_assert_eq(memcmp(mac, "\x06\x00\xac\x10\x00\x02", 6), 0);
	cr_assert_eq(mr32(dev, VIRTIO_MMIO_DEVICE_ID), 1);
	fake_bringup(dev, FEATS, 16);
	cr_assert(dev->active, "offloads set on the tap");
}

Test(net, tx_frame_reaches_the_tap)
{
	fake_bringup(dev, FEATS, 16);
	uint8_t hdr[12] = { 0 };
	uint8_t f[256];
	size_t n = frame(f, 0x5a, 100);
	memcpy(fake_ptr(&g, TXBUF), hdr, 12);
	memcpy(fake_ptr(&g, TXBUF + 0x100), f, n);
	fake_desc(&g, 1, 0, TXBUF, 12, VIRTQ_DESC_F_NEXT, 1);
	fake_desc(&g, 1, 1, TXBUF + 0x100, (uint32_t)n, 0, 0);
	fake_avail(&g, 1, 16, 0);
	virtio_mmio_kick(dev, 1);
	cr_assert_eq(fake_used_idx(&g, 1), 1);
	struct pollfd p = { .fd = pkt, .events = POLLIN };
	cr_assert_eq(poll(&p, 1, 2000), 1);
	uint8_t got[256];
	ssize_t r = recv(pkt, got, sizeof(got), 0);
	cr_assert_eq(r, (ssize_t)n);
	cr_assert_eq(memcmp(got, f, n), 0);
}

Test(net, rx_waits_for_buffers_without_losing_frames)
{
	fake_bringup(dev, FEATS, 16);
	host_send(1, 60);
	host_send(2, 70);
	virtio_mmio_kick(dev, 0); /* the tap's edge: no buffers yet */
	cr_assert_eq(fake_used_idx(&g, 0), 0);
	post_rx(0, 1600);
	virtio_mmio_kick(dev, 0); /* the guest's RX kick resumes */
	post_rx(1, 1600);
	virtio_mmio_kick(dev, 0);
	cr_assert_eq(fake_used_idx(&g, 0), 2);
	for (int i = 0; i < 2; i++) {
		struct virtq_used_elem e = fake_used_elem(&g, 0, (uint16_t)i, 16);
		uint8_t *b = fake_ptr(&g, RXBUF + e.id * 0x1000ull);
		uint16_t nb;
		memcpy(&nb, b + 10, 2);
		cr_assert_eq(nb, 1, "num_buffers");
		cr_assert_eq(b[12 + 12], ETH_TEST >> 8);
		cr_assert_eq(b[12 + 14], i + 1, "frames in order");
		cr_assert_eq(e.len, 12 + 14 + 60 + 10 * i);
	}
}

Test(net, rx_frame_larger_than_buffer_is_dropped_buffer_kept)
{
	fake_bringup(dev, FEATS, 16);
	post_rx(0, 64);
	host_send(3, 1000);
	virtio_mmio_kick(dev, 0);
	cr_assert_eq(fake_used_idx(&g, 0), 0);
	host_send(4, 20);
	virtio_mmio_kick(dev, 0);
	cr_assert_eq(fake_used_idx(&g, 0), 1, "the small frame uses the kept buffer");
	uint8_t *b = fake_ptr(&g, RXBUF);
	cr_assert_eq(b[12 + 14], 4);
	cr_assert_not(dev->failed);
}

Test(net, hostile_chains_fail_the_device)
{
	fake_bringup(dev, FEATS, 16);
	fake_desc(&g, 1, 0, TXBUF, 64, VIRTQ_DESC_F_WRITE, 0); /* TX buffer writable */
	fake_avail(&g, 1, 16, 0);
	virtio_mmio_kick(dev, 1);
	cr_assert(dev->failed);
}

Test(net, rx_chain_with_readable_buffer_fails_the_device)
{
	fake_bringup(dev, FEATS, 16);
	fake_desc(&g, 0, 0, RXBUF, 1600, 0, 0);
	fake_avail(&g, 0, 16, 0);
	host_send(5, 20);
	virtio_mmio_kick(dev, 0);
	cr_assert(dev->failed);
}
