/* The whole VM into and out of a snapshot: which component is saved in
 * which order, the memory file (full or diff), and restore into a fresh
 * VMM. Also the legacy devices' own state (serial port, i8042). */
#include "snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/io.h"
#include "common/log.h"
#include "cpu.h"
#include "i8042.h"
#include "serial.h"
#include "vcpu.h"
#include "virtio/virtio.h"
#include "vm.h"

#define SNAP_CONFIG_VERSION 1u
#define SNAP_SERIAL_VERSION 1u
#define SNAP_I8042_VERSION  1u

/* ---- serial (16550A) ---- */

struct snap_serial_state {
	uint8_t ier, iir_thri_pending, fcr, lcr, mcr, lsr, msr, scr, dll, dlm;
	uint8_t pad[2];
	uint32_t rx_head, rx_count;
	uint8_t rx[SERIAL_FIFO_SIZE];
};

int snap_serial_save(struct serial *s, struct snap_writer *w)
{
	struct snap_serial_state st;
	memset(&st, 0, sizeof(st));
	pthread_mutex_lock(&s->lock);
	st.ier = s->ier;
	st.iir_thri_pending = s->iir_thri_pending;
	st.fcr = s->fcr;
	st.lcr = s->lcr;
	st.mcr = s->mcr;
	st.lsr = s->lsr;
	st.msr = s->msr;
	st.scr = s->scr;
	st.dll = s->dll;
	st.dlm = s->dlm;
	st.rx_head = s->rx_head;
	st.rx_count = s->rx_count;
	memcpy(st.rx, s->rx, sizeof(st.rx));
	pthread_mutex_unlock(&s->lock);
	return snap_put(w, SNAP_SEC_SERIAL, SNAP_SERIAL_VERSION, 0, &st, sizeof(st));
}

int snap_serial_restore(struct serial *s, struct snap_image *img, struct wisp_err *err)
{
	struct snap_serial_state st;
	int r = snap_get(img, SNAP_SEC_SERIAL, SNAP_SERIAL_VERSION, 0, &st, sizeof(st), err);
	if (r < 0)
		return r;
	if (st.rx_head >= SERIAL_FIFO_SIZE || st.rx_count > SERIAL_FIFO_SIZE)
		return wisp_err_set(err, EINVAL, "serial state: receive FIFO position out of range");
	pthread_mutex_lock(&s->lock);
	s->ier = st.ier;
	s->iir_thri_pending = st.iir_thri_pending;
	s->fcr = st.fcr;
	s->lcr = st.lcr;
	s->mcr = st.mcr;
	s->lsr = st.lsr;
	s->msr = st.msr;
	s->scr = st.scr;
	s->dll = st.dll;
	s->dlm = st.dlm;
	s->rx_head = st.rx_head;
	s->rx_count = st.rx_count;
	memcpy(s->rx, st.rx, sizeof(s->rx));
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* ---- i8042 ---- */

struct snap_i8042_state {
	uint8_t status, ctr, pending_cmd, outp;
	uint32_t head, count;
	uint8_t buf[I8042_BUF_SIZE];
};

int snap_i8042_save(struct i8042 *k, struct snap_writer *w)
{
	struct snap_i8042_state st;
	memset(&st, 0, sizeof(st));
	pthread_mutex_lock(&k->lock);
	st.status = k->status;
	st.ctr = k->ctr;
	st.pending_cmd = k->pending_cmd;
	st.outp = k->outp;
	st.head = k->head;
	st.count = k->count;
	memcpy(st.buf, k->buf, sizeof(st.buf));
	pthread_mutex_unlock(&k->lock);
	return snap_put(w, SNAP_SEC_I8042, SNAP_I8042_VERSION, 0, &st, sizeof(st));
}

int snap_i8042_restore(struct i8042 *k, struct snap_image *img, struct wisp_err *err)
{
	struct snap_i8042_state st;
	int r = snap_get(img, SNAP_SEC_I8042, SNAP_I8042_VERSION, 0, &st, sizeof(st), err);
	if (r < 0)
		return r;
	if (st.head >= I8042_BUF_SIZE || st.count > I8042_BUF_SIZE)
		return wisp_err_set(err, EINVAL, "i8042 state: buffer position out of range");
	pthread_mutex_lock(&k->lock);
	k->status = st.status;
	k->ctr = st.ctr;
	k->pending_cmd = st.pending_cmd;
	k->outp = st.outp;
	k->head = st.head;
	k->count = st.count;
	memcpy(k->buf, st.buf, sizeof(k->buf));
	pthread_mutex_unlock(&k->lock);
	return 0;
}

/* ---- create ---- */

static void free_bitmaps(uint64_t *bm[GMEM_MAX_REGIONS])
{
	for (int i = 0; i < GMEM_MAX_REGIONS; i++) {
		free(bm[i]);
		bm[i] = NULL;
	}
}

static int alloc_bitmaps(const struct gmem *m, uint64_t *bm[GMEM_MAX_REGIONS],
			 struct wisp_err *err)
{
	for (int i = 0; i < m->nr_regions; i++) {
		size_t words = (m->regions[i].size / WISP_PAGE_SIZE + 63) / 64;
		bm[i] = calloc(words ? words : 1, sizeof(uint64_t));
		if (!bm[i]) {
			free_bitmaps(bm);
			return wisp_err_set(err, ENOMEM, "no memory for the dirty page bitmaps");
		}
	}
	return 0;
}

/* The devices write their used rings through host pointers cached when
 * the queue was set up (virtq_setup), which gmem_ptr() marked only then:
 * every ready queue's used ring counts as dirty. */
static void mark_used_rings(struct vm *vm, uint64_t *bm[GMEM_MAX_REGIONS])
{
	for (int d = 0; d < vm->nr_virtio; d++) {
		const struct virtio_mmio_dev *dev = vm->virtio[d];
		for (int qi = 0; qi < dev->ops->nr_queues; qi++) {
			const struct virtq *q = &dev->queues[qi];
			if (!q->ready)
				continue;
			uint64_t start = q->used_gpa, len = 6 + 8ull * q->num;
			for (int i = 0; i < vm->mem.nr_regions; i++) {
				const struct gmem_region *r = &vm->mem.regions[i];
				if (start < r->gpa || start - r->gpa >= r->size ||
				    len > r->size - (start - r->gpa))
					continue;
				uint64_t first = (start - r->gpa) / WISP_PAGE_SIZE;
				uint64_t last = (start - r->gpa + len - 1) / WISP_PAGE_SIZE;
				for (uint64_t pg = first; pg <= last; pg++)
					bm[i][pg / 64] |= 1ull << (pg % 64);
			}
		}
	}
}

/* KVM's dirty log plus the pages the VMM itself wrote (device DMA), taken
 * out of both; put back with give_back_dirty() when the snapshot fails so
 * the next diff still covers them. */
static int take_dirty(struct vm *vm, uint64_t *bm[GMEM_MAX_REGIONS], struct wisp_err *err)
{
	int r = snap_dirty_fetch(vm->vm_fd, &vm->mem, bm, err);
	if (r < 0)
		return r;
	for (int i = 0; i < vm->mem.nr_regions; i++) {
		uint64_t *vd = vm->mem.vmm_dirty[i];
		if (!vd)
			continue;
		size_t words = (vm->mem.regions[i].size / WISP_PAGE_SIZE + 63) / 64;
		for (size_t k = 0; k < words; k++)
			bm[i][k] |= __atomic_exchange_n(&vd[k], 0, __ATOMIC_RELAXED);
	}
	mark_used_rings(vm, bm);
	return 0;
}

static void give_back_dirty(struct vm *vm, uint64_t *bm[GMEM_MAX_REGIONS])
{
	for (int i = 0; i < vm->mem.nr_regions; i++) {
		uint64_t *vd = vm->mem.vmm_dirty[i];
		if (!vd || !bm[i])
			continue;
		size_t words = (vm->mem.regions[i].size / WISP_PAGE_SIZE + 63) / 64;
		for (size_t k = 0; k < words; k++)
			__atomic_fetch_or(&vd[k], bm[i][k], __ATOMIC_RELAXED);
	}
}

static int save_state(struct vm *vm, struct snap_writer *w, struct wisp_err *err)
{
	json_t *j = vmcfg_to_json(&vm->cfg);
	_cleanup_free_ char *cfg = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (!cfg)
		return wisp_err_set(err, ENOMEM, "no memory for the configuration");
	snap_put(w, SNAP_SEC_CONFIG, SNAP_CONFIG_VERSION, 0, cfg, strlen(cfg));
	int r = snap_vm_save(vm->vm_fd, w, err);
	for (int i = 0; r == 0 && i < vm->nr_vcpus; i++)
		r = snap_vcpu_save(vm->kvm_fd, vm->vcpus[i].fd, (uint32_t)i, w, err);
	if (r < 0)
		return r;
	if (vm->serial)
		snap_serial_save(vm->serial, w);
	if (vm->i8042)
		snap_i8042_save(vm->i8042, w);
	for (int i = 0; i < vm->nr_virtio; i++)
		snap_virtio_save(vm->virtio[i], (uint32_t)i, w, NULL);
	return 0;
}

int snap_vm_create(struct vm *vm, const struct snap_create_req *req, struct wisp_err *err)
{
	if (vm->state != VM_PAUSED)
		return wisp_err_set(err, EPERM, "a snapshot can only be taken while the VM is Paused");
	bool diff = req->type == SNAP_TYPE_DIFF;
	if (diff && !vm->cfg.machine.track_dirty_pages)
		return wisp_err_set(err, EINVAL,
				    "a Diff snapshot needs track_dirty_pages (machine-config, or snapshot/load)");
	/* A diff is the pages written since its base: without one there is
	 * nothing its memory file could be merged onto. */
	if (diff && !vm->snap_id)
		return wisp_err_set(err, EINVAL,
				    "a Diff snapshot needs a base: take a Full snapshot of this VM first (or load one)");
	uint64_t t0 = wisp_now_ns();
	const uint64_t snap_id = snap_new_id(), base_id = diff ? vm->snap_id : 0;
	struct snap_writer w;
	int r = snap_writer_init(&w, vm->mem.ram_size, diff ? SNAP_F_DIFF : 0);
	if (r < 0) {
		*err = w.err;
		return r;
	}
	snap_writer_ids(&w, snap_id, base_id);
	uint64_t *bm[GMEM_MAX_REGIONS] = { 0 };
	char mem_tmp[PATH_MAX] = "", state_tmp[PATH_MAX] = "";
	const uint8_t *buf;
	size_t len;
	bool took = false;
	if ((r = save_state(vm, &w, err)) < 0 ||
	    (r = snap_writer_finish(&w, &buf, &len, err)) < 0)
		goto out;
	if (vm->cfg.machine.track_dirty_pages) {
		if ((r = alloc_bitmaps(&vm->mem, bm, err)) < 0 || (r = take_dirty(vm, bm, err)) < 0)
			goto out;
		took = true;
	}
	r = snap_mem_write(&vm->mem, req->mem_file_path,
			   diff ? (const uint64_t *const *)bm : NULL, snap_id, base_id, mem_tmp, err);
	if (r < 0)
		goto out;
	r = snap_state_write_tmp(req->snapshot_path, buf, len, state_tmp, sizeof(state_tmp), err);
	if (r < 0) {
		unlink(mem_tmp);
		goto out;
	}
	r = snap_commit(mem_tmp, req->mem_file_path, state_tmp, req->snapshot_path, err);
	if (r == 0) {
		took = false;  /* the pages are in this snapshot: the next diff starts here */
		vm->snap_id = snap_id;
		char base[40] = "";
		if (diff)
			snprintf(base, sizeof(base), " (base %016llx)", (unsigned long long)base_id);
		wlog_info("%s snapshot: id %016llx%s, %zu bytes of state, %llu MiB of RAM, in %llu us",
			  diff ? "diff" : "full", (unsigned long long)snap_id, base, len,
			  (unsigned long long)(vm->mem.ram_size >> 20),
			  (unsigned long long)((wisp_now_ns() - t0) / 1000));
	}
out:
	if (took)
		give_back_dirty(vm, bm);
	free_bitmaps(bm);
	snap_writer_free(&w);
	return r;
}

/* ---- load ---- */

/* Every drive's backing file opens as the block device will open it: a
 * missing or unwritable disk is refused before the VM exists. */
static int check_drives(const struct vm_config *cfg, struct wisp_err *err)
{
	for (int i = 0; i < cfg->nr_drives; i++) {
		const struct vmcfg_drive *d = &cfg->drives[i];
		int fd = open(d->path_on_host, (d->is_read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
		if (fd < 0)
			return wisp_err_sys(err, errno, "drive %s: backing file %s", d->drive_id,
					    d->path_on_host);
		close(fd);
	}
	return 0;
}

static void swap_log_metrics(struct vm_config *a, struct vm_config *b)
{
	struct vmcfg_logger lg = a->logger;
	struct vmcfg_metrics mt = a->metrics;
	a->logger = b->logger;
	a->metrics = b->metrics;
	b->logger = lg;
	b->metrics = mt;
}

/* The snapshot's configuration with the load's overrides and its drives'
 * files checked; the VMM's own logger and metrics settings go to out, cur
 * gets the snapshot's (swap_log_metrics again puts them back: a clone
 * must not write to its parent's files). */
static int load_config(struct snap_image *img, const struct snap_load_req *req,
		       struct vm_config *cur, struct vm_config *out, struct wisp_err *err)
{
	const uint8_t *data;
	size_t len;
	int r = snap_get_var(img, SNAP_SEC_CONFIG, SNAP_CONFIG_VERSION, 0, &data, &len, err);
	if (r < 0)
		return r;
	json_error_t je;
	json_t *j = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &je);
	if (!j)
		return wisp_err_set(err, EINVAL, "state file configuration: %s", je.text);
	vmcfg_init(out);
	r = vmcfg_from_json(j, out, err);
	json_decref(j);
	if (r < 0) {
		vmcfg_free(out);
		return wisp_err_prefix(err, "state file configuration");
	}
	if (((uint64_t)out->machine.mem_size_mib << 20) != img->hdr.mem_size) {
		vmcfg_free(out);
		return wisp_err_set(err, EINVAL,
				    "state file configuration says %u MiB of RAM, its header %llu bytes",
				    out->machine.mem_size_mib,
				    (unsigned long long)img->hdr.mem_size);
	}
	if ((r = snap_apply_overrides(out, req, err)) < 0 || (r = check_drives(out, err)) < 0) {
		vmcfg_free(out);
		return r;
	}
	swap_log_metrics(cur, out);
	return 0;
}

/* The second CPUID check, against what KVM gives each fresh vCPU. */
static int check_vcpu_cpuid(struct vm *vm, struct snap_image *img,
			    const struct kvm_cpuid2 *supported, struct wisp_err *err)
{
	int r = 0;
	for (int i = 0; r == 0 && i < vm->nr_vcpus; i++)
		r = snap_cpuid_verify_vcpu(img, i, vm->vcpus[i].fd, supported, vm->nr_vcpus,
					   vm->cfg.machine.smt ? 2 : 1, err);
	return r;
}

static int restore_components(struct vm *vm, struct snap_image *img, bool clock_realtime,
			      const struct kvm_cpuid2 *supported, struct wisp_err *err)
{
	int r = check_vcpu_cpuid(vm, img, supported, err);
	if (r == 0)
		r = snap_vm_restore(vm->vm_fd, img, clock_realtime, err);
	for (int i = 0; r == 0 && i < vm->nr_vcpus; i++)
		r = snap_vcpu_restore(vm->vcpus[i].fd, (uint32_t)i, img, err);
	if (r == 0 && vm->serial)
		r = snap_serial_restore(vm->serial, img, err);
	if (r == 0 && vm->i8042)
		r = snap_i8042_restore(vm->i8042, img, err);
	for (int i = 0; r == 0 && i < vm->nr_virtio; i++)
		r = snap_virtio_restore(vm->virtio[i], (uint32_t)i, img, err);
	if (r == 0)
		r = snap_check_all_used(img, err);
	return r;
}

/* The configuration, the saved CPUID against this host (before the VM
 * exists), the VM and its state, up to the vCPU threads (parked). On
 * failure the VMM's own configuration is back, nothing has run and
 * vm_unbuild() takes down what was built. */
static int load_build(struct vm *vm, const struct snap_load_req *req, struct snap_image *img,
		      int mem_fd, struct wisp_err *err)
{
	uint64_t t0 = wisp_now_ns();
	struct vm_config cfg;
	int r = load_config(img, req, &vm->cfg, &cfg, err);
	if (r < 0)
		return r;
	struct vm_config old = vm->cfg;
	vm->cfg = cfg;
	/* One supported CPUID table for the whole load: the check of the
	 * saved CPUID before the VM exists, the vCPUs' own tables and the
	 * check of what KVM gives them. The KVM VM is made on the same fd. */
	_cleanup_free_ struct kvm_cpuid2 *supported = NULL;
	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0)
		r = wisp_err_sys(err, errno, "opening /dev/kvm");
	if (r == 0)
		r = cpu_supported_cpuid(vm->kvm_fd, &supported, err);
	if (r == 0)
		r = snap_cpuid_verify(img, supported, (int)vm->cfg.machine.vcpu_count,
				      vm->cfg.machine.smt ? 2 : 1, err);
	uint64_t t1 = wisp_now_ns();
	if (r == 0)
		r = vm_build_restored(vm, mem_fd, supported, err);
	uint64_t t2 = wisp_now_ns();
	if (r == 0)
		r = restore_components(vm, img, req->clock_realtime, supported, err);
	/* vCPU threads start parked: nothing runs until resume. */
	for (int i = 0; r == 0 && i < vm->nr_vcpus; i++)
		vcpu_request_pause(&vm->vcpus[i]);
	if (r == 0)
		r = vm_start(vm, err);
	if (r < 0) {
		swap_log_metrics(&vm->cfg, &old);
		vmcfg_free(&vm->cfg);
		vm->cfg = old;
		return r;
	}
	vmcfg_free(&old);
	wlog_info("snapshot %s: checks and config %llu us, VM build %llu us", req->snapshot_path,
		  (unsigned long long)((t1 - t0) / 1000), (unsigned long long)((t2 - t1) / 1000));
	return 0;
}

/* The files, then the VM up to its parked vCPU threads; on failure no
 * vCPU has run and the VMM is fresh again. */
static int load_files_and_build(struct vm *vm, const struct snap_load_req *req,
				uint64_t *snap_id, struct wisp_err *err)
{
	struct snap_image img;
	int r = snap_read_file(req->snapshot_path, &img, err);
	if (r < 0)
		return r;
	_cleanup_close_ int fd = snap_mem_open(req->mem_path, &img.hdr, err);
	if (fd < 0) {
		snap_image_free(&img);
		return fd;
	}
	*snap_id = img.hdr.snap_id;
	r = load_build(vm, req, &img, fd, err);
	snap_image_free(&img);
	if (r < 0)
		vm_unbuild(vm);
	return r;
}

int snap_vm_load(struct vm *vm, const struct snap_load_req *req, struct wisp_err *err)
{
	if (vm->state != VM_NOT_STARTED || vm->vm_fd >= 0)
		return wisp_err_set(err, EPERM, "a snapshot can only be loaded into a fresh VMM");
	uint64_t t0 = wisp_now_ns(), snap_id = 0;
	int r = load_files_and_build(vm, req, &snap_id, err);
	if (r < 0)
		return r;
	vm->snap_id = snap_id;
	for (int i = 0; i < vm->nr_vcpus; i++)
		if (vcpu_wait_paused(&vm->vcpus[i]) < 0)
			return wisp_err_set(err, EIO, "vCPU %d could not start (its seccomp filter did not load; see the log)", i);
	vm->state = VM_PAUSED;
	/* Connections the guest had are gone: vsock tells it so; listeners
	 * stay. Queued buffers and pending interrupts are delivered again. */
	virtio_vsock_transport_reset(vm);
	for (int i = 0; i < vm->nr_virtio; i++)
		snap_virtio_kick(vm->virtio[i]);
	wlog_info("snapshot %s loaded in %llu us", req->snapshot_path,
		  (unsigned long long)((wisp_now_ns() - t0) / 1000));
	return 0;
}
