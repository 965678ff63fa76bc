/* The devices' part of the VM configuration: drives, network interfaces,
 * vsock and their rate limiters, parsed from Firecracker's JSON (PUT and
 * PATCH bodies, the config file's arrays), checked across each other, and
 * written back for GET /vm/config. The field helpers and the rest of the
 * configuration are in config.c. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- rate limiter ---- */

static int parse_bucket(json_t *j, struct vmcfg_token_bucket *b, const char *prefix,
			struct wisp_err *err)
{
	static const char *const keys[] = { "size", "one_time_burst", "refill_time", NULL };
	int r;

	memset(b, 0, sizeof(*b));
	if ((r = vmcfg_check_keys(j, prefix, keys, err)) < 0 ||
	    (r = vmcfg_get_u64(j, prefix, "size", true, 0, INT64_MAX, &b->size, err)) < 0 ||
	    (r = vmcfg_get_u64(j, prefix, "one_time_burst", false, 0, INT64_MAX, &b->one_time_burst,
			       err)) < 0 ||
	    (r = vmcfg_get_u64(j, prefix, "refill_time", true, 0, INT64_MAX, &b->refill_time,
			       err)) < 0)
		return r;
	b->present = true;
	return 0;
}

int vmcfg_parse_rate_limiter(json_t *j, struct vmcfg_rate_limiter *out, const char *key,
			     struct wisp_err *err)
{
	static const char *const keys[] = { "bandwidth", "ops", NULL };
	struct vmcfg_rate_limiter rl = { 0 };
	char sub[256];
	json_t *v;
	int r;

	memset(out, 0, sizeof(*out));
	if ((r = vmcfg_check_keys(j, key, keys, err)) < 0)
		return r;
	if ((r = vmcfg_get_field(j, key, "bandwidth", false, &v, err)) > 0) {
		snprintf(sub, sizeof(sub), "%s.bandwidth", key);
		if ((r = parse_bucket(v, &rl.bandwidth, sub, err)) < 0)
			return r;
	}
	if ((r = vmcfg_get_field(j, key, "ops", false, &v, err)) > 0) {
		snprintf(sub, sizeof(sub), "%s.ops", key);
		if ((r = parse_bucket(v, &rl.ops, sub, err)) < 0)
			return r;
	}
	rl.present = true;
	*out = rl;
	return 0;
}

/* An optional rate limiter field of obj (null: absent). */
static int get_rate_limiter(json_t *obj, const char *prefix, const char *key,
			    struct vmcfg_rate_limiter *out, struct wisp_err *err)
{
	char name[256];
	json_t *v;
	int r = vmcfg_get_field(obj, prefix, key, false, &v, err);
	if (r <= 0) {
		memset(out, 0, sizeof(*out));
		return r;
	}
	snprintf(name, sizeof(name), "%s.%s", prefix, key);
	r = vmcfg_parse_rate_limiter(v, out, name, err);
	return r < 0 ? r : 1;
}

/* ---- drives, network interfaces, vsock ---- */

void vmcfg_drive_free(struct vmcfg_drive *d)
{
	free(d->path_on_host);
	free(d->partuuid);
	memset(d, 0, sizeof(*d));
}

int vmcfg_parse_drive_at(json_t *j, struct vmcfg_drive *out, const char *p,
			 struct wisp_err *err)
{
	static const char *const keys[] = { "drive_id", "path_on_host", "is_root_device",
		"is_read_only", "partuuid", "cache_type", "rate_limiter", "io_engine", NULL };
	struct vmcfg_drive d = { 0 };
	const char *s;
	int r;

	memset(out, 0, sizeof(*out));
	if ((r = vmcfg_check_keys(j, p, keys, err)) < 0 ||
	    (r = vmcfg_get_id(j, p, "drive_id", d.drive_id, err)) < 0 ||
	    (r = vmcfg_dup_str(j, p, "path_on_host", true, VMCFG_PATH_MAX, &d.path_on_host,
			       err)) < 0 ||
	    (r = vmcfg_get_bool(j, p, "is_root_device", true, &d.is_root_device, err)) < 0 ||
	    (r = vmcfg_get_bool(j, p, "is_read_only", false, &d.is_read_only, err)) < 0 ||
	    (r = vmcfg_dup_str(j, p, "partuuid", false, 64, &d.partuuid, err)) < 0 ||
	    (r = get_rate_limiter(j, p, "rate_limiter", &d.rate_limiter, err)) < 0)
		goto fail;
	if ((r = vmcfg_get_str(j, p, "cache_type", false, 16, &s, err)) < 0)
		goto fail;
	if (r > 0) {
		if (strcmp(s, "Writeback") == 0) {
			d.cache_writeback = true;
		} else if (strcmp(s, "Unsafe") != 0) {
			r = wisp_err_set(err, EINVAL,
					 "%s.cache_type: must be \"Unsafe\" or \"Writeback\"", p);
			goto fail;
		}
	}
	if ((r = vmcfg_get_str(j, p, "io_engine", false, 16, &s, err)) < 0)
		goto fail;
	if (r > 0 && strcmp(s, "Sync") != 0) {
		r = wisp_err_set(err, EINVAL, "%s.io_engine: only \"Sync\" is supported", p);
		goto fail;
	}
	*out = d;
	return 0;
fail:
	vmcfg_drive_free(&d);
	return r;
}

int vmcfg_parse_drive(json_t *j, struct vmcfg_drive *out, struct wisp_err *err)
{
	return vmcfg_parse_drive_at(j, out, "drives", err);
}

int vmcfg_parse_drive_patch(json_t *j, const char *drive_id, char **path_on_host,
			    struct vmcfg_rate_limiter *rl, bool *has_rl, struct wisp_err *err)
{
	static const char *const keys[] = { "drive_id", "path_on_host", "rate_limiter", NULL };
	static const char *p = "drives";
	char id[VMCFG_ID_MAX + 1];
	int r;

	*path_on_host = NULL;
	*has_rl = false;
	memset(rl, 0, sizeof(*rl));
	if ((r = vmcfg_check_keys(j, p, keys, err)) < 0 ||
	    (r = vmcfg_get_id(j, p, "drive_id", id, err)) < 0)
		return r;
	if (drive_id && strcmp(id, drive_id) != 0)
		return wisp_err_set(err, EINVAL,
				    "%s.drive_id: \"%s\" does not match the path's id \"%s\"", p,
				    id, drive_id);
	if ((r = get_rate_limiter(j, p, "rate_limiter", rl, err)) < 0)
		return r;
	*has_rl = r > 0;
	if ((r = vmcfg_dup_str(j, p, "path_on_host", false, VMCFG_PATH_MAX, path_on_host, err)) < 0)
		return r;
	return 0;
}

static int parse_mac(const char *s, uint8_t mac[6])
{
	unsigned int b[6];
	char tail;
	if (strlen(s) != 17 ||
	    sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5],
		   &tail) != 6)
		return -EINVAL;
	for (int i = 0; i < 6; i++) {
		if (!isxdigit((unsigned char)s[i * 3]) || !isxdigit((unsigned char)s[i * 3 + 1]) ||
		    (i < 5 && s[i * 3 + 2] != ':'))
			return -EINVAL;
		mac[i] = (uint8_t)b[i];
	}
	if (mac[0] & 1)
		return -EINVAL; /* multicast */
	return 0;
}

int vmcfg_parse_net_at(json_t *j, struct vmcfg_net *out, const char *p, struct wisp_err *err)
{
	static const char *const keys[] = { "iface_id", "host_dev_name", "guest_mac",
		"rx_rate_limiter", "tx_rate_limiter", NULL };
	struct vmcfg_net n = { 0 };
	const char *s;
	int r;

	memset(out, 0, sizeof(*out));
	if ((r = vmcfg_check_keys(j, p, keys, err)) < 0 ||
	    (r = vmcfg_get_id(j, p, "iface_id", n.iface_id, err)) < 0 ||
	    (r = vmcfg_get_str(j, p, "host_dev_name", true, IFNAMSIZ - 1, &s, err)) < 0)
		return r;
	if (strchr(s, '/') || strchr(s, ' ') || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return wisp_err_set(err, EINVAL, "%s.host_dev_name: not a valid interface name", p);
	snprintf(n.host_dev_name, sizeof(n.host_dev_name), "%s", s);
	if ((r = vmcfg_get_str(j, p, "guest_mac", false, 17, &s, err)) < 0)
		return r;
	if (r > 0) {
		if (parse_mac(s, n.guest_mac) < 0)
			return wisp_err_set(err, EINVAL,
					    "%s.guest_mac: must be a unicast MAC \"xx:xx:xx:xx:xx:xx\"",
					    p);
		n.has_guest_mac = true;
	}
	if ((r = get_rate_limiter(j, p, "rx_rate_limiter", &n.rx_rate_limiter, err)) < 0 ||
	    (r = get_rate_limiter(j, p, "tx_rate_limiter", &n.tx_rate_limiter, err)) < 0)
		return r;
	*out = n;
	return 0;
}

int vmcfg_parse_net(json_t *j, struct vmcfg_net *out, struct wisp_err *err)
{
	return vmcfg_parse_net_at(j, out, "network-interfaces", err);
}

int vmcfg_parse_net_patch(json_t *j, const char *iface_id, struct vmcfg_rate_limiter *rx,
			  bool *has_rx, struct vmcfg_rate_limiter *tx, bool *has_tx,
			  struct wisp_err *err)
{
	static const char *const keys[] = { "iface_id", "rx_rate_limiter", "tx_rate_limiter",
		NULL };
	static const char *p = "network-interfaces";
	char id[VMCFG_ID_MAX + 1];
	int r;

	*has_rx = *has_tx = false;
	if ((r = vmcfg_check_keys(j, p, keys, err)) < 0 ||
	    (r = vmcfg_get_id(j, p, "iface_id", id, err)) < 0)
		return r;
	if (iface_id && strcmp(id, iface_id) != 0)
		return wisp_err_set(err, EINVAL,
				    "%s.iface_id: \"%s\" does not match the path's id \"%s\"", p,
				    id, iface_id);
	if ((r = get_rate_limiter(j, p, "rx_rate_limiter", rx, err)) < 0)
		return r;
	*has_rx = r > 0;
	if ((r = get_rate_limiter(j, p, "tx_rate_limiter", tx, err)) < 0)
		return r;
	*has_tx = r > 0;
	return 0;
}

int vmcfg_parse_vsock(json_t *j, struct vmcfg_vsock *out, struct wisp_err *err)
{
	static const char *const keys[] = { "guest_cid", "uds_path", "vsock_id", NULL };
	static const char *p = "vsock";
	struct vmcfg_vsock v = { 0 };
	const char *id;
	uint64_t cid;
	int r;

	memset(out, 0, sizeof(*out));
	/* uds_path becomes "<uds_path>_<port>" for guest-initiated connections:
	 * keep room for the suffix inside sun_path (108 bytes). */
	if ((r = vmcfg_check_keys(j, p, keys, err)) < 0 ||
	    (r = vmcfg_get_u64(j, p, "guest_cid", true, 3, 0xfffffffeULL, &cid, err)) < 0 ||
	    (r = vmcfg_get_str(j, p, "vsock_id", false, VMCFG_ID_MAX, &id, err)) < 0 ||
	    (r = vmcfg_dup_str(j, p, "uds_path", true, 96, &v.uds_path, err)) < 0)
		return r;
	v.guest_cid = (uint32_t)cid;
	v.present = true;
	*out = v;
	return 0;
}

/* ---- checks across devices (no file system) ---- */

int vmcfg_check_devices(const struct vm_config *cfg, struct wisp_err *err)
{
	int roots = 0;
	for (int i = 0; i < cfg->nr_drives; i++) {
		if (cfg->drives[i].is_root_device && ++roots > 1)
			return wisp_err_set(err, EINVAL,
					    "drives: \"%s\" is a second root device (at most one)",
					    cfg->drives[i].drive_id);
		for (int k = 0; k < i; k++)
			if (strcmp(cfg->drives[i].drive_id, cfg->drives[k].drive_id) == 0)
				return wisp_err_set(err, EINVAL,
						    "drives: drive_id \"%s\" is used twice",
						    cfg->drives[i].drive_id);
	}
	for (int i = 0; i < cfg->nr_nets; i++) {
		for (int k = 0; k < i; k++) {
			const struct vmcfg_net *a = &cfg->nets[i], *b = &cfg->nets[k];
			if (strcmp(a->iface_id, b->iface_id) == 0)
				return wisp_err_set(err, EINVAL,
						    "network-interfaces: iface_id \"%s\" is used twice",
						    a->iface_id);
			if (strcmp(a->host_dev_name, b->host_dev_name) == 0)
				return wisp_err_set(err, EINVAL,
						    "network-interfaces: host_dev_name \"%s\" is used twice",
						    a->host_dev_name);
			if (a->has_guest_mac && b->has_guest_mac &&
			    memcmp(a->guest_mac, b->guest_mac, 6) == 0)
				return wisp_err_set(err, EINVAL,
						    "network-interfaces: guest_mac of \"%s\" is used twice",
						    a->iface_id);
		}
	}
	return 0;
}

/* ---- back to JSON (GET /vm/config) ---- */

static json_t *bucket_to_json(const struct vmcfg_token_bucket *b)
{
	return json_pack("{s:I, s:I, s:I}", "size", (json_int_t)b->size, "one_time_burst",
			 (json_int_t)b->one_time_burst, "refill_time", (json_int_t)b->refill_time);
}

static void set_rate_limiter(json_t *obj, const char *key, const struct vmcfg_rate_limiter *rl)
{
	if (!rl->present)
		return;
	json_t *o = json_object();
	if (rl->bandwidth.present)
		json_object_set_new(o, "bandwidth", bucket_to_json(&rl->bandwidth));
	if (rl->ops.present)
		json_object_set_new(o, "ops", bucket_to_json(&rl->ops));
	json_object_set_new(obj, key, o);
}

void vmcfg_devices_to_json(const struct vm_config *cfg, json_t *root)
{
	json_t *drives = json_array();
	for (int i = 0; i < cfg->nr_drives; i++) {
		const struct vmcfg_drive *d = &cfg->drives[i];
		json_t *o = json_pack("{s:s, s:s, s:b, s:b, s:s}", "drive_id", d->drive_id,
				      "path_on_host", d->path_on_host, "is_root_device",
				      d->is_root_device, "is_read_only", d->is_read_only,
				      "cache_type", d->cache_writeback ? "Writeback" : "Unsafe");
		vmcfg_json_set_str(o, "partuuid", d->partuuid);
		set_rate_limiter(o, "rate_limiter", &d->rate_limiter);
		json_array_append_new(drives, o);
	}
	json_object_set_new(root, "drives", drives);

	json_t *nets = json_array();
	for (int i = 0; i < cfg->nr_nets; i++) {
		const struct vmcfg_net *n = &cfg->nets[i];
		json_t *o = json_pack("{s:s, s:s}", "iface_id", n->iface_id, "host_dev_name",
				      n->host_dev_name);
		if (n->has_guest_mac) {
			char mac[18];
			snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", n->guest_mac[0],
				 n->guest_mac[1], n->guest_mac[2], n->guest_mac[3], n->guest_mac[4],
				 n->guest_mac[5]);
			json_object_set_new(o, "guest_mac", json_string(mac));
		}
		set_rate_limiter(o, "rx_rate_limiter", &n->rx_rate_limiter);
		set_rate_limiter(o, "tx_rate_limiter", &n->tx_rate_limiter);
		json_array_append_new(nets, o);
	}
	json_object_set_new(root, "network-interfaces", nets);

	if (cfg->vsock.present)
		json_object_set_new(root, "vsock",
				    json_pack("{s:I, s:s}", "guest_cid",
					      (json_int_t)cfg->vsock.guest_cid,
					      "uds_path", cfg->vsock.uds_path));
}
