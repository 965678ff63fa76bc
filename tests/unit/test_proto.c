/* The agent protocol codec: round trips of every message type, and every way
 * a header or body can be malformed. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/proto.h"

static void hdr_bytes(uint8_t *p, uint32_t magic, uint16_t ver, uint16_t type, uint32_t id,
		      uint32_t len)
{
	for (int i = 0; i < 4; i++) {
		p[i] = (uint8_t)(magic >> (8 * i));
		p[8 + i] = (uint8_t)(id >> (8 * i));
		p[12 + i] = (uint8_t)(len >> (8 * i));
	}
	p[4] = (uint8_t)ver;
	p[5] = (uint8_t)(ver >> 8);
	p[6] = (uint8_t)type;
	p[7] = (uint8_t)(type >> 8);
}

/* Append a raw TLV to a body under construction. */
static size_t tlv(uint8_t *body, size_t off, uint16_t tag, const void *v, uint32_t len)
{
	body[off] = (uint8_t)tag;
	body[off + 1] = (uint8_t)(tag >> 8);
	for (int i = 0; i < 4; i++)
		body[off + 2 + i] = (uint8_t)(len >> (8 * i));
	if (len)
		memcpy(body + off + 6, v, len);
	return off + 6 + len;
}

/* Encode, parse the header back, decode the body. */
static int round_trip(const struct wproto_msg *in, struct wproto_buf *buf, struct wproto_msg *out,
		      struct wisp_err *err)
{
	wproto_buf_reset(buf);
	int r = wproto_encode(buf, in, err);
	if (r < 0)
		return r;
	struct wproto_hdr h;
	r = wproto_hdr_parse(buf->data, &h, err);
	if (r < 0)
		return r;
	cr_assert_eq(h.length + WPROTO_HDR_SIZE, buf->len);
	return wproto_decode(&h, buf->data + WPROTO_HDR_SIZE, out, err);
}

static int decode_raw(uint16_t type, const uint8_t *body, size_t len, struct wproto_msg *m,
		      struct wisp_err *err)
{
	struct wproto_hdr h = { .version = WPROTO_VERSION, .type = type, .id = 9,
				.length = (uint32_t)len };
	return wproto_decode(&h, body, m, err);
}

Test(proto, invoke_round_trip_keeps_every_field)
{
	const char *args[] = { "-c", "echo hi", "" };
	const char *env[] = { "A=1", "PATH=/bin", "EMPTY=" };
	uint8_t in[300];
	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)i; /* includes NUL bytes: stdin is binary */
	struct wproto_msg m = { .type = WPROTO_INVOKE, .id = 0xdeadbeef, .path = "/bin/sh",
				.argv = args, .argc = 3, .env = env, .envc = 3, .cwd = "/tmp",
				.stdin_data = { in, sizeof(in) }, .timeout_ms = 1500,
				.output_limit = 4096 };
	WPROTO_SET(&m, WPROTO_T_PATH);
	WPROTO_SET(&m, WPROTO_T_CWD);
	WPROTO_SET(&m, WPROTO_T_STDIN);
	WPROTO_SET(&m, WPROTO_T_TIMEOUT_MS);
	WPROTO_SET(&m, WPROTO_T_OUTPUT_LIMIT);
	struct wproto_buf buf = { 0 };
	struct wproto_msg d;
	struct wisp_err err = { 0 };
	cr_assert_eq(round_trip(&m, &buf, &d, &err), 0, "%s", err.msg);
	cr_assert_eq(d.type, WPROTO_INVOKE);
	cr_assert_eq(d.id, 0xdeadbeef);
	cr_assert_str_eq(d.path, "/bin/sh");
	cr_assert_str_eq(d.cwd, "/tmp");
	cr_assert_eq(d.argc, 3);
	cr_assert_str_eq(d.argv[0], "-c");
	cr_assert_str_eq(d.argv[1], "echo hi");
	cr_assert_str_eq(d.argv[2], "");
	cr_assert_null(d.argv[3]);
	cr_assert_eq(d.envc, 3);
	cr_assert_str_eq(d.env[2], "EMPTY=");
	cr_assert_null(d.env[3]);
	cr_assert_eq(d.stdin_data.len, sizeof(in));
	cr_assert_eq(memcmp(d.stdin_data.ptr, in, sizeof(in)), 0);
	cr_assert_eq(d.timeout_ms, 1500);
	cr_assert_eq(d.output_limit, 4096);
	cr_assert(WPROTO_HAS(&d, WPROTO_T_ARG) && WPROTO_HAS(&d, WPROTO_T_ENV));
	wproto_msg_free(&d);
	wproto_buf_free(&buf);
}

Test(proto, result_exit_output_ack_hello_error_round_trip)
{
	struct wproto_buf buf = { 0 };
	struct wproto_msg d;
	struct wisp_err err = { 0 };

	struct wproto_msg r = { .type = WPROTO_RESULT, .id = 3, .exit_code = -1, .signal = 9,
				.flags = WPROTO_F_TIMED_OUT | WPROTO_F_STDERR_TRUNCATED,
				.wall_ns = 1ull << 40, .max_rss_kb = 12345,
				.stdout_data = { (const uint8_t *)"out", 3 },
				.stderr_data = { NULL, 0 } };
	r.present = (1ull << WPROTO_T_EXIT_CODE) | (1ull << WPROTO_T_SIGNAL) |
		    (1ull << WPROTO_T_FLAGS) | (1ull << WPROTO_T_WALL_NS) |
		    (1ull << WPROTO_T_MAX_RSS_KB) | (1ull << WPROTO_T_STDOUT) |
		    (1ull << WPROTO_T_STDERR);
	cr_assert_eq(round_trip(&r, &buf, &d, &err), 0, "%s", err.msg);
	cr_assert_eq(d.exit_code, -1);
	cr_assert_eq(d.signal, 9);
	cr_assert_eq(d.flags, WPROTO_F_TIMED_OUT | WPROTO_F_STDERR_TRUNCATED);
	cr_assert_eq(d.wall_ns, 1ull << 40);
	cr_assert_eq(d.max_rss_kb, 12345);
	cr_assert_eq(d.stdout_data.len, 3);
	cr_assert_eq(memcmp(d.stdout_data.ptr, "out", 3), 0);
	cr_assert_eq(d.stderr_data.len, 0);
	cr_assert(WPROTO_HAS(&d, WPROTO_T_STDERR), "an empty field is still present");
	cr_assert_eq(d.present, r.present);
	wproto_msg_free(&d);

	struct wproto_msg o = { .type = WPROTO_OUTPUT, .id = 4, .stream = WPROTO_STREAM_STDERR,
				.data = { (const uint8_t *)"chunk", 5 } };
	WPROTO_SET(&o, WPROTO_T_STREAM);
	WPROTO_SET(&o, WPROTO_T_DATA);
	cr_assert_eq(round_trip(&o, &buf, &d, &err), 0, "%s", err.msg);
	cr_assert_eq(d.stream, WPROTO_STREAM_STDERR);
	cr_assert_eq(d.data.len, 5);
	wproto_msg_free(&d);

	struct wproto_msg a = { .type = WPROTO_ACK, .id = 5, .flags = WPROTO_F_CLOCK_SET,
				.realtime_ns = 1700000000123456789ull, .clock_step_ns = -42 };
	WPROTO_SET(&a, WPROTO_T_FLAGS);
	WPROTO_SET(&a, WPROTO_T_REALTIME_NS);
	WPROTO_SET(&a, WPROTO_T_CLOCK_STEP_NS);
	cr_assert_eq(round_trip(&a, &buf, &d, &err), 0, "%s", err.msg);
	cr_assert_eq(d.clock_step_ns, -42);
	cr_assert_eq(d.realtime_ns, 1700000000123456789ull);
	wproto_msg_free(&d);

	struct wproto_msg h = { .type = WPROTO_HELLO, .proto_version = 1,
				.caps = WPROTO_CAP_INVOKE | WPROTO_CAP_PID1,
				.agent_version = "9.9", .max_body = 77 };
	h.present = (1ull << WPROTO_T_PROTO_VERSION) | (1ull << WPROTO_T_CAPS) |
		    (1ull << WPROTO_T_AGENT_VERSION) | (1ull << WPROTO_T_MAX_BODY);
	cr_assert_eq(round_trip(&h, &buf, &d, &err), 0, "%s", err.msg);
	cr_assert_eq(d.caps, WPROTO_CAP_INVOKE | WPROTO_CAP_PID1);
	cr_assert_str_eq(d.agent_version, "9.9");
	wproto_msg_free(&d);

	wproto_buf_reset(&buf);
	cr_assert_eq(wproto_encode_error(&buf, 6, ENOENT, "no such handler", &err), 0);
	struct wproto_hdr hh;
	cr_assert_eq(wproto_hdr_parse(buf.data, &hh, &err), 0);
	cr_assert_eq(wproto_decode(&hh, buf.data + WPROTO_HDR_SIZE, &d, &err), 0);
	cr_assert_eq(d.type, WPROTO_ERROR);
	cr_assert_eq(d.errnum, ENOENT);
	cr_assert_str_eq(d.message, "no such handler");
	wproto_msg_free(&d);
	wproto_buf_free(&buf);
}

Test(proto, empty_bodies_and_several_frames_in_one_buffer)
{
	struct wproto_buf buf = { 0 };
	struct wisp_err err = { 0 };
	struct wproto_msg p = { .type = WPROTO_PING, .id = 1 };
	struct wproto_msg s = { .type = WPROTO_SHUTDOWN, .id = 2 };
	struct wproto_msg rs = { .type = WPROTO_RESTORED, .id = 3 };
	cr_assert_eq(wproto_encode(&buf, &p, &err), 0);
	cr_assert_eq(wproto_encode(&buf, &s, &err), 0);
	cr_assert_eq(wproto_encode(&buf, &rs, &err), 0);
	cr_assert_eq(buf.len, 3 * WPROTO_HDR_SIZE);
	uint16_t want[] = { WPROTO_PING, WPROTO_SHUTDOWN, WPROTO_RESTORED };
	for (int i = 0; i < 3; i++) {
		struct wproto_hdr h;
		cr_assert_eq(wproto_hdr_parse(buf.data + i * WPROTO_HDR_SIZE, &h, &err), 0);
		cr_assert_eq(h.type, want[i]);
		cr_assert_eq(h.id, (uint32_t)i + 1);
		cr_assert_eq(h.length, 0);
		struct wproto_msg d;
		cr_assert_eq(wproto_decode(&h, buf.data, &d, &err), 0);
		cr_assert_eq(d.present, 0);
		wproto_msg_free(&d);
	}
	cr_assert_str_eq(wproto_type_name(WPROTO_EXEC), "EXEC");
	cr_assert_str_eq(wproto_type_name(999), "UNKNOWN");
	wproto_buf_free(&buf);
}

Test(proto, header_refusals)
{
	uint8_t raw[WPROTO_HDR_SIZE];
	struct wproto_hdr h;
	struct wisp_err err = { 0 };
	hdr_bytes(raw, WPROTO_MAGIC, WPROTO_VERSION, WPROTO_PING, 1, 0);
	cr_assert_eq(wproto_hdr_parse(raw, &h, &err), 0);
	/* the wire bytes start with "WSPA" */
	cr_assert_eq(memcmp(raw, "WSPA", 4), 0);

	hdr_bytes(raw, 0x41505358, WPROTO_VERSION, WPROTO_PING, 1, 0);
	cr_assert_eq(wproto_hdr_parse(raw, &h, &err), -EPROTO);
	cr_assert(strstr(err.msg, "magic"));

	hdr_bytes(raw, WPROTO_MAGIC, 2, WPROTO_PING, 77, 0);
	cr_assert_eq(wproto_hdr_parse(raw, &h, &err), -EPROTONOSUPPORT);
	cr_assert_eq(h.id, 77, "the id is kept for the ERROR reply");

	hdr_bytes(raw, WPROTO_MAGIC, WPROTO_VERSION, WPROTO_INVOKE, 1, WPROTO_MAX_BODY + 1);
	cr_assert_eq(wproto_hdr_parse(raw, &h, &err), -EMSGSIZE);
	hdr_bytes(raw, WPROTO_MAGIC, WPROTO_VERSION, WPROTO_INVOKE, 1, 0xffffffffu);
	cr_assert_eq(wproto_hdr_parse(raw, &h, &err), -EMSGSIZE);
	hdr_bytes(raw, WPROTO_MAGIC, WPROTO_VERSION, WPROTO_INVOKE, 1, WPROTO_MAX_BODY);
	cr_assert_eq(wproto_hdr_parse(raw, &h, &err), 0, "exactly the maximum is fine");

	hdr_bytes(raw, WPROTO_MAGIC, WPROTO_VERSION, 0, 1, 0);
	cr_assert_eq(wproto_hdr_parse(raw, &h, &err), -EOPNOTSUPP);
	hdr_bytes(raw, WPROTO_MAGIC, WPROTO_VERSION, WPROTO_TYPE_MAX + 1, 1, 0);
	cr_assert_eq(wproto_hdr_parse(raw, &h, &err), -EOPNOTSUPP);
	hdr_bytes(raw, WPROTO_MAGIC, WPROTO_VERSION, 0xffff, 1, 0);
	cr_assert_eq(wproto_hdr_parse(raw, &h, &err), -EOPNOTSUPP);
}

Test(proto, body_refusals)
{
	uint8_t b[256];
	struct wproto_msg m;
	struct wisp_err err = { 0 };
	uint32_t u32 = 5;
	uint64_t u64 = 5;
	size_t n;

	/* truncated TLV header */
	n = tlv(b, 0, WPROTO_T_PATH, "/x", 3);
	cr_assert_eq(decode_raw(WPROTO_INVOKE, b, n + 3, &m, &err), -EBADMSG);
	cr_assert(strstr(err.msg, "truncated"), "%s", err.msg);
	/* value longer than the body */
	n = tlv(b, 0, WPROTO_T_PATH, "/x", 3);
	cr_assert_eq(decode_raw(WPROTO_INVOKE, b, n - 1, &m, &err), -EBADMSG);
	cr_assert(strstr(err.msg, "claims"), "%s", err.msg);
	/* a huge claimed length must not wrap the offset */
	n = tlv(b, 0, WPROTO_T_PAYLOAD, "", 0);
	b[2] = b[3] = b[4] = b[5] = 0xff;
	cr_assert_eq(decode_raw(WPROTO_PING, b, n, &m, &err), -EBADMSG);
	/* wrong integer widths */
	n = tlv(b, 0, WPROTO_T_PATH, "/x", 3);
	n = tlv(b, n, WPROTO_T_TIMEOUT_MS, &u64, 8);
	cr_assert_eq(decode_raw(WPROTO_INVOKE, b, n, &m, &err), -EBADMSG);
	n = tlv(b, 0, WPROTO_T_REALTIME_NS, &u32, 4);
	cr_assert_eq(decode_raw(WPROTO_RESTORED, b, n, &m, &err), -EBADMSG);
	/* strings: no NUL, inner NUL, empty */
	n = tlv(b, 0, WPROTO_T_PATH, "/bin/true", 9);
	cr_assert_eq(decode_raw(WPROTO_INVOKE, b, n, &m, &err), -EBADMSG);
	cr_assert(strstr(err.msg, "NUL-terminated"), "%s", err.msg);
	n = tlv(b, 0, WPROTO_T_PATH, "/bin\0x", 7);
	cr_assert_eq(decode_raw(WPROTO_INVOKE, b, n, &m, &err), -EBADMSG);
	n = tlv(b, 0, WPROTO_T_PATH, "", 0);
	cr_assert_eq(decode_raw(WPROTO_INVOKE, b, n, &m, &err), -EBADMSG);
	n = tlv(b, 0, WPROTO_T_PATH, "", 1);
	cr_assert_eq(decode_raw(WPROTO_INVOKE, b, n, &m, &err), -EBADMSG);
	cr_assert(strstr(err.msg, "empty path"), "%s", err.msg);
	/* environment entries must be NAME=value */
	n = tlv(b, 0, WPROTO_T_PATH, "/x", 3);
	n = tlv(b, n, WPROTO_T_ENV, "NOEQUALS", 9);
	cr_assert_eq(decode_raw(WPROTO_INVOKE, b, n, &m, &err), -EBADMSG);
	n = tlv(b, 0, WPROTO_T_PATH, "/x", 3);
	n = tlv(b, n, WPROTO_T_ENV, "=v", 3);
	cr_assert_eq(decode_raw(WPROTO_INVOKE, b, n, &m, &err), -EBADMSG);
	/* duplicate scalar */
	n = tlv(b, 0, WPROTO_T_PATH, "/x", 3);
	n = tlv(b, n, WPROTO_T_PATH, "/y", 3);
	cr_assert_eq(decode_raw(WPROTO_INVOKE, b, n, &m, &err), -EBADMSG);
	cr_assert(strstr(err.msg, "twice"), "%s", err.msg);
	/* required fields */
	n = tlv(b, 0, WPROTO_T_CWD, "/", 2);
	cr_assert_eq(decode_raw(WPROTO_INVOKE, b, n, &m, &err), -EBADMSG);
	cr_assert(strstr(err.msg, "path"), "%s", err.msg);
	n = tlv(b, 0, WPROTO_T_DATA, "x", 1);
	cr_assert_eq(decode_raw(WPROTO_OUTPUT, b, n, &m, &err), -EBADMSG);
	cr_assert_eq(decode_raw(WPROTO_RESULT, b, 0, &m, &err), -EBADMSG);
	cr_assert_eq(decode_raw(WPROTO_ERROR, b, 0, &m, &err), -EBADMSG);
	cr_assert_eq(decode_raw(WPROTO_HELLO, b, 0, &m, &err), -EBADMSG);
	/* field values */
	u32 = 3;
	n = tlv(b, 0, WPROTO_T_STREAM, &u32, 4);
	n = tlv(b, n, WPROTO_T_DATA, "x", 1);
	cr_assert_eq(decode_raw(WPROTO_OUTPUT, b, n, &m, &err), -EBADMSG);
	/* unknown message type */
	cr_assert_eq(decode_raw(0, b, 0, &m, &err), -EOPNOTSUPP);
	cr_assert_eq(decode_raw(WPROTO_TYPE_MAX + 1, b, 0, &m, &err), -EOPNOTSUPP);
}

Test(proto, entropy_cap)
{
	size_t len = WPROTO_MAX_ENTROPY + 1;
	uint8_t *b = calloc(1, len + 16);
	struct wproto_msg m;
	struct wisp_err err = { 0 };
	uint8_t *v = calloc(1, len);
	size_t n = tlv(b, 0, WPROTO_T_ENTROPY, v, (uint32_t)len);
	cr_assert_eq(decode_raw(WPROTO_RESTORED, b, n, &m, &err), -EBADMSG);
	n = tlv(b, 0, WPROTO_T_ENTROPY, v, WPROTO_MAX_ENTROPY);
	cr_assert_eq(decode_raw(WPROTO_RESTORED, b, n, &m, &err), 0);
	cr_assert_eq(m.entropy.len, WPROTO_MAX_ENTROPY);
	wproto_msg_free(&m);
	free(v);
	free(b);
}

Test(proto, unknown_and_foreign_tags_are_skipped)
{
	uint8_t b[128];
	struct wproto_msg m;
	struct wisp_err err = { 0 };
	uint32_t v = 1;
	size_t n = tlv(b, 0, 999, "future", 6);              /* unknown tag */
	n = tlv(b, n, WPROTO_T_STREAM, &v, 4);               /* not a PING field */
	n = tlv(b, n, WPROTO_T_STREAM, &v, 4);               /* repeated, still skipped */
	n = tlv(b, n, WPROTO_T_PAYLOAD, "abc", 3);
	cr_assert_eq(decode_raw(WPROTO_PING, b, n, &m, &err), 0, "%s", err.msg);
	cr_assert_eq(m.present, 1ull << WPROTO_T_PAYLOAD);
	cr_assert_eq(m.payload.len, 3);
	wproto_msg_free(&m);
}

Test(proto, list_cap)
{
	size_t per = WPROTO_TLV_HDR + 2;
	size_t len = WPROTO_TLV_HDR + 3 + per * (WPROTO_MAX_LIST + 1);
	uint8_t *b = malloc(len);
	size_t n = tlv(b, 0, WPROTO_T_PATH, "/x", 3);
	for (uint32_t i = 0; i < WPROTO_MAX_LIST; i++)
		n = tlv(b, n, WPROTO_T_ARG, "a", 2);
	struct wproto_msg m;
	struct wisp_err err = { 0 };
	cr_assert_eq(decode_raw(WPROTO_EXEC, b, n, &m, &err), 0, "%s", err.msg);
	cr_assert_eq(m.argc, WPROTO_MAX_LIST);
	wproto_msg_free(&m);
	n = tlv(b, n, WPROTO_T_ARG, "a", 2);
	cr_assert_eq(decode_raw(WPROTO_EXEC, b, n, &m, &err), -E2BIG);
	free(b);
}

Test(proto, encoder_refusals_leave_the_buffer_alone)
{
	struct wproto_buf buf = { 0 };
	struct wisp_err err = { 0 };
	struct wproto_msg p = { .type = WPROTO_PING, .id = 1 };
	cr_assert_eq(wproto_encode(&buf, &p, &err), 0);
	size_t before = buf.len;

	uint8_t *big = calloc(1, WPROTO_MAX_BODY);
	struct wproto_msg over = { .type = WPROTO_PING, .payload = { big, WPROTO_MAX_BODY } };
	WPROTO_SET(&over, WPROTO_T_PAYLOAD);
	cr_assert_eq(wproto_encode(&buf, &over, &err), -EMSGSIZE);
	cr_assert_eq(buf.len, before);
	over.payload.len = WPROTO_MAX_BODY - WPROTO_TLV_HDR;
	cr_assert_eq(wproto_encode(&buf, &over, &err), 0, "a body of exactly the maximum fits");
	buf.len = before;
	free(big);

	struct wproto_msg nopath = { .type = WPROTO_INVOKE };
	cr_assert_eq(wproto_encode(&buf, &nopath, &err), -EINVAL);
	struct wproto_msg nullpath = { .type = WPROTO_INVOKE };
	WPROTO_SET(&nullpath, WPROTO_T_PATH);
	cr_assert_eq(wproto_encode(&buf, &nullpath, &err), -EINVAL);
	struct wproto_msg foreign = { .type = WPROTO_PING, .stream = 1 };
	WPROTO_SET(&foreign, WPROTO_T_STREAM);
	cr_assert_eq(wproto_encode(&buf, &foreign, &err), -EINVAL);
	struct wproto_msg badtype = { .type = 0 };
	cr_assert_eq(wproto_encode(&buf, &badtype, &err), -EINVAL);
	cr_assert_eq(buf.len, before);
	wproto_buf_free(&buf);
}
