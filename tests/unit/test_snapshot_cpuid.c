/* A snapshot's CPUID against the restoring host's (snap_cpuid_check): the
 * same or a richer host is accepted; a host that lacks a feature the guest
 * was given, or another CPU vendor, is refused with the leaf, register and
 * feature named; bits KVM flips at run time and non-feature leaves are not
 * compared. */
#include <criterion/criterion.h>
#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/cpu.h"
#include "vmm/snapshot.h"

static struct kvm_cpuid2 *table(void)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + CPU_CPUID_MAX * sizeof(struct kvm_cpuid_entry2));
	cr_assert_not_null(c);
	return c;
}

static struct kvm_cpuid_entry2 *add(struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx, bool sig,
				    uint32_t eax, uint32_t ebx, uint32_t ecx, uint32_t edx)
{
	struct kvm_cpuid_entry2 *e = &c->entries[c->nent++];
	*e = (struct kvm_cpuid_entry2){ .function = fn, .index = idx, .eax = eax, .ebx = ebx,
					.ecx = ecx, .edx = edx,
					.flags = sig ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0 };
	return e;
}

/* An AMD-like host: vendor, leaf 1, leaf 7 subleaves 0 and 1, XSAVE leaf. */
static struct kvm_cpuid2 *host_table(void)
{
	struct kvm_cpuid2 *c = table();
	add(c, 0, 0, false, 0xd, 0x68747541, 0x444d4163, 0x69746e65); /* AuthenticAMD */
	add(c, 1, 0, false, 0x00a00f11, 0, 0x76f8320b, 0x178bfbff);
	add(c, 7, 0, true, 1, 0x219c07ab, 0x0040069c, 0x10);
	add(c, 7, 1, true, 0, 0, 0, 0);
	add(c, 0xd, 0, true, 0x7, 0x340, 0x340, 0);
	add(c, 0x80000001, 0, false, 0, 0, 0x75c237ff, 0x2fd3fbff);
	return c;
}

static struct kvm_cpuid2 *copy(const struct kvm_cpuid2 *c)
{
	struct kvm_cpuid2 *d = table();
	memcpy(d, c, sizeof(*c) + c->nent * sizeof(struct kvm_cpuid_entry2));
	return d;
}

static struct kvm_cpuid_entry2 *find(struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
	for (uint32_t i = 0; i < c->nent; i++)
		if (c->entries[i].function == fn && c->entries[i].index == idx)
			return &c->entries[i];
	cr_assert_fail("no leaf 0x%x.%u", fn, idx);
	return NULL;
}

static void refused(const struct kvm_cpuid2 *saved, const struct kvm_cpuid2 *host,
		    const char *needle)
{
	struct wisp_err e = { 0 };
	cr_assert_eq(snap_cpuid_check(saved, host, NULL, 1, &e), -ENOTSUP, "accepted, expected '%s'",
		     needle);
	cr_assert(strstr(e.msg, needle) != NULL, "'%s' lacks '%s'", e.msg, needle);
}

Test(snapcpuid, same_or_richer_host_is_accepted)
{
	struct kvm_cpuid2 *host = host_table(), *saved = copy(host);
	struct wisp_err e = { 0 };
	cr_assert_eq(snap_cpuid_check(saved, host, NULL, 0, &e), 0, "%s", e.msg);
	/* the guest has fewer features than this host offers */
	find(saved, 7, 0)->ebx &= ~(1u << 5);
	find(saved, 1, 0)->ecx &= ~(1u << 28);
	cr_assert_eq(snap_cpuid_check(saved, host, NULL, 0, &e), 0, "%s", e.msg);
	/* bits KVM sets as the guest runs, and leaves that are not features */
	find(saved, 1, 0)->ecx |= 1u << 27;       /* OSXSAVE */
	find(saved, 7, 0)->ecx |= 1u << 4;        /* OSPKE */
	find(saved, 1, 0)->ebx = 0x03020800;      /* APIC id 3 */
	find(saved, 0xd, 0)->ebx = 0x988;         /* XSAVE area in use */
	add(saved, 0x80000002, 0, false, 0x20444d41, 0x6e657059, 0, 0); /* brand string */
	cr_assert_eq(snap_cpuid_check(saved, host, NULL, 0, &e), 0, "%s", e.msg);
	free(saved);
	free(host);
}

Test(snapcpuid, a_missing_feature_is_named)
{
	struct kvm_cpuid2 *host = host_table(), *saved = copy(host);
	find(saved, 7, 0)->ebx |= 1u << 16;       /* avx512f: this host has none */
	refused(saved, host, "vCPU 1: the snapshot's CPUID leaf 0x7 subleaf 0 EBX has 0x00010000 (avx512f), which this host cannot give a guest");
	find(saved, 7, 0)->ebx |= 1u << 17 | 1u << 26;
	refused(saved, host, "(avx512f, avx512dq, bit 26)");
	free(saved);

	saved = copy(host);
	find(host, 1, 0)->ecx &= ~(1u << 28);     /* a host without AVX */
	refused(saved, host, "leaf 0x1 subleaf 0 ECX has 0x10000000 (avx)");
	find(host, 1, 0)->ecx |= 1u << 28;

	/* XCR0 state the host cannot hold */
	find(saved, 0xd, 0)->eax |= 1u << 9;
	refused(saved, host, "leaf 0xd subleaf 0 EAX has 0x00000200 (xsave-pkru)");
	free(saved);

	/* a subleaf the host does not have at all */
	saved = copy(host);
	add(saved, 7, 2, true, 0, 0, 0, 0x1);
	struct wisp_err e = { 0 };
	cr_assert_eq(snap_cpuid_check(saved, host, NULL, 0, &e), 0, "7.2 is not a feature leaf here: %s",
		     e.msg);
	find(saved, 7, 1)->eax = 1u << 4;         /* avx-vnni on a host whose 7.1 is empty */
	refused(saved, host, "leaf 0x7 subleaf 1 EAX has 0x00000010 (bit 4)");
	free(saved);

	/* KVM paravirtual features */
	saved = copy(host);
	add(saved, 0x40000001, 0, false, 1u << 7, 0, 0, 0);
	refused(saved, host, "leaf 0x40000001 subleaf 0 EAX has 0x00000080 (pv-unhalt)");
	add(host, 0x40000001, 0, false, (1u << 7) | 1u, 0, 0, 0);
	cr_assert_eq(snap_cpuid_check(saved, host, NULL, 0, &e), 0, "%s", e.msg);
	free(saved);
	free(host);
}

/* A KVM that reports less than its guests get (PVM): what KVM_GET_CPUID2
 * shows for a fresh vCPU, or the host CPU's own CPUID, counts too; a bit in
 * neither is still refused. */
Test(snapcpuid, what_the_host_really_gives_counts_too)
{
	struct kvm_cpuid2 *host = host_table(), *saved = copy(host), *fresh = copy(host);
	find(host, 1, 0)->ecx = 0x81202000;       /* a reduced KVM_GET_SUPPORTED_CPUID */
	find(host, 7, 0)->ebx = 0x01802042;
	refused(saved, host, "leaf 0x1 subleaf 0 ECX");
	struct wisp_err e = { 0 };
	cr_assert_eq(snap_cpuid_check(saved, host, fresh, 0, &e), 0, "%s", e.msg);
	find(saved, 7, 0)->ebx |= 1u << 16;
	cr_assert_eq(snap_cpuid_check(saved, host, fresh, 1, &e), -ENOTSUP);
	cr_assert(strstr(e.msg, "leaf 0x7 subleaf 0 EBX has 0x00010000 (avx512f)") != NULL, "%s",
		  e.msg);
	/* a leaf only the second table has */
	add(saved, 0x80000007, 0, false, 0, 0, 0, 1u << 8);
	refused(saved, fresh, "leaf 0x7 subleaf 0 EBX");
	find(saved, 7, 0)->ebx &= ~(1u << 16);
	refused(saved, host, "leaf 0x1 subleaf 0 ECX");
	add(fresh, 0x80000007, 0, false, 0, 0, 0, 1u << 8);
	cr_assert_eq(snap_cpuid_check(saved, host, fresh, 0, &e), 0, "%s", e.msg);
	free(fresh);
	free(saved);
	free(host);
}

Test(snapcpuid, another_vendor_is_refused)
{
	struct kvm_cpuid2 *host = host_table(), *saved = copy(host);
	struct kvm_cpuid_entry2 *v = find(saved, 0, 0);
	memcpy(&v->ebx, "Genu", 4);
	memcpy(&v->edx, "ineI", 4);
	memcpy(&v->ecx, "ntel", 4);
	refused(saved, host, "taken on a GenuineIntel CPU; this host's is AuthenticAMD");
	free(saved);
	free(host);
}

/* What a restored vCPU is compared with: the host's table patched for that
 * vCPU as a boot would (hypervisor bit, HTT, KVM leaves), so a snapshot's
 * own table never trips over what wisp-vmm itself adds. */
Test(snapcpuid, checked_against_the_patched_host_table)
{
	struct kvm_cpuid2 *host = host_table();
	struct kvm_cpuid2 *saved = copy(host);
	const struct cpu_topology topo = { .nr_vcpus = 2, .threads_per_core = 1 };
	cpu_patch_cpuid(saved, 1, &topo);
	struct wisp_err e = { 0 };
	refused(saved, host, "(hypervisor)");
	struct kvm_cpuid2 *patched = copy(host);
	cpu_patch_cpuid(patched, 1, &topo);
	cr_assert_eq(snap_cpuid_check(saved, patched, NULL, 1, &e), 0, "%s", e.msg);
	free(patched);
	free(saved);
	free(host);
}

/* A vCPU section too short to hold its tables is refused by the decoder. */
Test(snapcpuid, malformed_vcpu_sections)
{
	struct snap_writer w;
	cr_assert_eq(snap_writer_init(&w, 1 << 20, 0), 0);
	uint8_t junk[64] = { 0 };
	cr_assert_eq(snap_put(&w, SNAP_SEC_VCPU, 2, 0, junk, sizeof(junk)), 0);
	cr_assert_eq(snap_put(&w, SNAP_SEC_VCPU, 1, 1, junk, sizeof(junk)), 0);
	const uint8_t *buf;
	size_t len;
	struct wisp_err e = { 0 };
	cr_assert_eq(snap_writer_finish(&w, &buf, &len, &e), 0);
	struct snap_image img;
	cr_assert_eq(snap_parse(buf, len, &img, &e), 0, "%s", e.msg);
	struct kvm_cpuid2 *c = NULL;
	cr_assert_eq(snap_vcpu_cpuid(&img, 0, &c, &e), -EINVAL);
	cr_assert(strstr(e.msg, "vCPU 0 state is 64 bytes, too short") != NULL, "%s", e.msg);
	cr_assert_eq(snap_vcpu_cpuid(&img, 1, &c, &e), -EPROTO);
	cr_assert(strstr(e.msg, "has version 1; this wisp-vmm reads version 2") != NULL, "%s",
		  e.msg);
	struct kvm_cpuid2 *host = host_table();
	cr_assert_eq(snap_cpuid_verify(&img, host, 1, 1, &e), -EINVAL);
	cr_assert_null(c);
	free(host);
	snap_image_free(&img);
	snap_writer_free(&w);
}
