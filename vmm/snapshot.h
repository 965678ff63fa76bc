/* Snapshots: a state file (every component's state in tagged sections) and a
 * memory file (guest RAM, sparse where pages are zero).
 *
 * State file layout (little endian, x86_64 only):
 *
 *   struct snap_header            64 bytes: magic, format version, architecture,
 *                                 total length, guest RAM size, flags, section
 *                                 count, CRC32 over the whole file (this field
 *                                 read as zero)
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
 * map it MAP_PRIVATE. A full snapshot writes every non-zero page and leaves
 * holes for zero pages; a diff snapshot writes only the pages of a dirty
 * bitmap (zero or not) and leaves holes elsewhere. snap_mem_merge() copies
 * a diff's data extents onto its base (wisp-snap merge BASE DIFF).
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
#define SNAP_FORMAT_VERSION 1u
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
	uint64_t reserved[2];
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

/* Memory files. */

/* Write guest RAM to path: a temporary file in the same directory, renamed
 * over path only when complete (a failure leaves nothing behind). dirty is
 * NULL for a full snapshot (zero pages become holes), or one bitmap per
 * region (bit i = page i of that region) for a diff: only those pages are
 * written. When tmp_out is not NULL the temporary file is kept under that
 * name (PATH_MAX bytes) instead of being renamed, so a caller can commit it
 * together with the state file (snap_commit). */
int snap_mem_write(const struct gmem *m, const char *path,
		   const uint64_t *const dirty[GMEM_MAX_REGIONS], char *tmp_out,
		   struct wisp_err *err);
/* Size and type checks of a memory file before restore maps it: a regular
 * file of exactly mem_size bytes. Returns an O_RDONLY fd. */
int snap_mem_open(const char *path, uint64_t mem_size, struct wisp_err *err);
/* Copy every data extent of diff onto base (same size), in place. */
int snap_mem_merge(const char *base, const char *diff, struct wisp_err *err);

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
/* One vCPU, stopped out of KVM_RUN: MP state, general, special, FPU/XSAVE,
 * XCR and debug registers, LAPIC, MSRs, pending events, TSC frequency. */
int snap_vcpu_save(int kvm_fd, int vcpu_fd, uint32_t index, struct snap_writer *w,
		   struct wisp_err *err);
/* Restore in KVM's required order (SREGS before LAPIC, LAPIC before MSRs,
 * events last) into a freshly created vCPU. */
int snap_vcpu_restore(int vcpu_fd, uint32_t index, struct snap_image *img,
		      struct wisp_err *err);
/* PIC master/slave, IOAPIC, PIT, kvmclock (and the host's wall time). */
int snap_vm_save(int vm_fd, struct snap_writer *w, struct wisp_err *err);
/* step_clock: move kvmclock on by the host time that passed since the
 * snapshot, so the guest's wall clock is right at once. */
int snap_vm_restore(int vm_fd, struct snap_image *img, bool step_clock, struct wisp_err *err);
/* KVM_GET_DIRTY_LOG for every RAM slot (slot i = region i) into bitmaps
 * sized (pages + 63) / 64 words; fetching clears KVM's log. */
int snap_dirty_fetch(int vm_fd, const struct gmem *m, uint64_t *bitmaps[GMEM_MAX_REGIONS],
		     struct wisp_err *err);

/* The virtio-mmio transport of one device slot (snapshot_dev.c): feature
 * negotiation, status, queue geometry and positions. Restore checks every
 * value against the freshly created device (type, queue count, features it
 * offers, rings inside guest RAM), then starts the backend when the driver
 * had. snap_virtio_kick re-kicks ready queues and re-raises a pending
 * interrupt; call it once the VM is restored. */
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

/* Device hooks: every device saves and restores its own state struct under
 * its own section id, with these signatures (instance = device slot for
 * virtio, 0 for the legacy devices):
 *
 *   int serial_snapshot_save(const struct serial *s, struct snap_writer *w,
 *                            struct wisp_err *err);
 *   int serial_snapshot_restore(struct serial *s, struct snap_image *img,
 *                               struct wisp_err *err);
 *   int i8042_snapshot_save / i8042_snapshot_restore    (same shape)
 *   int virtio_mmio_snapshot_save(const struct virtio_mmio_dev *d, uint32_t slot,
 *                                 struct snap_writer *w, struct wisp_err *err);
 *   int virtio_mmio_snapshot_restore(struct virtio_mmio_dev *d, uint32_t slot,
 *                                    struct snap_image *img, struct wisp_err *err);
 *
 * The virtio-mmio transport saves its registers and queue positions under
 * SNAP_SEC_VIRTIO_MMIO and calls its device's own save/restore (block,
 * net, vsock sections). Restore runs after the device is built from the
 * snapshot's configuration (with the load's overrides applied) and before
 * any vCPU runs; vsock resets the connections it had (the guest sees
 * them reset) and keeps its listeners.
 */

#endif
