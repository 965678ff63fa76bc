/* Snapshots: a state file (every component's state in tagged sections) and a
 * memory file (guest RAM, sparse where pages are zero).
 *
 * State file layout (little endian, x86_64 only):
 *
 *   struct snap_header            64 bytes: magic, format version, architecture,
 *                                 total length, guest RAM size, flags (Full or
 *                                 Diff), section count, CRC32 over the whole
 *                                 file (this field read as zero), this
 *                                 snapshot's id and, for a Diff, its base's id
 *   { struct snap_section_hdr     16 bytes: component id, component version,
 *                                 instance (vCPU index, device slot), length
 *     payload[len], zero padded to 8 bytes } * nr_sections
 *
 * The file size is capped (SNAP_STATE_MAX) and checked with fstat before a
 * byte is read; the header and checksum are checked before any section is
 * looked at, and every section is bounds-checked before the index is built.
 * Each component writes and reads its own state struct with snap_put() and
 * snap_get(), which check the component version and the exact length.
 *
 * The memory file is guest RAM laid out region after region (struct
 * gmem_region.file_off), one byte of file per byte of RAM, so restore can
 * map it MAP_PRIVATE, followed by one footer page (struct snap_mem_footer:
 * Full or Diff, the snapshot id, a Diff's base id). The footer sits after
 * the RAM so the file still maps as RAM from offset 0. A full snapshot
 * writes every non-zero page and leaves holes for zero pages; a diff
 * snapshot writes only the pages of a dirty bitmap (zero or not) and leaves
 * holes elsewhere. A diff is not a whole memory image: load refuses it, and
 * snap_mem_merge() copies its data extents onto its base (wisp-snap merge
 * BASE DIFF), which gives a Full memory file of the diff's snapshot id.
 */
#ifndef WISP_SNAPSHOT_H
#define WISP_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/err.h"
#include "config.h"
#include "mem.h"

#define SNAP_MAGIC          "WISPSNAP"
#define SNAP_FORMAT_VERSION 2u          /* 2: snapshot ids, vCPU CPUID, device state */
#define SNAP_ARCH_X86_64    62u           /* ELF EM_X86_64 */
#define SNAP_STATE_MAX      (16u << 20)   /* refuse larger state files unread */
#define SNAP_SECTION_MAX    (4u << 20)    /* one component's state */
#define SNAP_SECTIONS_MAX   1024u

/* snap_header.flags */
#define SNAP_F_DIFF         0x1u          /* the memory file holds dirty pages only */
#define SNAP_F_KNOWN        (SNAP_F_DIFF)

struct snap_header {
	char magic[8];
	uint32_t version;
	uint32_t arch;
	uint64_t total_len;      /* whole file, header included */
	uint64_t mem_size;       /* guest RAM bytes = memory file size */
	uint32_t flags;
	uint32_t nr_sections;
	uint32_t crc32;          /* of the whole file with this field zero */
	uint32_t reserved0;
	uint64_t snap_id;        /* this snapshot (random, never 0) */
	uint64_t base_id;        /* Diff: the snapshot whose memory it applies onto */
};
_Static_assert(sizeof(struct snap_header) == 64, "snap_header is 64 bytes");

struct snap_section_hdr {
	uint32_t id;             /* enum snap_section_id */
	uint32_t version;        /* the component's own state version */
	uint32_t instance;       /* vCPU index, device slot, 0 for singletons */
	uint32_t len;            /* payload bytes, padding excluded */
};
_Static_assert(sizeof(struct snap_section_hdr) == 16, "snap_section_hdr is 16 bytes");

/* Component ids. Every component owns one id and its payload layout; bump
 * the component's version when that layout changes. */
enum snap_section_id {
	SNAP_SEC_CONFIG = 1,     /* the VM configuration as JSON (vmcfg_to_json) */
	SNAP_SEC_VCPU,           /* per vCPU: registers, MSRs, LAPIC, events */
	SNAP_SEC_VM,             /* irqchip (PIC, IOAPIC), PIT, kvmclock */
	SNAP_SEC_SERIAL,
	SNAP_SEC_I8042,
	SNAP_SEC_VIRTIO_MMIO,    /* per device slot: transport registers, queues */
	SNAP_SEC_VIRTIO_BLK,     /* per device slot: device state */
	SNAP_SEC_VIRTIO_NET,
	SNAP_SEC_VIRTIO_VSOCK,
	SNAP_SEC_MAX_ID,
};

const char *snap_section_name(uint32_t id);

/* Building a state file in memory. Errors are sticky: a failed snap_put()
 * is reported by snap_writer_finish(). */
struct snap_writer {
	uint8_t *buf;
	size_t len, cap;
	uint32_t nr_sections;
	struct wisp_err err;     /* first failure, reported by finish */
};

int snap_writer_init(struct snap_writer *w, uint64_t mem_size, uint32_t flags);
/* The snapshot's id and (Diff) its base's id, in the header (init gives
 * a fresh id and no base). */
void snap_writer_ids(struct snap_writer *w, uint64_t snap_id, uint64_t base_id);
int snap_put(struct snap_writer *w, uint32_t id, uint32_t version, uint32_t instance,
	     const void *data, size_t len);
/* Seal the buffer (total length, CRC); *buf and *len point into the writer. */
int snap_writer_finish(struct snap_writer *w, const uint8_t **buf, size_t *len,
		       struct wisp_err *err);
void snap_writer_free(struct snap_writer *w);

/* A parsed state file. Sections point into buf. */
struct snap_section {
	struct snap_section_hdr hdr;
	const uint8_t *data;
	bool used;               /* set by snap_get*() */
};

struct snap_image {
	uint8_t *buf;            /* owned when read from a file */
	size_t len;
	struct snap_header hdr;
	struct snap_section *sections;
	uint32_t nr_sections;
};

/* Check and index a state file held in memory (the fuzz target): size cap,
 * magic, format version, architecture, length, checksum, then every
 * section's bounds, id and uniqueness. buf must outlive img; it is not
 * copied or freed. */
int snap_parse(const uint8_t *buf, size_t len, struct snap_image *img, struct wisp_err *err);
/* fstat first (regular file, size cap), then read and snap_parse(). */
int snap_read_file(const char *path, struct snap_image *img, struct wisp_err *err);
void snap_image_free(struct snap_image *img);

/* Fixed-size state: the section must exist, carry this version and be
 * exactly len bytes. */
int snap_get(struct snap_image *img, uint32_t id, uint32_t version, uint32_t instance,
	     void *out, size_t len, struct wisp_err *err);
/* Variable-size state: data and len point into the image. */
int snap_get_var(struct snap_image *img, uint32_t id, uint32_t version, uint32_t instance,
		 const uint8_t **data, size_t *len, struct wisp_err *err);
/* Whether a section exists (optional components). */
bool snap_has(const struct snap_image *img, uint32_t id, uint32_t instance);
/* Refuse an image with a section nothing restored (a device the restored
 * VM does not have). */
int snap_check_all_used(const struct snap_image *img, struct wisp_err *err);

uint32_t snap_crc32(uint32_t crc, const void *buf, size_t len);
/* A fresh snapshot id: random, never 0. */
uint64_t snap_new_id(void);

/* Memory files. */

#define SNAP_MEM_MAGIC       "WISPMEM"    /* 8 bytes with the NUL */
#define SNAP_MEM_VERSION     1u
#define SNAP_MEM_FOOTER_SIZE 4096u        /* one page after the RAM */

/* At offset mem_size of a memory file; the rest of the page is zero. */
struct snap_mem_footer {
	char magic[8];
	uint32_t version;
	uint32_t flags;          /* SNAP_F_DIFF: only the pages dirtied since base_id */
	uint64_t mem_size;       /* guest RAM bytes before the footer */
	uint64_t snap_id;        /* the snapshot whose RAM this is */
	uint64_t base_id;        /* Diff: the snapshot it applies onto; Full: 0 */
	uint64_t reserved[3];
};
_Static_assert(sizeof(struct snap_mem_footer) == 64, "snap_mem_footer is 64 bytes");

/* Write guest RAM and the footer to path: a temporary file in the same
 * directory, renamed over path only when complete (a failure leaves nothing
 * behind). dirty is NULL for a full snapshot (zero pages become holes), or
 * one bitmap per region (bit i = page i of that region) for a diff of
 * snapshot base_id: only those pages are written. When tmp_out is not NULL
 * the temporary file is kept under that name (PATH_MAX bytes) instead of
 * being renamed, so a caller can commit it together with the state file
 * (snap_commit). */
int snap_mem_write(const struct gmem *m, const char *path,
		   const uint64_t *const dirty[GMEM_MAX_REGIONS], uint64_t snap_id,
		   uint64_t base_id, char *tmp_out, struct wisp_err *err);
/* Read and check the footer of an open memory file of size bytes. */
int snap_mem_footer_read(int fd, const char *path, uint64_t size, struct snap_mem_footer *out,
			 struct wisp_err *err);
/* The checks before restore maps a memory file for state file header h: a
 * regular file of h->mem_size bytes plus the footer, a Full memory image
 * (a Diff's is refused: merge it onto its base first) of the same
 * snapshot. Returns an O_RDONLY fd. */
int snap_mem_open(const char *path, const struct snap_header *h, struct wisp_err *err);
/* Apply diff onto base: diff must be a Diff memory file whose base is
 * base's snapshot. base is replaced (new file renamed over it) by a Full
 * memory file of the diff's snapshot; *merged (may be NULL) gets its
 * footer. Nothing changes on a refusal. */
int snap_mem_merge(const char *base, const char *diff, struct snap_mem_footer *merged,
		   struct wisp_err *err);

/* Atomic creation of a state + memory pair. */
int snap_tmp_create(const char *path, char tmp[], size_t tmp_size, struct wisp_err *err);
/* Write a finished state buffer to a temporary file next to path. */
int snap_state_write_tmp(const char *path, const uint8_t *buf, size_t len, char tmp[],
			 size_t tmp_size, struct wisp_err *err);
/* Rename the memory file's and then the state file's temporary into place;
 * on failure both temporaries are removed. Either tmp may be NULL. */
int snap_commit(const char *mem_tmp, const char *mem_path, const char *state_tmp,
		const char *state_path, struct wisp_err *err);

/* KVM state (snapshot_kvm.c). Works on file descriptors so it does not
 * depend on how the VMM keeps its vCPUs. */
struct kvm_msr_entry;

/* The MSRs KVM_GET_MSR_INDEX_LIST reports that this vCPU can read. */
int snap_msr_list(int kvm_fd, int vcpu_fd, struct kvm_msr_entry **out, uint32_t *nr,
		  struct wisp_err *err);
/* One vCPU, stopped out of KVM_RUN: its CPUID table (KVM_GET_CPUID2), MP
 * state, general, special, FPU/XSAVE, XCR and debug registers, LAPIC, MSRs,
 * pending events, TSC frequency. */
int snap_vcpu_save(int kvm_fd, int vcpu_fd, uint32_t index, struct snap_writer *w,
		   struct wisp_err *err);
/* Restore in KVM's required order (the saved CPUID first, SREGS before
 * LAPIC, LAPIC before MSRs, events last) into a freshly created vCPU that
 * has not run. */
int snap_vcpu_restore(int vcpu_fd, uint32_t index, struct snap_image *img,
		      struct wisp_err *err);

/* CPUID (snapshot_cpuid.c). A restored guest sees exactly the CPUID it
 * booted with, so the host must be able to give it that. */
struct kvm_cpuid2;
/* vCPU index's saved CPUID table, checked and copied out (malloc'd, room
 * for CPU_CPUID_MAX entries). */
int snap_vcpu_cpuid(struct snap_image *img, uint32_t index, struct kvm_cpuid2 **out,
		    struct wisp_err *err);
/* Refuse a saved table that asks for more than the host offers: another
 * CPU vendor than host's, or a feature bit (in the leaves that hold feature
 * flags) in neither host nor also (may be NULL), named by leaf, subleaf,
 * register and feature. host is what this VMM gives that vCPU on this host
 * (KVM_GET_SUPPORTED_CPUID through cpu_patch_cpuid). Bits the guest flips
 * at run time (OSXSAVE, OSPKE) are not compared. */
int snap_cpuid_check(const struct kvm_cpuid2 *saved, const struct kvm_cpuid2 *host,
		     const struct kvm_cpuid2 *also, uint32_t vcpu, struct wisp_err *err);
/* Before the VM exists: every vCPU of img against supported patched for
 * that vCPU's index and topology, or the host CPU's own CPUID (some KVMs,
 * PVM, report less than their guests see). */
int snap_cpuid_verify(struct snap_image *img, const struct kvm_cpuid2 *supported,
		      int nr_vcpus, int threads_per_core, struct wisp_err *err);
/* Once vCPU index exists and before it runs: against supported patched,
 * or exactly what KVM gives this fresh vCPU (KVM_GET_CPUID2), which also
 * catches a KVM that does not offer a feature the CPU has. */
int snap_cpuid_verify_vcpu(struct snap_image *img, int index, int vcpu_fd,
			   const struct kvm_cpuid2 *supported, int nr_vcpus,
			   int threads_per_core, struct wisp_err *err);
/* PIC master/slave, IOAPIC, PIT, kvmclock (and the host's wall time). */
int snap_vm_save(int vm_fd, struct snap_writer *w, struct wisp_err *err);
/* step_clock: move kvmclock on by the host time that passed since the
 * snapshot, so the guest's wall clock is right at once. */
int snap_vm_restore(int vm_fd, struct snap_image *img, bool step_clock, struct wisp_err *err);
/* KVM_GET_DIRTY_LOG for every RAM slot (slot i = region i) into bitmaps
 * sized (pages + 63) / 64 words; fetching clears KVM's log. */
int snap_dirty_fetch(int vm_fd, const struct gmem *m, uint64_t *bitmaps[GMEM_MAX_REGIONS],
		     struct wisp_err *err);

/* One virtio device slot (snapshot_dev.c): the transport's feature
 * negotiation, status, queue geometry and positions under
 * SNAP_SEC_VIRTIO_MMIO, then the device's own state struct (block, net,
 * vsock: virtio_dev_ops.snap_save/snap_restore) under its own section.
 * Restore checks every value against the freshly created device (type,
 * queue count, features it offers, rings inside guest RAM, then the
 * device's own checks: drive or interface id, disk size, MAC, guest CID),
 * then starts the backend when the driver had. snap_virtio_kick re-kicks
 * ready queues and re-raises a pending interrupt; call it once the VM is
 * restored. */
struct virtio_mmio_dev;
int snap_virtio_save(struct virtio_mmio_dev *d, uint32_t slot, struct snap_writer *w,
		     struct wisp_err *err);
int snap_virtio_restore(struct virtio_mmio_dev *d, uint32_t slot, struct snap_image *img,
			struct wisp_err *err);
void snap_virtio_kick(struct virtio_mmio_dev *d);

/* API requests (snapshot_req.c): PUT /snapshot/create and PUT
 * /snapshot/load bodies with Firecracker's field names. Unknown fields,
 * wrong types and empty paths are refused with the field's name. */
enum snap_type { SNAP_TYPE_FULL = 0, SNAP_TYPE_DIFF };

struct snap_create_req {
	enum snap_type type;     /* snapshot_type "Full" (default) or "Diff" */
	char *snapshot_path;
	char *mem_file_path;
};

struct snap_net_override {
	char iface_id[VMCFG_ID_MAX + 1];
	char host_dev_name[IFNAMSIZ];
};

struct snap_drive_override {
	char drive_id[VMCFG_ID_MAX + 1];
	char *path_on_host;
};

struct snap_load_req {
	char *snapshot_path;
	char *mem_path;          /* mem_backend {backend_type File, backend_path}
				  * or the older mem_file_path */
	bool track_dirty_pages;  /* also its older name enable_diff_snapshots */
	bool resume_vm;
	bool clock_realtime;     /* wisp: step kvmclock by the time since the snapshot */
	struct snap_net_override nets[VMCFG_MAX_NETS];   /* network_overrides */
	int nr_nets;
	struct snap_drive_override drives[VMCFG_MAX_DRIVES]; /* drive_overrides (wisp) */
	int nr_drives;
	char *vsock_uds_path;    /* vsock_override.uds_path, NULL: keep */
};

int snap_parse_create(json_t *j, struct snap_create_req *out, struct wisp_err *err);
void snap_create_req_free(struct snap_create_req *r);
int snap_parse_load(json_t *j, struct snap_load_req *out, struct wisp_err *err);
void snap_load_req_free(struct snap_load_req *r);
/* Apply a load's overrides (tap names, drive paths, vsock socket,
 * track_dirty_pages) to the configuration read from the snapshot. An
 * override naming an interface or drive the snapshot lacks is refused and
 * changes nothing. */
int snap_apply_overrides(struct vm_config *cfg, const struct snap_load_req *req,
			 struct wisp_err *err);

/* The whole VM (snapshot_vm.c). create: only while Paused; writes the
 * memory file (Full: every non-zero page; Diff: KVM's dirty log plus the
 * VMM's own writes since the previous snapshot, needs track_dirty_pages)
 * and the state file, both renamed into place together. load: into a
 * fresh VMM; every check (state file, memory file, configuration,
 * overrides) runs before KVM is touched; on success the vCPU threads exist
 * but are parked and the VM is Paused. */
struct vm;
struct serial;
struct i8042;
int snap_vm_create(struct vm *vm, const struct snap_create_req *req, struct wisp_err *err);
int snap_vm_load(struct vm *vm, const struct snap_load_req *req, struct wisp_err *err);
int snap_serial_save(struct serial *s, struct snap_writer *w);
int snap_serial_restore(struct serial *s, struct snap_image *img, struct wisp_err *err);
int snap_i8042_save(struct i8042 *k, struct snap_writer *w);
int snap_i8042_restore(struct i8042 *k, struct snap_image *img, struct wisp_err *err);

/* Every component saves and restores its own state struct under its own
 * section id (instance = vCPU index or device slot, 0 for singletons). The
 * virtio-mmio transport saves its registers and queue positions under
 * SNAP_SEC_VIRTIO_MMIO and calls its device's virtio_dev_ops.snap_save /
 * snap_restore (SNAP_SEC_VIRTIO_BLK, _NET, _VSOCK). Restore runs after the
 * device is built from the snapshot's configuration (with the load's
 * overrides applied) and before any vCPU runs; a saved device set that does
 * not match the configured one is refused (a missing section, another
 * device type or id in a slot, a section no device read). vsock resets the
 * connections it had (the guest gets VIRTIO_VSOCK_EVENT_TRANSPORT_RESET)
 * and keeps its listeners.
 */

#endif
