/* The VM configuration: Firecracker's JSON schema, parsed and validated
 * completely before anything touches KVM. Every refusal names the key that
 * caused it ("machine-config.vcpu_count: must be between 1 and 32"). A
 * section parser that fails leaves its output empty and the caller's
 * configuration untouched. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/io.h"
#include "layout.h"

#define VMCFG_FILE_MAX   (1024 * 1024)  /* a config file larger than this is refused */

/* ---- field helpers (config_dev.c uses them too): each names
 * "<prefix>.<key>" in its message ---- */

/* Refuse keys of obj not in the NULL-terminated list allowed. */
int vmcfg_check_keys(json_t *obj, const char *prefix, const char *const *allowed,
		     struct wisp_err *err)
{
	const char *key;
	json_t *v;

	if (!json_is_object(obj))
		return wisp_err_set(err, EINVAL, "%s: must be a JSON object", prefix);
	json_object_foreach(obj, key, v) {
		bool ok = false;
		for (const char *const *a = allowed; *a; a++)
			if (strcmp(key, *a) == 0)
				ok = true;
		if (!ok)
			return wisp_err_set(err, EINVAL, "%s.%s: unknown field", prefix, key);
	}
	return 0;
}

/* Fetch obj[key]; a JSON null counts as absent. Returns 1 present, 0 absent,
 * negative when required and absent. */
int vmcfg_get_field(json_t *obj, const char *prefix, const char *key, bool required,
		    json_t **out, struct wisp_err *err)
{
	json_t *v = json_object_get(obj, key);
	if (!v || json_is_null(v)) {
		*out = NULL;
		if (required)
			return wisp_err_set(err, EINVAL, "%s.%s: missing required field", prefix, key);
		return 0;
	}
	*out = v;
	return 1;
}

int vmcfg_get_u64(json_t *obj, const char *prefix, const char *key, bool required,
		  uint64_t min, uint64_t max, uint64_t *out, struct wisp_err *err)
{
	json_t *v;
	int r = vmcfg_get_field(obj, prefix, key, required, &v, err);
	if (r <= 0)
		return r;
	if (!json_is_integer(v))
		return wisp_err_set(err, EINVAL, "%s.%s: must be an integer", prefix, key);
	json_int_t n = json_integer_value(v);
	if (n < 0 || (uint64_t)n < min || (uint64_t)n > max) {
		if (max == (uint64_t)INT64_MAX)
			return wisp_err_set(err, ERANGE, "%s.%s: must be at least %llu",
					    prefix, key, (unsigned long long)min);
		return wisp_err_set(err, ERANGE, "%s.%s: must be between %llu and %llu", prefix,
				    key, (unsigned long long)min, (unsigned long long)max);
	}
	*out = (uint64_t)n;
	return 1;
}

int vmcfg_get_bool(json_t *obj, const char *prefix, const char *key, bool required,
		   bool *out, struct wisp_err *err)
{
	json_t *v;
	int r = vmcfg_get_field(obj, prefix, key, required, &v, err);
	if (r <= 0)
		return r;
	if (!json_is_boolean(v))
		return wisp_err_set(err, EINVAL, "%s.%s: must be true or false", prefix, key);
	*out = json_is_true(v);
	return 1;
}

/* A string: non-empty, no embedded NUL, at most max bytes. *out points into
 * the JSON value (valid while it lives). */
int vmcfg_get_str(json_t *obj, const char *prefix, const char *key, bool required,
		  size_t max, const char **out, struct wisp_err *err)
{
	json_t *v;
	int r = vmcfg_get_field(obj, prefix, key, required, &v, err);
	if (r <= 0)
		return r;
	if (!json_is_string(v))
		return wisp_err_set(err, EINVAL, "%s.%s: must be a string", prefix, key);
	const char *s = json_string_value(v);
	size_t len = json_string_length(v);
	if (len == 0)
		return wisp_err_set(err, EINVAL, "%s.%s: must not be empty", prefix, key);
	if (strlen(s) != len)
		return wisp_err_set(err, EINVAL, "%s.%s: must not contain NUL bytes", prefix, key);
	if (len > max)
		return wisp_err_set(err, EINVAL, "%s.%s: longer than %zu bytes", prefix, key, max);
	*out = s;
	return 1;
}

int vmcfg_dup_str(json_t *obj, const char *prefix, const char *key, bool required,
		  size_t max, char **out, struct wisp_err *err)
{
	const char *s = NULL;
	int r = vmcfg_get_str(obj, prefix, key, required, max, &s, err);
	if (r <= 0)
		return r;
	*out = strdup(s);
	if (!*out)
		return wisp_err_set(err, ENOMEM, "%s.%s: out of memory", prefix, key);
	return 1;
}

/* drive_id / iface_id: letters, digits and '_', 1..VMCFG_ID_MAX bytes. */
int vmcfg_get_id(json_t *obj, const char *prefix, const char *key, char *out,
		 struct wisp_err *err)
{
	const char *s;
	int r = vmcfg_get_str(obj, prefix, key, true, VMCFG_ID_MAX, &s, err);
	if (r < 0)
		return r;
	for (const char *p = s; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '_')
			return wisp_err_set(err, EINVAL,
					    "%s.%s: only letters, digits and '_' are allowed",
					    prefix, key);
	snprintf(out, VMCFG_ID_MAX + 1, "%s", s);
	return 0;
}

/* ---- sections ---- */

void vmcfg_boot_free(struct vmcfg_boot *b)
{
	free(b->kernel_image_path);
	free(b->boot_args);
	free(b->initrd_path);
	memset(b, 0, sizeof(*b));
}

int vmcfg_parse_boot(json_t *j, struct vmcfg_boot *out, struct wisp_err *err)
{
	static const char *const keys[] = { "kernel_image_path", "boot_args", "initrd_path", NULL };
	static const char *p = "boot-source";
	struct vmcfg_boot b = { 0 };
	int r;

	memset(out, 0, sizeof(*out));
	if ((r = vmcfg_check_keys(j, p, keys, err)) < 0 ||
	    (r = vmcfg_dup_str(j, p, "kernel_image_path", true, VMCFG_PATH_MAX,
			       &b.kernel_image_path,
			 err)) < 0 ||
	    (r = vmcfg_dup_str(j, p, "initrd_path", false, VMCFG_PATH_MAX, &b.initrd_path,
			       err)) < 0)
		goto fail;
	/* boot_args may be empty: an empty command line is legal. */
	json_t *v = json_object_get(j, "boot_args");
	if (v && !json_is_null(v)) {
		if (!json_is_string(v)) {
			r = wisp_err_set(err, EINVAL, "%s.boot_args: must be a string", p);
			goto fail;
		}
		if (strlen(json_string_value(v)) != json_string_length(v)) {
			r = wisp_err_set(err, EINVAL, "%s.boot_args: must not contain NUL bytes", p);
			goto fail;
		}
		if (json_string_length(v) > VMCFG_BOOT_ARGS_MAX) {
			r = wisp_err_set(err, EINVAL, "%s.boot_args: longer than %d bytes", p,
					 VMCFG_BOOT_ARGS_MAX);
			goto fail;
		}
		b.boot_args = strdup(json_string_value(v));
		if (!b.boot_args) {
			r = wisp_err_set(err, ENOMEM, "%s.boot_args: out of memory", p);
			goto fail;
		}
	}
	b.present = true;
	*out = b;
	return 0;
fail:
	vmcfg_boot_free(&b);
	return r;
}

/* Firecracker fields wisp accepts only at their "off" value, so tools that
 * always send them keep working. */
static int check_none_field(json_t *j, const char *prefix, const char *key,
			    struct wisp_err *err)
{
	const char *s = NULL;
	int r = vmcfg_get_str(j, prefix, key, false, 64, &s, err);
	if (r <= 0)
		return r;
	if (strcmp(s, "None") != 0)
		return wisp_err_set(err, EINVAL, "%s.%s: only \"None\" is supported", prefix, key);
	return 0;
}

int vmcfg_parse_machine(json_t *j, struct vmcfg_machine *inout, bool patch,
			struct wisp_err *err)
{
	static const char *const keys[] = { "vcpu_count", "mem_size_mib", "smt",
		"track_dirty_pages", "cpu_template", "huge_pages", NULL };
	static const char *p = "machine-config";
	struct vmcfg_machine m;
	uint64_t n;
	int r;

	if (patch) {
		m = *inout;
	} else {
		m = (struct vmcfg_machine){ .vcpu_count = 1, .mem_size_mib = 128 };
	}
	if ((r = vmcfg_check_keys(j, p, keys, err)) < 0)
		return r;
	if ((r = vmcfg_get_u64(j, p, "vcpu_count", !patch, 1, WISP_MAX_VCPUS, &n, err)) < 0)
		return r;
	if (r > 0)
		m.vcpu_count = (uint32_t)n;
	if ((r = vmcfg_get_u64(j, p, "mem_size_mib", !patch, WISP_MIN_MEM_MIB, WISP_MAX_MEM_MIB, &n,
			       err)) < 0)
		return r;
	if (r > 0)
		m.mem_size_mib = (uint32_t)n;
	if ((r = vmcfg_get_bool(j, p, "smt", false, &m.smt, err)) < 0 ||
	    (r = vmcfg_get_bool(j, p, "track_dirty_pages", false, &m.track_dirty_pages, err)) < 0 ||
	    (r = check_none_field(j, p, "cpu_template", err)) < 0 ||
	    (r = check_none_field(j, p, "huge_pages", err)) < 0)
		return r;
	if (m.smt && m.vcpu_count > 1 && (m.vcpu_count & 1))
		return wisp_err_set(err, EINVAL,
				    "%s.vcpu_count: must be 1 or an even number when smt is true", p);
	*inout = m;
	return 0;
}

static const char *const log_levels[] = { "Off", "Error", "Warning", "Info", "Debug", "Trace" };

int vmcfg_parse_logger(json_t *j, struct vmcfg_logger *out, struct wisp_err *err)
{
	static const char *const keys[] = { "log_path", "level", "show_level",
		"show_log_origin", "module", NULL };
	static const char *p = "logger";
	struct vmcfg_logger l = { 0 };
	const char *s;
	int r;

	memset(out, 0, sizeof(*out));
	snprintf(l.level, sizeof(l.level), "Info");
	if ((r = vmcfg_check_keys(j, p, keys, err)) < 0 ||
	    (r = vmcfg_get_str(j, p, "module", false, 256, &s, err)) < 0 ||
	    (r = vmcfg_get_bool(j, p, "show_level", false, &l.show_level, err)) < 0 ||
	    (r = vmcfg_get_bool(j, p, "show_log_origin", false, &l.show_log_origin, err)) < 0 ||
	    (r = vmcfg_get_str(j, p, "level", false, 16, &s, err)) < 0)
		return r;
	if (r > 0) {
		bool found = false;
		for (size_t i = 0; i < WISP_ARRAY_SIZE(log_levels); i++) {
			if (strcasecmp(s, log_levels[i]) == 0 ||
			    (i == 2 && strcasecmp(s, "Warn") == 0)) {
				snprintf(l.level, sizeof(l.level), "%s", log_levels[i]);
				found = true;
			}
		}
		if (!found)
			return wisp_err_set(err, EINVAL,
					    "%s.level: must be one of Off, Error, Warning, Info, Debug, Trace",
					    p);
	}
	if ((r = vmcfg_dup_str(j, p, "log_path", false, VMCFG_PATH_MAX, &l.log_path, err)) < 0)
		return r;
	l.present = true;
	*out = l;
	return 0;
}

int vmcfg_parse_metrics(json_t *j, struct vmcfg_metrics *out, struct wisp_err *err)
{
	static const char *const keys[] = { "metrics_path", NULL };
	static const char *p = "metrics";
	struct vmcfg_metrics m = { 0 };
	int r;

	memset(out, 0, sizeof(*out));
	if ((r = vmcfg_check_keys(j, p, keys, err)) < 0 ||
	    (r = vmcfg_dup_str(j, p, "metrics_path", true, VMCFG_PATH_MAX, &m.metrics_path,
			       err)) < 0)
		return r;
	m.present = true;
	*out = m;
	return 0;
}

/* ---- whole configuration ---- */

void vmcfg_init(struct vm_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->machine.vcpu_count = 1;
	cfg->machine.mem_size_mib = 128;
}

void vmcfg_free(struct vm_config *cfg)
{
	vmcfg_boot_free(&cfg->boot);
	for (int i = 0; i < cfg->nr_drives; i++)
		vmcfg_drive_free(&cfg->drives[i]);
	free(cfg->vsock.uds_path);
	free(cfg->logger.log_path);
	free(cfg->metrics.metrics_path);
	vmcfg_init(cfg);
}

int vmcfg_from_json(json_t *root, struct vm_config *cfg, struct wisp_err *err)
{
	static const char *const keys[] = { "boot-source", "machine-config", "drives",
		"network-interfaces", "vsock", "logger", "metrics", NULL };
	struct vm_config c;
	char name[64];
	json_t *v;
	int r;

	vmcfg_init(&c);
	if (!json_is_object(root))
		return wisp_err_set(err, EINVAL, "configuration: must be a JSON object");
	if ((r = vmcfg_check_keys(root, "configuration", keys, err)) < 0)
		return r;
	/* The top-level sections are named by their own key in messages. */
	if ((v = json_object_get(root, "boot-source")) && !json_is_null(v) &&
	    (r = vmcfg_parse_boot(v, &c.boot, err)) < 0)
		goto fail;
	if ((v = json_object_get(root, "machine-config")) && !json_is_null(v) &&
	    (r = vmcfg_parse_machine(v, &c.machine, false, err)) < 0)
		goto fail;
	if ((v = json_object_get(root, "drives")) && !json_is_null(v)) {
		if (!json_is_array(v)) {
			r = wisp_err_set(err, EINVAL, "drives: must be an array");
			goto fail;
		}
		if (json_array_size(v) > VMCFG_MAX_DRIVES) {
			r = wisp_err_set(err, E2BIG, "drives: at most %d drives", VMCFG_MAX_DRIVES);
			goto fail;
		}
		size_t i;
		json_t *e;
		json_array_foreach(v, i, e) {
			snprintf(name, sizeof(name), "drives[%zu]", i);
			if ((r = vmcfg_parse_drive_at(e, &c.drives[i], name, err)) < 0)
				goto fail;
			c.nr_drives++;
		}
	}
	if ((v = json_object_get(root, "network-interfaces")) && !json_is_null(v)) {
		if (!json_is_array(v)) {
			r = wisp_err_set(err, EINVAL, "network-interfaces: must be an array");
			goto fail;
		}
		if (json_array_size(v) > VMCFG_MAX_NETS) {
			r = wisp_err_set(err, E2BIG, "network-interfaces: at most %d interfaces",
					 VMCFG_MAX_NETS);
			goto fail;
		}
		size_t i;
		json_t *e;
		json_array_foreach(v, i, e) {
			snprintf(name, sizeof(name), "network-interfaces[%zu]", i);
			if ((r = vmcfg_parse_net_at(e, &c.nets[i], name, err)) < 0)
				goto fail;
			c.nr_nets++;
		}
	}
	if ((v = json_object_get(root, "vsock")) && !json_is_null(v) &&
	    (r = vmcfg_parse_vsock(v, &c.vsock, err)) < 0)
		goto fail;
	if ((v = json_object_get(root, "logger")) && !json_is_null(v) &&
	    (r = vmcfg_parse_logger(v, &c.logger, err)) < 0)
		goto fail;
	if ((v = json_object_get(root, "metrics")) && !json_is_null(v) &&
	    (r = vmcfg_parse_metrics(v, &c.metrics, err)) < 0)
		goto fail;
	if ((r = vmcfg_check_devices(&c, err)) < 0)
		goto fail;
	vmcfg_free(cfg);
	*cfg = c;
	return 0;
fail:
	vmcfg_free(&c);
	return r;
}

int vmcfg_load_file(const char *path, struct vm_config *cfg, struct wisp_err *err)
{
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	json_error_t jerr;
	struct vm_config c;
	int r;

	r = wisp_read_file(path, VMCFG_FILE_MAX, &buf, &len, err);
	if (r < 0)
		return wisp_err_prefix(err, "config file %s", path);
	json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return wisp_err_set(err, EINVAL, "config file %s: line %d column %d: %s", path,
				    jerr.line, jerr.column, jerr.text);
	vmcfg_init(&c);
	r = vmcfg_from_json(root, &c, err);
	json_decref(root);
	if (r == 0)
		r = vmcfg_validate(&c, err);
	if (r < 0) {
		vmcfg_free(&c);
		return wisp_err_prefix(err, "config file %s", path);
	}
	vmcfg_free(cfg);
	*cfg = c;
	return 0;
}

static int check_file(const char *key, const char *path, int mode, struct wisp_err *err)
{
	if (access(path, mode) < 0)
		return wisp_err_sys(err, errno, "%s: cannot %s \"%s\"", key,
				    (mode & W_OK) ? "read and write" : "read", path);
	return 0;
}

int vmcfg_validate(const struct vm_config *cfg, struct wisp_err *err)
{
	int r;
	char key[64];

	if (!cfg->boot.present || !cfg->boot.kernel_image_path)
		return wisp_err_set(err, EINVAL, "boot-source: no kernel configured "
				    "(kernel_image_path)");
	if (cfg->machine.vcpu_count < 1 || cfg->machine.vcpu_count > WISP_MAX_VCPUS)
		return wisp_err_set(err, ERANGE, "machine-config.vcpu_count: must be between 1 and %d",
				    WISP_MAX_VCPUS);
	if (cfg->machine.mem_size_mib < WISP_MIN_MEM_MIB ||
	    cfg->machine.mem_size_mib > WISP_MAX_MEM_MIB)
		return wisp_err_set(err, ERANGE, "machine-config.mem_size_mib: must be between %llu and %llu",
				    WISP_MIN_MEM_MIB, WISP_MAX_MEM_MIB);
	if ((r = vmcfg_check_devices(cfg, err)) < 0)
		return r;
	if ((r = check_file("boot-source.kernel_image_path", cfg->boot.kernel_image_path, R_OK,
			    err)) < 0)
		return r;
	if (cfg->boot.initrd_path &&
	    (r = check_file("boot-source.initrd_path", cfg->boot.initrd_path, R_OK, err)) < 0)
		return r;
	for (int i = 0; i < cfg->nr_drives; i++) {
		const struct vmcfg_drive *d = &cfg->drives[i];
		snprintf(key, sizeof(key), "drives[%s].path_on_host", d->drive_id);
		if ((r = check_file(key, d->path_on_host, d->is_read_only ? R_OK : R_OK | W_OK,
				    err)) < 0)
			return r;
	}
	return 0;
}

/* ---- back to JSON (GET /vm/config) ---- */

void vmcfg_json_set_str(json_t *obj, const char *key, const char *s)
{
	if (s)
		json_object_set_new(obj, key, json_string(s));
}

json_t *vmcfg_machine_to_json(const struct vmcfg_machine *m)
{
	return json_pack("{s:i, s:i, s:b, s:b}", "vcpu_count", (int)m->vcpu_count,
			 "mem_size_mib", (int)m->mem_size_mib, "smt", m->smt,
			 "track_dirty_pages", m->track_dirty_pages);
}

json_t *vmcfg_to_json(const struct vm_config *cfg)
{
	json_t *root = json_object();
	if (!root)
		return NULL;

	if (cfg->boot.present) {
		json_t *b = json_object();
		vmcfg_json_set_str(b, "kernel_image_path", cfg->boot.kernel_image_path);
		vmcfg_json_set_str(b, "boot_args", cfg->boot.boot_args);
		vmcfg_json_set_str(b, "initrd_path", cfg->boot.initrd_path);
		json_object_set_new(root, "boot-source", b);
	}
	json_object_set_new(root, "machine-config", vmcfg_machine_to_json(&cfg->machine));

	vmcfg_devices_to_json(cfg, root);
	if (cfg->logger.present) {
		json_t *l = json_pack("{s:s, s:b, s:b}", "level", cfg->logger.level, "show_level",
				      cfg->logger.show_level, "show_log_origin",
				      cfg->logger.show_log_origin);
		vmcfg_json_set_str(l, "log_path", cfg->logger.log_path);
		json_object_set_new(root, "logger", l);
	}
	if (cfg->metrics.present)
		json_object_set_new(root, "metrics",
				    json_pack("{s:s}", "metrics_path", cfg->metrics.metrics_path));
	return root;
}
