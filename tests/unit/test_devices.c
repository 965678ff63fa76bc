/* The UART register model, the i8042, the CMOS clock and the per-vCPU
 * CPUID patching. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/cmos.h"
#include "vmm/cpu.h"
#include "vmm/i8042.h"
#include "vmm/serial.h"

static int irqs;
static void count_irq(void *opaque)
{
	(void)opaque;
	irqs++;
}

static uint8_t rd(struct serial *s, uint64_t off)
{
	uint8_t v;
	serial_bus_ops.read(s, off, &v, 1);
	return v;
}

static void wr(struct serial *s, uint64_t off, uint8_t v)
{
	serial_bus_ops.write(s, off, &v, 1);
}

Test(serial, output_reaches_the_fd_and_thre_interrupts)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	struct serial s;
	irqs = 0;
	serial_init(&s, p[1], count_irq, NULL);
	cr_assert_eq(rd(&s, UART_LSR) & (UART_LSR_THRE | UART_LSR_TEMT), UART_LSR_THRE | UART_LSR_TEMT);
	cr_assert_eq(rd(&s, UART_IIR), UART_IIR_NO_INT);
	wr(&s, UART_RX, 'h');
	wr(&s, UART_RX, 'i');
	char buf[4] = { 0 };
	cr_assert_eq(read(p[0], buf, 2), 2);
	cr_assert_str_eq(buf, "hi");
	cr_assert_eq(irqs, 0, "no interrupt while IER is 0");
	/* Enabling THRI with an empty THR raises it at once; reading IIR clears it. */
	wr(&s, UART_IER, UART_IER_THRI);
	cr_assert_eq(irqs, 1);
	cr_assert_eq(rd(&s, UART_IIR) & 0x0f, UART_IIR_THRI);
	cr_assert_eq(rd(&s, UART_IIR) & 0x0f, UART_IIR_NO_INT);
	wr(&s, UART_RX, '!');
	cr_assert_eq(irqs, 2, "each byte sent raises THRE again");
	serial_destroy(&s);
	close(p[0]);
	close(p[1]);
}

Test(serial, receive_fifo_rx_interrupt_and_overrun)
{
	struct serial s;
	irqs = 0;
	serial_init(&s, -1, count_irq, NULL);
	wr(&s, UART_IER, UART_IER_RDI);
	cr_assert_eq(serial_input(&s, (const uint8_t *)"ab", 2), 2);
	cr_assert_eq(irqs, 1);
	cr_assert(rd(&s, UART_LSR) & UART_LSR_DR);
	cr_assert_eq(rd(&s, UART_IIR) & 0x0f, UART_IIR_RDI);
	cr_assert_eq(rd(&s, UART_RX), 'a');
	cr_assert_eq(rd(&s, UART_RX), 'b');
	cr_assert_eq(rd(&s, UART_LSR) & UART_LSR_DR, 0);
	cr_assert_eq(rd(&s, UART_IIR) & 0x0f, UART_IIR_NO_INT);
	uint8_t big[100];
	memset(big, 'x', sizeof(big));
	cr_assert_eq(serial_input(&s, big, sizeof(big)), SERIAL_FIFO_SIZE, "FIFO holds 64");
	cr_assert_eq(serial_input(&s, big, 1), 0);
	for (int i = 0; i < SERIAL_FIFO_SIZE; i++)
		cr_assert_eq(rd(&s, UART_RX), 'x');
	cr_assert_eq(rd(&s, UART_RX), 0, "empty FIFO reads 0");
	/* FCR clears the receive FIFO; FIFO-enabled IIR has bits 6-7 set. */
	serial_input(&s, big, 10);
	wr(&s, UART_FCR, UART_FCR_ENABLE | UART_FCR_CLEAR_RX);
	cr_assert_eq(rd(&s, UART_LSR) & UART_LSR_DR, 0);
	cr_assert_eq(rd(&s, UART_IIR) & UART_IIR_FIFO, UART_IIR_FIFO);
	serial_destroy(&s);
}

Test(serial, dlab_scratch_and_loopback)
{
	struct serial s;
	serial_init(&s, -1, NULL, NULL);
	wr(&s, UART_LCR, UART_LCR_DLAB | 0x03);
	wr(&s, UART_RX, 0x01);
	wr(&s, UART_IER, 0x00);
	cr_assert_eq(rd(&s, UART_RX), 0x01, "DLL");
	cr_assert_eq(rd(&s, UART_IER), 0x00, "DLM");
	wr(&s, UART_LCR, 0x03);
	cr_assert_eq(rd(&s, UART_LCR), 0x03);
	wr(&s, UART_SCR, 0x5a);
	cr_assert_eq(rd(&s, UART_SCR), 0x5a);
	/* Linux's 8250 loopback probe: MCR LOOP|OUT2|RTS -> MSR DCD|CTS. */
	wr(&s, UART_MCR, UART_MCR_LOOP | 0x0a);
	cr_assert_eq(rd(&s, UART_MSR) & 0xf0, 0x90);
	wr(&s, UART_RX, 'z');
	cr_assert_eq(rd(&s, UART_RX), 'z', "loopback returns sent bytes");
	wr(&s, UART_MCR, 0x0b);
	cr_assert_eq(rd(&s, UART_MSR) & 0xb0, 0xb0);
	uint8_t wide[4];
	serial_bus_ops.read(&s, UART_SCR, wide, 4);
	cr_assert_eq(wide[0], 0x5a);
	serial_destroy(&s);
}

static int resets;
static void count_reset(void *opaque)
{
	(void)opaque;
	resets++;
}

static uint8_t krd(struct i8042 *k, uint64_t off)
{
	uint8_t v;
	i8042_bus_ops.read(k, off, &v, 1);
	return v;
}

static void kwr(struct i8042 *k, uint64_t off, uint8_t v)
{
	i8042_bus_ops.write(k, off, &v, 1);
}

Test(i8042, selftest_command_byte_and_reset)
{
	struct i8042 k;
	resets = irqs = 0;
	i8042_init(&k, count_reset, count_irq, NULL);
	cr_assert_eq(krd(&k, 4) & I8042_STR_OBF, 0);
	kwr(&k, 4, 0xaa);
	cr_assert(krd(&k, 4) & I8042_STR_OBF);
	cr_assert_eq(krd(&k, 0), 0x55);
	cr_assert_eq(krd(&k, 4) & I8042_STR_OBF, 0);
	kwr(&k, 4, 0x60);
	kwr(&k, 0, 0x45);
	kwr(&k, 4, 0x20);
	cr_assert_eq(krd(&k, 0), 0x45);
	cr_assert_eq(resets, 0);
	kwr(&k, 4, 0xfe);
	cr_assert_eq(resets, 1);
	/* Unknown ports within the range read all ones. */
	cr_assert_eq(krd(&k, 2), 0xff);
	i8042_destroy(&k);
}

Test(i8042, ctrl_alt_del_scancodes)
{
	struct i8042 k;
	irqs = 0;
	i8042_init(&k, count_reset, count_irq, NULL);
	cr_assert_eq(i8042_send_ctrl_alt_del(&k), 0);
	cr_assert_eq(irqs, 1);
	static const uint8_t want[] = { 0x14, 0x11, 0xe0, 0x71 };
	for (size_t i = 0; i < sizeof(want); i++) {
		cr_assert(krd(&k, 4) & I8042_STR_OBF);
		cr_assert_eq(krd(&k, 0), want[i]);
	}
	cr_assert_eq(irqs, 4, "one interrupt per byte");
	cr_assert_eq(krd(&k, 4) & I8042_STR_OBF, 0);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(i8042_send_ctrl_alt_del(&k), 0);
	cr_assert_eq(i8042_send_ctrl_alt_del(&k), -ENOSPC, "buffer full");
	i8042_destroy(&k);
}

/* 2026-11-29 21:07:09 UTC, a Sunday */
static time_t fixed_now(void)
{
	return 1795986429;
}

static uint8_t crd(struct cmos *c, uint8_t reg)
{
	uint8_t v;
	cmos_bus_ops.write(c, 0, &reg, 1);
	cmos_bus_ops.read(c, 1, &v, 1);
	return v;
}

static void cwr(struct cmos *c, uint8_t reg, uint8_t v)
{
	cmos_bus_ops.write(c, 0, &reg, 1);
	cmos_bus_ops.write(c, 1, &v, 1);
}

Test(cmos, clock_in_bcd_and_binary)
{
	struct cmos c;
	cmos_init(&c);
	c.now = fixed_now;
	cr_assert_eq(crd(&c, 0x00), 0x09);
	cr_assert_eq(crd(&c, 0x02), 0x07);
	cr_assert_eq(crd(&c, 0x04), 0x21);
	cr_assert_eq(crd(&c, 0x06), 0x01, "Sunday is day 1");
	cr_assert_eq(crd(&c, 0x07), 0x29);
	cr_assert_eq(crd(&c, 0x08), 0x11);
	cr_assert_eq(crd(&c, 0x09), 0x26);
	cr_assert_eq(crd(&c, 0x32), 0x20);
	cr_assert_eq(crd(&c, 0x0a) & 0x80, 0, "no update in progress");
	cr_assert_eq(crd(&c, 0x0d), 0x80, "time valid");
	/* binary mode, then 12-hour mode: 21:xx is 9 PM */
	cwr(&c, 0x0b, 0x06);
	cr_assert_eq(crd(&c, 0x04), 21);
	cr_assert_eq(crd(&c, 0x09), 26);
	cwr(&c, 0x0b, 0x00);
	cr_assert_eq(crd(&c, 0x04), 0x89);
	cmos_destroy(&c);
}

Test(cmos, ram_and_read_only_registers)
{
	struct cmos c;
	cmos_init(&c);
	c.now = fixed_now;
	/* SMP boot's warm-reset code, with the NMI-mask bit in the index */
	cwr(&c, 0x8f, 0x0a);
	cr_assert_eq(crd(&c, 0x0f), 0x0a);
	cwr(&c, 0x7f, 0x5a);
	cr_assert_eq(crd(&c, 0x7f), 0x5a);
	/* the clock follows the host; status C and D cannot be written */
	cwr(&c, 0x00, 0x59);
	cr_assert_eq(crd(&c, 0x00), 0x09);
	cwr(&c, 0x0d, 0x00);
	cr_assert_eq(crd(&c, 0x0d), 0x80);
	cwr(&c, 0x0c, 0xff);
	cr_assert_eq(crd(&c, 0x0c), 0x00);
	/* the update-in-progress bit of status A is read-only */
	cwr(&c, 0x0a, 0xa6);
	cr_assert_eq(crd(&c, 0x0a), 0x26);
	cmos_destroy(&c);
}

static struct kvm_cpuid2 *cpuid_table(void)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + 256 * sizeof(struct kvm_cpuid_entry2));
	uint32_t fns[] = { 0x0, 0x1, 0xa, 0xb, 0xb, 0x80000008 };
	for (unsigned i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
		c->entries[i].function = fns[i];
		c->entries[i].eax = 0x1234;
	}
	c->entries[3].index = 0;
	c->entries[3].flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
	c->entries[4].index = 1;
	c->entries[4].flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
	c->nent = 6;
	return c;
}

Test(cpuid, apic_ids_topology_and_kvm_leaves)
{
	struct kvm_cpuid2 *c = cpuid_table();
	struct cpu_topology topo = { .nr_vcpus = 4, .threads_per_core = 1 };
	cpu_patch_cpuid(c, 3, &topo);
	cr_assert_eq(c->entries[1].ebx >> 24, 3, "initial APIC id");
	cr_assert_eq((c->entries[1].ebx >> 16) & 0xff, 4);
	cr_assert(c->entries[1].ecx & (1u << 31), "hypervisor bit");
	cr_assert(c->entries[1].edx & (1u << 28), "HTT");
	cr_assert_eq(c->entries[2].eax, 0, "no PMU");
	cr_assert_eq(c->entries[3].edx, 3);
	cr_assert_eq(c->entries[3].ebx, 1, "1 thread per core");
	cr_assert_eq(c->entries[4].ebx, 4, "4 logical per package");
	cr_assert_eq(c->entries[4].eax, 2, "2 bits of core id");
	cr_assert_eq(c->entries[5].ecx & 0xff, 3);
	cr_assert_eq(c->nent, 8, "KVM signature and feature leaves added");
	struct kvm_cpuid_entry2 *sig = &c->entries[6];
	cr_assert_eq(sig->function, 0x40000000);
	char name[13] = { 0 };
	memcpy(name, &sig->ebx, 4);
	memcpy(name + 4, &sig->ecx, 4);
	memcpy(name + 8, &sig->edx, 4);
	cr_assert_str_eq(name, "KVMKVMKVM");
	cr_assert(c->entries[7].eax & 1, "kvmclock");
	free(c);
}
