/* Every vCPU comes up: count the processors of the MP table, start the APs
 * with INIT-SIPI-SIPI through the local APIC into a tiny real-mode
 * trampoline at 0x10000 that bumps a counter and halts. */
#include "guest.h"

#define TRAMPOLINE 0x10000ULL
#define LAPIC 0xfee00000ULL

extern const uint8_t ap_tramp[], ap_tramp_count[], ap_tramp_end[];

__asm__(".pushsection .rodata\n"
	".code16\n"
	"ap_tramp:\n"
	"  cli\n"
	"  movw %cs, %ax\n"
	"  movw %ax, %ds\n"
	"  lock incw (ap_tramp_count - ap_tramp)\n"
	"1: hlt\n"
	"  jmp 1b\n"
	"ap_tramp_count: .word 0\n"
	"ap_tramp_end:\n"
	".code64\n"
	".popsection\n");

static uint8_t sum(const volatile uint8_t *p, unsigned n)
{
	uint8_t s = 0;
	for (unsigned i = 0; i < n; i++)
		s += p[i];
	return s;
}

static int mp_count_cpus(void)
{
	const volatile uint8_t *mpf = 0;
	for (uint64_t a = 0x9fc00; a < 0xa0000; a += 16) {
		const volatile uint8_t *p = (const volatile uint8_t *)(uintptr_t)a;
		if (p[0] == '_' && p[1] == 'M' && p[2] == 'P' && p[3] == '_') {
			mpf = p;
			break;
		}
	}
	if (!mpf || sum(mpf, 16) != 0) {
		puts_serial("smp: no valid MP floating pointer\n");
		return -1;
	}
	uint32_t cfg = mpf[4] | (mpf[5] << 8) | (mpf[6] << 16) | ((uint32_t)mpf[7] << 24);
	const volatile uint8_t *c = (const volatile uint8_t *)(uintptr_t)cfg;
	uint16_t len = (uint16_t)(c[4] | (c[5] << 8)), count = (uint16_t)(c[34] | (c[35] << 8));
	if (c[0] != 'P' || c[1] != 'C' || c[2] != 'M' || c[3] != 'P' || sum(c, len) != 0) {
		puts_serial("smp: bad MP configuration table\n");
		return -1;
	}
	const volatile uint8_t *e = c + 44;
	int cpus = 0, ioapics = 0, irqs = 0;
	for (unsigned i = 0; i < count; i++) {
		switch (e[0]) {
		case 0: cpus += e[3] & 1; e += 20; break;
		case 2: ioapics++; e += 8; break;
		case 3: irqs++; e += 8; break;
		default: e += 8; break;
		}
	}
	puts_serial("smp: mp cpus=");
	putdec((uint64_t)cpus);
	puts_serial(" ioapics=");
	putdec((uint64_t)ioapics);
	puts_serial(" irqs=");
	putdec((uint64_t)irqs);
	puts_serial("\n");
	return cpus;
}

static void icr(uint32_t low)
{
	MMIO32(LAPIC + 0x310) = 0;
	MMIO32(LAPIC + 0x300) = low;
	while (MMIO32(LAPIC + 0x300) & (1u << 12))
		;
}

void main(void)
{
	int cpus = mp_count_cpus();
	volatile uint8_t *t = (volatile uint8_t *)(uintptr_t)TRAMPOLINE;
	unsigned n = (unsigned)(ap_tramp_end - ap_tramp);
	for (unsigned i = 0; i < n; i++)
		t[i] = ap_tramp[i];
	volatile uint16_t *count = (volatile uint16_t *)(uintptr_t)(TRAMPOLINE +
								   (ap_tramp_count - ap_tramp));
	MMIO32(LAPIC + 0xf0) = 0x1ff; /* software-enable the local APIC */
	icr(0x000c4500);              /* INIT to all but self */
	icr(0x000c4600 | (uint32_t)(TRAMPOLINE >> 12));
	icr(0x000c4600 | (uint32_t)(TRAMPOLINE >> 12));
	/* APs run in parallel; a bounded wait keeps a lost AP from hanging. */
	for (unsigned long spin = 0; spin < 200000000UL && *count + 1 < cpus; spin++)
		__asm__ volatile("pause");
	puts_serial("smp: up=");
	putdec((uint64_t)*count + 1);
	puts_serial("\n");
	guest_reset();
}
