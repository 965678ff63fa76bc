/* Intel MultiProcessor Specification 1.4 tables: how a kernel without ACPI
 * finds its CPUs, the ISA bus, the IOAPIC and the interrupt routing. */
#ifndef WISP_MPTABLE_H
#define WISP_MPTABLE_H

#include "common/err.h"
#include "mem.h"

#define MPTABLE_IOAPIC_VERSION 0x11
#define MPTABLE_LAPIC_VERSION  0x14

/* Write the floating pointer and configuration table at WISP_MPTABLE_ADDR:
 * nr_cpus processors (APIC ids 0..nr_cpus-1, CPU 0 the BSP), bus 0 ISA,
 * one IOAPIC (id nr_cpus), IRQs 0..WISP_IRQ_MAX to the same IOAPIC pins,
 * ExtINT on LINT0 and NMI on LINT1. */
int mptable_write(const struct gmem *m, int nr_cpus, struct wisp_err *err);
/* Bytes the tables take for nr_cpus (they must fit the EBDA). */
size_t mptable_size(int nr_cpus);

#endif
