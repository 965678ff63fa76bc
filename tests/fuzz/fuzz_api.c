/* libFuzzer target for the API's request layer and the config schema.
 * Input: one byte picks the method, then the path up to '\n', then the
 * body. The body is routed and parsed (api_parse), executed against a
 * controller with fake VM operations (except the actions that open files),
 * and also parsed as a whole config document (vmcfg_from_json). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "vmm/api.h"

static int ok(void *ctx, struct wisp_err *err)
{
	(void)ctx;
	(void)err;
	return 0;
}

static int ok_drive(void *ctx, const struct vmcfg_drive *d, const char *p,
		    const struct vmcfg_rate_limiter *rl, struct wisp_err *err)
{
	(void)ctx; (void)d; (void)p; (void)rl; (void)err;
	return 0;
}

static int ok_net(void *ctx, const struct vmcfg_net *n, const struct vmcfg_rate_limiter *rx,
		  const struct vmcfg_rate_limiter *tx, struct wisp_err *err)
{
	(void)ctx; (void)n; (void)rx; (void)tx; (void)err;
	return 0;
}

static const struct api_vmm_ops ops = {
	.start = ok, .pause = ok, .resume = ok, .ctrl_alt_del = ok,
	.drive_update = ok_drive, .net_update = ok_net,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum api_method methods[] = { API_GET, API_PUT, API_PATCH, API_OTHER };
	static bool quiet;
	if (!quiet) {
		wisp_log_set_level(WISP_LOG_OFF);
		quiet = true;
	}
	if (size < 1)
		return 0;
	enum api_method m = methods[data[0] & 3];
	const char *rest = (const char *)data + 1;
	size_t n = size - 1;
	const char *nl = memchr(rest, '\n', n);
	size_t plen = nl ? (size_t)(nl - rest) : n;
	char *path = strndup(rest, plen);
	const char *body = nl ? nl + 1 : NULL;
	size_t blen = nl ? n - plen - 1 : 0;

	struct vm_config cfg;
	struct api_ctl ctl;
	struct api_action a;
	struct wisp_err err = { 0 };
	vmcfg_init(&cfg);
	api_ctl_init(&ctl, &cfg, "fuzz", &ops, NULL);
	/* Half the inputs run against a started VM. */
	if (data[0] & 4)
		ctl.state = (data[0] & 8) ? VM_PAUSED : VM_RUNNING;
	if (api_parse(m, path, body, blen, &a, &err) == 0) {
		if (a.kind != API_PUT_LOGGER && a.kind != API_PUT_METRICS &&
		    a.kind != API_FLUSH_METRICS && a.kind != API_INSTANCE_START) {
			struct api_reply reply = { 0 };
			api_ctl_execute(&ctl, &a, &reply);
			api_reply_free(&reply);
		}
		api_action_free(&a);
	}
	if (body) {
		json_error_t je;
		json_t *j = json_loadb(body, blen, JSON_REJECT_DUPLICATES, &je);
		if (j) {
			if (vmcfg_from_json(j, &cfg, &err) == 0) {
				json_t *back = vmcfg_to_json(&cfg);
				json_decref(back);
			}
			json_decref(j);
		}
	}
	vmcfg_free(&cfg);
	free(path);
	return 0;
}
