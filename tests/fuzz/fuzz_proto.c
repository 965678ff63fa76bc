/* libFuzzer target for the agent protocol codec (common/proto.c).
 * The input is a frame: a header and a body. The header is checked as
 * received; the body is decoded with the header's length replaced by the
 * bytes actually present, so every input reaches the TLV decoder. A message
 * that decodes must survive encode -> decode unchanged. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/proto.h"

static void same_bytes(const struct wproto_bytes *a, const struct wproto_bytes *b)
{
	if (a->len != b->len || (a->len && memcmp(a->ptr, b->ptr, a->len)))
		abort();
}

static void same_str(const char *a, const char *b)
{
	if (!a != !b || (a && strcmp(a, b)))
		abort();
}

static void same_msg(const struct wproto_msg *a, const struct wproto_msg *b)
{
	if (a->type != b->type || a->id != b->id || a->present != b->present ||
	    a->argc != b->argc || a->envc != b->envc || a->timeout_ms != b->timeout_ms ||
	    a->output_limit != b->output_limit || a->flags != b->flags ||
	    a->signal != b->signal || a->errnum != b->errnum ||
	    a->proto_version != b->proto_version || a->max_body != b->max_body ||
	    a->stream != b->stream || a->exit_code != b->exit_code || a->wall_ns != b->wall_ns ||
	    a->max_rss_kb != b->max_rss_kb || a->caps != b->caps ||
	    a->realtime_ns != b->realtime_ns || a->clock_step_ns != b->clock_step_ns)
		abort();
	same_str(a->path, b->path);
	same_str(a->cwd, b->cwd);
	same_str(a->agent_version, b->agent_version);
	same_str(a->message, b->message);
	for (uint32_t i = 0; i < a->argc; i++)
		same_str(a->argv[i], b->argv[i]);
	for (uint32_t i = 0; i < a->envc; i++)
		same_str(a->env[i], b->env[i]);
	same_bytes(&a->stdin_data, &b->stdin_data);
	same_bytes(&a->stdout_data, &b->stdout_data);
	same_bytes(&a->stderr_data, &b->stderr_data);
	same_bytes(&a->entropy, &b->entropy);
	same_bytes(&a->payload, &b->payload);
	same_bytes(&a->data, &b->data);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < WPROTO_HDR_SIZE)
		return 0;
	struct wproto_hdr h;
	struct wisp_err err = { 0 };
	wproto_hdr_parse(data, &h, &err);
	/* decode whatever follows under a well-formed header of that type */
	h.version = WPROTO_VERSION;
	h.type = (uint16_t)(data[6] | data[7] << 8);
	h.id = 7;
	h.length = (uint32_t)(size - WPROTO_HDR_SIZE);
	/* a private copy, so reads past the body are caught by ASan */
	uint8_t *body = malloc(h.length ? h.length : 1);
	if (!body)
		return 0;
	memcpy(body, data + WPROTO_HDR_SIZE, h.length);
	struct wproto_msg m;
	if (wproto_decode(&h, body, &m, &err) == 0) {
		struct wproto_buf buf = { 0 };
		if (wproto_encode(&buf, &m, &err) != 0)
			abort();
		struct wproto_hdr h2;
		if (wproto_hdr_parse(buf.data, &h2, &err) != 0 ||
		    h2.length != buf.len - WPROTO_HDR_SIZE)
			abort();
		struct wproto_msg m2;
		if (wproto_decode(&h2, buf.data + WPROTO_HDR_SIZE, &m2, &err) != 0)
			abort();
		same_msg(&m, &m2);
		wproto_msg_free(&m2);
		wproto_buf_free(&buf);
		wproto_msg_free(&m);
	}
	free(body);
	return 0;
}
