/* Per-vCPU architectural setup: CPUID, MSRs, LAPIC LINT pins, FPU, and the
 * 64-bit boot register state of the BSP. */
#ifndef WISP_CPU_H
#define WISP_CPU_H

#include <linux/kvm.h>
#include <stdint.h>

#include "common/err.h"

/* Entries a CPUID table may hold (KVM's own limit is 256). */
#define CPU_CPUID_MAX 256

struct cpu_topology {
	int nr_vcpus;
	int threads_per_core; /* 1, or 2 with smt */
};

/* The host's supported CPUID (KVM_GET_SUPPORTED_CPUID), malloc'd with room
 * for CPU_CPUID_MAX entries. */
int cpu_supported_cpuid(int kvm_fd, struct kvm_cpuid2 **out, struct wisp_err *err);
/* Adjust a copy of the supported table for one vCPU (APIC ids, topology,
 * hypervisor leaves, no PMU) and set it. */
int cpu_set_cpuid(int vcpu_fd, const struct kvm_cpuid2 *supported, int id,
		  const struct cpu_topology *topo, struct wisp_err *err);
/* Apply the per-vCPU changes in place (c has room for CPU_CPUID_MAX
 * entries); also what a snapshot's CPUID is checked against. */
void cpu_patch_cpuid(struct kvm_cpuid2 *c, int id, const struct cpu_topology *topo);
int cpu_set_msrs(int vcpu_fd, struct wisp_err *err);
int cpu_set_lapic(int vcpu_fd, struct wisp_err *err);
int cpu_set_fpu(int vcpu_fd, struct wisp_err *err);
/* Long mode, identity paging, flat segments, %rip = entry, %rsi = zero page. */
int cpu_set_boot_regs(int vcpu_fd, uint64_t entry, struct wisp_err *err);
/* Log the vCPU's registers at error level (crash reports). */
void cpu_dump_regs(int vcpu_fd, int id);

#endif
