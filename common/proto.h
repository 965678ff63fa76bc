/* The host-agent wire protocol (docs/agent-protocol.md is the full text).
 *
 * Transport: a stream socket. In the guest, wisp-agent listens on AF_VSOCK,
 * VMADDR_CID_ANY, port WPROTO_VSOCK_PORT (52). The host reaches it through
 * the VMM's hybrid vsock Unix socket: connect to uds_path, write
 * "CONNECT 52\n", read "OK <host port>\n", then speak frames. For host-side
 * tests the agent can listen on a Unix socket instead.
 *
 * A frame is a 16-byte header, all little-endian:
 *   u32 magic   WPROTO_MAGIC ("WSPA" on the wire)
 *   u16 version WPROTO_VERSION
 *   u16 type    enum wproto_type
 *   u32 id      request id chosen by the host; replies carry the same id
 *   u32 length  body length, at most WPROTO_MAX_BODY
 * then `length` bytes of body: a sequence of TLV fields
 *   u16 tag, u32 length, value
 * Integer values are exactly 4 or 8 bytes (little-endian). Strings carry
 * their terminating NUL inside the length and no other NUL. Unknown tags are
 * skipped (a newer peer may add fields); a known tag that a message type does
 * not use is skipped too. A repeated tag is an error unless it is a list
 * (ARG, ENV).
 *
 * Decoded messages point into the frame body: keep the body alive while the
 * message is used, then call wproto_msg_free().
 */
#ifndef WISP_PROTO_H
#define WISP_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define WPROTO_MAGIC        0x41505357u /* bytes 'W' 'S' 'P' 'A' */
#define WPROTO_VERSION      1u
#define WPROTO_HDR_SIZE     16u
#define WPROTO_MAX_BODY     (8u << 20)  /* 8 MiB */
#define WPROTO_VSOCK_PORT   52u
#define WPROTO_TLV_HDR      6u
#define WPROTO_MAX_LIST     4096u       /* ARG and ENV entries per message */
#define WPROTO_MAX_ENTROPY  4096u       /* RESTORED entropy bytes */

/* Output limits per stream. INVOKE: 0 means the default; the agent refuses
 * a limit over the maximum, so a RESULT always fits one frame. EXEC: 0 means
 * unlimited (output is streamed with back-pressure). */
#define WPROTO_DEFAULT_OUTPUT_LIMIT (1u << 20)
#define WPROTO_MAX_OUTPUT_LIMIT     (3u << 20)

enum wproto_type {
	WPROTO_HELLO = 1,    /* agent -> host, first frame of every connection, id 0 */
	WPROTO_PING = 2,     /* host -> agent: optional PAYLOAD */
	WPROTO_PONG = 3,     /* agent -> host: the same PAYLOAD */
	WPROTO_INVOKE = 4,   /* host -> agent: run a handler, collect its output */
	WPROTO_RESULT = 5,   /* agent -> host: outcome of an INVOKE */
	WPROTO_EXEC = 6,     /* host -> agent: run a command, stream its output */
	WPROTO_OUTPUT = 7,   /* agent -> host: one chunk of an EXEC's stdout or stderr */
	WPROTO_EXIT = 8,     /* agent -> host: end of an EXEC */
	WPROTO_RESTORED = 9, /* host -> agent: after snapshot restore: entropy, wall clock */
	WPROTO_SHUTDOWN = 10,/* host -> agent: stop handlers, sync, power off */
	WPROTO_ACK = 11,     /* agent -> host: RESTORED or SHUTDOWN done */
	WPROTO_ERROR = 12,   /* either way: request failed or frame refused */
	WPROTO_TYPE_MAX = 12,
};

enum wproto_tag {
	WPROTO_T_PATH = 1,          /* str: handler path (searched in PATH if no '/') */
	WPROTO_T_ARG = 2,           /* str, list: argv[1..]; argv[0] is the path */
	WPROTO_T_ENV = 3,           /* str, list: "NAME=value" */
	WPROTO_T_CWD = 4,           /* str: working directory */
	WPROTO_T_STDIN = 5,         /* bytes: the handler's whole stdin */
	WPROTO_T_TIMEOUT_MS = 6,    /* u32: 0 = none */
	WPROTO_T_OUTPUT_LIMIT = 7,  /* u32: bytes kept per stream */
	WPROTO_T_EXIT_CODE = 8,     /* u32 (signed): exit status when not signalled */
	WPROTO_T_SIGNAL = 9,        /* u32: terminating signal, 0 when exited */
	WPROTO_T_FLAGS = 10,        /* u32: WPROTO_F_* */
	WPROTO_T_WALL_NS = 11,      /* u64: start to exit, monotonic */
	WPROTO_T_MAX_RSS_KB = 12,   /* u64: peak resident set size */
	WPROTO_T_STDOUT = 13,       /* bytes */
	WPROTO_T_STDERR = 14,       /* bytes */
	WPROTO_T_PROTO_VERSION = 15,/* u32 */
	WPROTO_T_CAPS = 16,         /* u64: WPROTO_CAP_* */
	WPROTO_T_AGENT_VERSION = 17,/* str */
	WPROTO_T_MAX_BODY = 18,     /* u32: largest body the agent accepts */
	WPROTO_T_ENTROPY = 19,      /* bytes: at most WPROTO_MAX_ENTROPY */
	WPROTO_T_REALTIME_NS = 20,  /* u64: CLOCK_REALTIME, ns since the epoch */
	WPROTO_T_ERRNO = 21,        /* u32: Linux errno value */
	WPROTO_T_MESSAGE = 22,      /* str */
	WPROTO_T_PAYLOAD = 23,      /* bytes: PING/PONG */
	WPROTO_T_STREAM = 24,       /* u32: 1 stdout, 2 stderr */
	WPROTO_T_DATA = 25,         /* bytes: OUTPUT chunk */
	WPROTO_T_CLOCK_STEP_NS = 26,/* u64 (signed): how far RESTORED stepped the clock */
	WPROTO_T_MAX = 26,
};

/* RESULT/EXIT flags */
#define WPROTO_F_STDOUT_TRUNCATED (1u << 0)
#define WPROTO_F_STDERR_TRUNCATED (1u << 1)
#define WPROTO_F_TIMED_OUT        (1u << 2)
#define WPROTO_F_CORE_DUMPED      (1u << 3)
/* ACK flags for RESTORED */
#define WPROTO_F_ENTROPY_ADDED    (1u << 4)
#define WPROTO_F_CLOCK_SET        (1u << 5)

/* HELLO capabilities */
#define WPROTO_CAP_INVOKE   (1ull << 0)
#define WPROTO_CAP_EXEC     (1ull << 1)
#define WPROTO_CAP_RESTORED (1ull << 2)
#define WPROTO_CAP_SHUTDOWN (1ull << 3)
#define WPROTO_CAP_PID1     (1ull << 4) /* running as the guest's init */

#define WPROTO_STREAM_STDOUT 1u
#define WPROTO_STREAM_STDERR 2u

struct wproto_hdr {
	uint16_t version;
	uint16_t type;
	uint32_t id;
	uint32_t length;
};

struct wproto_bytes {
	const uint8_t *ptr;
	uint32_t len;
};

/* One decoded message, fields by tag. `present` has bit (1 << tag) set for
 * every field seen; the encoder writes exactly the fields whose bit is set
 * (lists: when their count is non-zero). Strings are NUL-terminated. */
struct wproto_msg {
	uint16_t type;
	uint32_t id;
	uint64_t present;
	const char *path, *cwd, *agent_version, *message;
	const char **argv; /* argc entries, NULL-terminated (owned) */
	uint32_t argc;
	const char **env;  /* envc entries, NULL-terminated (owned) */
	uint32_t envc;
	struct wproto_bytes stdin_data, stdout_data, stderr_data, entropy, payload, data;
	uint32_t timeout_ms, output_limit, flags, signal, errnum, proto_version,
		 max_body, stream;
	int32_t exit_code;
	uint64_t wall_ns, max_rss_kb, caps, realtime_ns;
	int64_t clock_step_ns;
};

#define WPROTO_HAS(m, tag) (((m)->present >> (tag)) & 1u)
#define WPROTO_SET(m, tag) ((m)->present |= 1ull << (tag))

/* A growable output buffer holding one or more encoded frames. */
struct wproto_buf {
	uint8_t *data;
	size_t len, cap;
};

const char *wproto_type_name(uint16_t type);

/* Check a received header (magic, version, type range, length cap). The id
 * and type are filled in even when it fails, when the magic was right, so
 * the caller can name the request in its ERROR reply. */
int wproto_hdr_parse(const uint8_t raw[WPROTO_HDR_SIZE], struct wproto_hdr *h,
		     struct wisp_err *err);

/* Decode a body of h->length bytes. On failure msg is left empty (nothing to
 * free). Checks every length against the remaining bytes, integer widths,
 * string termination, duplicates, list caps and the fields each message type
 * requires. */
int wproto_decode(const struct wproto_hdr *h, const uint8_t *body,
		  struct wproto_msg *msg, struct wisp_err *err);
void wproto_msg_free(struct wproto_msg *msg);

/* Append one frame for msg to buf. Refuses (-EMSGSIZE) a body over
 * WPROTO_MAX_BODY, leaving buf as it was. */
int wproto_encode(struct wproto_buf *buf, const struct wproto_msg *msg,
		  struct wisp_err *err);

/* Convenience: an ERROR frame for request id. */
int wproto_encode_error(struct wproto_buf *buf, uint32_t id, int errnum,
			const char *message, struct wisp_err *err);

void wproto_buf_free(struct wproto_buf *buf);
void wproto_buf_reset(struct wproto_buf *buf);

#endif
