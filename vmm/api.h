/* The Firecracker-compatible API: HTTP/1.1 over a Unix socket.
 *
 * Three layers, each testable alone:
 *   api_parse()        a request (method, path, body) becomes an action; no
 *                      VM state is read, nothing is changed (api_parse.c)
 *   api_ctl_execute()  runs an action against the controller on the VMM
 *                      thread: the state table decides whether it is legal
 *                      now, then the configuration or the VM changes
 *                      (api_ctl.c); the VM itself is reached only through
 *                      struct api_vmm_ops, so all of this runs without KVM
 *   api_server_*()     libevent's evhttp on its own thread, with limits on
 *                      body size, connections and time; hands each parsed
 *                      action to the VMM thread with evloop_call()
 *                      (api_server.c)
 */
#ifndef WISP_API_H
#define WISP_API_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "common/err.h"
#include "config.h"
#include "evloop.h"
#include "snapshot.h"
#include "vm.h"

#define WISP_VMM_VERSION  "0.1.0"
#define WISP_APP_NAME     "wisp"

#define API_MAX_BODY      51200   /* bytes, as Firecracker */
#define API_MAX_HEADERS   8192
#define API_MAX_CONNS     16      /* more wait in the listen backlog */
#define API_CONN_DEADLINE 10      /* s to send one whole request */

enum api_method {
	API_GET,
	API_PUT,
	API_PATCH,
	API_OTHER,      /* any other method: refused */
};

enum api_action_kind {
	API_GET_INFO,           /* GET / */
	API_GET_VERSION,        /* GET /version */
	API_GET_VM_CONFIG,      /* GET /vm/config */
	API_GET_MACHINE,        /* GET /machine-config */
	API_PUT_MACHINE,
	API_PATCH_MACHINE,
	API_PUT_BOOT,
	API_PUT_DRIVE,
	API_PATCH_DRIVE,
	API_PUT_NET,
	API_PATCH_NET,
	API_PUT_VSOCK,
	API_PUT_LOGGER,
	API_PUT_METRICS,
	API_INSTANCE_START,     /* PUT /actions */
	API_SEND_CTRL_ALT_DEL,
	API_FLUSH_METRICS,
	API_PAUSE,              /* PATCH /vm */
	API_RESUME,
	API_SNAPSHOT_CREATE,    /* PUT /snapshot/create (Paused only) */
	API_SNAPSHOT_LOAD,      /* PUT /snapshot/load (a fresh VMM only) */
	API_ACTION_COUNT,
};

/* One routed request. Section structs own their strings. */
struct api_action {
	enum api_action_kind kind;
	const char *endpoint;           /* metrics name, e.g. "put_drives" */
	char id[VMCFG_ID_MAX + 1];      /* drive_id / iface_id from the path */
	json_t *body;                   /* PATCH /machine-config: applied on execute */
	union {
		struct vmcfg_boot boot;
		struct vmcfg_machine machine;
		struct vmcfg_drive drive;
		struct vmcfg_net net;
		struct vmcfg_vsock vsock;
		struct vmcfg_logger logger;
		struct vmcfg_metrics metrics;
		struct {
			char *path_on_host;     /* NULL: keep the file */
			bool has_rate_limiter;
			struct vmcfg_rate_limiter rate_limiter;
		} drive_patch;
		struct {
			bool has_rx, has_tx;
			struct vmcfg_rate_limiter rx, tx;
		} net_patch;
		struct snap_create_req snap_create;
		struct snap_load_req snap_load;
	} u;
};

enum api_method api_method_parse(const char *name);
/* Route and parse one request. body may be NULL (len 0). On error the
 * action holds nothing to free and err names the problem (400). The
 * endpoint name is set even on error when the path is known, else
 * "unknown" (for the failure counters). */
int api_parse(enum api_method method, const char *path, const char *body, size_t len,
	      struct api_action *act, struct wisp_err *err);
void api_action_free(struct api_action *act);
const char *api_action_name(enum api_action_kind kind);

/* The state table: 0 when kind is legal in state, else -EPERM with a
 * message saying why. */
int api_action_allowed(enum api_action_kind kind, enum vm_state state, struct wisp_err *err);
const char *api_state_name(enum vm_state state);

/* What the controller needs from the VM. Each runs on the VMM thread and
 * returns 0 or a negative errno with err filled. */
struct api_vmm_ops {
	/* Build the VM from the (validated) configuration and start it. */
	int (*start)(void *ctx, struct wisp_err *err);
	int (*pause)(void *ctx, struct wisp_err *err);
	int (*resume)(void *ctx, struct wisp_err *err);
	int (*ctrl_alt_del)(void *ctx, struct wisp_err *err);
	/* A running VM's drive: new backing file and/or rate limiter (NULL: keep). */
	int (*drive_update)(void *ctx, const struct vmcfg_drive *drive, const char *new_path,
			    const struct vmcfg_rate_limiter *rl, struct wisp_err *err);
	int (*net_update)(void *ctx, const struct vmcfg_net *net,
			  const struct vmcfg_rate_limiter *rx, const struct vmcfg_rate_limiter *tx,
			  struct wisp_err *err);
	/* Write a Full or Diff snapshot of the paused VM. */
	int (*snapshot_create)(void *ctx, const struct snap_create_req *req, struct wisp_err *err);
	/* Build the VM from a snapshot (its configuration, with the request's
	 * overrides, replaces the pending one) and leave it Paused; resume_vm
	 * is handled by the controller. Nothing may be half-built on failure. */
	int (*snapshot_load)(void *ctx, const struct snap_load_req *req, struct wisp_err *err);
};

/* The controller: the configuration (before InstanceStart the pending one,
 * after it the VM's) and the state. Touched only on the VMM thread. */
struct api_ctl {
	struct vm_config *cfg;          /* owned by the caller (struct vm's cfg) */
	enum vm_state state;
	bool configured;                /* a boot/machine/device PUT or PATCH succeeded:
					 * snapshot/load is refused from then on */
	char id[65];                    /* GET / "id" */
	const struct api_vmm_ops *ops;
	void *ops_ctx;
};

void api_ctl_init(struct api_ctl *ctl, struct vm_config *cfg, const char *id,
		  const struct api_vmm_ops *ops, void *ops_ctx);

struct api_reply {
	int status;                     /* 200, 204 or 400 */
	json_t *body;                   /* 200: the document; 400: fault_message */
};

/* Execute on the VMM thread. Always fills reply (free with api_reply_free). */
void api_ctl_execute(struct api_ctl *ctl, struct api_action *act, struct api_reply *reply);
void api_reply_free(struct api_reply *reply);
json_t *api_fault(const char *msg);
/* InstanceStart without the API (--config-file): validate, start, Running. */
int api_ctl_instance_start(struct api_ctl *ctl, struct wisp_err *err);
/* Apply the logger and metrics sections of ctl->cfg (flags, config file). */
int api_ctl_apply_logger(const struct vmcfg_logger *l, struct wisp_err *err);
int api_ctl_apply_metrics(const struct vmcfg_metrics *m, struct wisp_err *err);

/* The server thread. sock_path must not exist (an existing path is refused,
 * never unlinked). Requests run on loop's thread through evloop_call(). */
struct api_server;
int api_server_start(struct api_server **out, const char *sock_path, struct api_ctl *ctl,
		     struct evloop *loop, struct wisp_err *err);
/* Stop the thread, close the socket and unlink its path. */
void api_server_stop(struct api_server *srv);
/* The whole HTTP response (status line, headers, JSON fault_message) that
 * replaces evhttp's own error page with status evhttp_status: 400 for what
 * evhttp refuses as malformed, too large (its 413) or an unknown method
 * (its 501). Returns its length, 0 if size is too small. */
size_t api_http_fault(int evhttp_status, char *buf, size_t size);

/* The route table, for the OpenAPI agreement test: method and path pattern
 * ("/drives/{drive_id}") of route i; NULL method past the end. */
struct api_route_info {
	const char *method;
	const char *path;
	unsigned states;        /* bit (1 << enum vm_state) per state it is legal in */
};
const struct api_route_info *api_route(size_t i);

#endif
