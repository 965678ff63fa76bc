/* KVM state in snapshots: each vCPU's CPUID, registers, MSRs, LAPIC and
 * pending events; the VM's interrupt controllers, PIT and kvmclock; the
 * dirty log for diff snapshots. Works on file descriptors only, so it does
 * not depend on how the VMM keeps its vCPUs. */
#include "snapshot.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "cpu.h"

#define SNAP_VCPU_VERSION 2u     /* 2: the CPUID table */
#define SNAP_VM_VERSION   1u
#define SNAP_MSRS_MAX     1024u

/* One vCPU (SNAP_SEC_VCPU). msrs[nr_msrs] follows the fixed part, then
 * struct kvm_cpuid_entry2 cpuid[nr_cpuid]. */
struct snap_vcpu_state {
	struct kvm_mp_state mp;
	uint32_t has_xsave;     /* 1: xsave holds the FPU/SSE/AVX state; 0: fpu does */
	uint32_t has_xcrs;
	uint32_t tsc_khz;       /* 0: unknown */
	uint32_t nr_msrs;
	uint32_t nr_cpuid;      /* KVM_GET_CPUID2: exactly what the guest sees */
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_fpu fpu;
	struct kvm_xsave xsave;
	struct kvm_xcrs xcrs;
	struct kvm_debugregs dbg;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_msr_entry msrs[];
};

/* The VM (SNAP_SEC_VM). */
struct snap_vm_state {
	struct kvm_irqchip pic_master;
	struct kvm_irqchip pic_slave;
	struct kvm_irqchip ioapic;
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
	uint64_t realtime_ns;   /* host CLOCK_REALTIME when the clock was read */
};

static int xioctl(int fd, unsigned long req, void *arg)
{
	int r;
	do
		r = ioctl(fd, req, arg);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : r;
}

/* The MSRs KVM says a VMM should save, less the ones this vCPU refuses to
 * read (KVM_GET_MSRS stops at the first one it cannot read). */
int snap_msr_list(int kvm_fd, int vcpu_fd, struct kvm_msr_entry **out, uint32_t *nr,
		  struct wisp_err *err)
{
	struct { struct kvm_msr_list l; uint32_t idx[SNAP_MSRS_MAX]; } list = {
		.l.nmsrs = SNAP_MSRS_MAX,
	};
	int r = xioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, &list);
	if (r < 0)
		return wisp_err_sys(err, -r, "KVM_GET_MSR_INDEX_LIST");
	uint32_t n = list.l.nmsrs;
	_cleanup_free_ struct kvm_msr_entry *keep = calloc(n ? n : 1, sizeof(*keep));
	_cleanup_free_ struct kvm_msrs *probe = calloc(1, sizeof(*probe) + n * sizeof(*keep));
	if (!keep || !probe)
		return wisp_err_set(err, ENOMEM, "no memory for the MSR list");
	uint32_t kept = 0;
	uint32_t next = 0;
	while (next < n) {
		probe->nmsrs = n - next;
		for (uint32_t i = 0; i < probe->nmsrs; i++)
			probe->entries[i] = (struct kvm_msr_entry){ .index = list.idx[next + i] };
		r = xioctl(vcpu_fd, KVM_GET_MSRS, probe);
		if (r < 0)
			return wisp_err_sys(err, -r, "KVM_GET_MSRS");
		for (int i = 0; i < r; i++)
			keep[kept++].index = list.idx[next + (uint32_t)i];
		/* entry next + r cannot be read on this vCPU: skip it */
		next += (uint32_t)r + ((uint32_t)r < probe->nmsrs ? 1 : 0);
	}
	*out = wisp_steal_ptr(keep);
	*nr = kept;
	return 0;
}

static size_t vcpu_state_size(uint32_t nr_msrs, uint32_t nr_cpuid)
{
	return sizeof(struct snap_vcpu_state) + nr_msrs * sizeof(struct kvm_msr_entry) +
	       nr_cpuid * sizeof(struct kvm_cpuid_entry2);
}

int snap_vcpu_save(int kvm_fd, int vcpu_fd, uint32_t index, struct snap_writer *w,
		   struct wisp_err *err)
{
	_cleanup_free_ struct kvm_msr_entry *msrs = NULL;
	uint32_t nr = 0;
	int r = snap_msr_list(kvm_fd, vcpu_fd, &msrs, &nr, err);
	if (r < 0)
		return wisp_err_prefix(err, "vCPU %u", index);
	_cleanup_free_ struct kvm_cpuid2 *cpuid =
		calloc(1, sizeof(*cpuid) + CPU_CPUID_MAX * sizeof(struct kvm_cpuid_entry2));
	if (!cpuid)
		return wisp_err_set(err, ENOMEM, "no memory for vCPU %u CPUID", index);
	cpuid->nent = CPU_CPUID_MAX;
	r = xioctl(vcpu_fd, KVM_GET_CPUID2, cpuid);
	if (r < 0)
		return wisp_err_sys(err, -r, "vCPU %u: KVM_GET_CPUID2", index);
	size_t size = vcpu_state_size(nr, cpuid->nent);
	_cleanup_free_ struct snap_vcpu_state *s = calloc(1, size);
	_cleanup_free_ struct kvm_msrs *mb = calloc(1, sizeof(*mb) + nr * sizeof(struct kvm_msr_entry));
	if (!s || !mb)
		return wisp_err_set(err, ENOMEM, "no memory for vCPU %u state", index);
	s->nr_cpuid = cpuid->nent;
	memcpy((uint8_t *)s->msrs + nr * sizeof(struct kvm_msr_entry), cpuid->entries,
	       cpuid->nent * sizeof(struct kvm_cpuid_entry2));

	/* Tell the guest's kvmclock it was paused (no soft-lockup reports
	 * after resume); not every KVM has it. */
	xioctl(vcpu_fd, KVM_KVMCLOCK_CTRL, NULL);

#define GET(req, arg, name) \
	do { \
		r = xioctl(vcpu_fd, req, arg); \
		if (r < 0) \
			return wisp_err_sys(err, -r, "vCPU %u: " name, index); \
	} while (0)
	GET(KVM_GET_MP_STATE, &s->mp, "KVM_GET_MP_STATE");
	GET(KVM_GET_REGS, &s->regs, "KVM_GET_REGS");
	GET(KVM_GET_SREGS, &s->sregs, "KVM_GET_SREGS");
	GET(KVM_GET_FPU, &s->fpu, "KVM_GET_FPU");
	if (xioctl(kvm_fd, KVM_CHECK_EXTENSION, (void *)(uintptr_t)KVM_CAP_XSAVE) > 0) {
		GET(KVM_GET_XSAVE, &s->xsave, "KVM_GET_XSAVE");
		s->has_xsave = 1;
	}
	if (xioctl(kvm_fd, KVM_CHECK_EXTENSION, (void *)(uintptr_t)KVM_CAP_XCRS) > 0) {
		GET(KVM_GET_XCRS, &s->xcrs, "KVM_GET_XCRS");
		s->has_xcrs = 1;
	}
	GET(KVM_GET_DEBUGREGS, &s->dbg, "KVM_GET_DEBUGREGS");
	GET(KVM_GET_LAPIC, &s->lapic, "KVM_GET_LAPIC");
	mb->nmsrs = nr;
	memcpy(mb->entries, msrs, nr * sizeof(*msrs));
	r = xioctl(vcpu_fd, KVM_GET_MSRS, mb);
	if (r < 0)
		return wisp_err_sys(err, -r, "vCPU %u: KVM_GET_MSRS", index);
	if ((uint32_t)r != nr)
		return wisp_err_set(err, EIO, "vCPU %u: KVM_GET_MSRS read %d of %u MSRs (MSR 0x%x)",
				    index, r, nr, mb->entries[r].index);
	memcpy(s->msrs, mb->entries, nr * sizeof(*msrs));
	s->nr_msrs = nr;
	GET(KVM_GET_VCPU_EVENTS, &s->events, "KVM_GET_VCPU_EVENTS");
#undef GET
	r = xioctl(vcpu_fd, KVM_GET_TSC_KHZ, NULL);
	s->tsc_khz = r > 0 ? (uint32_t)r : 0;
	return snap_put(w, SNAP_SEC_VCPU, SNAP_VCPU_VERSION, index, s, size);
}

/* The vCPU section, copied out and its counts checked against its length. */
static int vcpu_state_get(struct snap_image *img, uint32_t index, struct snap_vcpu_state **out,
			  struct wisp_err *err)
{
	const uint8_t *data;
	size_t len;
	int r = snap_get_var(img, SNAP_SEC_VCPU, SNAP_VCPU_VERSION, index, &data, &len, err);
	if (r < 0)
		return r;
	if (len < sizeof(struct snap_vcpu_state))
		return wisp_err_set(err, EINVAL, "vCPU %u state is %zu bytes, too short", index, len);
	struct snap_vcpu_state *s = malloc(len);
	if (!s)
		return wisp_err_set(err, ENOMEM, "no memory for vCPU %u state", index);
	memcpy(s, data, len);
	if (s->nr_msrs > SNAP_MSRS_MAX || s->nr_cpuid == 0 || s->nr_cpuid > CPU_CPUID_MAX ||
	    len != vcpu_state_size(s->nr_msrs, s->nr_cpuid)) {
		wisp_err_set(err, EINVAL,
			     "vCPU %u state: %u MSRs and %u CPUID entries do not fit its %zu bytes",
			     index, s->nr_msrs, s->nr_cpuid, len);
		free(s);
		return -EINVAL;
	}
	*out = s;
	return 0;
}

/* The saved CPUID entries as a kvm_cpuid2 with room for CPU_CPUID_MAX. */
static struct kvm_cpuid2 *vcpu_cpuid_table(const struct snap_vcpu_state *s)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + CPU_CPUID_MAX * sizeof(struct kvm_cpuid_entry2));
	if (!c)
		return NULL;
	c->nent = s->nr_cpuid;
	memcpy(c->entries, (const uint8_t *)s->msrs + s->nr_msrs * sizeof(struct kvm_msr_entry),
	       s->nr_cpuid * sizeof(struct kvm_cpuid_entry2));
	return c;
}

int snap_vcpu_cpuid(struct snap_image *img, uint32_t index, struct kvm_cpuid2 **out,
		    struct wisp_err *err)
{
	_cleanup_free_ struct snap_vcpu_state *s = NULL;
	int r = vcpu_state_get(img, index, &s, err);
	if (r < 0)
		return r;
	*out = vcpu_cpuid_table(s);
	if (!*out)
		return wisp_err_set(err, ENOMEM, "no memory for vCPU %u CPUID", index);
	return 0;
}

int snap_vcpu_restore(int vcpu_fd, uint32_t index, struct snap_image *img,
		      struct wisp_err *err)
{
	_cleanup_free_ struct snap_vcpu_state *s = NULL;
	int r = vcpu_state_get(img, index, &s, err);
	if (r < 0)
		return r;
	/* The guest's own CPUID before anything else: KVM checks MSRs and
	 * XSAVE state against it. Replaces the table this host would give a
	 * fresh vCPU. */
	_cleanup_free_ struct kvm_cpuid2 *cpuid = vcpu_cpuid_table(s);
	if (!cpuid)
		return wisp_err_set(err, ENOMEM, "no memory for vCPU %u CPUID", index);
	r = xioctl(vcpu_fd, KVM_SET_CPUID2, cpuid);
	if (r < 0)
		return wisp_err_sys(err, -r, "vCPU %u: KVM_SET_CPUID2 with the snapshot's CPUID",
				    index);

	if (s->tsc_khz) {
		r = xioctl(vcpu_fd, KVM_GET_TSC_KHZ, NULL);
		if (r > 0 && (uint32_t)r != s->tsc_khz &&
		    xioctl(vcpu_fd, KVM_SET_TSC_KHZ, (void *)(uintptr_t)s->tsc_khz) < 0)
			wlog_warn("vCPU %u: TSC runs at %d kHz here, %u kHz in the snapshot, and KVM cannot scale it",
				  index, r, s->tsc_khz);
	}
	/* Order matters: the mode (SREGS) before the LAPIC, the LAPIC before
	 * the MSRs (TSC deadline, APIC base), pending events last. */
#define SET(req, arg, name) \
	do { \
		r = xioctl(vcpu_fd, req, arg); \
		if (r < 0) \
			return wisp_err_sys(err, -r, "vCPU %u: " name, index); \
	} while (0)
	SET(KVM_SET_MP_STATE, &s->mp, "KVM_SET_MP_STATE");
	SET(KVM_SET_REGS, &s->regs, "KVM_SET_REGS");
	SET(KVM_SET_SREGS, &s->sregs, "KVM_SET_SREGS");
	if (s->has_xsave)
		SET(KVM_SET_XSAVE, &s->xsave, "KVM_SET_XSAVE");
	else
		SET(KVM_SET_FPU, &s->fpu, "KVM_SET_FPU");
	if (s->has_xcrs)
		SET(KVM_SET_XCRS, &s->xcrs, "KVM_SET_XCRS");
	SET(KVM_SET_DEBUGREGS, &s->dbg, "KVM_SET_DEBUGREGS");
	SET(KVM_SET_LAPIC, &s->lapic, "KVM_SET_LAPIC");
	_cleanup_free_ struct kvm_msrs *mb =
		calloc(1, sizeof(*mb) + s->nr_msrs * sizeof(struct kvm_msr_entry));
	if (!mb)
		return wisp_err_set(err, ENOMEM, "no memory for vCPU %u MSRs", index);
	mb->nmsrs = s->nr_msrs;
	memcpy(mb->entries, s->msrs, s->nr_msrs * sizeof(struct kvm_msr_entry));
	r = xioctl(vcpu_fd, KVM_SET_MSRS, mb);
	if (r < 0)
		return wisp_err_sys(err, -r, "vCPU %u: KVM_SET_MSRS", index);
	if ((uint32_t)r != s->nr_msrs)
		return wisp_err_set(err, EINVAL, "vCPU %u: KVM refused MSR 0x%x (%d of %u set)",
				    index, mb->entries[r].index, r, s->nr_msrs);
	/* Only the fields the saved state had valid are restored. */
	s->events.flags &= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR |
			   KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM |
			   KVM_VCPUEVENT_VALID_PAYLOAD;
	SET(KVM_SET_VCPU_EVENTS, &s->events, "KVM_SET_VCPU_EVENTS");
#undef SET
	return 0;
}

int snap_vm_save(int vm_fd, struct snap_writer *w, struct wisp_err *err)
{
	struct snap_vm_state s;
	memset(&s, 0, sizeof(s));
	s.pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
	s.pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
	s.ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
	int r;
	if ((r = xioctl(vm_fd, KVM_GET_IRQCHIP, &s.pic_master)) < 0 ||
	    (r = xioctl(vm_fd, KVM_GET_IRQCHIP, &s.pic_slave)) < 0 ||
	    (r = xioctl(vm_fd, KVM_GET_IRQCHIP, &s.ioapic)) < 0)
		return wisp_err_sys(err, -r, "KVM_GET_IRQCHIP");
	r = xioctl(vm_fd, KVM_GET_PIT2, &s.pit);
	if (r < 0)
		return wisp_err_sys(err, -r, "KVM_GET_PIT2");
	r = xioctl(vm_fd, KVM_GET_CLOCK, &s.clock);
	if (r < 0)
		return wisp_err_sys(err, -r, "KVM_GET_CLOCK");
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	s.realtime_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	return snap_put(w, SNAP_SEC_VM, SNAP_VM_VERSION, 0, &s, sizeof(s));
}

int snap_vm_restore(int vm_fd, struct snap_image *img, bool step_clock, struct wisp_err *err)
{
	struct snap_vm_state s;
	int r = snap_get(img, SNAP_SEC_VM, SNAP_VM_VERSION, 0, &s, sizeof(s), err);
	if (r < 0)
		return r;
	if (s.pic_master.chip_id != KVM_IRQCHIP_PIC_MASTER ||
	    s.pic_slave.chip_id != KVM_IRQCHIP_PIC_SLAVE || s.ioapic.chip_id != KVM_IRQCHIP_IOAPIC)
		return wisp_err_set(err, EINVAL, "VM state: interrupt controller ids are wrong");
	r = xioctl(vm_fd, KVM_SET_PIT2, &s.pit);
	if (r < 0)
		return wisp_err_sys(err, -r, "KVM_SET_PIT2");
	struct kvm_clock_data clock = { .clock = s.clock.clock };
	if (step_clock) {
		/* Move kvmclock on by the host time that passed since the
		 * snapshot: the guest's clocks continue from now. */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
		if (now > s.realtime_ns)
			clock.clock += now - s.realtime_ns;
	}
	r = xioctl(vm_fd, KVM_SET_CLOCK, &clock);
	if (r < 0)
		return wisp_err_sys(err, -r, "KVM_SET_CLOCK");
	if ((r = xioctl(vm_fd, KVM_SET_IRQCHIP, &s.pic_master)) < 0 ||
	    (r = xioctl(vm_fd, KVM_SET_IRQCHIP, &s.pic_slave)) < 0 ||
	    (r = xioctl(vm_fd, KVM_SET_IRQCHIP, &s.ioapic)) < 0)
		return wisp_err_sys(err, -r, "KVM_SET_IRQCHIP");
	return 0;
}

int snap_dirty_fetch(int vm_fd, const struct gmem *m, uint64_t *bitmaps[GMEM_MAX_REGIONS],
		     struct wisp_err *err)
{
	for (int i = 0; i < m->nr_regions; i++) {
		uint64_t pages = m->regions[i].size / 4096;
		struct kvm_dirty_log log = { .slot = (uint32_t)i, .dirty_bitmap = bitmaps[i] };
		memset(bitmaps[i], 0, (pages + 63) / 64 * sizeof(uint64_t));
		int r = xioctl(vm_fd, KVM_GET_DIRTY_LOG, &log);
		if (r < 0)
			return wisp_err_sys(err, -r, "KVM_GET_DIRTY_LOG slot %d", i);
	}
	return 0;
}
