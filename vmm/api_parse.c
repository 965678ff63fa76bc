/* The API's request layer: method + path + body become one action. Nothing
 * here reads or changes the VM; the state table says when an action is legal. */
#include "api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/cleanup.h"

enum body_kind {
	BODY_NONE,      /* GET: a body is ignored */
	BODY_BOOT,
	BODY_MACHINE,
	BODY_MACHINE_PATCH,
	BODY_DRIVE,
	BODY_DRIVE_PATCH,
	BODY_NET,
	BODY_NET_PATCH,
	BODY_VSOCK,
	BODY_LOGGER,
	BODY_METRICS,
	BODY_ACTIONS,
	BODY_VM_STATE,
	BODY_SNAP_CREATE,
	BODY_SNAP_LOAD,
};

struct route {
	enum api_method method;
	const char *method_name;
	const char *path;       /* exact path, or the prefix before "{id}" */
	const char *pattern;    /* as the OpenAPI description writes it */
	bool has_id;
	enum body_kind body;
	enum api_action_kind kind;      /* unless the body decides */
	const char *endpoint;
};

static const struct route routes[] = {
	{ API_GET, "GET", "/", "/", false, BODY_NONE, API_GET_INFO, "get_root" },
	{ API_GET, "GET", "/version", "/version", false, BODY_NONE, API_GET_VERSION, "get_version" },
	{ API_GET, "GET", "/vm/config", "/vm/config", false, BODY_NONE, API_GET_VM_CONFIG,
	  "get_vm_config" },
	{ API_GET, "GET", "/machine-config", "/machine-config", false, BODY_NONE, API_GET_MACHINE,
	  "get_machine_config" },
	{ API_PUT, "PUT", "/machine-config", "/machine-config", false, BODY_MACHINE,
	  API_PUT_MACHINE, "put_machine_config" },
	{ API_PATCH, "PATCH", "/machine-config", "/machine-config", false, BODY_MACHINE_PATCH,
	  API_PATCH_MACHINE, "patch_machine_config" },
	{ API_PUT, "PUT", "/boot-source", "/boot-source", false, BODY_BOOT, API_PUT_BOOT,
	  "put_boot_source" },
	{ API_PUT, "PUT", "/drives/", "/drives/{drive_id}", true, BODY_DRIVE, API_PUT_DRIVE,
	  "put_drives" },
	{ API_PATCH, "PATCH", "/drives/", "/drives/{drive_id}", true, BODY_DRIVE_PATCH,
	  API_PATCH_DRIVE, "patch_drives" },
	{ API_PUT, "PUT", "/network-interfaces/", "/network-interfaces/{iface_id}", true, BODY_NET,
	  API_PUT_NET, "put_network_interfaces" },
	{ API_PATCH, "PATCH", "/network-interfaces/", "/network-interfaces/{iface_id}", true,
	  BODY_NET_PATCH, API_PATCH_NET, "patch_network_interfaces" },
	{ API_PUT, "PUT", "/vsock", "/vsock", false, BODY_VSOCK, API_PUT_VSOCK, "put_vsock" },
	{ API_PUT, "PUT", "/actions", "/actions", false, BODY_ACTIONS, API_INSTANCE_START,
	  "put_actions" },
	{ API_PATCH, "PATCH", "/vm", "/vm", false, BODY_VM_STATE, API_PAUSE, "patch_vm" },
	{ API_PUT, "PUT", "/logger", "/logger", false, BODY_LOGGER, API_PUT_LOGGER, "put_logger" },
	{ API_PUT, "PUT", "/metrics", "/metrics", false, BODY_METRICS, API_PUT_METRICS,
	  "put_metrics" },
	{ API_PUT, "PUT", "/snapshot/create", "/snapshot/create", false, BODY_SNAP_CREATE,
	  API_SNAPSHOT_CREATE, "put_snapshot_create" },
	{ API_PUT, "PUT", "/snapshot/load", "/snapshot/load", false, BODY_SNAP_LOAD,
	  API_SNAPSHOT_LOAD, "put_snapshot_load" },
};

static const char *const action_names[API_ACTION_COUNT] = {
	[API_GET_INFO] = "GET /",
	[API_GET_VERSION] = "GET /version",
	[API_GET_VM_CONFIG] = "GET /vm/config",
	[API_GET_MACHINE] = "GET /machine-config",
	[API_PUT_MACHINE] = "PUT /machine-config",
	[API_PATCH_MACHINE] = "PATCH /machine-config",
	[API_PUT_BOOT] = "PUT /boot-source",
	[API_PUT_DRIVE] = "PUT /drives",
	[API_PATCH_DRIVE] = "PATCH /drives",
	[API_PUT_NET] = "PUT /network-interfaces",
	[API_PATCH_NET] = "PATCH /network-interfaces",
	[API_PUT_VSOCK] = "PUT /vsock",
	[API_PUT_LOGGER] = "PUT /logger",
	[API_PUT_METRICS] = "PUT /metrics",
	[API_INSTANCE_START] = "InstanceStart",
	[API_SEND_CTRL_ALT_DEL] = "SendCtrlAltDel",
	[API_FLUSH_METRICS] = "FlushMetrics",
	[API_PAUSE] = "PATCH /vm Paused",
	[API_RESUME] = "PATCH /vm Resumed",
	[API_SNAPSHOT_CREATE] = "PUT /snapshot/create",
	[API_SNAPSHOT_LOAD] = "PUT /snapshot/load",
};

const char *api_action_name(enum api_action_kind kind)
{
	if ((unsigned)kind >= API_ACTION_COUNT)
		return "unknown";
	return action_names[kind];
}

static const unsigned state_table[API_ACTION_COUNT];

const struct api_route_info *api_route(size_t i)
{
	static struct api_route_info info;
	if (i >= WISP_ARRAY_SIZE(routes))
		return NULL;
	info.method = routes[i].method_name;
	info.path = routes[i].pattern;
	/* Routes whose body picks the action are legal where any of them is. */
	switch (routes[i].body) {
	case BODY_ACTIONS:
		info.states = state_table[API_INSTANCE_START] |
			      state_table[API_SEND_CTRL_ALT_DEL] | state_table[API_FLUSH_METRICS];
		break;
	case BODY_VM_STATE:
		info.states = state_table[API_PAUSE] | state_table[API_RESUME];
		break;
	default:
		info.states = state_table[routes[i].kind];
		break;
	}
	return &info;
}

enum api_method api_method_parse(const char *name)
{
	if (strcmp(name, "GET") == 0)
		return API_GET;
	if (strcmp(name, "PUT") == 0)
		return API_PUT;
	if (strcmp(name, "PATCH") == 0)
		return API_PATCH;
	return API_OTHER;
}

/* ---- the state table ---- */

enum {
	S_NS = 1 << VM_NOT_STARTED,
	S_RUN = 1 << VM_RUNNING,
	S_PAU = 1 << VM_PAUSED,
	S_ANY = S_NS | S_RUN | S_PAU,
};

/* Which action is legal in which state (as Firecracker: configuration
 * before boot, device updates and pause/resume after it). */
static const unsigned state_table[API_ACTION_COUNT] = {
	[API_GET_INFO] = S_ANY,
	[API_GET_VERSION] = S_ANY,
	[API_GET_VM_CONFIG] = S_ANY,
	[API_GET_MACHINE] = S_ANY,
	[API_PUT_MACHINE] = S_NS,
	[API_PATCH_MACHINE] = S_NS,
	[API_PUT_BOOT] = S_NS,
	[API_PUT_DRIVE] = S_NS,
	[API_PATCH_DRIVE] = S_RUN | S_PAU,
	[API_PUT_NET] = S_NS,
	[API_PATCH_NET] = S_RUN | S_PAU,
	[API_PUT_VSOCK] = S_NS,
	[API_PUT_LOGGER] = S_NS,
	[API_PUT_METRICS] = S_NS,
	[API_INSTANCE_START] = S_NS,
	[API_SEND_CTRL_ALT_DEL] = S_RUN,
	[API_FLUSH_METRICS] = S_ANY,
	[API_PAUSE] = S_RUN | S_PAU,
	[API_RESUME] = S_RUN | S_PAU,
	[API_SNAPSHOT_CREATE] = S_PAU,
	[API_SNAPSHOT_LOAD] = S_NS,
};

const char *api_state_name(enum vm_state state)
{
	switch (state) {
	case VM_NOT_STARTED: return "Not started";
	case VM_RUNNING: return "Running";
	case VM_PAUSED: return "Paused";
	case VM_STOPPED: return "Stopped";
	}
	return "unknown";
}

int api_action_allowed(enum api_action_kind kind, enum vm_state state, struct wisp_err *err)
{
	if ((unsigned)kind >= API_ACTION_COUNT)
		return wisp_err_set(err, EINVAL, "unknown action");
	if ((unsigned)state < 8 && (state_table[kind] & (1u << state)))
		return 0;
	if (state == VM_NOT_STARTED)
		return wisp_err_set(err, EPERM,
				    "%s is not allowed before the VM is started (InstanceStart)",
				    api_action_name(kind));
	if (state_table[kind] == S_NS)
		return wisp_err_set(err, EPERM,
				    "%s is not allowed after the VM is started (state %s)",
				    api_action_name(kind), api_state_name(state));
	return wisp_err_set(err, EPERM, "%s is not allowed while the VM is %s",
			    api_action_name(kind), api_state_name(state));
}

/* ---- bodies ---- */

/* A one-field object {"<key>": "<one of values>"}; returns the index. */
static int parse_enum_body(json_t *j, const char *section, const char *key,
			   const char *const *values, size_t n, struct wisp_err *err)
{
	const char *k;
	json_t *v;
	if (!json_is_object(j))
		return wisp_err_set(err, EINVAL, "%s: must be a JSON object", section);
	json_object_foreach(j, k, v) {
		if (strcmp(k, key) != 0)
			return wisp_err_set(err, EINVAL, "%s.%s: unknown field", section, k);
	}
	v = json_object_get(j, key);
	if (!v)
		return wisp_err_set(err, EINVAL, "%s.%s: missing required field", section, key);
	if (!json_is_string(v))
		return wisp_err_set(err, EINVAL, "%s.%s: must be a string", section, key);
	for (size_t i = 0; i < n; i++)
		if (strcmp(json_string_value(v), values[i]) == 0)
			return (int)i;
	char list[256] = "";
	for (size_t i = 0; i < n; i++)
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "",
			 values[i]);
	return wisp_err_set(err, EINVAL, "%s.%s: must be one of %s", section, key, list);
}

static int check_body_id(const char *section, const char *key, const char *body_id,
			 const char *path_id, struct wisp_err *err)
{
	if (strcmp(body_id, path_id) != 0)
		return wisp_err_set(err, EINVAL, "%s.%s: \"%s\" does not match the path's id \"%s\"",
				    section, key, body_id, path_id);
	return 0;
}

static int parse_body(const struct route *rt, json_t *j, struct api_action *a,
		      struct wisp_err *err)
{
	static const char *const action_types[] = { "InstanceStart", "SendCtrlAltDel",
		"FlushMetrics" };
	static const char *const vm_states[] = { "Paused", "Resumed" };
	int r;

	switch (rt->body) {
	case BODY_NONE:
		return 0;
	case BODY_BOOT:
		return vmcfg_parse_boot(j, &a->u.boot, err);
	case BODY_MACHINE:
		return vmcfg_parse_machine(j, &a->u.machine, false, err);
	case BODY_MACHINE_PATCH: {
		/* Checked now against the defaults; applied to the real
		 * configuration when executed (the smt rule needs both). */
		struct vmcfg_machine scratch = { .vcpu_count = 2, .mem_size_mib = 128 };
		if ((r = vmcfg_parse_machine(j, &scratch, true, err)) < 0)
			return r;
		a->body = json_incref(j);
		return 0;
	}
	case BODY_DRIVE:
		if ((r = vmcfg_parse_drive(j, &a->u.drive, err)) < 0)
			return r;
		if ((r = check_body_id("drives", "drive_id", a->u.drive.drive_id, a->id, err)) < 0) {
			vmcfg_drive_free(&a->u.drive);
			return r;
		}
		return 0;
	case BODY_DRIVE_PATCH:
		return vmcfg_parse_drive_patch(j, a->id, &a->u.drive_patch.path_on_host,
					       &a->u.drive_patch.rate_limiter,
					       &a->u.drive_patch.has_rate_limiter, err);
	case BODY_NET:
		if ((r = vmcfg_parse_net(j, &a->u.net, err)) < 0)
			return r;
		return check_body_id("network-interfaces", "iface_id", a->u.net.iface_id, a->id,
				     err);
	case BODY_NET_PATCH:
		return vmcfg_parse_net_patch(j, a->id, &a->u.net_patch.rx, &a->u.net_patch.has_rx,
					     &a->u.net_patch.tx, &a->u.net_patch.has_tx, err);
	case BODY_VSOCK:
		return vmcfg_parse_vsock(j, &a->u.vsock, err);
	case BODY_LOGGER:
		return vmcfg_parse_logger(j, &a->u.logger, err);
	case BODY_METRICS:
		return vmcfg_parse_metrics(j, &a->u.metrics, err);
	case BODY_ACTIONS:
		r = parse_enum_body(j, "actions", "action_type", action_types, 3, err);
		if (r < 0)
			return r;
		a->kind = r == 0 ? API_INSTANCE_START :
			  r == 1 ? API_SEND_CTRL_ALT_DEL : API_FLUSH_METRICS;
		return 0;
	case BODY_VM_STATE:
		r = parse_enum_body(j, "vm", "state", vm_states, 2, err);
		if (r < 0)
			return r;
		a->kind = r == 0 ? API_PAUSE : API_RESUME;
		return 0;
	case BODY_SNAP_CREATE:
		return snap_parse_create(j, &a->u.snap_create, err);
	case BODY_SNAP_LOAD:
		return snap_parse_load(j, &a->u.snap_load, err);
	}
	return wisp_err_set(err, EINVAL, "unknown body kind");
}

/* The {id} segment: what drive_id / iface_id allow. */
static int parse_path_id(const char *s, const struct route *rt, char *out,
			 struct wisp_err *err)
{
	const char *name = strchr(rt->pattern, '{') + 1;
	size_t n = strlen(s);
	if (n == 0)
		return wisp_err_set(err, EINVAL, "%s %s: the path has no %.*s", rt->method_name,
				    rt->pattern, (int)(strlen(name) - 1), name);
	if (n > VMCFG_ID_MAX)
		return wisp_err_set(err, EINVAL, "%s %s: the id in the path is longer than %d bytes",
				    rt->method_name, rt->pattern, VMCFG_ID_MAX);
	for (const char *p = s; *p; p++)
		if (!(*p == '_' || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
		      (*p >= 'A' && *p <= 'Z')))
			return wisp_err_set(err, EINVAL,
					    "%s %s: the id in the path may hold only letters, digits and '_'",
					    rt->method_name, rt->pattern);
	memcpy(out, s, n + 1);
	return 0;
}

static bool path_matches(const struct route *rt, const char *path, const char **id)
{
	if (!rt->has_id)
		return strcmp(path, rt->path) == 0;
	size_t n = strlen(rt->path);
	if (strncmp(path, rt->path, n) != 0 || strchr(path + n, '/'))
		return false;
	*id = path + n;
	return true;
}

void api_action_free(struct api_action *a)
{
	switch (a->kind) {
	case API_PUT_BOOT:
		vmcfg_boot_free(&a->u.boot);
		break;
	case API_PUT_DRIVE:
		vmcfg_drive_free(&a->u.drive);
		break;
	case API_PATCH_DRIVE:
		free(a->u.drive_patch.path_on_host);
		break;
	case API_PUT_VSOCK:
		free(a->u.vsock.uds_path);
		break;
	case API_PUT_LOGGER:
		free(a->u.logger.log_path);
		break;
	case API_PUT_METRICS:
		free(a->u.metrics.metrics_path);
		break;
	case API_SNAPSHOT_CREATE:
		snap_create_req_free(&a->u.snap_create);
		break;
	case API_SNAPSHOT_LOAD:
		snap_load_req_free(&a->u.snap_load);
		break;
	default:
		break;
	}
	json_decref(a->body);
	const char *endpoint = a->endpoint;
	memset(a, 0, sizeof(*a));
	a->endpoint = endpoint;
}

int api_parse(enum api_method method, const char *path, const char *body, size_t len,
	      struct api_action *a, struct wisp_err *err)
{
	const struct route *rt = NULL;
	const char *id = NULL;
	bool path_known = false;
	int r;

	memset(a, 0, sizeof(*a));
	a->endpoint = "unknown";
	if (!path || path[0] != '/')
		return wisp_err_set(err, EINVAL, "Invalid request path");
	for (size_t i = 0; i < WISP_ARRAY_SIZE(routes); i++) {
		const char *rid = NULL;
		if (!path_matches(&routes[i], path, &rid))
			continue;
		path_known = true;
		if (routes[i].method == method) {
			rt = &routes[i];
			id = rid;
			break;
		}
	}
	if (!rt) {
		if (path_known) {
			char allowed[64] = "";
			for (size_t i = 0; i < WISP_ARRAY_SIZE(routes); i++) {
				const char *rid;
				if (path_matches(&routes[i], path, &rid))
					snprintf(allowed + strlen(allowed),
						 sizeof(allowed) - strlen(allowed), "%s%s",
						 allowed[0] ? ", " : "", routes[i].method_name);
			}
			return wisp_err_set(err, EINVAL,
					    "Invalid request method for %s (allowed: %s)", path,
					    allowed);
		}
		return wisp_err_set(err, EINVAL, "Invalid request method and/or path: %s", path);
	}
	a->endpoint = rt->endpoint;
	a->kind = rt->kind;
	if (rt->has_id && (r = parse_path_id(id, rt, a->id, err)) < 0)
		return r;
	if (rt->body == BODY_NONE)
		return 0;

	if (!body || len == 0)
		return wisp_err_set(err, EINVAL, "%s %s: the request body is empty",
				    rt->method_name, rt->pattern);
	json_error_t jerr;
	json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j)
		return wisp_err_set(err, EINVAL, "%s %s: the body is not valid JSON: %s (line %d column %d)",
				    rt->method_name, rt->pattern, jerr.text, jerr.line, jerr.column);
	r = parse_body(rt, j, a, err);
	json_decref(j);
	if (r < 0) {
		api_action_free(a);
		a->kind = rt->kind;
		return r;
	}
	return 0;
}
