/* Helpers shared by the tiny guests: port I/O, MMIO, the UART, reset. */
#ifndef GUEST_H
#define GUEST_H

#include <stdint.h>

extern uint64_t entry_rsi, entry_rsp, entry_cr0, entry_cr3, entry_cr4, entry_rflags;
extern uint16_t entry_cs, entry_ds, entry_ss;

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint16_t inw(uint16_t port) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint32_t inl(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}
static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((uint64_t)hi << 32) | lo;
}

#define MMIO8(a)  (*(volatile uint8_t *)(uintptr_t)(a))
#define MMIO32(a) (*(volatile uint32_t *)(uintptr_t)(a))
#define MMIO64(a) (*(volatile uint64_t *)(uintptr_t)(a))

static inline void putc_serial(char c)
{
	while (!(inb(0x3f8 + 5) & 0x20))
		;
	outb(0x3f8, (uint8_t)c);
}

static inline void puts_serial(const char *s)
{
	for (; *s; s++) {
		if (*s == '\n')
			putc_serial('\r');
		putc_serial(*s);
	}
}

static inline void puthex(uint64_t v)
{
	char buf[19];
	int n = 0;
	buf[n++] = '0';
	buf[n++] = 'x';
	int started = 0;
	for (int i = 60; i >= 0; i -= 4) {
		int d = (int)((v >> i) & 0xf);
		if (d || started || i == 0) {
			buf[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
			started = 1;
		}
	}
	buf[n] = 0;
	puts_serial(buf);
}

static inline void putdec(uint64_t v)
{
	char buf[21];
	int n = 20;
	buf[n] = 0;
	do {
		buf[--n] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	puts_serial(buf + n);
}

/* Pulse the reset line through the i8042: the VMM exits with 0. */
static inline void __attribute__((noreturn)) guest_reset(void)
{
	outb(0x64, 0xfe);
	for (;;)
		__asm__ volatile("cli; hlt");
}

#endif
