/* CPU setup for each vCPU, done before the first KVM_RUN. */
#include "cpu.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "boot.h"
#include "common/log.h"
#include "kvm.h"
#include "layout.h"

/* XCR0 bits for user state: x87, SSE, AVX, MPX (3-4), AVX-512 (5-7), PKRU (9),
 * AMX (17-18). Supervisor components live in IA32_XSS, never in XCR0. */
#define CPU_XCR0_USER 0x602ffull

static struct kvm_cpuid_entry2 *leaf(struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
	for (uint32_t i = 0; i < c->nent; i++)
		if (c->entries[i].function == fn &&
		    (!(c->entries[i].flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) ||
		     c->entries[i].index == idx))
			return &c->entries[i];
	return NULL;
}

int cpu_supported_cpuid(int kvm_fd, struct kvm_cpuid2 **out, struct wisp_err *err)
{
	/* Headroom for the hypervisor leaves we may add. */
	size_t sz = sizeof(struct kvm_cpuid2) + CPU_CPUID_MAX * sizeof(struct kvm_cpuid_entry2);
	struct kvm_cpuid2 *c = calloc(1, sz);
	if (!c)
		return wisp_err_set(err, ENOMEM, "allocating the CPUID table");
	c->nent = CPU_CPUID_MAX - 4;
	int r = kvm_ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c);
	if (r < 0) {
		free(c);
		return wisp_err_sys(err, -r, "KVM_GET_SUPPORTED_CPUID");
	}
	/* KVM emulates the LAPIC's TSC-deadline mode but leaves announcing it
	 * to userspace (KVM_CAP_TSC_DEADLINE_TIMER). With it Linux uses the
	 * LAPIC timer without calibrating it against the PIT (a calibration
	 * that can fail under a loaded or nested host, leaving the guest on a
	 * periodic PIT tick) and programs one-shot deadlines when idle. */
	struct kvm_cpuid_entry2 *one = leaf(c, 0x1, 0);
	if (one && kvm_ioctl(kvm_fd, KVM_CHECK_EXTENSION, (void *)(uintptr_t)KVM_CAP_TSC_DEADLINE_TIMER) > 0)
		one->ecx |= 1u << 24;
	*out = c;
	return 0;
}

static int order(int n)
{
	int b = 0;
	while ((1 << b) < n)
		b++;
	return b;
}

void cpu_patch_cpuid(struct kvm_cpuid2 *c, int id, const struct cpu_topology *topo)
{
	int tpc = topo->threads_per_core > 1 ? 2 : 1;
	int cores = (topo->nr_vcpus + tpc - 1) / tpc;
	int smt_bits = order(tpc), pkg_bits = order(tpc) + order(cores);
	uint32_t apic = (uint32_t)id;

	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		switch (e->function) {
		case 0x1:
			/* APIC id, logical processors per package, CLFLUSH 64 bytes. */
			e->ebx = (apic << 24) | ((uint32_t)topo->nr_vcpus << 16) | (8 << 8);
			e->ecx |= 1u << 31;                  /* running on a hypervisor */
			if (topo->nr_vcpus > 1)
				e->edx |= 1u << 28;          /* HTT: the count above is valid */
			break;
		case 0x4:
			/* Cores per package - 1 in 31:26, threads sharing the cache in 25:14. */
			e->eax &= 0x3fff;
			e->eax |= (uint32_t)(cores - 1) << 26;
			if (e->eax & 0x1f) {
				uint32_t level = (e->eax >> 5) & 7;
				uint32_t sharing = level >= 3 ? (uint32_t)topo->nr_vcpus : (uint32_t)tpc;
				e->eax |= (sharing - 1) << 14;
			}
			break;
		case 0x6:
			e->ecx &= ~1u;                       /* no APERF/MPERF */
			break;
		case 0xa:
			e->eax = e->ebx = e->ecx = e->edx = 0; /* no PMU */
			break;
		case 0xb:
		case 0x1f:
			e->edx = apic;
			if (e->index == 0) {
				e->eax = (uint32_t)smt_bits;
				e->ebx = (uint32_t)tpc;
				e->ecx = (1u << 8) | 0;
			} else if (e->index == 1) {
				e->eax = (uint32_t)pkg_bits;
				e->ebx = (uint32_t)topo->nr_vcpus;
				e->ecx = (2u << 8) | 1;
			} else {
				e->eax = e->ebx = 0;
				e->ecx = e->index & 0xff;
			}
			break;
		case 0x80000008:
			/* AMD: cores per package - 1 and the APIC id width. */
			e->ecx = (uint32_t)(topo->nr_vcpus - 1) | ((uint32_t)pkg_bits << 12);
			break;
		case 0x8000001e:
			e->eax = apic;
			e->ebx = ((uint32_t)(tpc - 1) << 8) | (apic >> smt_bits);
			e->ecx = 0;
			break;
		}
	}

	/* KVM's own signature leaf and feature leaf (kvmclock, PV EOI, ...):
	 * the host reports them; add them when it does not. */
	struct kvm_cpuid_entry2 *sig = leaf(c, 0x40000000, 0);
	if (!sig && c->nent < CPU_CPUID_MAX) {
		sig = &c->entries[c->nent++];
		memset(sig, 0, sizeof(*sig));
		sig->function = 0x40000000;
	}
	if (sig) {
		sig->eax = 0x40000001;
		memcpy(&sig->ebx, "KVMK", 4);
		memcpy(&sig->ecx, "VMKV", 4);
		memcpy(&sig->edx, "M\0\0\0", 4);
	}
	if (!leaf(c, 0x40000001, 0) && c->nent < CPU_CPUID_MAX) {
		struct kvm_cpuid_entry2 *f = &c->entries[c->nent++];
		memset(f, 0, sizeof(*f));
		f->function = 0x40000001;
		/* CLOCKSOURCE, NOP_IO_DELAY, CLOCKSOURCE2, CLOCKSOURCE_STABLE_BIT */
		f->eax = (1u << 0) | (1u << 1) | (1u << 3) | (1u << 24);
	}
}

/*
 * Start the vCPU with XCR0 already holding every user state component the
 * guest's CPUID leaf 0xD offers (what Linux enables at boot anyway), not
 * the reset value 1. KVM recomputes CPUID 0xD.0 EBX (the XSAVE area size)
 * from its own copy of XCR0; where a guest's XSETBV does not reach KVM
 * (nested KVM under QEMU's TCG-emulated SVM) that size would stay at 576
 * and Linux would find "XSAVE consistency problem" and turn XSAVE off.
 * A guest that wants fewer components sets XCR0 itself, as on hardware.
 */
static int set_boot_xcr0(int vcpu_fd, const struct kvm_cpuid2 *c, int id, struct wisp_err *err)
{
	const struct kvm_cpuid_entry2 *d = leaf((struct kvm_cpuid2 *)c, 0xd, 0);
	const struct kvm_cpuid_entry2 *one = leaf((struct kvm_cpuid2 *)c, 0x1, 0);
	if (!d || !one || !(one->ecx & (1u << 26)))    /* no XSAVE for this guest */
		return 0;
	uint64_t mask = ((uint64_t)d->edx << 32 | d->eax) & CPU_XCR0_USER;
	if (!(mask & 1))
		return 0;
	struct kvm_xcrs x = { .nr_xcrs = 1 };
	x.xcrs[0].xcr = 0;
	x.xcrs[0].value = mask;
	int r = kvm_ioctl(vcpu_fd, KVM_SET_XCRS, &x);
	if (r < 0)
		return wisp_err_sys(err, -r, "KVM_SET_XCRS (XCR0 0x%llx) on vCPU %d",
				    (unsigned long long)mask, id);
	return 0;
}

int cpu_set_cpuid(int vcpu_fd, const struct kvm_cpuid2 *supported, int id,
		  const struct cpu_topology *topo, struct wisp_err *err)
{
	size_t sz = sizeof(struct kvm_cpuid2) + CPU_CPUID_MAX * sizeof(struct kvm_cpuid_entry2);
	struct kvm_cpuid2 *c = malloc(sz);
	if (!c)
		return wisp_err_set(err, ENOMEM, "allocating the CPUID table");
	memcpy(c, supported, sizeof(*c) + supported->nent * sizeof(struct kvm_cpuid_entry2));
	cpu_patch_cpuid(c, id, topo);
	int r = kvm_ioctl(vcpu_fd, KVM_SET_CPUID2, c);
	if (r < 0) {
		free(c);
		return wisp_err_sys(err, -r, "KVM_SET_CPUID2 on vCPU %d", id);
	}
	r = set_boot_xcr0(vcpu_fd, c, id, err);
	free(c);
	return r;
}

int cpu_set_msrs(int vcpu_fd, struct wisp_err *err)
{
	static const struct { uint32_t index; uint64_t data; } boot_msrs[] = {
		{ 0x174, 0 },                     /* IA32_SYSENTER_CS */
		{ 0x175, 0 },                     /* IA32_SYSENTER_ESP */
		{ 0x176, 0 },                     /* IA32_SYSENTER_EIP */
		{ 0xc0000081, 0 },                /* STAR */
		{ 0xc0000082, 0 },                /* LSTAR */
		{ 0xc0000083, 0 },                /* CSTAR */
		{ 0xc0000084, 0 },                /* SYSCALL_MASK */
		{ 0xc0000102, 0 },                /* KERNEL_GS_BASE */
		{ 0x1a0, 1 },                     /* MISC_ENABLE: fast strings */
		{ 0x2ff, (1u << 11) | 6 },        /* MTRRdefType: enabled, write-back */
	};
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[sizeof(boot_msrs) / sizeof(boot_msrs[0])];
	} m;
	memset(&m, 0, sizeof(m));
	m.hdr.nmsrs = sizeof(boot_msrs) / sizeof(boot_msrs[0]);
	for (size_t i = 0; i < m.hdr.nmsrs; i++) {
		m.e[i].index = boot_msrs[i].index;
		m.e[i].data = boot_msrs[i].data;
	}
	int r = kvm_ioctl(vcpu_fd, KVM_SET_MSRS, &m);
	if (r < 0)
		return wisp_err_sys(err, -r, "KVM_SET_MSRS");
	if ((uint32_t)r != m.hdr.nmsrs)
		return wisp_err_set(err, EINVAL, "KVM_SET_MSRS: MSR 0x%x refused",
				    m.e[r].index);
	return 0;
}

#define APIC_LVT0 0x350
#define APIC_LVT1 0x360
#define APIC_MODE_NMI 0x4
#define APIC_MODE_EXTINT 0x7

static void lvt_set_mode(struct kvm_lapic_state *l, int reg, uint32_t mode)
{
	uint32_t v;
	memcpy(&v, l->regs + reg, 4);
	v = (v & ~0x700u) | (mode << 8);
	memcpy(l->regs + reg, &v, 4);
}

int cpu_set_lapic(int vcpu_fd, struct wisp_err *err)
{
	struct kvm_lapic_state l;
	int r = kvm_ioctl(vcpu_fd, KVM_GET_LAPIC, &l);
	if (r < 0)
		return wisp_err_sys(err, -r, "KVM_GET_LAPIC");
	lvt_set_mode(&l, APIC_LVT0, APIC_MODE_EXTINT);
	lvt_set_mode(&l, APIC_LVT1, APIC_MODE_NMI);
	r = kvm_ioctl(vcpu_fd, KVM_SET_LAPIC, &l);
	if (r < 0)
		return wisp_err_sys(err, -r, "KVM_SET_LAPIC");
	return 0;
}

int cpu_set_fpu(int vcpu_fd, struct wisp_err *err)
{
	struct kvm_fpu f;
	memset(&f, 0, sizeof(f));
	f.fcw = 0x37f;
	f.mxcsr = 0x1f80;
	int r = kvm_ioctl(vcpu_fd, KVM_SET_FPU, &f);
	if (r < 0)
		return wisp_err_sys(err, -r, "KVM_SET_FPU");
	return 0;
}

static struct kvm_segment flat_seg(uint16_t sel, uint8_t type, bool code)
{
	return (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = sel, .type = type,
		.present = 1, .dpl = 0, .db = code ? 0 : 1, .s = 1, .l = code ? 1 : 0, .g = 1,
	};
}

int cpu_set_boot_regs(int vcpu_fd, uint64_t entry, struct wisp_err *err)
{
	struct kvm_sregs s;
	int r = kvm_ioctl(vcpu_fd, KVM_GET_SREGS, &s);
	if (r < 0)
		return wisp_err_sys(err, -r, "KVM_GET_SREGS");
	s.gdt.base = WISP_BOOT_GDT_ADDR;
	s.gdt.limit = 4 * 8 - 1;
	s.idt.base = WISP_BOOT_IDT_ADDR;
	s.idt.limit = 0;
	s.cs = flat_seg(BOOT_CS_SEL, 0xb, true);
	s.ds = s.es = s.fs = s.gs = s.ss = flat_seg(BOOT_DS_SEL, 0x3, false);
	s.tr = (struct kvm_segment){
		.base = 0, .limit = 0xfff, .selector = BOOT_TSS_SEL, .type = 0xb, .present = 1,
	};
	s.ldt = (struct kvm_segment){ .type = 0x2, .present = 1, .limit = 0xffff, .unusable = 1 };
	s.cr3 = WISP_PML4_ADDR;
	s.cr4 |= 1u << 5;                         /* PAE */
	s.cr0 = (s.cr0 | 0x80000001u | 0x20u) & ~0x60000000ull; /* PG|PE|NE, caches on */
	s.efer |= (1u << 8) | (1u << 10);         /* LME | LMA */
	r = kvm_ioctl(vcpu_fd, KVM_SET_SREGS, &s);
	if (r < 0)
		return wisp_err_sys(err, -r, "KVM_SET_SREGS");
	struct kvm_regs g;
	memset(&g, 0, sizeof(g));
	g.rflags = 2;
	g.rip = entry;
	g.rsp = g.rbp = WISP_BOOT_STACK_ADDR;
	g.rsi = WISP_ZERO_PAGE_ADDR;
	r = kvm_ioctl(vcpu_fd, KVM_SET_REGS, &g);
	if (r < 0)
		return wisp_err_sys(err, -r, "KVM_SET_REGS");
	return 0;
}

void cpu_dump_regs(int vcpu_fd, int id)
{
	struct kvm_regs g;
	struct kvm_sregs s;
	if (kvm_ioctl(vcpu_fd, KVM_GET_REGS, &g) < 0 || kvm_ioctl(vcpu_fd, KVM_GET_SREGS, &s) < 0) {
		wlog_error("vCPU %d: registers unavailable", id);
		return;
	}
	wlog_error("vCPU %d: rip=%016llx rsp=%016llx rbp=%016llx rflags=%016llx", id,
		   g.rip, g.rsp, g.rbp, g.rflags);
	wlog_error("vCPU %d: rax=%016llx rbx=%016llx rcx=%016llx rdx=%016llx", id, g.rax,
		   g.rbx, g.rcx, g.rdx);
	wlog_error("vCPU %d: rsi=%016llx rdi=%016llx r8=%016llx r9=%016llx", id, g.rsi, g.rdi,
		   g.r8, g.r9);
	wlog_error("vCPU %d: r10=%016llx r11=%016llx r12=%016llx r13=%016llx", id, g.r10,
		   g.r11, g.r12, g.r13);
	wlog_error("vCPU %d: r14=%016llx r15=%016llx", id, g.r14, g.r15);
	wlog_error("vCPU %d: cr0=%016llx cr2=%016llx cr3=%016llx cr4=%016llx efer=%016llx", id,
		   s.cr0, s.cr2, s.cr3, s.cr4, s.efer);
	wlog_error("vCPU %d: cs=%04x base=%llx ss=%04x ds=%04x gdt=%llx/%x idt=%llx/%x", id,
		   s.cs.selector, s.cs.base, s.ss.selector, s.ds.selector, s.gdt.base,
		   s.gdt.limit, s.idt.base, s.idt.limit);
	/* KVM on AMD re-initialises the vCPU when it intercepts a shutdown
	 * (the VMCB is undefined after one): the dump above is then the
	 * power-on state, not the faulting context. Say so. */
	if (g.rip == 0xfff0 && s.cs.selector == 0xf000 && !(s.cr0 & 1))
		wlog_error("vCPU %d: these are power-on values: the host's KVM reset the vCPU at "
			   "the shutdown (AMD hosts do), so the faulting context is lost", id);
}
