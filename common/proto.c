#include "proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Every field is described once, by tag: its wire kind and where it lives in
 * struct wproto_msg. Decoder and encoder both walk this table, so they can
 * never disagree about a field. */
enum fkind { F_NONE = 0, F_U32, F_I32, F_U64, F_I64, F_STR, F_BYTES, F_LIST };

struct field {
	uint8_t kind;
	const char *name;
	size_t off;       /* value, or the list's pointer array */
	size_t count_off; /* F_LIST: its uint32_t count */
};

#define FLD(tag, k, member) [tag] = { k, #member, offsetof(struct wproto_msg, member), 0 }
#define LST(tag, member, count) \
	[tag] = { F_LIST, #member, offsetof(struct wproto_msg, member), offsetof(struct wproto_msg, count) }

static const struct field fields[WPROTO_T_MAX + 1] = {
	FLD(WPROTO_T_PATH, F_STR, path),
	LST(WPROTO_T_ARG, argv, argc),
	LST(WPROTO_T_ENV, env, envc),
	FLD(WPROTO_T_CWD, F_STR, cwd),
	FLD(WPROTO_T_STDIN, F_BYTES, stdin_data),
	FLD(WPROTO_T_TIMEOUT_MS, F_U32, timeout_ms),
	FLD(WPROTO_T_OUTPUT_LIMIT, F_U32, output_limit),
	FLD(WPROTO_T_EXIT_CODE, F_I32, exit_code),
	FLD(WPROTO_T_SIGNAL, F_U32, signal),
	FLD(WPROTO_T_FLAGS, F_U32, flags),
	FLD(WPROTO_T_WALL_NS, F_U64, wall_ns),
	FLD(WPROTO_T_MAX_RSS_KB, F_U64, max_rss_kb),
	FLD(WPROTO_T_STDOUT, F_BYTES, stdout_data),
	FLD(WPROTO_T_STDERR, F_BYTES, stderr_data),
	FLD(WPROTO_T_PROTO_VERSION, F_U32, proto_version),
	FLD(WPROTO_T_CAPS, F_U64, caps),
	FLD(WPROTO_T_AGENT_VERSION, F_STR, agent_version),
	FLD(WPROTO_T_MAX_BODY, F_U32, max_body),
	FLD(WPROTO_T_ENTROPY, F_BYTES, entropy),
	FLD(WPROTO_T_REALTIME_NS, F_U64, realtime_ns),
	FLD(WPROTO_T_ERRNO, F_U32, errnum),
	FLD(WPROTO_T_MESSAGE, F_STR, message),
	FLD(WPROTO_T_PAYLOAD, F_BYTES, payload),
	FLD(WPROTO_T_STREAM, F_U32, stream),
	FLD(WPROTO_T_DATA, F_BYTES, data),
	FLD(WPROTO_T_CLOCK_STEP_NS, F_I64, clock_step_ns),
};

#define B(t) (1ull << (WPROTO_T_##t))
#define RUN_FIELDS (B(PATH) | B(ARG) | B(ENV) | B(CWD) | B(STDIN) | B(TIMEOUT_MS) | B(OUTPUT_LIMIT))
#define STATUS_FIELDS (B(EXIT_CODE) | B(SIGNAL) | B(FLAGS) | B(WALL_NS) | B(MAX_RSS_KB))
#define STATUS_REQUIRED (B(EXIT_CODE) | B(SIGNAL) | B(FLAGS))

/* Which fields each message type uses, and which it must carry. */
static const struct {
	const char *name;
	uint64_t allowed, required;
} types[WPROTO_TYPE_MAX + 1] = {
	[WPROTO_HELLO] = { "HELLO", B(PROTO_VERSION) | B(CAPS) | B(AGENT_VERSION) | B(MAX_BODY),
			   B(PROTO_VERSION) | B(CAPS) },
	[WPROTO_PING] = { "PING", B(PAYLOAD), 0 },
	[WPROTO_PONG] = { "PONG", B(PAYLOAD), 0 },
	[WPROTO_INVOKE] = { "INVOKE", RUN_FIELDS, B(PATH) },
	[WPROTO_RESULT] = { "RESULT", STATUS_FIELDS | B(STDOUT) | B(STDERR), STATUS_REQUIRED },
	[WPROTO_EXEC] = { "EXEC", RUN_FIELDS, B(PATH) },
	[WPROTO_OUTPUT] = { "OUTPUT", B(STREAM) | B(DATA), B(STREAM) | B(DATA) },
	[WPROTO_EXIT] = { "EXIT", STATUS_FIELDS, STATUS_REQUIRED },
	[WPROTO_RESTORED] = { "RESTORED", B(ENTROPY) | B(REALTIME_NS), 0 },
	[WPROTO_SHUTDOWN] = { "SHUTDOWN", 0, 0 },
	[WPROTO_ACK] = { "ACK", B(FLAGS) | B(REALTIME_NS) | B(CLOCK_STEP_NS), 0 },
	[WPROTO_ERROR] = { "ERROR", B(ERRNO) | B(MESSAGE), B(ERRNO) },
};

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const uint8_t *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)v); put32(p + 4, (uint32_t)(v >> 32)); }

static int type_known(uint16_t type)
{
	return type >= 1 && type <= WPROTO_TYPE_MAX && types[type].name;
}

const char *wproto_type_name(uint16_t type)
{
	return type_known(type) ? types[type].name : "UNKNOWN";
}

int wproto_hdr_parse(const uint8_t raw[WPROTO_HDR_SIZE], struct wproto_hdr *h,
		     struct wisp_err *err)
{
	memset(h, 0, sizeof(*h));
	uint32_t magic = get32(raw);
	if (magic != WPROTO_MAGIC)
		return wisp_err_set(err, EPROTO, "bad frame magic 0x%08x", magic);
	h->version = get16(raw + 4);
	h->type = get16(raw + 6);
	h->id = get32(raw + 8);
	h->length = get32(raw + 12);
	if (h->version != WPROTO_VERSION)
		return wisp_err_set(err, EPROTONOSUPPORT, "protocol version %u, this side speaks %u",
				    h->version, WPROTO_VERSION);
	if (h->length > WPROTO_MAX_BODY)
		return wisp_err_set(err, EMSGSIZE, "frame body of %u bytes is over the limit of %u",
				    h->length, WPROTO_MAX_BODY);
	if (!type_known(h->type))
		return wisp_err_set(err, EOPNOTSUPP, "unknown message type %u", h->type);
	return 0;
}

static int check_str(const uint8_t *v, uint32_t len, const char *name, int is_env,
		     struct wisp_err *err)
{
	if (len == 0 || v[len - 1] != '\0')
		return wisp_err_set(err, EBADMSG, "field %s: string is not NUL-terminated", name);
	if (memchr(v, '\0', len - 1))
		return wisp_err_set(err, EBADMSG, "field %s: string holds a NUL byte", name);
	if (is_env) {
		const char *eq = memchr(v, '=', len - 1);
		if (!eq || eq == (const char *)v)
			return wisp_err_set(err, EBADMSG, "field %s: \"%.64s\" is not NAME=value",
					    name, (const char *)v);
	}
	return 0;
}

/* Pass one checks every field and stores scalars (fill_lists 0); pass two,
 * after the list arrays exist, stores list entries (fill_lists 1). */
static int walk(const struct wproto_hdr *h, const uint8_t *body, struct wproto_msg *m,
		int fill_lists, struct wisp_err *err)
{
	uint64_t allowed = types[h->type].allowed;
	uint32_t off = 0, nargs = 0, nenv = 0;
	while (off < h->length) {
		if (h->length - off < WPROTO_TLV_HDR)
			return wisp_err_set(err, EBADMSG, "truncated field header at offset %u", off);
		uint16_t tag = get16(body + off);
		uint32_t len = get32(body + off + 2);
		off += WPROTO_TLV_HDR;
		if (len > h->length - off)
			return wisp_err_set(err, EBADMSG, "field %u at offset %u claims %u bytes, %u left",
					    tag, off - WPROTO_TLV_HDR, len, h->length - off);
		const uint8_t *v = body + off;
		off += len;
		if (tag > WPROTO_T_MAX || !(allowed & (1ull << tag)))
			continue; /* unknown here: skipped for forward compatibility */
		const struct field *f = &fields[tag];
		char *slot = (char *)m + f->off;
		if (f->kind == F_LIST) {
			uint32_t *count = (uint32_t *)((char *)m + f->count_off);
			uint32_t *seen = tag == WPROTO_T_ARG ? &nargs : &nenv;
			if (!fill_lists) {
				int r = check_str(v, len, f->name, tag == WPROTO_T_ENV, err);
				if (r < 0)
					return r;
				if (++*count > WPROTO_MAX_LIST)
					return wisp_err_set(err, E2BIG, "more than %u %s entries",
							    WPROTO_MAX_LIST, f->name);
			} else {
				(*(const char ***)slot)[(*seen)++] = (const char *)v;
			}
			continue;
		}
		if (fill_lists)
			continue;
		if (WPROTO_HAS(m, tag))
			return wisp_err_set(err, EBADMSG, "field %s appears twice", f->name);
		size_t want = f->kind == F_U32 || f->kind == F_I32 ? 4 :
			      f->kind == F_U64 || f->kind == F_I64 ? 8 : 0;
		if (want && len != want)
			return wisp_err_set(err, EBADMSG, "field %s is %u bytes, not %zu",
					    f->name, len, want);
		switch (f->kind) {
		case F_U32:
			*(uint32_t *)slot = get32(v);
			break;
		case F_I32:
			*(int32_t *)slot = (int32_t)get32(v);
			break;
		case F_U64:
			*(uint64_t *)slot = get64(v);
			break;
		case F_I64:
			*(int64_t *)slot = (int64_t)get64(v);
			break;
		case F_STR: {
			int r = check_str(v, len, f->name, 0, err);
			if (r < 0)
				return r;
			*(const char **)slot = (const char *)v;
			break;
		}
		case F_BYTES:
			((struct wproto_bytes *)slot)->ptr = v;
			((struct wproto_bytes *)slot)->len = len;
			break;
		default:
			return wisp_err_set(err, EBADMSG, "field %u has no kind", tag);
		}
		WPROTO_SET(m, tag);
	}
	return 0;
}

static int check_values(const struct wproto_msg *m, struct wisp_err *err)
{
	if (WPROTO_HAS(m, WPROTO_T_STREAM) && m->stream != WPROTO_STREAM_STDOUT &&
	    m->stream != WPROTO_STREAM_STDERR)
		return wisp_err_set(err, EBADMSG, "stream %u is neither stdout (1) nor stderr (2)",
				    m->stream);
	if (WPROTO_HAS(m, WPROTO_T_ENTROPY) && m->entropy.len > WPROTO_MAX_ENTROPY)
		return wisp_err_set(err, EBADMSG, "%u bytes of entropy, at most %u",
				    m->entropy.len, WPROTO_MAX_ENTROPY);
	if (WPROTO_HAS(m, WPROTO_T_PATH) && m->path[0] == '\0')
		return wisp_err_set(err, EBADMSG, "empty path");
	return 0;
}

int wproto_decode(const struct wproto_hdr *h, const uint8_t *body,
		  struct wproto_msg *msg, struct wisp_err *err)
{
	memset(msg, 0, sizeof(*msg));
	if (!type_known(h->type))
		return wisp_err_set(err, EOPNOTSUPP, "unknown message type %u", h->type);
	if (h->length > WPROTO_MAX_BODY)
		return wisp_err_set(err, EMSGSIZE, "body of %u bytes over the limit", h->length);
	struct wproto_msg m = { .type = h->type, .id = h->id };
	int r = walk(h, body, &m, 0, err);
	if (r == 0)
		r = check_values(&m, err);
	if (r == 0) {
		uint64_t missing = types[h->type].required & ~m.present;
		if (missing) {
			int tag = __builtin_ctzll(missing);
			r = wisp_err_set(err, EBADMSG, "%s without its %s field",
					 types[h->type].name, fields[tag].name);
		}
	}
	if (r < 0)
		return r;
	m.argv = calloc((size_t)m.argc + 1, sizeof(*m.argv));
	m.env = calloc((size_t)m.envc + 1, sizeof(*m.env));
	if (!m.argv || !m.env) {
		wproto_msg_free(&m);
		return wisp_err_set(err, ENOMEM, "no memory to decode %s", types[h->type].name);
	}
	walk(h, body, &m, 1, NULL);
	if (m.argc)
		WPROTO_SET(&m, WPROTO_T_ARG);
	if (m.envc)
		WPROTO_SET(&m, WPROTO_T_ENV);
	*msg = m;
	return 0;
}

void wproto_msg_free(struct wproto_msg *msg)
{
	free(msg->argv);
	free(msg->env);
	msg->argv = msg->env = NULL;
	msg->argc = msg->envc = 0;
}

void wproto_buf_free(struct wproto_buf *buf)
{
	free(buf->data);
	buf->data = NULL;
	buf->len = buf->cap = 0;
}

void wproto_buf_reset(struct wproto_buf *buf)
{
	buf->len = 0;
}

static int buf_reserve(struct wproto_buf *buf, size_t more)
{
	if (buf->cap - buf->len >= more)
		return 0;
	size_t cap = buf->cap ? buf->cap : 256;
	while (cap - buf->len < more)
		cap *= 2;
	uint8_t *d = realloc(buf->data, cap);
	if (!d)
		return -ENOMEM;
	buf->data = d;
	buf->cap = cap;
	return 0;
}

/* Size of one field's TLVs, or -EINVAL when a value cannot be sent. */
static int64_t field_size(const struct wproto_msg *m, int tag)
{
	const struct field *f = &fields[tag];
	const char *slot = (const char *)m + f->off;
	switch (f->kind) {
	case F_U32: case F_I32: return WPROTO_TLV_HDR + 4;
	case F_U64: case F_I64: return WPROTO_TLV_HDR + 8;
	case F_STR: {
		const char *s = *(const char *const *)slot;
		return s ? WPROTO_TLV_HDR + (int64_t)strlen(s) + 1 : -EINVAL;
	}
	case F_BYTES: return WPROTO_TLV_HDR + (int64_t)((const struct wproto_bytes *)slot)->len;
	case F_LIST: {
		uint32_t n = *(const uint32_t *)((const char *)m + f->count_off);
		const char *const *list = *(const char *const *const *)slot;
		int64_t total = 0;
		for (uint32_t i = 0; i < n; i++) {
			if (!list || !list[i])
				return -EINVAL;
			total += WPROTO_TLV_HDR + (int64_t)strlen(list[i]) + 1;
			if (total > WPROTO_MAX_BODY)
				return total;
		}
		return total;
	}
	}
	return -EINVAL;
}

static uint8_t *put_tlv(uint8_t *p, int tag, const void *v, uint32_t len)
{
	put16(p, (uint16_t)tag);
	put32(p + 2, len);
	if (len)
		memcpy(p + WPROTO_TLV_HDR, v, len);
	return p + WPROTO_TLV_HDR + len;
}

static uint8_t *put_field(uint8_t *p, const struct wproto_msg *m, int tag)
{
	const struct field *f = &fields[tag];
	const char *slot = (const char *)m + f->off;
	uint8_t v[8];
	switch (f->kind) {
	case F_U32: case F_I32:
		put32(v, *(const uint32_t *)slot);
		return put_tlv(p, tag, v, 4);
	case F_U64: case F_I64:
		put64(v, *(const uint64_t *)slot);
		return put_tlv(p, tag, v, 8);
	case F_STR: {
		const char *s = *(const char *const *)slot;
		return put_tlv(p, tag, s, (uint32_t)strlen(s) + 1);
	}
	case F_BYTES: {
		const struct wproto_bytes *b = (const struct wproto_bytes *)slot;
		return put_tlv(p, tag, b->ptr, b->len);
	}
	case F_LIST: {
		uint32_t n = *(const uint32_t *)((const char *)m + f->count_off);
		const char *const *list = *(const char *const *const *)slot;
		for (uint32_t i = 0; i < n; i++)
			p = put_tlv(p, tag, list[i], (uint32_t)strlen(list[i]) + 1);
		return p;
	}
	}
	return p;
}

static int field_wanted(const struct wproto_msg *m, int tag)
{
	const struct field *f = &fields[tag];
	if (f->kind == F_LIST)
		return *(const uint32_t *)((const char *)m + f->count_off) != 0;
	return WPROTO_HAS(m, tag);
}

int wproto_encode(struct wproto_buf *buf, const struct wproto_msg *m, struct wisp_err *err)
{
	if (!type_known(m->type))
		return wisp_err_set(err, EINVAL, "cannot encode message type %u", m->type);
	uint64_t allowed = types[m->type].allowed;
	uint64_t have = 0;
	int64_t body = 0;
	for (int tag = 1; tag <= WPROTO_T_MAX; tag++) {
		if (!field_wanted(m, tag))
			continue;
		if (!(allowed & (1ull << tag)))
			return wisp_err_set(err, EINVAL, "%s has no field %s",
					    types[m->type].name, fields[tag].name);
		int64_t n = field_size(m, tag);
		if (n < 0)
			return wisp_err_set(err, EINVAL, "%s: field %s has no value",
					    types[m->type].name, fields[tag].name);
		body += n;
		if (body > WPROTO_MAX_BODY)
			return wisp_err_set(err, EMSGSIZE, "%s body over %u bytes",
					    types[m->type].name, WPROTO_MAX_BODY);
		have |= 1ull << tag;
	}
	uint64_t missing = types[m->type].required & ~have;
	if (missing)
		return wisp_err_set(err, EINVAL, "%s without its %s field", types[m->type].name,
				    fields[__builtin_ctzll(missing)].name);
	if (m->argc > WPROTO_MAX_LIST || m->envc > WPROTO_MAX_LIST)
		return wisp_err_set(err, E2BIG, "more than %u list entries", WPROTO_MAX_LIST);
	if (buf_reserve(buf, WPROTO_HDR_SIZE + (size_t)body) < 0)
		return wisp_err_set(err, ENOMEM, "no memory for a %lld-byte frame", (long long)body);
	uint8_t *p = buf->data + buf->len;
	put32(p, WPROTO_MAGIC);
	put16(p + 4, WPROTO_VERSION);
	put16(p + 6, m->type);
	put32(p + 8, m->id);
	put32(p + 12, (uint32_t)body);
	uint8_t *q = p + WPROTO_HDR_SIZE;
	for (int tag = 1; tag <= WPROTO_T_MAX; tag++)
		if (have & (1ull << tag))
			q = put_field(q, m, tag);
	buf->len += (size_t)(q - p);
	return 0;
}

int wproto_encode_error(struct wproto_buf *buf, uint32_t id, int errnum,
			const char *message, struct wisp_err *err)
{
	struct wproto_msg m = { .type = WPROTO_ERROR, .id = id, .errnum = (uint32_t)errnum };
	WPROTO_SET(&m, WPROTO_T_ERRNO);
	if (message) {
		m.message = message;
		WPROTO_SET(&m, WPROTO_T_MESSAGE);
	}
	return wproto_encode(buf, &m, err);
}
