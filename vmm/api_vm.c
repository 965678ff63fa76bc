/* The API's VM operations over struct vm, and the setup wisp-vmm's main
 * calls: the event loop, the metrics timer, logger and metrics from flags
 * and the config file, the API server, InstanceStart for --config-file. */
#include "api_vm.h"

#include <errno.h>
#include <string.h>

#include "common/log.h"
#include "metrics.h"
#include "seccomp.h"
#include "vcpu.h"
#include "virtio/virtio.h"

static int op_start(void *ctx, struct wisp_err *err)
{
	struct api_vmm *a = ctx;
	int r;
	if (a->broken)
		return wisp_err_set(err, EINVAL, "an earlier snapshot load failed half way; "
				    "start a new wisp-vmm");
	/* On any failure whatever was built goes (vCPU threads, devices and
	 * their sockets, RAM, the KVM VM): the VMM is Not started again, and
	 * InstanceStart can be retried once the configuration is fixed. */
	if ((r = vm_build(a->vm, err)) < 0) {
		vm_unbuild(a->vm);
		return r;
	}
	/* The VMM thread's seccomp filter goes on once the vCPU threads exist
	 * (they would inherit it otherwise), and before any vCPU enters the
	 * guest: the threads start parked (each loads its own filter first)
	 * and go only once this thread's filter is loaded. */
	struct vm *vm = a->vm;
	for (int i = 0; i < vm->nr_vcpus; i++)
		vcpu_request_pause(&vm->vcpus[i]);
	if ((r = vm_start(vm, err)) < 0) {
		vm_unbuild(vm);
		return r;
	}
	/* Without its filter the guest never ran: unbuilding is enough. */
	if ((r = seccomp_install(SECCOMP_VMM, err)) < 0) {
		vm_unbuild(vm);
		return r;
	}
	/* A vCPU thread that could not load its own filter ended without
	 * running the guest: refuse the start and unbuild, as above. */
	for (int i = 0; i < vm->nr_vcpus; i++) {
		if (vcpu_wait_paused(&vm->vcpus[i]) < 0) {
			wisp_err_set(err, EIO, "vCPU %d could not start (its seccomp filter did not load; see the log)", i);
			vm_unbuild(vm);
			return -EIO;
		}
	}
	for (int i = 0; i < vm->nr_vcpus; i++)
		vcpu_resume(&vm->vcpus[i]);
	return 0;
}

static int op_pause(void *ctx, struct wisp_err *err)
{
	struct api_vmm *a = ctx;
	return vm_pause(a->vm, err);
}

static int op_resume(void *ctx, struct wisp_err *err)
{
	struct api_vmm *a = ctx;
	return vm_resume(a->vm, err);
}

static int op_ctrl_alt_del(void *ctx, struct wisp_err *err)
{
	struct api_vmm *a = ctx;
	return vm_send_ctrl_alt_del(a->vm, err);
}

static int op_drive_update(void *ctx, const struct vmcfg_drive *d, const char *path,
			   const struct vmcfg_rate_limiter *rl, struct wisp_err *err)
{
	struct api_vmm *a = ctx;
	return virtio_blk_update(a->vm, d->drive_id, path, rl, err);
}

static int op_net_update(void *ctx, const struct vmcfg_net *n, const struct vmcfg_rate_limiter *rx,
			 const struct vmcfg_rate_limiter *tx, struct wisp_err *err)
{
	struct api_vmm *a = ctx;
	return virtio_net_update(a->vm, n->iface_id, rx, tx, err);
}

static int op_snapshot_create(void *ctx, const struct snap_create_req *req, struct wisp_err *err)
{
	struct api_vmm *a = ctx;
	return snap_vm_create(a->vm, req, err);
}

static int op_snapshot_load(void *ctx, const struct snap_load_req *req, struct wisp_err *err)
{
	struct api_vmm *a = ctx;
	if (a->broken)
		return wisp_err_set(err, EINVAL, "an earlier load failed half way; start a new wisp-vmm");
	/* A load refused before any vCPU ran leaves the VMM fresh, its
	 * configuration as before: another load, or a configuration and
	 * InstanceStart, may follow. Only a failure after the vCPU threads
	 * exist (below) breaks it. */
	int r = snap_vm_load(a->vm, req, err);
	if (r < 0)
		return r;
	/* As after InstanceStart: the VMM thread's filter once the vCPU
	 * threads exist (parked: nothing resumes them in a broken VMM). */
	if ((r = seccomp_install(SECCOMP_VMM, err)) < 0)
		a->broken = true;
	return r;
}

static const struct api_vmm_ops vm_ops = {
	.start = op_start,
	.pause = op_pause,
	.resume = op_resume,
	.ctrl_alt_del = op_ctrl_alt_del,
	.drive_update = op_drive_update,
	.net_update = op_net_update,
	.snapshot_create = op_snapshot_create,
	.snapshot_load = op_snapshot_load,
};

int api_vmm_init(struct api_vmm *a, struct vm *vm, const struct api_vmm_opts *o,
		 struct wisp_err *err)
{
	int r;
	memset(a, 0, sizeof(*a));
	a->vm = vm;
	api_ctl_init(&a->ctl, &vm->cfg, o->id, &vm_ops, a);

	/* The config file's logger and metrics sections, then the flags. */
	if (vm->cfg.logger.present && (r = api_ctl_apply_logger(&vm->cfg.logger, err)) < 0)
		return r;
	if (o->metrics_path) {
		free(vm->cfg.metrics.metrics_path);
		vm->cfg.metrics.metrics_path = strdup(o->metrics_path);
		if (!vm->cfg.metrics.metrics_path)
			return wisp_err_set(err, ENOMEM, "--metrics-path: out of memory");
		vm->cfg.metrics.present = true;
	}
	if (vm->cfg.metrics.present && (r = api_ctl_apply_metrics(&vm->cfg.metrics, err)) < 0)
		return r;

	/* The loop runs before the VM exists: API requests execute on it. */
	if ((r = evloop_init(&vm->loop, err)) < 0)
		return r;
	if ((r = metrics_start_timer(&vm->loop, err)) < 0)
		return r;
	if (o->api_sock && (r = api_server_start(&a->srv, o->api_sock, &a->ctl, &vm->loop, err)) < 0)
		return r;
	return 0;
}

int api_vmm_boot(struct api_vmm *a, struct wisp_err *err)
{
	return api_ctl_instance_start(&a->ctl, err);
}

int api_vmm_load_snapshot(struct api_vmm *a, struct snap_load_req *req, struct wisp_err *err)
{
	struct api_action act = { .kind = API_SNAPSHOT_LOAD, .endpoint = "put_snapshot_load" };
	struct api_reply reply = { 0 };
	act.u.snap_load = *req;
	memset(req, 0, sizeof(*req));
	api_ctl_execute(&a->ctl, &act, &reply);
	api_action_free(&act);
	int r = 0;
	if (reply.status >= 400) {
		const char *fm = json_string_value(json_object_get(reply.body, "fault_message"));
		r = wisp_err_set(err, EINVAL, "%s", fm ? fm : "loading the snapshot failed");
	}
	api_reply_free(&reply);
	return r;
}

void api_vmm_fini(struct api_vmm *a)
{
	struct wisp_err err = { 0 };
	api_server_stop(a->srv);
	a->srv = NULL;
	if (a->vm->cfg.metrics.present && metrics_flush(&err) < 0)
		wlog_warn("%s", err.msg);
}
