/* Host side of the agent protocol (common/proto.h): a blocking client over
 * one stream socket, for tests, wisp-agent-ctl and the daemon. A client is
 * used by one thread at a time; open one per concurrent invocation (they are
 * cheap, and the agent serves many at once).
 *
 * Reaching a guest: agentc_connect_vsock() connects to the VMM's vsock Unix
 * socket (Firecracker's hybrid vsock), sends "CONNECT <port>\n" and expects
 * "OK <host port>\n". Both connect calls then read the agent's HELLO and
 * check its protocol version. */
#ifndef WISP_AGENT_CLIENT_H
#define WISP_AGENT_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "proto.h"

struct agentc {
	int fd;
	uint32_t next_id;
	int timeout_ms;       /* wait for any reply frame; 0 = no limit */
	struct wproto_hdr hello_hdr;
	uint8_t *hello_body;
	struct wproto_msg hello; /* valid while connected */
};

/* Outcome of an INVOKE (out/err owned, free with agentc_result_free) or an
 * EXEC (out/err empty: they were streamed). */
struct agentc_result {
	int32_t exit_code;  /* -1 when signalled */
	uint32_t signal;
	uint32_t flags;     /* WPROTO_F_* */
	uint64_t wall_ns, max_rss_kb;
	uint8_t *out, *err;
	size_t out_len, err_len;
};

/* A request to run something: path plus optional fields. */
struct agentc_run {
	const char *path;
	const char *const *argv; size_t argc;  /* argv[1..] */
	const char *const *env;  size_t envc;  /* "NAME=value" */
	const char *cwd;
	const void *stdin_data;  size_t stdin_len;
	uint32_t timeout_ms;
	uint32_t output_limit;
};

struct agentc_ack {
	uint32_t flags;
	uint64_t realtime_ns;
	int64_t clock_step_ns;
};

int agentc_connect_unix(const char *path, int timeout_ms, struct agentc **out,
			struct wisp_err *err);
int agentc_connect_vsock(const char *uds_path, uint32_t port, int timeout_ms,
			 struct agentc **out, struct wisp_err *err);
void agentc_close(struct agentc *c);

/* Low level: send one message (id assigned when 0, returned in m->id) and
 * receive the next frame (*body owned by the caller, m points into it). */
int agentc_send(struct agentc *c, struct wproto_msg *m, struct wisp_err *err);
int agentc_recv(struct agentc *c, struct wproto_msg *m, uint8_t **body,
		struct wisp_err *err);

/* Requests. An ERROR reply from the agent returns its -errno with its text. */
int agentc_ping(struct agentc *c, const void *payload, size_t len, struct wisp_err *err);
int agentc_invoke(struct agentc *c, const struct agentc_run *run,
		  struct agentc_result *res, struct wisp_err *err);
typedef int (*agentc_output_fn)(void *ctx, uint32_t stream, const uint8_t *data, size_t len);
int agentc_exec(struct agentc *c, const struct agentc_run *run, agentc_output_fn fn,
		void *ctx, struct agentc_result *res, struct wisp_err *err);
/* RESTORED: entropy (len 0: none) and, when set_clock, the wall clock. */
int agentc_restored(struct agentc *c, const void *entropy, size_t len, int set_clock,
		    uint64_t realtime_ns, struct agentc_ack *ack, struct wisp_err *err);
int agentc_shutdown(struct agentc *c, struct wisp_err *err);

void agentc_result_free(struct agentc_result *res);

#endif
