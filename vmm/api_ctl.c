/* The API controller: executes parsed actions on the VMM thread. The state
 * table (api_parse.c) decides legality; here the configuration changes or
 * the VM is asked, through struct api_vmm_ops, to act. */
#include "api.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "metrics.h"

void api_ctl_init(struct api_ctl *ctl, struct vm_config *cfg, const char *id,
		  const struct api_vmm_ops *ops, void *ops_ctx)
{
	memset(ctl, 0, sizeof(*ctl));
	ctl->cfg = cfg;
	ctl->state = VM_NOT_STARTED;
	snprintf(ctl->id, sizeof(ctl->id), "%s", id ? id : "anonymous-instance");
	ctl->ops = ops;
	ctl->ops_ctx = ops_ctx;
}

json_t *api_fault(const char *msg)
{
	return json_pack("{s:s}", "fault_message", msg);
}

void api_reply_free(struct api_reply *reply)
{
	json_decref(reply->body);
	reply->body = NULL;
}

int api_ctl_apply_logger(const struct vmcfg_logger *l, struct wisp_err *err)
{
	enum wisp_log_level level;
	if (wisp_log_level_parse(l->level[0] ? l->level : "Info", &level) < 0)
		return wisp_err_set(err, EINVAL, "logger.level: unknown level \"%s\"", l->level);
	if (l->log_path) {
		/* Probe without blocking first: a named pipe nobody reads would
		 * otherwise block this thread in open(). */
		int fd = open(l->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK |
				  O_NOCTTY, 0600);
		if (fd < 0)
			return wisp_err_sys(err, errno, "logger.log_path: cannot open \"%s\"",
					    l->log_path);
		close(fd);
		int r = wisp_log_open(l->log_path);
		if (r < 0)
			return wisp_err_sys(err, -r, "logger.log_path: cannot open \"%s\"",
					    l->log_path);
	}
	wisp_log_set_level(level);
	return 0;
}

int api_ctl_apply_metrics(const struct vmcfg_metrics *m, struct wisp_err *err)
{
	int r = metrics_open(m->metrics_path, err);
	if (r < 0)
		return wisp_err_prefix(err, "metrics.metrics_path");
	return 0;
}

int api_ctl_instance_start(struct api_ctl *ctl, struct wisp_err *err)
{
	int r = api_action_allowed(API_INSTANCE_START, ctl->state, err);
	if (r < 0)
		return r;
	if ((r = vmcfg_validate(ctl->cfg, err)) < 0)
		return r;
	if ((r = ctl->ops->start(ctl->ops_ctx, err)) < 0)
		return r;
	ctl->state = VM_RUNNING;
	wlog_info("VM started: %u vCPUs, %u MiB", ctl->cfg->machine.vcpu_count,
		  ctl->cfg->machine.mem_size_mib);
	return 0;
}

static int find_drive(struct vm_config *cfg, const char *id)
{
	for (int i = 0; i < cfg->nr_drives; i++)
		if (strcmp(cfg->drives[i].drive_id, id) == 0)
			return i;
	return -1;
}

static int find_net(struct vm_config *cfg, const char *id)
{
	for (int i = 0; i < cfg->nr_nets; i++)
		if (strcmp(cfg->nets[i].iface_id, id) == 0)
			return i;
	return -1;
}

static int put_drive(struct vm_config *cfg, struct vmcfg_drive *d, struct wisp_err *err)
{
	int at = find_drive(cfg, d->drive_id);
	if (d->is_root_device) {
		for (int i = 0; i < cfg->nr_drives; i++)
			if (i != at && cfg->drives[i].is_root_device)
				return wisp_err_set(err, EEXIST,
						    "drives: a root device is already configured (\"%s\")",
						    cfg->drives[i].drive_id);
	}
	if (at < 0) {
		if (cfg->nr_drives >= VMCFG_MAX_DRIVES)
			return wisp_err_set(err, E2BIG, "drives: at most %d drives", VMCFG_MAX_DRIVES);
		at = cfg->nr_drives++;
	} else {
		vmcfg_drive_free(&cfg->drives[at]);
	}
	cfg->drives[at] = *d;
	memset(d, 0, sizeof(*d));       /* ownership moved */
	return 0;
}

static int put_net(struct vm_config *cfg, const struct vmcfg_net *n, struct wisp_err *err)
{
	int at = find_net(cfg, n->iface_id);
	for (int i = 0; i < cfg->nr_nets; i++) {
		if (i == at)
			continue;
		if (strcmp(cfg->nets[i].host_dev_name, n->host_dev_name) == 0)
			return wisp_err_set(err, EEXIST,
					    "network-interfaces.host_dev_name: \"%s\" is used by \"%s\"",
					    n->host_dev_name, cfg->nets[i].iface_id);
		if (n->has_guest_mac && cfg->nets[i].has_guest_mac &&
		    memcmp(n->guest_mac, cfg->nets[i].guest_mac, 6) == 0)
			return wisp_err_set(err, EEXIST,
					    "network-interfaces.guest_mac: already used by \"%s\"",
					    cfg->nets[i].iface_id);
	}
	if (at < 0) {
		if (cfg->nr_nets >= VMCFG_MAX_NETS)
			return wisp_err_set(err, E2BIG, "network-interfaces: at most %d interfaces",
					    VMCFG_MAX_NETS);
		at = cfg->nr_nets++;
	}
	cfg->nets[at] = *n;
	return 0;
}

static int patch_drive(struct api_ctl *ctl, struct api_action *a, struct wisp_err *err)
{
	int at = find_drive(ctl->cfg, a->id);
	if (at < 0)
		return wisp_err_set(err, ENOENT, "drives: no drive \"%s\" is configured", a->id);
	struct vmcfg_drive *d = &ctl->cfg->drives[at];
	const char *path = a->u.drive_patch.path_on_host;
	const struct vmcfg_rate_limiter *rl =
		a->u.drive_patch.has_rate_limiter ? &a->u.drive_patch.rate_limiter : NULL;
	if (!path && !rl)
		return 0;
	if (path && access(path, d->is_read_only ? R_OK : R_OK | W_OK) < 0)
		return wisp_err_sys(err, errno, "drives.path_on_host: cannot open \"%s\"", path);
	int r = ctl->ops->drive_update(ctl->ops_ctx, d, path, rl, err);
	if (r < 0)
		return r;
	if (path) {
		free(d->path_on_host);
		d->path_on_host = a->u.drive_patch.path_on_host;
		a->u.drive_patch.path_on_host = NULL;
	}
	if (rl)
		d->rate_limiter = *rl;
	return 0;
}

static int patch_net(struct api_ctl *ctl, struct api_action *a, struct wisp_err *err)
{
	int at = find_net(ctl->cfg, a->id);
	if (at < 0)
		return wisp_err_set(err, ENOENT,
				    "network-interfaces: no interface \"%s\" is configured", a->id);
	struct vmcfg_net *n = &ctl->cfg->nets[at];
	const struct vmcfg_rate_limiter *rx = a->u.net_patch.has_rx ? &a->u.net_patch.rx : NULL;
	const struct vmcfg_rate_limiter *tx = a->u.net_patch.has_tx ? &a->u.net_patch.tx : NULL;
	if (!rx && !tx)
		return 0;
	int r = ctl->ops->net_update(ctl->ops_ctx, n, rx, tx, err);
	if (r < 0)
		return r;
	if (rx)
		n->rx_rate_limiter = *rx;
	if (tx)
		n->tx_rate_limiter = *tx;
	return 0;
}

/* Run one legal action; GETs fill *doc. */
static int run_action(struct api_ctl *ctl, struct api_action *a, json_t **doc,
		      struct wisp_err *err)
{
	struct vm_config *cfg = ctl->cfg;
	int r;

	switch (a->kind) {
	case API_GET_INFO:
		*doc = json_pack("{s:s, s:s, s:s, s:s}", "id", ctl->id, "state",
				 api_state_name(ctl->state), "vmm_version", WISP_VMM_VERSION,
				 "app_name", WISP_APP_NAME);
		return 0;
	case API_GET_VERSION:
		*doc = json_pack("{s:s}", "firecracker_version", WISP_VMM_VERSION);
		return 0;
	case API_GET_VM_CONFIG:
		*doc = vmcfg_to_json(cfg);
		return 0;
	case API_GET_MACHINE:
		*doc = vmcfg_machine_to_json(&cfg->machine);
		return 0;
	case API_PUT_MACHINE:
		cfg->machine = a->u.machine;
		return 0;
	case API_PATCH_MACHINE:
		return vmcfg_parse_machine(a->body, &cfg->machine, true, err);
	case API_PUT_BOOT:
		vmcfg_boot_free(&cfg->boot);
		cfg->boot = a->u.boot;
		memset(&a->u.boot, 0, sizeof(a->u.boot));
		return 0;
	case API_PUT_DRIVE:
		return put_drive(cfg, &a->u.drive, err);
	case API_PATCH_DRIVE:
		return patch_drive(ctl, a, err);
	case API_PUT_NET:
		return put_net(cfg, &a->u.net, err);
	case API_PATCH_NET:
		return patch_net(ctl, a, err);
	case API_PUT_VSOCK:
		free(cfg->vsock.uds_path);
		cfg->vsock = a->u.vsock;
		memset(&a->u.vsock, 0, sizeof(a->u.vsock));
		return 0;
	case API_PUT_LOGGER:
		if ((r = api_ctl_apply_logger(&a->u.logger, err)) < 0)
			return r;
		free(cfg->logger.log_path);
		cfg->logger = a->u.logger;
		memset(&a->u.logger, 0, sizeof(a->u.logger));
		wlog_rl(WISP_LOG_INFO, "logger configured: level %s", cfg->logger.level);
		return 0;
	case API_PUT_METRICS:
		if ((r = api_ctl_apply_metrics(&a->u.metrics, err)) < 0)
			return r;
		free(cfg->metrics.metrics_path);
		cfg->metrics = a->u.metrics;
		memset(&a->u.metrics, 0, sizeof(a->u.metrics));
		return 0;
	case API_INSTANCE_START:
		return api_ctl_instance_start(ctl, err);
	case API_SEND_CTRL_ALT_DEL:
		return ctl->ops->ctrl_alt_del(ctl->ops_ctx, err);
	case API_FLUSH_METRICS:
		if (!cfg->metrics.present)
			return wisp_err_set(err, EINVAL,
					    "FlushMetrics: no metrics path is configured (PUT /metrics)");
		return metrics_flush(err);
	case API_PAUSE:
		if (ctl->state == VM_PAUSED)
			return 0;
		if ((r = ctl->ops->pause(ctl->ops_ctx, err)) < 0)
			return r;
		ctl->state = VM_PAUSED;
		wlog_info("VM paused");
		return 0;
	case API_RESUME:
		if (ctl->state == VM_RUNNING)
			return 0;
		if ((r = ctl->ops->resume(ctl->ops_ctx, err)) < 0)
			return r;
		ctl->state = VM_RUNNING;
		wlog_info("VM resumed");
		return 0;
	case API_SNAPSHOT_CREATE:
		if (!ctl->ops->snapshot_create)
			return wisp_err_set(err, ENOTSUP, "snapshots are not available in this VMM");
		if ((r = ctl->ops->snapshot_create(ctl->ops_ctx, &a->u.snap_create, err)) < 0)
			return r;
		wlog_info("%s snapshot written to %s and %s",
			  a->u.snap_create.type == SNAP_TYPE_DIFF ? "Diff" : "Full",
			  a->u.snap_create.snapshot_path, a->u.snap_create.mem_file_path);
		return 0;
	case API_SNAPSHOT_LOAD:
		if (ctl->configured)
			return wisp_err_set(err, EPERM,
					    "PUT /snapshot/load is only allowed in a fresh VMM, before any other configuration");
		if (!ctl->ops->snapshot_load)
			return wisp_err_set(err, ENOTSUP, "snapshots are not available in this VMM");
		if ((r = ctl->ops->snapshot_load(ctl->ops_ctx, &a->u.snap_load, err)) < 0)
			return r;
		ctl->state = VM_PAUSED;
		ctl->configured = true;
		wlog_info("VM restored from %s", a->u.snap_load.snapshot_path);
		if (a->u.snap_load.resume_vm) {
			if ((r = ctl->ops->resume(ctl->ops_ctx, err)) < 0)
				return wisp_err_prefix(err, "snapshot loaded, but resume_vm failed");
			ctl->state = VM_RUNNING;
		}
		return 0;
	case API_ACTION_COUNT:
		break;
	}
	return wisp_err_set(err, EINVAL, "unknown action");
}

void api_ctl_execute(struct api_ctl *ctl, struct api_action *a, struct api_reply *reply)
{
	struct wisp_err err = { 0 };
	json_t *doc = NULL;
	int r = api_action_allowed(a->kind, ctl->state, &err);
	if (r == 0)
		r = run_action(ctl, a, &doc, &err);
	if (r == 0) {
		switch (a->kind) {
		case API_PUT_MACHINE: case API_PATCH_MACHINE: case API_PUT_BOOT:
		case API_PUT_DRIVE: case API_PUT_NET: case API_PUT_VSOCK:
			ctl->configured = true;
			break;
		default:
			break;
		}
	}
	if (r < 0) {
		json_decref(doc);
		reply->status = 400;
		reply->body = api_fault(err.msg[0] ? err.msg : "request failed");
		wlog_rl(WISP_LOG_WARN, "API %s refused: %s", api_action_name(a->kind), err.msg);
		return;
	}
	if (doc) {
		reply->status = 200;
		reply->body = doc;
	} else {
		reply->status = 204;
		reply->body = NULL;
	}
}
