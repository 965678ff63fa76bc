/* Hostile accesses: unknown ports of every width, string I/O, MMIO in the
 * gap and above RAM. The VMM must log, return all ones and keep running. */
#include "guest.h"

static int bad;

static void check(uint64_t got, uint64_t want, const char *what, uint64_t where)
{
	if (got != want) {
		puts_serial("garbage: unexpected ");
		puts_serial(what);
		puts_serial(" at ");
		puthex(where);
		puts_serial(" = ");
		puthex(got);
		puts_serial("\n");
		bad++;
	}
}

void main(void)
{
	for (uint16_t p = 0x100; p < 0x300; p++) {
		outb(p, 0xa5);
		outw(p, 0x5a5a);
		outl(p, 0xdeadbeef);
		check(inb(p), 0xff, "inb", p);
		check(inw(p), 0xffff, "inw", p);
		check(inl(p), 0xffffffff, "inl", p);
	}
	static const uint16_t odd[] = { 0xcf8, 0xcfc, 0x510, 0x511, 0x402, 0x3f0, 0xfff0, 0xffff };
	for (unsigned i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
		outl(odd[i], 0x80000000);
		check(inb(odd[i]), 0xff, "inb", odd[i]);
	}
	/* String I/O to nowhere. */
	static uint8_t buf[64];
	for (int i = 0; i < 64; i++)
		buf[i] = (uint8_t)i;
	const uint8_t *src = buf;
	uint8_t *dst = buf;
	uint64_t cnt = 64;
	__asm__ volatile("cld; rep outsb" : "+S"(src), "+c"(cnt) : "d"(0x2f0) : "memory");
	cnt = 64;
	__asm__ volatile("cld; rep insb" : "+D"(dst), "+c"(cnt) : "d"(0x2f0) : "memory");
	check(buf[0], 0xff, "insb", 0x2f0);
	check(buf[63], 0xff, "insb", 0x2f0);

	static const uint64_t mmio[] = {
		0xc0001000, 0xc8000000, 0xd0000000, 0xd0000ffc, 0xdfffff00,
		0xfe000000, 0xfebff000, 0xffff0000, 0x10000000, 0x3fff0000,
	};
	for (unsigned i = 0; i < sizeof(mmio) / sizeof(mmio[0]); i++) {
		MMIO32(mmio[i]) = 0x12345678;
		MMIO8(mmio[i] + 1) = 0x55;
		MMIO64(mmio[i] + 8) = 0x0123456789abcdefULL;
		check(MMIO32(mmio[i]), 0xffffffff, "mmio32", mmio[i]);
		check(MMIO8(mmio[i] + 3), 0xff, "mmio8", mmio[i]);
		check(MMIO64(mmio[i] + 8), 0xffffffffffffffffULL, "mmio64", mmio[i]);
	}
	puts_serial(bad ? "garbage: FAILED\n" : "garbage: survived\n");
	guest_reset();
}
