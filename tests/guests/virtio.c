/* Tiny guest (virtio): a guest-side virtio-blk driver on two devices. It
 * reads and writes real sectors on device A, then throws garbage at every
 * register of device B in every status it can reach (rings pointing
 * anywhere, notifies of any queue), checks that device A still serves
 * requests, and that device B comes back after a reset. No interrupts:
 * it polls the used ring. Prints "virtio-guest: ok" when all held. */
#include "guest.h"

#define DEV_A 0xd0000000ull
#define DEV_B 0xd0001000ull
#define R(d, o) MMIO32((d) + (o))
#define QN 8

struct desc { uint64_t addr; uint32_t len; uint16_t flags, next; };

static int bad;
static uint16_t avail_idx[2], used_seen[2];

static void fail(const char *what, uint64_t v)
{
	puts_serial("virtio-guest: FAIL ");
	puts_serial(what);
	puts_serial(" ");
	puthex(v);
	puts_serial("\n");
	bad++;
}

static uint64_t ring(int dev, int which) { return 0x300000ull + (uint64_t)dev * 0x10000 + (uint64_t)which * 0x1000; }

static int bringup(uint64_t d, int dev)
{
	R(d, 0x70) = 0;
	R(d, 0x70) = 1;
	R(d, 0x70) = 3;
	R(d, 0x24) = 0; R(d, 0x20) = 0;
	R(d, 0x24) = 1; R(d, 0x20) = 1;          /* VERSION_1 only */
	R(d, 0x70) = 11;
	if (!(R(d, 0x70) & 8))
		return -1;
	R(d, 0x30) = 0;
	R(d, 0x38) = QN;
	R(d, 0x80) = (uint32_t)ring(dev, 0); R(d, 0x84) = 0;
	R(d, 0x90) = (uint32_t)ring(dev, 1); R(d, 0x94) = 0;
	R(d, 0xa0) = (uint32_t)ring(dev, 2); R(d, 0xa4) = 0;
	for (int i = 0; i < 0x3000; i++)
		MMIO8(ring(dev, 0) + (uint64_t)i) = 0;
	avail_idx[dev] = used_seen[dev] = 0;
	R(d, 0x44) = 1;
	R(d, 0x70) = 15;
	return (R(d, 0x70) & 0x44) == 4 ? 0 : -1;
}

/* One request: type, sector, 512 bytes at data; returns the status byte,
 * or 0xee when the device never completed it. */
static int request(uint64_t d, int dev, uint32_t type, uint64_t sector, uint64_t data)
{
	uint64_t hdr = 0x380000 + (uint64_t)dev * 0x1000, st = hdr + 0x100;
	MMIO32(hdr) = type;
	MMIO32(hdr + 4) = 0;
	MMIO64(hdr + 8) = sector;
	MMIO8(st) = 0xee;
	volatile struct desc *t = (volatile struct desc *)ring(dev, 0);
	t[0] = (struct desc){ hdr, 16, 1, 1 };
	t[1] = (struct desc){ data, 512, (uint16_t)(1 | (type == 0 ? 2 : 0)), 2 };
	t[2] = (struct desc){ st, 1, 2, 0 };
	volatile uint16_t *avail = (volatile uint16_t *)ring(dev, 1);
	avail[2 + avail_idx[dev] % QN] = 0;
	__asm__ volatile("" ::: "memory");
	avail[1] = ++avail_idx[dev];
	R(d, 0x50) = 0;
	volatile uint16_t *used = (volatile uint16_t *)ring(dev, 2);
	for (long spin = 0; spin < 200000000L && used[1] == used_seen[dev]; spin++)
		__asm__ volatile("pause");
	if (used[1] == used_seen[dev])
		return 0xee;
	used_seen[dev] = used[1];
	return MMIO8(st);
}

static uint64_t rnd = 0x9e3779b97f4a7c15ull;
static uint32_t next(void)
{
	rnd ^= rnd << 13;
	rnd ^= rnd >> 7;
	rnd ^= rnd << 17;
	return (uint32_t)rnd;
}

void main(void)
{
	uint64_t buf = 0x390000;
	if (bringup(DEV_A, 0) < 0)
		fail("bring-up of A, status", R(DEV_A, 0x70));
	int s = request(DEV_A, 0, 0, 1, buf);
	if (s != 0 || MMIO8(buf) != 1 || MMIO8(buf + 511) != 1)
		fail("read of sector 1", (uint64_t)s << 8 | MMIO8(buf));
	for (int i = 0; i < 512; i++)
		MMIO8(buf + (uint64_t)i) = 0xab;
	if ((s = request(DEV_A, 0, 1, 2, buf)) != 0)
		fail("write of sector 2", (uint64_t)s);
	if ((s = request(DEV_A, 0, 0, 1ull << 40, buf)) != 1)
		fail("read past the end is not IOERR", (uint64_t)s);

	/* garbage at device B in every reachable status */
	static const uint32_t states[] = { 0, 1, 3, 11, 15, 0x8f, 0xff };
	for (unsigned st = 0; st < sizeof(states) / sizeof(states[0]); st++) {
		for (int round = 0; round < 3; round++) {
			R(DEV_B, 0x70) = states[st];
			for (uint32_t off = 0; off < 0x120; off += 4) {
				uint32_t v = next();
				if (off == 0x70)
					continue;
				if (off == 0x80 || off == 0x90 || off == 0xa0)
					v &= 0x3ffff0;      /* sometimes inside RAM */
				R(DEV_B, off) = v;
				(void)R(DEV_B, off);
			}
			MMIO8(DEV_B + 0x103) = 0x5a;
			(void)MMIO8(DEV_B + 0x101);
			for (int i = 0; i < 0x3000; i += 4)
				MMIO32(ring(1, 0) + (uint64_t)i) = next();
			R(DEV_B, 0x50) = next() % 4;
			R(DEV_B, 0x50) = 0;
		}
	}
	if (R(DEV_B, 0) != 0x74726976)
		fail("device B magic after the storm", R(DEV_B, 0));
	/* device A is untouched by B's troubles */
	if ((s = request(DEV_A, 0, 0, 3, buf)) != 0 || MMIO8(buf) != 3)
		fail("read of sector 3 on A after the storm", (uint64_t)s);
	/* and B comes back after a reset */
	if (bringup(DEV_B, 1) < 0)
		fail("bring-up of B after the storm, status", R(DEV_B, 0x70));
	else if ((s = request(DEV_B, 1, 0, 4, buf)) != 0 || MMIO8(buf) != 4)
		fail("read on B after its reset", (uint64_t)s << 8 | MMIO8(buf));
	if (!bad)
		puts_serial("virtio-guest: ok\n");
	guest_reset();
}
