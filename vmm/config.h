/* The VM configuration: Firecracker's JSON schema (the config file and
 * GET /vm/config share it). Everything is validated here, before anything
 * touches KVM. */
#ifndef WISP_CONFIG_H
#define WISP_CONFIG_H

#include <net/if.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "common/err.h"

#define VMCFG_MAX_DRIVES  8
#define VMCFG_MAX_NETS    4
#define VMCFG_ID_MAX      64   /* drive_id / iface_id: letters, digits, '_' */
#define VMCFG_BOOT_ARGS_MAX 2048
#define VMCFG_PATH_MAX    4096

struct vmcfg_token_bucket {
	bool present;
	uint64_t size;            /* tokens (bytes or ops) */
	uint64_t one_time_burst;  /* extra initial tokens */
	uint64_t refill_time;     /* ms to refill size tokens */
};

struct vmcfg_rate_limiter {
	bool present;
	struct vmcfg_token_bucket bandwidth;
	struct vmcfg_token_bucket ops;
};

struct vmcfg_boot {
	bool present;
	char *kernel_image_path;
	char *boot_args;          /* NULL: the VMM's default command line */
	char *initrd_path;        /* NULL: none */
};

struct vmcfg_machine {
	uint32_t vcpu_count;      /* 1..32, default 1 */
	uint32_t mem_size_mib;    /* default 128 */
	bool smt;
	bool track_dirty_pages;
};

struct vmcfg_drive {
	char drive_id[VMCFG_ID_MAX + 1];
	char *path_on_host;
	bool is_root_device;
	bool is_read_only;
	char *partuuid;           /* NULL: none */
	bool cache_writeback;     /* cache_type "Writeback" (default "Unsafe") */
	struct vmcfg_rate_limiter rate_limiter;
};

struct vmcfg_net {
	char iface_id[VMCFG_ID_MAX + 1];
	char host_dev_name[IFNAMSIZ];
	bool has_guest_mac;
	uint8_t guest_mac[6];
	struct vmcfg_rate_limiter rx_rate_limiter;
	struct vmcfg_rate_limiter tx_rate_limiter;
};

struct vmcfg_vsock {
	bool present;
	uint32_t guest_cid;       /* >= 3 */
	char *uds_path;
};

struct vmcfg_logger {
	bool present;
	char *log_path;
	char level[16];           /* "Error" .. "Trace"; default "Info" */
	bool show_level;
	bool show_log_origin;
};

struct vmcfg_metrics {
	bool present;
	char *metrics_path;
};

struct vm_config {
	struct vmcfg_boot boot;
	struct vmcfg_machine machine;
	struct vmcfg_drive drives[VMCFG_MAX_DRIVES];
	int nr_drives;
	struct vmcfg_net nets[VMCFG_MAX_NETS];
	int nr_nets;
	struct vmcfg_vsock vsock;
	struct vmcfg_logger logger;
	struct vmcfg_metrics metrics;
};

/* Defaults: 1 vCPU, 128 MiB, nothing else. */
void vmcfg_init(struct vm_config *cfg);
void vmcfg_free(struct vm_config *cfg);

/* cfg must have been through vmcfg_init(); on failure it is left as it was.
 * The config file: the whole JSON object, unknown keys, wrong types and
 * out-of-range values refused with a message naming the key. */
int vmcfg_load_file(const char *path, struct vm_config *cfg, struct wisp_err *err);
/* (vmcfg_load_file also runs vmcfg_validate: a config file must describe a
 * bootable VM. vmcfg_from_json checks structure and cross-section rules.) */
int vmcfg_from_json(json_t *root, struct vm_config *cfg, struct wisp_err *err);
/* Same schema back (GET /vm/config). */
json_t *vmcfg_to_json(const struct vm_config *cfg);

/* Sections, for the API (PUT replaces, PATCH updates the given fields). */
int vmcfg_parse_boot(json_t *j, struct vmcfg_boot *out, struct wisp_err *err);
int vmcfg_parse_machine(json_t *j, struct vmcfg_machine *inout, bool patch, struct wisp_err *err);
int vmcfg_parse_drive(json_t *j, struct vmcfg_drive *out, struct wisp_err *err);
int vmcfg_parse_net(json_t *j, struct vmcfg_net *out, struct wisp_err *err);
int vmcfg_parse_vsock(json_t *j, struct vmcfg_vsock *out, struct wisp_err *err);
int vmcfg_parse_logger(json_t *j, struct vmcfg_logger *out, struct wisp_err *err);
int vmcfg_parse_metrics(json_t *j, struct vmcfg_metrics *out, struct wisp_err *err);
/* PATCH /drives/{id} (Firecracker's PartialDrive: drive_id, path_on_host,
 * rate_limiter) and PATCH /network-interfaces/{id} (iface_id and the two
 * rate limiters). The body's id must equal the path's id when one is given.
 * *path_on_host is malloc'd (NULL when absent); has_* say what was given. */
int vmcfg_parse_drive_patch(json_t *j, const char *drive_id, char **path_on_host,
			    struct vmcfg_rate_limiter *rl, bool *has_rl, struct wisp_err *err);
int vmcfg_parse_net_patch(json_t *j, const char *iface_id, struct vmcfg_rate_limiter *rx,
			  bool *has_rx, struct vmcfg_rate_limiter *tx, bool *has_tx,
			  struct wisp_err *err);
/* GET /machine-config. */
json_t *vmcfg_machine_to_json(const struct vmcfg_machine *m);
int vmcfg_parse_rate_limiter(json_t *j, struct vmcfg_rate_limiter *out, const char *key,
			     struct wisp_err *err);

/* Cross-section checks before boot: a kernel is set, at most one root
 * drive, unique ids, unique tap names, files exist and are readable. */
int vmcfg_validate(const struct vm_config *cfg, struct wisp_err *err);

/* Section copy/free helpers (deep). */
void vmcfg_drive_free(struct vmcfg_drive *d);
void vmcfg_boot_free(struct vmcfg_boot *b);

/* Inside the module: config.c (the whole configuration, boot-source,
 * machine-config, logger, metrics, the field helpers) and config_dev.c
 * (drives, network interfaces, vsock, rate limiters) share these.
 *
 * Field helpers: each refusal names "<prefix>.<key>". A JSON null counts as
 * absent; the getters return 1 present, 0 absent, negative on error
 * (absent and required is an error). */
int vmcfg_check_keys(json_t *obj, const char *prefix, const char *const *allowed,
		     struct wisp_err *err);
int vmcfg_get_field(json_t *obj, const char *prefix, const char *key, bool required,
		    json_t **out, struct wisp_err *err);
int vmcfg_get_u64(json_t *obj, const char *prefix, const char *key, bool required,
		  uint64_t min, uint64_t max, uint64_t *out, struct wisp_err *err);
int vmcfg_get_bool(json_t *obj, const char *prefix, const char *key, bool required,
		   bool *out, struct wisp_err *err);
int vmcfg_get_str(json_t *obj, const char *prefix, const char *key, bool required,
		  size_t max, const char **out, struct wisp_err *err);
int vmcfg_dup_str(json_t *obj, const char *prefix, const char *key, bool required,
		  size_t max, char **out, struct wisp_err *err);
int vmcfg_get_id(json_t *obj, const char *prefix, const char *key, char *out,
		 struct wisp_err *err);
/* obj[key] = s unless s is NULL. */
void vmcfg_json_set_str(json_t *obj, const char *key, const char *s);
/* One drive / interface, its messages prefixed p ("drives[2]"). */
int vmcfg_parse_drive_at(json_t *j, struct vmcfg_drive *out, const char *p,
			 struct wisp_err *err);
int vmcfg_parse_net_at(json_t *j, struct vmcfg_net *out, const char *p, struct wisp_err *err);
/* Drives and interfaces against each other: one root drive, unique ids,
 * tap names and MACs. */
int vmcfg_check_devices(const struct vm_config *cfg, struct wisp_err *err);
/* "drives", "network-interfaces" and "vsock" of GET /vm/config into root. */
void vmcfg_devices_to_json(const struct vm_config *cfg, json_t *root);

#endif
