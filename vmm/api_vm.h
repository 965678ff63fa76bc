/* wisp-vmm's use of the API layer: the real VM behind struct api_vmm_ops,
 * and the three calls main makes. */
#ifndef WISP_API_VM_H
#define WISP_API_VM_H

#include <stdbool.h>

#include "api.h"
#include "vm.h"

struct api_vmm_opts {
	const char *api_sock;           /* NULL: no API (--no-api) */
	const char *id;                 /* GET / "id" */
	const char *metrics_path;       /* --metrics-path, or NULL */
};

struct api_vmm {
	struct vm *vm;
	struct api_ctl ctl;
	struct api_server *srv;
	bool broken;                    /* a snapshot load failed once its vCPU threads existed */
};

/* Before evloop_run(): apply the configuration's logger and metrics (and
 * --metrics-path), initialize vm->loop (so vm_build finds it ready), start
 * the 60 s metrics flush and, with api_sock, the API server. vm->cfg holds
 * the loaded config file or the defaults. */
int api_vmm_init(struct api_vmm *a, struct vm *vm, const struct api_vmm_opts *o,
		 struct wisp_err *err);
/* InstanceStart without a request (--config-file): validate, build, start. */
int api_vmm_boot(struct api_vmm *a, struct wisp_err *err);
/* PUT /snapshot/load without a request (--restore-from, --load-snapshot):
 * the same state checks and controller path. Takes req's contents. */
int api_vmm_load_snapshot(struct api_vmm *a, struct snap_load_req *req, struct wisp_err *err);
/* After evloop_run() returned: stop the API thread (its pending request
 * gets "shutting down"), remove the socket, flush metrics a last time. */
void api_vmm_fini(struct api_vmm *a);

#endif
