/* MP tables (Intel MultiProcessor Specification 1.4, chapter 4). */
#include "mptable.h"

#include <errno.h>
#include <string.h>

#include "layout.h"

#define MPF_SIZE      16
#define MPC_HDR_SIZE  44
#define MPC_CPU_SIZE  20
#define MPC_BUS_SIZE  8
#define MPC_IOAPIC_SIZE 8
#define MPC_INTSRC_SIZE 8
#define MPC_LINTSRC_SIZE 8
#define MPTABLE_MAX_BYTES (WISP_HIMEM_START - WISP_MPTABLE_ADDR)

enum { MP_PROCESSOR = 0, MP_BUS = 1, MP_IOAPIC = 2, MP_INTSRC = 3, MP_LINTSRC = 4 };
enum { MP_IRQ_INT = 0, MP_IRQ_NMI = 1, MP_IRQ_EXTINT = 3 };

static uint8_t checksum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	for (size_t i = 0; i < n; i++)
		s += p[i];
	return (uint8_t)(0 - s);
}

size_t mptable_size(int nr_cpus)
{
	return MPF_SIZE + MPC_HDR_SIZE + (size_t)nr_cpus * MPC_CPU_SIZE + MPC_BUS_SIZE +
	       MPC_IOAPIC_SIZE + (WISP_IRQ_MAX + 1) * MPC_INTSRC_SIZE + 2 * MPC_LINTSRC_SIZE;
}

int mptable_write(const struct gmem *m, int nr_cpus, struct wisp_err *err)
{
	if (nr_cpus < 1 || nr_cpus > WISP_MAX_VCPUS)
		return wisp_err_set(err, EINVAL, "mptable: %d CPUs (1..%d)", nr_cpus, WISP_MAX_VCPUS);
	size_t size = mptable_size(nr_cpus);
	if (size > MPTABLE_MAX_BYTES)
		return wisp_err_set(err, ENOSPC, "mptable: %zu bytes do not fit below 1 MiB", size);
	uint8_t *base = gmem_ptr(m, WISP_MPTABLE_ADDR, size);
	if (!base)
		return wisp_err_set(err, EINVAL, "mptable: 0x%llx is not guest RAM",
				    (unsigned long long)WISP_MPTABLE_ADDR);
	memset(base, 0, size);
	uint8_t *mpf = base, *mpc = base + MPF_SIZE, *p = mpc + MPC_HDR_SIZE;
	uint32_t mpc_addr = (uint32_t)(WISP_MPTABLE_ADDR + MPF_SIZE);
	uint16_t count = 0;
	uint8_t ioapic_id = (uint8_t)nr_cpus;

	for (int i = 0; i < nr_cpus; i++, p += MPC_CPU_SIZE, count++) {
		p[0] = MP_PROCESSOR;
		p[1] = (uint8_t)i;                      /* local APIC id */
		p[2] = MPTABLE_LAPIC_VERSION;
		p[3] = 0x01 | (i == 0 ? 0x02 : 0);       /* enabled, BSP */
		uint32_t sig = (6 << 8) | (1 << 4);      /* family 6 */
		uint32_t feat = (1 << 0) | (1 << 9);     /* FPU, APIC */
		memcpy(p + 4, &sig, 4);
		memcpy(p + 8, &feat, 4);
	}
	p[0] = MP_BUS;
	p[1] = 0;
	memcpy(p + 2, "ISA   ", 6);
	p += MPC_BUS_SIZE, count++;

	uint32_t ioapic = (uint32_t)WISP_IOAPIC_ADDR;
	p[0] = MP_IOAPIC;
	p[1] = ioapic_id;
	p[2] = MPTABLE_IOAPIC_VERSION;
	p[3] = 0x01;                                     /* usable */
	memcpy(p + 4, &ioapic, 4);
	p += MPC_IOAPIC_SIZE, count++;

	for (int irq = 0; irq <= WISP_IRQ_MAX; irq++, p += MPC_INTSRC_SIZE, count++) {
		p[0] = MP_INTSRC;
		p[1] = MP_IRQ_INT;
		/* flags 0: polarity and trigger conform to the bus (ISA: edge, high) */
		p[4] = 0;                                /* source bus */
		p[5] = (uint8_t)irq;                     /* source bus IRQ */
		p[6] = ioapic_id;
		p[7] = (uint8_t)irq;                     /* IOAPIC pin */
	}
	p[0] = MP_LINTSRC;
	p[1] = MP_IRQ_EXTINT;
	p[6] = 0xff;                                     /* all local APICs */
	p[7] = 0;                                        /* LINT0 */
	p += MPC_LINTSRC_SIZE, count++;
	p[0] = MP_LINTSRC;
	p[1] = MP_IRQ_NMI;
	p[6] = 0xff;
	p[7] = 1;                                        /* LINT1 */
	p += MPC_LINTSRC_SIZE, count++;

	uint16_t mpc_len = (uint16_t)(p - mpc);
	uint32_t lapic = (uint32_t)WISP_LAPIC_ADDR;
	memcpy(mpc, "PCMP", 4);
	memcpy(mpc + 4, &mpc_len, 2);
	mpc[6] = 4;                                      /* spec revision 1.4 */
	memcpy(mpc + 8, "WISP    ", 8);
	memcpy(mpc + 16, "MICROVM     ", 12);
	memcpy(mpc + 34, &count, 2);
	memcpy(mpc + 36, &lapic, 4);
	mpc[7] = checksum(mpc, mpc_len);

	memcpy(mpf, "_MP_", 4);
	memcpy(mpf + 4, &mpc_addr, 4);
	mpf[8] = 1;                                      /* length in 16-byte units */
	mpf[9] = 4;                                      /* spec revision 1.4 */
	mpf[10] = checksum(mpf, MPF_SIZE);
	return 0;
}
