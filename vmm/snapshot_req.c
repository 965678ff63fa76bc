/* Snapshot requests: the bodies of PUT /snapshot/create and PUT
 * /snapshot/load (Firecracker's field names), parsed and checked before
 * anything happens, and the load's per-clone overrides applied to the
 * configuration stored in the snapshot. */
#include "snapshot.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"

#define REQ_PATH_MAX 4096

static int check_keys(json_t *obj, const char *prefix, const char *const *allowed,
		      struct wisp_err *err)
{
	const char *key;
	json_t *v;
	if (!json_is_object(obj))
		return wisp_err_set(err, EINVAL, "%s: must be a JSON object", prefix);
	json_object_foreach(obj, key, v) {
		bool ok = false;
		for (const char *const *a = allowed; *a && !ok; a++)
			ok = strcmp(key, *a) == 0;
		if (!ok)
			return wisp_err_set(err, EINVAL, "%s.%s: unknown field", prefix, key);
	}
	return 0;
}

/* 1 present, 0 absent (JSON null counts as absent), <0 error. */
static int get_str(json_t *obj, const char *prefix, const char *key, bool required,
		   size_t max, const char **out, struct wisp_err *err)
{
	json_t *v = json_object_get(obj, key);
	*out = NULL;
	if (!v || json_is_null(v)) {
		if (required)
			return wisp_err_set(err, EINVAL, "%s.%s: missing required field", prefix, key);
		return 0;
	}
	if (!json_is_string(v))
		return wisp_err_set(err, EINVAL, "%s.%s: must be a string", prefix, key);
	const char *s = json_string_value(v);
	size_t n = json_string_length(v);
	if (n == 0 || n > max || strlen(s) != n)
		return wisp_err_set(err, EINVAL, "%s.%s: must be 1 to %zu characters without NUL",
				    prefix, key, max);
	*out = s;
	return 1;
}

static int dup_str(json_t *obj, const char *prefix, const char *key, bool required,
		   char **out, struct wisp_err *err)
{
	const char *s;
	int r = get_str(obj, prefix, key, required, REQ_PATH_MAX, &s, err);
	if (r <= 0)
		return r;
	*out = strdup(s);
	if (!*out)
		return wisp_err_set(err, ENOMEM, "%s.%s: no memory", prefix, key);
	return 1;
}

static int get_bool(json_t *obj, const char *prefix, const char *key, bool *out,
		    struct wisp_err *err)
{
	json_t *v = json_object_get(obj, key);
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_boolean(v))
		return wisp_err_set(err, EINVAL, "%s.%s: must be true or false", prefix, key);
	*out = json_is_true(v);
	return 1;
}

static int get_id(json_t *obj, const char *prefix, const char *key, char *out, size_t size,
		  struct wisp_err *err)
{
	const char *s;
	int r = get_str(obj, prefix, key, true, size - 1, &s, err);
	if (r < 0)
		return r;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' || *p == '.'))
			return wisp_err_set(err, EINVAL, "%s.%s: '%s' has characters other than letters, digits, '_', '-', '.'",
					    prefix, key, s);
	snprintf(out, size, "%s", s);
	return 1;
}

void snap_create_req_free(struct snap_create_req *r)
{
	free(r->snapshot_path);
	free(r->mem_file_path);
	memset(r, 0, sizeof(*r));
}

int snap_parse_create(json_t *j, struct snap_create_req *out, struct wisp_err *err)
{
	static const char *const keys[] = { "snapshot_type", "snapshot_path", "mem_file_path",
					     "version", NULL };
	struct snap_create_req r = { .type = SNAP_TYPE_FULL };
	int rc = check_keys(j, "snapshot/create", keys, err);
	if (rc < 0)
		return rc;
	const char *type;
	rc = get_str(j, "snapshot/create", "snapshot_type", false, 16, &type, err);
	if (rc < 0)
		return rc;
	if (rc > 0) {
		if (!strcmp(type, "Full"))
			r.type = SNAP_TYPE_FULL;
		else if (!strcmp(type, "Diff"))
			r.type = SNAP_TYPE_DIFF;
		else
			return wisp_err_set(err, EINVAL,
					    "snapshot/create.snapshot_type: must be \"Full\" or \"Diff\", not \"%s\"",
					    type);
	}
	/* "version" (a Firecracker release to write for) is accepted for
	 * compatibility; wisp writes its own format version 1. */
	const char *ver;
	rc = get_str(j, "snapshot/create", "version", false, 32, &ver, err);
	if (rc < 0)
		return rc;
	if ((rc = dup_str(j, "snapshot/create", "snapshot_path", true, &r.snapshot_path, err)) < 0 ||
	    (rc = dup_str(j, "snapshot/create", "mem_file_path", true, &r.mem_file_path, err)) < 0) {
		snap_create_req_free(&r);
		return rc;
	}
	if (!strcmp(r.snapshot_path, r.mem_file_path)) {
		snap_create_req_free(&r);
		return wisp_err_set(err, EINVAL,
				    "snapshot/create: snapshot_path and mem_file_path are the same file");
	}
	*out = r;
	return 0;
}

void snap_load_req_free(struct snap_load_req *r)
{
	free(r->snapshot_path);
	free(r->mem_path);
	free(r->vsock_uds_path);
	for (int i = 0; i < r->nr_drives; i++)
		free(r->drives[i].path_on_host);
	memset(r, 0, sizeof(*r));
}

static int parse_mem_backend(json_t *j, struct snap_load_req *r, struct wisp_err *err)
{
	static const char *const keys[] = { "backend_type", "backend_path", NULL };
	const char *p = "snapshot/load.mem_backend";
	int rc = check_keys(j, p, keys, err);
	if (rc < 0)
		return rc;
	const char *type;
	rc = get_str(j, p, "backend_type", true, 16, &type, err);
	if (rc < 0)
		return rc;
	if (strcmp(type, "File") != 0)
		return wisp_err_set(err, EINVAL,
				    "%s.backend_type: only \"File\" is supported (not \"%s\")", p, type);
	return dup_str(j, p, "backend_path", true, &r->mem_path, err);
}

static int parse_overrides(json_t *j, struct snap_load_req *r, struct wisp_err *err)
{
	json_t *a = json_object_get(j, "network_overrides");
	if (a && !json_is_null(a)) {
		if (!json_is_array(a))
			return wisp_err_set(err, EINVAL, "snapshot/load.network_overrides: must be an array");
		if (json_array_size(a) > VMCFG_MAX_NETS)
			return wisp_err_set(err, EINVAL, "snapshot/load.network_overrides: at most %d entries",
					    VMCFG_MAX_NETS);
		size_t i;
		json_t *o;
		json_array_foreach(a, i, o) {
			static const char *const keys[] = { "iface_id", "host_dev_name", NULL };
			const char *p = "snapshot/load.network_overrides[]";
			struct snap_net_override *n = &r->nets[r->nr_nets];
			int rc = check_keys(o, p, keys, err);
			if (rc < 0 ||
			    (rc = get_id(o, p, "iface_id", n->iface_id, sizeof(n->iface_id), err)) < 0 ||
			    (rc = get_id(o, p, "host_dev_name", n->host_dev_name,
					 sizeof(n->host_dev_name), err)) < 0)
				return rc;
			for (int k = 0; k < r->nr_nets; k++)
				if (!strcmp(r->nets[k].iface_id, n->iface_id))
					return wisp_err_set(err, EINVAL, "%s: iface_id %s given twice",
							    p, n->iface_id);
			r->nr_nets++;
		}
	}
	a = json_object_get(j, "drive_overrides");
	if (a && !json_is_null(a)) {
		if (!json_is_array(a))
			return wisp_err_set(err, EINVAL, "snapshot/load.drive_overrides: must be an array");
		if (json_array_size(a) > VMCFG_MAX_DRIVES)
			return wisp_err_set(err, EINVAL, "snapshot/load.drive_overrides: at most %d entries",
					    VMCFG_MAX_DRIVES);
		size_t i;
		json_t *o;
		json_array_foreach(a, i, o) {
			static const char *const keys[] = { "drive_id", "path_on_host", NULL };
			const char *p = "snapshot/load.drive_overrides[]";
			struct snap_drive_override *d = &r->drives[r->nr_drives];
			int rc = check_keys(o, p, keys, err);
			if (rc < 0 ||
			    (rc = get_id(o, p, "drive_id", d->drive_id, sizeof(d->drive_id), err)) < 0)
				return rc;
			for (int k = 0; k < r->nr_drives; k++)
				if (!strcmp(r->drives[k].drive_id, d->drive_id))
					return wisp_err_set(err, EINVAL, "%s: drive_id %s given twice",
							    p, d->drive_id);
			rc = dup_str(o, p, "path_on_host", true, &d->path_on_host, err);
			if (rc < 0)
				return rc;
			r->nr_drives++;
		}
	}
	json_t *v = json_object_get(j, "vsock_override");
	if (v && !json_is_null(v)) {
		static const char *const keys[] = { "uds_path", NULL };
		int rc = check_keys(v, "snapshot/load.vsock_override", keys, err);
		if (rc < 0)
			return rc;
		rc = dup_str(v, "snapshot/load.vsock_override", "uds_path", true, &r->vsock_uds_path,
			     err);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int snap_parse_load(json_t *j, struct snap_load_req *out, struct wisp_err *err)
{
	static const char *const keys[] = {
		"snapshot_path", "mem_backend", "mem_file_path", "enable_diff_snapshots",
		"track_dirty_pages", "resume_vm", "network_overrides", "vsock_override",
		"drive_overrides", "clock_realtime", NULL,
	};
	const char *p = "snapshot/load";
	struct snap_load_req r;
	memset(&r, 0, sizeof(r));
	int rc = check_keys(j, p, keys, err);
	if (rc < 0)
		return rc;
	rc = dup_str(j, p, "snapshot_path", true, &r.snapshot_path, err);
	if (rc < 0)
		goto fail;
	json_t *mb = json_object_get(j, "mem_backend");
	json_t *mf = json_object_get(j, "mem_file_path");
	bool has_mb = mb && !json_is_null(mb), has_mf = mf && !json_is_null(mf);
	if (has_mb == has_mf) {
		rc = wisp_err_set(err, EINVAL, "%s: exactly one of mem_backend and mem_file_path is required",
				  p);
		goto fail;
	}
	rc = has_mb ? parse_mem_backend(mb, &r, err) : dup_str(j, p, "mem_file_path", true,
							       &r.mem_path, err);
	if (rc < 0)
		goto fail;
	/* enable_diff_snapshots is Firecracker's older name for track_dirty_pages */
	if ((rc = get_bool(j, p, "enable_diff_snapshots", &r.track_dirty_pages, err)) < 0 ||
	    (rc = get_bool(j, p, "track_dirty_pages", &r.track_dirty_pages, err)) < 0 ||
	    (rc = get_bool(j, p, "resume_vm", &r.resume_vm, err)) < 0 ||
	    (rc = get_bool(j, p, "clock_realtime", &r.clock_realtime, err)) < 0)
		goto fail;
	rc = parse_overrides(j, &r, err);
	if (rc < 0)
		goto fail;
	*out = r;
	return 0;
fail:
	snap_load_req_free(&r);
	return rc;
}

int snap_apply_overrides(struct vm_config *cfg, const struct snap_load_req *req,
			 struct wisp_err *err)
{
	/* Check everything first: a refused override changes nothing. */
	for (int i = 0; i < req->nr_nets; i++) {
		bool found = false;
		for (int k = 0; k < cfg->nr_nets && !found; k++)
			found = !strcmp(cfg->nets[k].iface_id, req->nets[i].iface_id);
		if (!found)
			return wisp_err_set(err, EINVAL,
					    "network_overrides: the snapshot has no network interface %s",
					    req->nets[i].iface_id);
	}
	for (int i = 0; i < req->nr_drives; i++) {
		bool found = false;
		for (int k = 0; k < cfg->nr_drives && !found; k++)
			found = !strcmp(cfg->drives[k].drive_id, req->drives[i].drive_id);
		if (!found)
			return wisp_err_set(err, EINVAL, "drive_overrides: the snapshot has no drive %s",
					    req->drives[i].drive_id);
	}
	if (req->vsock_uds_path && !cfg->vsock.present)
		return wisp_err_set(err, EINVAL, "vsock_override: the snapshot has no vsock device");
	_cleanup_free_ char *uds = req->vsock_uds_path ? strdup(req->vsock_uds_path) : NULL;
	char *paths[VMCFG_MAX_DRIVES] = { 0 };
	bool oom = req->vsock_uds_path && !uds;
	for (int i = 0; i < req->nr_drives && !oom; i++)
		oom = !(paths[i] = strdup(req->drives[i].path_on_host));
	if (oom) {
		for (int i = 0; i < req->nr_drives; i++)
			free(paths[i]);
		return wisp_err_set(err, ENOMEM, "no memory for the overrides");
	}
	for (int i = 0; i < req->nr_nets; i++)
		for (int k = 0; k < cfg->nr_nets; k++)
			if (!strcmp(cfg->nets[k].iface_id, req->nets[i].iface_id))
				snprintf(cfg->nets[k].host_dev_name, sizeof(cfg->nets[k].host_dev_name),
					 "%s", req->nets[i].host_dev_name);
	for (int i = 0; i < req->nr_drives; i++)
		for (int k = 0; k < cfg->nr_drives; k++)
			if (!strcmp(cfg->drives[k].drive_id, req->drives[i].drive_id)) {
				free(cfg->drives[k].path_on_host);
				cfg->drives[k].path_on_host = paths[i];
			}
	if (uds) {
		free(cfg->vsock.uds_path);
		cfg->vsock.uds_path = wisp_steal_ptr(uds);
	}
	cfg->machine.track_dirty_pages = req->track_dirty_pages;
	return 0;
}
