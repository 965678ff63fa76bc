/* The API without KVM: request parsing for every endpoint, the state table,
 * the controller over fake VM operations, metrics lines. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/io.h"
#include "common/log.h"
#include "vmm/api.h"
#include "vmm/metrics.h"

/* ---- fake VM operations: record what the controller asked ---- */

struct fake_vm {
	int starts, pauses, resumes, cads, drive_updates, net_updates;
	int fail_next;          /* errno to fail the next op with */
	char last_path[256];
	bool last_rl;
};

static int fake_result(struct fake_vm *f, const char *what, struct wisp_err *err)
{
	if (f->fail_next) {
		int e = f->fail_next;
		f->fail_next = 0;
		return wisp_err_set(err, e, "%s failed (fake)", what);
	}
	return 0;
}

static int fake_start(void *ctx, struct wisp_err *err)
{
	struct fake_vm *f = ctx;
	int r = fake_result(f, "start", err);
	if (!r)
		f->starts++;
	return r;
}

static int fake_pause(void *ctx, struct wisp_err *err)
{
	struct fake_vm *f = ctx;
	f->pauses++;
	return fake_result(f, "pause", err);
}

static int fake_resume(void *ctx, struct wisp_err *err)
{
	struct fake_vm *f = ctx;
	f->resumes++;
	return fake_result(f, "resume", err);
}

static int fake_cad(void *ctx, struct wisp_err *err)
{
	struct fake_vm *f = ctx;
	f->cads++;
	return fake_result(f, "ctrl-alt-del", err);
}

static int fake_drive(void *ctx, const struct vmcfg_drive *d, const char *path,
		      const struct vmcfg_rate_limiter *rl, struct wisp_err *err)
{
	(void)d;
	struct fake_vm *f = ctx;
	f->drive_updates++;
	snprintf(f->last_path, sizeof(f->last_path), "%s", path ? path : "");
	f->last_rl = rl != NULL;
	return fake_result(f, "drive update", err);
}

static int fake_net(void *ctx, const struct vmcfg_net *n, const struct vmcfg_rate_limiter *rx,
		    const struct vmcfg_rate_limiter *tx, struct wisp_err *err)
{
	(void)n;
	(void)rx;
	(void)tx;
	struct fake_vm *f = ctx;
	f->net_updates++;
	return fake_result(f, "net update", err);
}

static const struct api_vmm_ops fake_ops = {
	.start = fake_start,
	.pause = fake_pause,
	.resume = fake_resume,
	.ctrl_alt_del = fake_cad,
	.drive_update = fake_drive,
	.net_update = fake_net,
};

struct harness {
	struct vm_config cfg;
	struct api_ctl ctl;
	struct fake_vm vm;
	char dir[64];
	char kernel[128];
	char disk[128];
};

static struct harness H;

static void setup(void)
{
	memset(&H, 0, sizeof(H));
	snprintf(H.dir, sizeof(H.dir), "/tmp/wisp-api-XXXXXX");
	cr_assert_not_null(mkdtemp(H.dir));
	snprintf(H.kernel, sizeof(H.kernel), "%s/vmlinux", H.dir);
	snprintf(H.disk, sizeof(H.disk), "%s/disk", H.dir);
	FILE *f = fopen(H.kernel, "w");
	fputs("k", f);
	fclose(f);
	f = fopen(H.disk, "w");
	fputs("d", f);
	fclose(f);
	vmcfg_init(&H.cfg);
	api_ctl_init(&H.ctl, &H.cfg, "vm-1", &fake_ops, &H.vm);
}

static void teardown(void)
{
	vmcfg_free(&H.cfg);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", H.dir);
	cr_assert_eq(system(cmd), 0);
}

/* Parse and execute one request; returns the status, *body the reply
 * document (caller frees) or NULL. */
static int req(const char *method, const char *path, const char *body, json_t **doc)
{
	struct api_action a;
	struct api_reply reply = { 0 };
	struct wisp_err err = { 0 };
	if (doc)
		*doc = NULL;
	if (api_parse(api_method_parse(method), path, body, body ? strlen(body) : 0, &a, &err) < 0) {
		if (doc)
			*doc = api_fault(err.msg);
		return 400;
	}
	api_ctl_execute(&H.ctl, &a, &reply);
	api_action_free(&a);
	if (doc)
		*doc = reply.body;
	else
		json_decref(reply.body);
	return reply.status;
}

static void expect_fault(const char *method, const char *path, const char *body,
			 const char *msg)
{
	json_t *doc;
	int st = req(method, path, body, &doc);
	cr_expect_eq(st, 400, "%s %s %s: status %d", method, path, body ? body : "", st);
	const char *fm = json_string_value(json_object_get(doc, "fault_message"));
	cr_expect(fm && strstr(fm, msg), "%s %s %s:\n  expected fault containing: %s\n  got: %s",
		  method, path, body ? body : "", msg, fm ? fm : "(none)");
	json_decref(doc);
}

static void expect_ok(const char *method, const char *path, const char *body)
{
	json_t *doc;
	int st = req(method, path, body, &doc);
	const char *fm = json_string_value(json_object_get(doc, "fault_message"));
	cr_assert_eq(st, 204, "%s %s %s: status %d: %s", method, path, body ? body : "", st,
		     fm ? fm : "");
	json_decref(doc);
}

static void configure_bootable(void)
{
	char body[512];
	snprintf(body, sizeof(body), "{\"kernel_image_path\": \"%s\", \"boot_args\": \"console=ttyS0\"}",
		 H.kernel);
	expect_ok("PUT", "/boot-source", body);
	expect_ok("PUT", "/machine-config", "{\"vcpu_count\": 2, \"mem_size_mib\": 64}");
	snprintf(body, sizeof(body),
		 "{\"drive_id\": \"rootfs\", \"path_on_host\": \"%s\", \"is_root_device\": true,"
		 " \"is_read_only\": false}", H.disk);
	expect_ok("PUT", "/drives/rootfs", body);
}

TestSuite(api, .init = setup, .fini = teardown);

Test(api, routing_refusals)
{
	expect_fault("GET", "/nope", NULL, "Invalid request method and/or path: /nope");
	expect_fault("DELETE", "/drives/rootfs", NULL, "Invalid request method for /drives/rootfs");
	expect_fault("POST", "/actions", "{}", "allowed: PUT");
	expect_fault("GET", "/vm", NULL, "allowed: PATCH");
	expect_fault("PUT", "/machine-config/", "{}", "Invalid request method and/or path");
	expect_fault("PUT", "/drives/a/b", "{}", "Invalid request method and/or path");
	expect_fault("PUT", "/drives/", "{}", "the path has no drive_id");
	expect_fault("PUT", "/drives/a-b", "{}", "the id in the path may hold only");
	expect_fault("PUT", "/network-interfaces/", "{}", "the path has no iface_id");
	expect_fault("PUT", "relative", "{}", "Invalid request path");
}

Test(api, body_refusals)
{
	expect_fault("PUT", "/boot-source", NULL, "PUT /boot-source: the request body is empty");
	expect_fault("PUT", "/boot-source", "{\"kernel_image_path\": ", "not valid JSON");
	expect_fault("PUT", "/boot-source", "[1]", "boot-source: must be a JSON object");
	expect_fault("PUT", "/boot-source", "{\"kernel_image_path\": \"/k\"} trailing",
		     "not valid JSON");
	expect_fault("PUT", "/boot-source", "{\"kernel_image_path\": \"/k\", \"kernel_image_path\": \"/j\"}",
		     "duplicate");
	expect_fault("PUT", "/machine-config", "{\"vcpu_count\": 0, \"mem_size_mib\": 128}",
		     "machine-config.vcpu_count: must be between 1 and 32");
	expect_fault("PUT", "/machine-config", "{\"vcpu_count\": 1}",
		     "machine-config.mem_size_mib: missing required field");
	expect_fault("PATCH", "/machine-config", "{\"vcpu_count\": true}",
		     "machine-config.vcpu_count: must be an integer");
	expect_fault("PATCH", "/machine-config", "{\"vcpus\": 2}",
		     "machine-config.vcpus: unknown field");
	expect_fault("PUT", "/drives/rootfs",
		     "{\"drive_id\": \"other\", \"path_on_host\": \"/d\", \"is_root_device\": true}",
		     "drives.drive_id: \"other\" does not match the path's id \"rootfs\"");
	expect_fault("PUT", "/drives/rootfs", "{\"drive_id\": \"rootfs\", \"is_root_device\": true}",
		     "drives.path_on_host: missing required field");
	expect_fault("PATCH", "/drives/rootfs", "{\"drive_id\": \"rootfs\", \"is_root_device\": false}",
		     "drives.is_root_device: unknown field");
	expect_fault("PUT", "/network-interfaces/eth0",
		     "{\"iface_id\": \"eth1\", \"host_dev_name\": \"tap0\"}",
		     "network-interfaces.iface_id: \"eth1\" does not match the path's id \"eth0\"");
	expect_fault("PATCH", "/network-interfaces/eth0",
		     "{\"iface_id\": \"eth0\", \"rx_rate_limiter\": {\"ops\": {\"size\": \"x\", \"refill_time\": 1}}}",
		     "network-interfaces.rx_rate_limiter.ops.size: must be an integer");
	expect_fault("PUT", "/vsock", "{\"guest_cid\": 1, \"uds_path\": \"/v\"}",
		     "vsock.guest_cid: must be between 3 and");
	expect_fault("PUT", "/actions", "{\"action_type\": \"Reboot\"}",
		     "actions.action_type: must be one of InstanceStart, SendCtrlAltDel, FlushMetrics");
	expect_fault("PUT", "/actions", "{}", "actions.action_type: missing required field");
	expect_fault("PUT", "/actions", "{\"action_type\": \"FlushMetrics\", \"payload\": 1}",
		     "actions.payload: unknown field");
	expect_fault("PUT", "/actions", "{\"action_type\": 1}", "actions.action_type: must be a string");
	expect_fault("PATCH", "/vm", "{\"state\": \"Stopped\"}",
		     "vm.state: must be one of Paused, Resumed");
	expect_fault("PUT", "/logger", "{\"level\": \"Chatty\"}", "logger.level: must be one of");
	expect_fault("PUT", "/metrics", "{\"path\": \"/m\"}", "metrics.path: unknown field");
	/* Nothing refused changed the configuration. */
	cr_assert(!H.cfg.boot.present);
	cr_assert_eq(H.cfg.nr_drives, 0);
	cr_assert_eq(H.cfg.machine.vcpu_count, 1);
}

Test(api, get_endpoints)
{
	json_t *doc;
	cr_assert_eq(req("GET", "/", NULL, &doc), 200);
	cr_assert_str_eq(json_string_value(json_object_get(doc, "id")), "vm-1");
	cr_assert_str_eq(json_string_value(json_object_get(doc, "state")), "Not started");
	cr_assert_str_eq(json_string_value(json_object_get(doc, "vmm_version")), WISP_VMM_VERSION);
	cr_assert_str_eq(json_string_value(json_object_get(doc, "app_name")), "wisp");
	json_decref(doc);
	cr_assert_eq(req("GET", "/version", NULL, &doc), 200);
	cr_assert_str_eq(json_string_value(json_object_get(doc, "firecracker_version")),
			 WISP_VMM_VERSION);
	json_decref(doc);
	/* A body on a GET is ignored. */
	cr_assert_eq(req("GET", "/machine-config", "garbage", &doc), 200);
	cr_assert_eq(json_integer_value(json_object_get(doc, "vcpu_count")), 1);
	cr_assert_eq(json_integer_value(json_object_get(doc, "mem_size_mib")), 128);
	json_decref(doc);

	configure_bootable();
	cr_assert_eq(req("GET", "/vm/config", NULL, &doc), 200);
	json_t *boot = json_object_get(doc, "boot-source");
	cr_assert_str_eq(json_string_value(json_object_get(boot, "kernel_image_path")), H.kernel);
	cr_assert_eq(json_array_size(json_object_get(doc, "drives")), 1);
	/* The same schema as the config file: it parses back. */
	struct vm_config back;
	struct wisp_err e = { 0 };
	vmcfg_init(&back);
	cr_assert_eq(vmcfg_from_json(doc, &back, &e), 0, "%s", e.msg);
	cr_assert_eq(back.machine.vcpu_count, 2);
	vmcfg_free(&back);
	json_decref(doc);
}

Test(api, config_puts_before_start)
{
	configure_bootable();
	cr_assert_str_eq(H.cfg.boot.boot_args, "console=ttyS0");
	cr_assert_eq(H.cfg.machine.vcpu_count, 2);
	cr_assert_eq(H.cfg.nr_drives, 1);

	/* PATCH keeps what it does not name. */
	expect_ok("PATCH", "/machine-config", "{\"mem_size_mib\": 256}");
	cr_assert_eq(H.cfg.machine.vcpu_count, 2);
	cr_assert_eq(H.cfg.machine.mem_size_mib, 256);
	/* smt with an odd count is checked against the merged result. */
	expect_fault("PATCH", "/machine-config", "{\"vcpu_count\": 3, \"smt\": true}",
		     "must be 1 or an even number when smt is true");
	cr_assert_eq(H.cfg.machine.vcpu_count, 2);

	/* PUT of the same drive id replaces it; a second root is refused. */
	char body[512];
	snprintf(body, sizeof(body),
		 "{\"drive_id\": \"rootfs\", \"path_on_host\": \"%s\", \"is_root_device\": true,"
		 " \"is_read_only\": true}", H.disk);
	expect_ok("PUT", "/drives/rootfs", body);
	cr_assert_eq(H.cfg.nr_drives, 1);
	cr_assert(H.cfg.drives[0].is_read_only);
	expect_fault("PUT", "/drives/second",
		     "{\"drive_id\": \"second\", \"path_on_host\": \"/d\", \"is_root_device\": true}",
		     "a root device is already configured (\"rootfs\")");
	expect_ok("PUT", "/drives/data", "{\"drive_id\": \"data\", \"path_on_host\": \"/d\", \"is_root_device\": false}");
	cr_assert_eq(H.cfg.nr_drives, 2);
	for (int i = 2; i < VMCFG_MAX_DRIVES; i++) {
		snprintf(body, sizeof(body),
			 "{\"drive_id\": \"d%d\", \"path_on_host\": \"/d\", \"is_root_device\": false}", i);
		char path[32];
		snprintf(path, sizeof(path), "/drives/d%d", i);
		expect_ok("PUT", path, body);
	}
	expect_fault("PUT", "/drives/toomany",
		     "{\"drive_id\": \"toomany\", \"path_on_host\": \"/d\", \"is_root_device\": false}",
		     "at most 8 drives");

	expect_ok("PUT", "/network-interfaces/eth0",
		  "{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\", \"guest_mac\": \"06:00:00:00:00:01\"}");
	expect_fault("PUT", "/network-interfaces/eth1",
		     "{\"iface_id\": \"eth1\", \"host_dev_name\": \"tap0\"}",
		     "network-interfaces.host_dev_name: \"tap0\" is used by \"eth0\"");
	expect_fault("PUT", "/network-interfaces/eth1",
		     "{\"iface_id\": \"eth1\", \"host_dev_name\": \"tap1\", \"guest_mac\": \"06:00:00:00:00:01\"}",
		     "guest_mac: already used by \"eth0\"");
	expect_ok("PUT", "/network-interfaces/eth0", "{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap9\"}");
	cr_assert_eq(H.cfg.nr_nets, 1);
	cr_assert_str_eq(H.cfg.nets[0].host_dev_name, "tap9");

	expect_ok("PUT", "/vsock", "{\"vsock_id\": \"v\", \"guest_cid\": 3, \"uds_path\": \"/tmp/v.sock\"}");
	expect_ok("PUT", "/vsock", "{\"guest_cid\": 7, \"uds_path\": \"/tmp/w.sock\"}");
	cr_assert_eq(H.cfg.vsock.guest_cid, 7);
	cr_assert_str_eq(H.cfg.vsock.uds_path, "/tmp/w.sock");
	cr_assert_eq(H.vm.starts, 0);
}

Test(api, instance_start_validates_then_starts)
{
	/* No kernel: refused, nothing started. */
	expect_fault("PUT", "/actions", "{\"action_type\": \"InstanceStart\"}",
		     "boot-source: no kernel configured");
	cr_assert_eq(H.vm.starts, 0);
	/* A kernel that is not there. */
	expect_ok("PUT", "/boot-source", "{\"kernel_image_path\": \"/nonexistent/vmlinux\"}");
	expect_fault("PUT", "/actions", "{\"action_type\": \"InstanceStart\"}",
		     "boot-source.kernel_image_path: cannot read \"/nonexistent/vmlinux\"");
	configure_bootable();
	/* The VM's own failure is reported and the state stays. */
	H.vm.fail_next = EIO;
	expect_fault("PUT", "/actions", "{\"action_type\": \"InstanceStart\"}", "start failed (fake)");
	cr_assert_eq(H.ctl.state, VM_NOT_STARTED);
	expect_ok("PUT", "/actions", "{\"action_type\": \"InstanceStart\"}");
	cr_assert_eq(H.vm.starts, 1);
	cr_assert_eq(H.ctl.state, VM_RUNNING);
	expect_fault("PUT", "/actions", "{\"action_type\": \"InstanceStart\"}",
		     "InstanceStart is not allowed after the VM is started (state Running)");
	cr_assert_eq(H.vm.starts, 1);
}

Test(api, after_start_lifecycle)
{
	configure_bootable();
	expect_fault("PATCH", "/vm", "{\"state\": \"Paused\"}",
		     "PATCH /vm Paused is not allowed before the VM is started");
	expect_fault("PUT", "/actions", "{\"action_type\": \"SendCtrlAltDel\"}",
		     "SendCtrlAltDel is not allowed before the VM is started");
	expect_fault("PATCH", "/drives/rootfs", "{\"drive_id\": \"rootfs\", \"path_on_host\": \"/x\"}",
		     "PATCH /drives is not allowed before the VM is started");
	expect_ok("PUT", "/actions", "{\"action_type\": \"InstanceStart\"}");

	/* Configuration is frozen once running. */
	expect_fault("PUT", "/machine-config", "{\"vcpu_count\": 1, \"mem_size_mib\": 128}",
		     "PUT /machine-config is not allowed after the VM is started (state Running)");
	expect_fault("PUT", "/boot-source", "{\"kernel_image_path\": \"/k\"}",
		     "PUT /boot-source is not allowed after the VM is started");
	expect_fault("PUT", "/drives/x", "{\"drive_id\": \"x\", \"path_on_host\": \"/d\", \"is_root_device\": false}",
		     "PUT /drives is not allowed after the VM is started");
	expect_fault("PUT", "/vsock", "{\"guest_cid\": 3, \"uds_path\": \"/v\"}",
		     "PUT /vsock is not allowed after the VM is started");
	expect_fault("PUT", "/logger", "{\"level\": \"Debug\"}",
		     "PUT /logger is not allowed after the VM is started");
	cr_assert_eq(H.cfg.nr_drives, 1);

	expect_ok("PUT", "/actions", "{\"action_type\": \"SendCtrlAltDel\"}");
	cr_assert_eq(H.vm.cads, 1);

	expect_ok("PATCH", "/vm", "{\"state\": \"Paused\"}");
	cr_assert_eq(H.ctl.state, VM_PAUSED);
	json_t *doc;
	cr_assert_eq(req("GET", "/", NULL, &doc), 200);
	cr_assert_str_eq(json_string_value(json_object_get(doc, "state")), "Paused");
	json_decref(doc);
	/* Pausing a paused VM is a no-op; CtrlAltDel needs running vCPUs. */
	expect_ok("PATCH", "/vm", "{\"state\": \"Paused\"}");
	cr_assert_eq(H.vm.pauses, 1);
	expect_fault("PUT", "/actions", "{\"action_type\": \"SendCtrlAltDel\"}",
		     "SendCtrlAltDel is not allowed while the VM is Paused");
	/* A failed resume leaves it paused. */
	H.vm.fail_next = EIO;
	expect_fault("PATCH", "/vm", "{\"state\": \"Resumed\"}", "resume failed (fake)");
	cr_assert_eq(H.ctl.state, VM_PAUSED);
	expect_ok("PATCH", "/vm", "{\"state\": \"Resumed\"}");
	cr_assert_eq(H.ctl.state, VM_RUNNING);
	expect_ok("PATCH", "/vm", "{\"state\": \"Resumed\"}");
	cr_assert_eq(H.vm.resumes, 2);
}

Test(api, patch_drive_and_net_after_start)
{
	configure_bootable();
	expect_ok("PUT", "/network-interfaces/eth0", "{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\"}");
	expect_ok("PUT", "/actions", "{\"action_type\": \"InstanceStart\"}");

	char body[512];
	char newdisk[160];
	snprintf(newdisk, sizeof(newdisk), "%s/disk2", H.dir);
	snprintf(body, sizeof(body), "{\"drive_id\": \"rootfs\", \"path_on_host\": \"%s\"}", newdisk);
	expect_fault("PATCH", "/drives/rootfs", body, "drives.path_on_host: cannot open");
	cr_assert_eq(H.vm.drive_updates, 0);
	FILE *f = fopen(newdisk, "w");
	fputs("n", f);
	fclose(f);
	expect_ok("PATCH", "/drives/rootfs", body);
	cr_assert_eq(H.vm.drive_updates, 1);
	cr_assert_str_eq(H.vm.last_path, newdisk);
	cr_assert_str_eq(H.cfg.drives[0].path_on_host, newdisk);
	expect_fault("PATCH", "/drives/nodrive", "{\"drive_id\": \"nodrive\", \"path_on_host\": \"/d\"}",
		     "drives: no drive \"nodrive\" is configured");
	expect_ok("PATCH", "/drives/rootfs",
		  "{\"drive_id\": \"rootfs\", \"rate_limiter\": {\"ops\": {\"size\": 10, \"refill_time\": 100}}}");
	cr_assert(H.vm.last_rl);
	cr_assert_eq(H.cfg.drives[0].rate_limiter.ops.size, 10);
	cr_assert_str_eq(H.cfg.drives[0].path_on_host, newdisk);

	H.vm.fail_next = EIO;
	expect_fault("PATCH", "/network-interfaces/eth0",
		     "{\"iface_id\": \"eth0\", \"tx_rate_limiter\": {\"bandwidth\": {\"size\": 1000, \"refill_time\": 100}}}",
		     "net update failed (fake)");
	cr_assert(!H.cfg.nets[0].tx_rate_limiter.present);
	expect_ok("PATCH", "/network-interfaces/eth0",
		  "{\"iface_id\": \"eth0\", \"tx_rate_limiter\": {\"bandwidth\": {\"size\": 1000, \"refill_time\": 100}}}");
	cr_assert_eq(H.cfg.nets[0].tx_rate_limiter.bandwidth.size, 1000);
	expect_fault("PATCH", "/network-interfaces/eth5", "{\"iface_id\": \"eth5\"}",
		     "no interface \"eth5\" is configured");
}

Test(api, state_table)
{
	struct wisp_err e = { 0 };
	/* Every action has a verdict in every state and the key ones are right. */
	const struct { enum api_action_kind k; bool ns, run, pau; } rows[] = {
		{ API_GET_INFO, 1, 1, 1 },       { API_GET_VERSION, 1, 1, 1 },
		{ API_GET_VM_CONFIG, 1, 1, 1 },  { API_GET_MACHINE, 1, 1, 1 },
		{ API_PUT_MACHINE, 1, 0, 0 },    { API_PATCH_MACHINE, 1, 0, 0 },
		{ API_PUT_BOOT, 1, 0, 0 },       { API_PUT_DRIVE, 1, 0, 0 },
		{ API_PATCH_DRIVE, 0, 1, 1 },    { API_PUT_NET, 1, 0, 0 },
		{ API_PATCH_NET, 0, 1, 1 },      { API_PUT_VSOCK, 1, 0, 0 },
		{ API_PUT_LOGGER, 1, 0, 0 },     { API_PUT_METRICS, 1, 0, 0 },
		{ API_INSTANCE_START, 1, 0, 0 }, { API_SEND_CTRL_ALT_DEL, 0, 1, 0 },
		{ API_FLUSH_METRICS, 1, 1, 1 },  { API_PAUSE, 0, 1, 1 },
		{ API_RESUME, 0, 1, 1 },
		{ API_SNAPSHOT_CREATE, 0, 0, 1 }, { API_SNAPSHOT_LOAD, 1, 0, 0 },
	};
	cr_assert_eq(sizeof(rows) / sizeof(rows[0]), API_ACTION_COUNT);
	for (size_t i = 0; i < API_ACTION_COUNT; i++) {
		cr_expect_eq(api_action_allowed(rows[i].k, VM_NOT_STARTED, &e) == 0, rows[i].ns,
			     "%s before start", api_action_name(rows[i].k));
		cr_expect_eq(api_action_allowed(rows[i].k, VM_RUNNING, &e) == 0, rows[i].run,
			     "%s running", api_action_name(rows[i].k));
		cr_expect_eq(api_action_allowed(rows[i].k, VM_PAUSED, &e) == 0, rows[i].pau,
			     "%s paused", api_action_name(rows[i].k));
		/* A stopped VM accepts nothing. */
		cr_expect_lt(api_action_allowed(rows[i].k, VM_STOPPED, &e), 0);
	}
}

Test(api, logger_and_metrics)
{
	char logp[160], metp[160];
	snprintf(logp, sizeof(logp), "%s/log", H.dir);
	snprintf(metp, sizeof(metp), "%s/metrics", H.dir);
	char body[256];

	expect_fault("PUT", "/logger", "{\"log_path\": \"/nonexistent/dir/log\"}",
		     "logger.log_path: cannot open \"/nonexistent/dir/log\"");
	snprintf(body, sizeof(body), "{\"log_path\": \"%s\", \"level\": \"Debug\", \"show_level\": true}",
		 logp);
	expect_ok("PUT", "/logger", body);
	cr_assert_eq(wisp_log_get_level(), WISP_LOG_DEBUG);
	wlog_info("hello from the test");
	wisp_log_set_fd(2);
	wisp_log_set_level(WISP_LOG_INFO);
	char *text = NULL;
	size_t len;
	struct wisp_err e = { 0 };
	cr_assert_eq(wisp_read_file(logp, 65536, &text, &len, &e), 0, "%s", e.msg);
	cr_assert(strstr(text, "hello from the test"), "log holds: %s", text);
	cr_assert(strstr(text, "vm-1") || strstr(text, "INFO"), "log holds: %s", text);
	free(text);

	expect_fault("PUT", "/actions", "{\"action_type\": \"FlushMetrics\"}",
		     "FlushMetrics: no metrics path is configured");
	snprintf(body, sizeof(body), "{\"metrics_path\": \"%s\"}", metp);
	expect_ok("PUT", "/metrics", body);
	metrics_vcpu_exit(METRICS_EXIT_IO_OUT);
	metrics_vcpu_exit(METRICS_EXIT_IO_OUT);
	struct metrics_dev *d = metrics_dev_register("block_test");
	cr_assert_eq(metrics_dev_register("block_test"), d);
	metrics_dev_add(d, METRICS_DEV_BYTES_READ, 4096);
	metrics_api_request("put_test", true);
	expect_ok("PUT", "/actions", "{\"action_type\": \"FlushMetrics\"}");
	expect_ok("PUT", "/actions", "{\"action_type\": \"FlushMetrics\"}");
	FILE *f = fopen(metp, "r");
	cr_assert_not_null(f);
	char line[8192];
	cr_assert_not_null(fgets(line, sizeof(line), f));
	json_error_t je;
	json_t *m = json_loads(line, 0, &je);
	cr_assert_not_null(m, "first line is not JSON: %s", line);
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(m, "vcpu"), "exit_io_out")), 2);
	json_t *dev = json_object_get(json_object_get(m, "devices"), "block_test");
	cr_assert_eq(json_integer_value(json_object_get(dev, "bytes_read")), 4096);
	json_t *ep = json_object_get(json_object_get(m, "api"), "put_test");
	cr_assert_eq(json_integer_value(json_object_get(ep, "fails")), 1);
	json_decref(m);
	/* The second line holds only what happened since the first. */
	cr_assert_not_null(fgets(line, sizeof(line), f));
	m = json_loads(line, 0, &je);
	cr_assert_not_null(m);
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(m, "vcpu"), "exit_io_out")), 0);
	json_decref(m);
	cr_assert_null(fgets(line, sizeof(line), f));
	fclose(f);
}
