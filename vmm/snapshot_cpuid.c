/* A snapshot's CPUID against the restoring host. The guest keeps the CPUID
 * it booted with (snap_vcpu_restore sets the saved table), so the host's
 * KVM must be able to give it every feature that table promises: a guest
 * kernel that chose AVX-512 or PKU code paths at boot would fault on a
 * host without them, long after the load. Only leaves that hold feature
 * flags are compared; topology, cache and brand leaves are the guest's own
 * and go back as they were.
 *
 * What a host gives a guest is KVM_GET_SUPPORTED_CPUID as wisp-vmm patches
 * it, except where a KVM reports less than its guests get (PVM: its vCPUs
 * see the host CPU's own feature bits, and KVM_GET_CPUID2 says so). Two
 * checks therefore: before the VM exists, against that table or the host
 * CPU's own CPUID (a host CPU without the feature can never offer it);
 * once the vCPUs exist and before any runs, against that table or what
 * KVM_GET_CPUID2 says this host gives the fresh vCPU (a KVM that does not
 * offer a feature the CPU has). */
#include "snapshot.h"

#include <cpuid.h>
#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "common/cleanup.h"
#include "cpu.h"

enum { EAX, EBX, ECX, EDX };
static const char *const reg_names[] = { "EAX", "EBX", "ECX", "EDX" };

/* Registers made of feature bits, and the bits in them that KVM changes as
 * the guest runs (not features the host could lack). */
static const struct {
	uint32_t fn, idx;
	int reg;
	uint32_t runtime;
} feature_regs[] = {
	{ 0x1, 0, ECX, 1u << 27 },            /* OSXSAVE follows CR4.OSXSAVE */
	{ 0x1, 0, EDX, 0 },
	{ 0x6, 0, EAX, 0 },
	{ 0x7, 0, EBX, 0 },
	{ 0x7, 0, ECX, 1u << 4 },             /* OSPKE follows CR4.PKE */
	{ 0x7, 0, EDX, 0 },
	{ 0x7, 1, EAX, 0 },
	{ 0xd, 0, EAX, 0 },                   /* XCR0 features */
	{ 0xd, 0, EDX, 0 },
	{ 0xd, 1, EAX, 0 },
	{ 0x40000001, 0, EAX, 0 },            /* KVM paravirtual features */
	{ 0x80000001, 0, ECX, 0 },
	{ 0x80000001, 0, EDX, 0 },
	{ 0x80000007, 0, EDX, 0 },
	{ 0x80000008, 0, EBX, 0 },
};

/* Names for the message; a bit without one is shown by number only. */
static const struct {
	uint32_t fn, idx;
	int reg, bit;
	const char *name;
} feature_names[] = {
	{ 0x1, 0, ECX, 0, "sse3" },      { 0x1, 0, ECX, 9, "ssse3" },
	{ 0x1, 0, ECX, 12, "fma" },      { 0x1, 0, ECX, 13, "cx16" },
	{ 0x1, 0, ECX, 19, "sse4.1" },   { 0x1, 0, ECX, 20, "sse4.2" },
	{ 0x1, 0, ECX, 21, "x2apic" },   { 0x1, 0, ECX, 22, "movbe" },
	{ 0x1, 0, ECX, 23, "popcnt" },   { 0x1, 0, ECX, 24, "tsc-deadline" },
	{ 0x1, 0, ECX, 25, "aes" },      { 0x1, 0, ECX, 26, "xsave" },
	{ 0x1, 0, ECX, 28, "avx" },      { 0x1, 0, ECX, 29, "f16c" },
	{ 0x1, 0, ECX, 30, "rdrand" },   { 0x1, 0, ECX, 31, "hypervisor" },
	{ 0x1, 0, EDX, 25, "sse" },      { 0x1, 0, EDX, 26, "sse2" },
	{ 0x1, 0, EDX, 28, "htt" },
	{ 0x7, 0, EBX, 0, "fsgsbase" },  { 0x7, 0, EBX, 3, "bmi1" },
	{ 0x7, 0, EBX, 5, "avx2" },      { 0x7, 0, EBX, 7, "smep" },
	{ 0x7, 0, EBX, 8, "bmi2" },      { 0x7, 0, EBX, 9, "erms" },
	{ 0x7, 0, EBX, 10, "invpcid" },  { 0x7, 0, EBX, 16, "avx512f" },
	{ 0x7, 0, EBX, 17, "avx512dq" }, { 0x7, 0, EBX, 18, "rdseed" },
	{ 0x7, 0, EBX, 19, "adx" },      { 0x7, 0, EBX, 20, "smap" },
	{ 0x7, 0, EBX, 29, "sha" },      { 0x7, 0, EBX, 30, "avx512bw" },
	{ 0x7, 0, EBX, 31, "avx512vl" },
	{ 0x7, 0, ECX, 1, "avx512vbmi" }, { 0x7, 0, ECX, 2, "umip" },
	{ 0x7, 0, ECX, 3, "pku" },       { 0x7, 0, ECX, 8, "gfni" },
	{ 0x7, 0, ECX, 9, "vaes" },      { 0x7, 0, ECX, 10, "vpclmulqdq" },
	{ 0x7, 0, ECX, 11, "avx512vnni" }, { 0x7, 0, ECX, 22, "rdpid" },
	{ 0x7, 0, EDX, 4, "fsrm" },      { 0x7, 0, EDX, 26, "ibrs" },
	{ 0x7, 0, EDX, 29, "arch-capabilities" },
	{ 0xd, 0, EAX, 2, "xsave-avx" }, { 0xd, 0, EAX, 5, "xsave-avx512-opmask" },
	{ 0xd, 0, EAX, 9, "xsave-pkru" }, { 0xd, 1, EAX, 0, "xsaveopt" },
	{ 0xd, 1, EAX, 1, "xsavec" },    { 0xd, 1, EAX, 3, "xsaves" },
	{ 0x40000001, 0, EAX, 0, "kvmclock" }, { 0x40000001, 0, EAX, 3, "kvmclock2" },
	{ 0x40000001, 0, EAX, 6, "pv-eoi" }, { 0x40000001, 0, EAX, 7, "pv-unhalt" },
	{ 0x80000001, 0, ECX, 0, "lahf-lm" }, { 0x80000001, 0, ECX, 2, "svm" },
	{ 0x80000001, 0, ECX, 5, "lzcnt" }, { 0x80000001, 0, ECX, 6, "sse4a" },
	{ 0x80000001, 0, EDX, 20, "nx" }, { 0x80000001, 0, EDX, 26, "pdpe1gb" },
	{ 0x80000001, 0, EDX, 27, "rdtscp" }, { 0x80000001, 0, EDX, 29, "lm" },
	{ 0x80000007, 0, EDX, 8, "invariant-tsc" },
};

static uint32_t reg_of(const struct kvm_cpuid_entry2 *e, int reg)
{
	switch (reg) {
	case EAX: return e->eax;
	case EBX: return e->ebx;
	case ECX: return e->ecx;
	default: return e->edx;
	}
}

static bool entry_matches(const struct kvm_cpuid_entry2 *e, uint32_t fn, uint32_t idx)
{
	return e->function == fn &&
	       (!(e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || e->index == idx);
}

static const struct kvm_cpuid_entry2 *find(const struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
	for (uint32_t i = 0; i < c->nent; i++)
		if (entry_matches(&c->entries[i], fn, idx))
			return &c->entries[i];
	return NULL;
}

static void vendor(const struct kvm_cpuid_entry2 *e, char out[13])
{
	memcpy(out, &e->ebx, 4);
	memcpy(out + 4, &e->edx, 4);
	memcpy(out + 8, &e->ecx, 4);
	out[12] = '\0';
	for (int i = 0; i < 12; i++)
		if (out[i] < 0x20 || out[i] > 0x7e)
			out[i] = '?';
}

/* "avx512f, bit 5" for the bits of mask in (fn, idx, reg). */
static void name_bits(uint32_t fn, uint32_t idx, int reg, uint32_t mask, char *buf, size_t size)
{
	size_t n = 0;
	buf[0] = '\0';
	for (int bit = 0; bit < 32 && n < size; bit++) {
		if (!(mask & (1u << bit)))
			continue;
		const char *name = NULL;
		for (size_t i = 0; i < sizeof(feature_names) / sizeof(feature_names[0]); i++)
			if (feature_names[i].fn == fn && feature_names[i].idx == idx &&
			    feature_names[i].reg == reg && feature_names[i].bit == bit)
				name = feature_names[i].name;
		int w = name ? snprintf(buf + n, size - n, "%s%s", n ? ", " : "", name)
			     : snprintf(buf + n, size - n, "%sbit %d", n ? ", " : "", bit);
		if (w < 0)
			break;
		n += (size_t)w;
	}
}

int snap_cpuid_check(const struct kvm_cpuid2 *saved, const struct kvm_cpuid2 *host,
		     const struct kvm_cpuid2 *also, uint32_t vcpu, struct wisp_err *err)
{
	const struct kvm_cpuid_entry2 *sv = find(saved, 0, 0), *hv = find(host, 0, 0);
	if (sv && hv && (sv->ebx != hv->ebx || sv->ecx != hv->ecx || sv->edx != hv->edx)) {
		char a[13], b[13];
		vendor(sv, a);
		vendor(hv, b);
		return wisp_err_set(err, ENOTSUP,
				    "vCPU %u: the snapshot was taken on a %s CPU; this host's is %s (CPUID leaf 0x0): restore it on a host with the same CPU",
				    vcpu, a, b);
	}
	for (uint32_t i = 0; i < saved->nent; i++) {
		const struct kvm_cpuid_entry2 *e = &saved->entries[i];
		for (size_t k = 0; k < sizeof(feature_regs) / sizeof(feature_regs[0]); k++) {
			uint32_t fn = feature_regs[k].fn, idx = feature_regs[k].idx;
			if (!entry_matches(e, fn, idx) ||
			    (idx && !(e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX)))
				continue;
			const struct kvm_cpuid_entry2 *h = find(host, fn, idx);
			const struct kvm_cpuid_entry2 *a = also ? find(also, fn, idx) : NULL;
			int reg = feature_regs[k].reg;
			uint32_t offered = (h ? reg_of(h, reg) : 0) | (a ? reg_of(a, reg) : 0);
			uint32_t missing = reg_of(e, reg) & ~offered & ~feature_regs[k].runtime;
			if (!missing)
				continue;
			char names[256];
			name_bits(fn, idx, reg, missing, names, sizeof(names));
			return wisp_err_set(err, ENOTSUP,
					    "vCPU %u: the snapshot's CPUID leaf 0x%x subleaf %u %s has 0x%08x (%s), which this host cannot give a guest: restore it on a host with the same CPU features",
					    vcpu, fn, idx, reg_names[reg], missing, names);
		}
	}
	return 0;
}

/* The host CPU's own CPUID for every (leaf, subleaf) of like. */
static void native_table(const struct kvm_cpuid2 *like, struct kvm_cpuid2 *out)
{
	out->nent = like->nent;
	for (uint32_t i = 0; i < like->nent; i++) {
		struct kvm_cpuid_entry2 *e = &out->entries[i];
		*e = like->entries[i];
		e->eax = e->ebx = e->ecx = e->edx = 0;
		unsigned int max = __get_cpuid_max(e->function & 0x80000000u, NULL);
		if (e->function <= max && (e->function & 0xf0000000u) != 0x40000000u)
			__cpuid_count(e->function, e->index, e->eax, e->ebx, e->ecx, e->edx);
	}
}

static struct kvm_cpuid2 *new_table(void)
{
	return calloc(1, sizeof(struct kvm_cpuid2) + CPU_CPUID_MAX * sizeof(struct kvm_cpuid_entry2));
}

/* vCPU index's saved table against supported patched for it, or also
 * (NULL: the host CPU's own CPUID). */
static int verify_vcpu(struct snap_image *img, int index, const struct kvm_cpuid2 *supported,
		       const struct kvm_cpuid2 *also, const struct cpu_topology *topo,
		       struct wisp_err *err)
{
	if (supported->nent > CPU_CPUID_MAX)
		return wisp_err_set(err, EINVAL, "KVM reported %u CPUID entries, more than %d",
				    supported->nent, CPU_CPUID_MAX);
	_cleanup_free_ struct kvm_cpuid2 *saved = NULL;
	int r = snap_vcpu_cpuid(img, (uint32_t)index, &saved, err);
	if (r < 0)
		return r;
	_cleanup_free_ struct kvm_cpuid2 *host = new_table(), *native = NULL;
	if (!host)
		return wisp_err_set(err, ENOMEM, "no memory for the CPUID table");
	memcpy(host, supported, sizeof(*supported) + supported->nent * sizeof(struct kvm_cpuid_entry2));
	cpu_patch_cpuid(host, index, topo);
	if (!also) {
		if (!(native = new_table()))
			return wisp_err_set(err, ENOMEM, "no memory for the CPUID table");
		native_table(saved, native);
		also = native;
	}
	return snap_cpuid_check(saved, host, also, (uint32_t)index, err);
}

int snap_cpuid_verify(struct snap_image *img, const struct kvm_cpuid2 *supported,
		      int nr_vcpus, int threads_per_core, struct wisp_err *err)
{
	const struct cpu_topology topo = { .nr_vcpus = nr_vcpus,
					   .threads_per_core = threads_per_core };
	for (int i = 0; i < nr_vcpus; i++) {
		int r = verify_vcpu(img, i, supported, NULL, &topo, err);
		if (r < 0)
			return r;
	}
	return 0;
}

int snap_cpuid_verify_vcpu(struct snap_image *img, int index, int vcpu_fd,
			   const struct kvm_cpuid2 *supported, int nr_vcpus,
			   int threads_per_core, struct wisp_err *err)
{
	_cleanup_free_ struct kvm_cpuid2 *fresh = new_table();
	if (!fresh)
		return wisp_err_set(err, ENOMEM, "no memory for the CPUID table");
	fresh->nent = CPU_CPUID_MAX;
	int r;
	do
		r = ioctl(vcpu_fd, KVM_GET_CPUID2, fresh);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return wisp_err_sys(err, errno, "vCPU %d: KVM_GET_CPUID2", index);
	const struct cpu_topology topo = { .nr_vcpus = nr_vcpus,
					   .threads_per_core = threads_per_core };
	return verify_vcpu(img, index, supported, fresh, &topo, err);
}
