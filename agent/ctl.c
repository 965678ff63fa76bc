/* wisp-agent-ctl: talk to a wisp-agent from the host (tests, benchmarks,
 * debugging). See usage() for the commands. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/agent_client.h"
#include "common/cleanup.h"
#include "common/io.h"

#define TOOL_ERR 125 /* the tool or the agent failed, not the handler */

static void usage(FILE *f)
{
	fprintf(f,
"usage: wisp-agent-ctl (--unix PATH | --vsock UDS[:PORT]) [--wait-ms N] [--io-timeout-ms N]\n"
"                      COMMAND [OPTIONS]\n"
"  --unix PATH        the agent's Unix socket (wisp-agent --listen unix:PATH)\n"
"  --vsock UDS[:PORT] the VMM's vsock Unix socket; guest port default 52\n"
"  --wait-ms N        retry connecting for up to N ms (a guest still booting)\n"
"  --io-timeout-ms N  give up on a reply after N ms (plus the handler's timeout;\n"
"                     default 60000, 0 = never)\n"
"commands:\n"
"  hello                          print the agent's HELLO\n"
"  ping [--count N] [--size B]    N round trips; prints median, p99, min and max\n"
"  invoke [RUN OPTIONS] PATH [ARG...]\n"
"                                 run a handler; its stdout and stderr are copied to\n"
"                                 ours; exit status: its exit code, 128+signal when\n"
"                                 killed, 125 when the agent or the tool failed\n"
"  exec [RUN OPTIONS] PATH [ARG...]  the same, streamed as it is produced\n"
"  restored [--entropy-bytes N] [--realtime-ns NS | --no-clock]\n"
"                                 send RESTORED (default 64 fresh bytes, host clock)\n"
"  shutdown                       ask the agent to stop (as init: power off)\n"
"  raw [--frames N]               send our stdin as-is; print the next N frames, or\n"
"                                 (no N) half-close and print frames until the\n"
"                                 agent closes the connection\n"
"run options:\n"
"  --stdin FILE      handler stdin ('-' for ours)\n"
"  --env NAME=VALUE  (repeatable)\n"
"  --cwd DIR\n"
"  --timeout-ms N    after N ms kill the handler and every process it started,\n"
"                    detached ones too (one that ends in time may leave\n"
"                    detached processes running: services for later calls)\n"
"  --limit BYTES     output kept (INVOKE) or streamed (EXEC) per stream\n"
"  --repeat N        invoke only: N invocations, then print timing figures\n"
"  --meta            print a 'result: ...' line on stderr at the end\n");
}

struct target {
	const char *unix_path, *vsock_path;
	uint32_t port;
	int wait_ms, io_ms;
};

static int connect_target(const struct target *t, struct agentc **c, struct wisp_err *err)
{
	uint64_t end = wisp_now_ns() + (uint64_t)t->wait_ms * 1000000ull;
	for (;;) {
		wisp_err_clear(err);
		int r = t->unix_path ? agentc_connect_unix(t->unix_path, t->io_ms, c, err)
				     : agentc_connect_vsock(t->vsock_path, t->port, t->io_ms, c, err);
		if (r == 0 || wisp_now_ns() >= end)
			return r;
		usleep(50000);
	}
}

static int read_stream(int fd, uint8_t **out, size_t *len)
{
	size_t cap = 65536, n = 0;
	uint8_t *buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	for (;;) {
		if (n == cap) {
			uint8_t *b = realloc(buf, cap * 2);
			if (!b) {
				free(buf);
				return -ENOMEM;
			}
			buf = b;
			cap *= 2;
		}
		ssize_t r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			free(buf);
			return -e;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	*out = buf;
	*len = n;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void print_figures(const char *what, uint64_t *ns, size_t n)
{
	qsort(ns, n, sizeof(*ns), cmp_u64);
	printf("%s: %zu round trips, median %.1f us, p99 %.1f us, min %.1f us, max %.1f us\n",
	       what, n, ns[n / 2] / 1e3, ns[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1] / 1e3,
	       ns[0] / 1e3, ns[n - 1] / 1e3);
}

static int print_out(void *ctx, uint32_t stream, const uint8_t *p, size_t n)
{
	(void)ctx;
	return wisp_write_all(stream == WPROTO_STREAM_STDERR ? 2 : 1, p, n);
}

static int status_of(const struct agentc_result *r)
{
	return r->signal ? 128 + (int)r->signal : r->exit_code & 0xff;
}

static void print_meta(const struct agentc_result *r, size_t out_bytes, size_t err_bytes)
{
	fprintf(stderr, "result: exit=%d signal=%u timed_out=%d stdout_truncated=%d "
		"stderr_truncated=%d core=%d wall_us=%llu max_rss_kb=%llu stdout_bytes=%zu "
		"stderr_bytes=%zu\n", r->exit_code, r->signal, !!(r->flags & WPROTO_F_TIMED_OUT),
		!!(r->flags & WPROTO_F_STDOUT_TRUNCATED), !!(r->flags & WPROTO_F_STDERR_TRUNCATED),
		!!(r->flags & WPROTO_F_CORE_DUMPED), (unsigned long long)(r->wall_ns / 1000),
		(unsigned long long)r->max_rss_kb, out_bytes, err_bytes);
}

struct counted { size_t out, err; };

static int count_out(void *ctx, uint32_t stream, const uint8_t *p, size_t n)
{
	struct counted *c = ctx;
	if (stream == WPROTO_STREAM_STDERR)
		c->err += n;
	else
		c->out += n;
	return print_out(NULL, stream, p, n);
}

static int cmd_run(struct agentc *c, int is_exec, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "stdin", required_argument, NULL, 'i' }, { "env", required_argument, NULL, 'e' },
		{ "cwd", required_argument, NULL, 'c' }, { "timeout-ms", required_argument, NULL, 't' },
		{ "limit", required_argument, NULL, 'l' }, { "repeat", required_argument, NULL, 'n' },
		{ "meta", no_argument, NULL, 'm' }, { NULL, 0, NULL, 0 },
	};
	struct agentc_run run = { 0 };
	_cleanup_free_ const char **env = calloc((size_t)argc + 1, sizeof(*env));
	_cleanup_free_ uint8_t *in = NULL;
	long repeat = 1;
	int meta = 0, o;
	if (!env)
		return TOOL_ERR;
	optind = 1;
	while ((o = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (o) {
		case 'i': {
			_cleanup_close_ int fd = strcmp(optarg, "-") ? open(optarg, O_RDONLY | O_CLOEXEC) : dup(0);
			if (fd < 0 || read_stream(fd, &in, &run.stdin_len) < 0) {
				fprintf(stderr, "wisp-agent-ctl: cannot read %s\n", optarg);
				return TOOL_ERR;
			}
			run.stdin_data = in;
			break;
		}
		case 'e': env[run.envc++] = optarg; break;
		case 'c': run.cwd = optarg; break;
		case 't': run.timeout_ms = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'l': run.output_limit = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'n': repeat = strtol(optarg, NULL, 10); break;
		case 'm': meta = 1; break;
		default: usage(stderr); return TOOL_ERR;
		}
	}
	if (optind >= argc || repeat < 1 || (is_exec && repeat != 1)) {
		usage(stderr);
		return TOOL_ERR;
	}
	run.path = argv[optind];
	run.argv = (const char *const *)argv + optind + 1;
	run.argc = (size_t)(argc - optind - 1);
	run.env = env;
	struct wisp_err err = { 0 };
	struct agentc_result res;
	if (is_exec) {
		struct counted cnt = { 0, 0 };
		if (agentc_exec(c, &run, count_out, &cnt, &res, &err) < 0) {
			fprintf(stderr, "wisp-agent-ctl: %s\n", err.msg);
			return TOOL_ERR;
		}
		if (meta)
			print_meta(&res, cnt.out, cnt.err);
		return status_of(&res);
	}
	_cleanup_free_ uint64_t *ns = calloc((size_t)repeat, sizeof(*ns));
	if (!ns)
		return TOOL_ERR;
	for (long i = 0; i < repeat; i++) {
		uint64_t t0 = wisp_now_ns();
		if (agentc_invoke(c, &run, &res, &err) < 0) {
			fprintf(stderr, "wisp-agent-ctl: invocation %ld: %s\n", i + 1, err.msg);
			return TOOL_ERR;
		}
		ns[i] = wisp_now_ns() - t0;
		if (i + 1 < repeat) {
			agentc_result_free(&res);
			continue;
		}
		if (repeat == 1) {
			wisp_write_all(1, res.out, res.out_len);
			wisp_write_all(2, res.err, res.err_len);
		}
	}
	if (repeat > 1)
		print_figures("invoke", ns, (size_t)repeat);
	if (meta)
		print_meta(&res, res.out_len, res.err_len);
	int st = status_of(&res);
	agentc_result_free(&res);
	return st;
}

static int cmd_ping(struct agentc *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "count", required_argument, NULL, 'n' }, { "size", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	long count = 1, size = 0;
	int o;
	optind = 1;
	while ((o = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		if (o == 'n')
			count = strtol(optarg, NULL, 10);
		else if (o == 's')
			size = strtol(optarg, NULL, 10);
		else
			return TOOL_ERR;
	}
	if (count < 1 || size < 0 || size > (long)WPROTO_MAX_BODY - 64) {
		usage(stderr);
		return TOOL_ERR;
	}
	_cleanup_free_ uint8_t *payload = calloc(1, (size_t)size + 1);
	_cleanup_free_ uint64_t *ns = calloc((size_t)count, sizeof(*ns));
	if (!payload || !ns)
		return TOOL_ERR;
	for (long i = 0; i < size; i++)
		payload[i] = (uint8_t)(i * 7);
	struct wisp_err err = { 0 };
	for (long i = 0; i < count; i++) {
		uint64_t t0 = wisp_now_ns();
		if (agentc_ping(c, payload, (size_t)size, &err) < 0) {
			fprintf(stderr, "wisp-agent-ctl: ping %ld: %s\n", i + 1, err.msg);
			return TOOL_ERR;
		}
		ns[i] = wisp_now_ns() - t0;
	}
	print_figures("ping", ns, (size_t)count);
	return 0;
}

static int cmd_restored(struct agentc *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "entropy-bytes", required_argument, NULL, 'e' },
		{ "realtime-ns", required_argument, NULL, 't' },
		{ "no-clock", no_argument, NULL, 'c' }, { NULL, 0, NULL, 0 },
	};
	int send_clock = 1;
	long nbytes = 64;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	uint64_t rt = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
	int o;
	optind = 1;
	while ((o = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		if (o == 'e')
			nbytes = strtol(optarg, NULL, 10);
		else if (o == 't')
			rt = strtoull(optarg, NULL, 10);
		else if (o == 'c')
			send_clock = 0;
		else
			return TOOL_ERR;
	}
	if (nbytes < 0 || nbytes > (long)WPROTO_MAX_ENTROPY) {
		fprintf(stderr, "wisp-agent-ctl: --entropy-bytes is 0 to %u\n", WPROTO_MAX_ENTROPY);
		return TOOL_ERR;
	}
	uint8_t ent[WPROTO_MAX_ENTROPY];
	if (nbytes && getrandom(ent, (size_t)nbytes, 0) != nbytes)
		return TOOL_ERR;
	struct agentc_ack ack;
	struct wisp_err err = { 0 };
	if (agentc_restored(c, ent, (size_t)nbytes, send_clock, rt, &ack, &err) < 0) {
		fprintf(stderr, "wisp-agent-ctl: %s\n", err.msg);
		return TOOL_ERR;
	}
	printf("restored: entropy_added=%d clock_set=%d clock_step_ns=%lld agent_realtime_ns=%llu\n",
	       !!(ack.flags & WPROTO_F_ENTROPY_ADDED), !!(ack.flags & WPROTO_F_CLOCK_SET),
	       (long long)ack.clock_step_ns, (unsigned long long)ack.realtime_ns);
	return 0;
}

static void print_frame(const struct wproto_msg *m)
{
	printf("%s id=%u", wproto_type_name(m->type), m->id);
	if (m->type == WPROTO_ERROR)
		printf(" errno=%u message=\"%s\"", m->errnum, m->message ? m->message : "");
	if (m->type == WPROTO_HELLO)
		printf(" version=%u caps=0x%llx agent=%s max_body=%u", m->proto_version,
		       (unsigned long long)m->caps, m->agent_version ? m->agent_version : "?",
		       m->max_body);
	if (m->type == WPROTO_RESULT || m->type == WPROTO_EXIT)
		printf(" exit=%d signal=%u flags=0x%x", m->exit_code, m->signal, m->flags);
	printf("\n");
}

static int cmd_raw(struct agentc *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "frames", required_argument, NULL, 'n' }, { NULL, 0, NULL, 0 },
	};
	long frames = -1;
	int o;
	optind = 1;
	while ((o = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		if (o != 'n')
			return TOOL_ERR;
		frames = strtol(optarg, NULL, 10);
	}
	uint8_t *in = NULL;
	size_t len = 0;
	if (read_stream(0, &in, &len) < 0)
		return TOOL_ERR;
	int r = wisp_write_all(c->fd, in, len);
	free(in);
	if (r < 0) {
		fprintf(stderr, "wisp-agent-ctl: send: %s\n", strerror(-r));
		return TOOL_ERR;
	}
	/* Without --frames: half-close (the agent then ends this client's
	 * handlers) and print until the agent closes. */
	if (frames < 0)
		shutdown(c->fd, SHUT_WR);
	for (long i = 0; frames < 0 || i < frames; i++) {
		struct wproto_msg m;
		uint8_t *body = NULL;
		struct wisp_err err = { 0 };
		if (agentc_recv(c, &m, &body, &err) < 0) {
			printf("closed: %s\n", err.msg);
			return err.code == ECONNRESET ? 0 : TOOL_ERR;
		}
		print_frame(&m);
		fflush(stdout);
		wproto_msg_free(&m);
		free(body);
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "unix", required_argument, NULL, 'u' }, { "vsock", required_argument, NULL, 'v' },
		{ "wait-ms", required_argument, NULL, 'w' },
		{ "io-timeout-ms", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
	};
	struct target t = { .port = WPROTO_VSOCK_PORT, .io_ms = 60000 };
	_cleanup_free_ char *vs = NULL;
	int o;
	while ((o = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (o) {
		case 'u': t.unix_path = optarg; break;
		case 'v': {
			free(vs);
			vs = strdup(optarg);
			if (!vs)
				return TOOL_ERR;
			char *colon = strrchr(vs, ':');
			if (colon) {
				*colon = '\0';
				t.port = (uint32_t)strtoul(colon + 1, NULL, 10);
			}
			t.vsock_path = vs;
			break;
		}
		case 'w': t.wait_ms = atoi(optarg); break;
		case 't': t.io_ms = atoi(optarg); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return TOOL_ERR;
		}
	}
	if ((!t.unix_path == !t.vsock_path) || optind >= argc) {
		usage(stderr);
		return TOOL_ERR;
	}
	const char *cmd = argv[optind];
	int sub_argc = argc - optind;
	char **sub_argv = argv + optind;
	struct agentc *c = NULL;
	struct wisp_err err = { 0 };
	if (connect_target(&t, &c, &err) < 0) {
		fprintf(stderr, "wisp-agent-ctl: %s\n", err.msg);
		return TOOL_ERR;
	}
	int st;
	if (!strcmp(cmd, "hello")) {
		print_frame(&c->hello);
		st = 0;
	} else if (!strcmp(cmd, "ping")) {
		st = cmd_ping(c, sub_argc, sub_argv);
	} else if (!strcmp(cmd, "invoke") || !strcmp(cmd, "exec")) {
		st = cmd_run(c, cmd[0] == 'e', sub_argc, sub_argv);
	} else if (!strcmp(cmd, "restored")) {
		st = cmd_restored(c, sub_argc, sub_argv);
	} else if (!strcmp(cmd, "shutdown")) {
		st = agentc_shutdown(c, &err) < 0 ? TOOL_ERR : 0;
		if (st)
			fprintf(stderr, "wisp-agent-ctl: %s\n", err.msg);
	} else if (!strcmp(cmd, "raw")) {
		st = cmd_raw(c, sub_argc, sub_argv);
	} else {
		fprintf(stderr, "wisp-agent-ctl: unknown command \"%s\"\n", cmd);
		usage(stderr);
		st = TOOL_ERR;
	}
	agentc_close(c);
	return st;
}
