/* The host-side agent client against a scripted fake agent (or fake VMM) on
 * a Unix socket: the hybrid-vsock handshake and its failures, HELLO
 * checks, reply matching, ERROR mapping, timeouts. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/agent_client.h"
#include "common/io.h"

enum script {
	S_VSOCK_OK,      /* CONNECT 52 -> OK, HELLO, answer one PING */
	S_VSOCK_CLOSE,   /* CONNECT -> close */
	S_VSOCK_BAD,     /* CONNECT -> "NO" */
	S_HELLO_V2,      /* HELLO saying protocol 2 */
	S_NOT_HELLO,     /* PONG before HELLO */
	S_WRONG_ID,      /* HELLO, then PONG for another id */
	S_ERROR,         /* HELLO, then ERROR ENOENT for the request */
	S_SILENT,        /* HELLO, then nothing */
};

struct fake {
	char dir[64], path[128];
	int lfd;
	enum script script;
	pthread_t thr;
	char line[64];  /* what the client sent before frames (vsock) */
};

static void send_msg(int fd, struct wproto_msg *m)
{
	struct wproto_buf b = { 0 };
	struct wisp_err e = { 0 };
	cr_assert_eq(wproto_encode(&b, m, &e), 0, "%s", e.msg);
	wisp_write_all(fd, b.data, b.len);
	wproto_buf_free(&b);
}

static void send_hello(int fd, uint32_t version)
{
	struct wproto_msg h = { .type = WPROTO_HELLO, .proto_version = version,
				.caps = WPROTO_CAP_INVOKE };
	WPROTO_SET(&h, WPROTO_T_PROTO_VERSION);
	WPROTO_SET(&h, WPROTO_T_CAPS);
	send_msg(fd, &h);
}

/* Read one frame from the client; returns its id. */
static uint32_t read_frame(int fd, struct wproto_msg *m, uint8_t **body)
{
	uint8_t raw[WPROTO_HDR_SIZE];
	struct wproto_hdr h;
	struct wisp_err e = { 0 };
	if (wisp_read_exact(fd, raw, sizeof(raw)) < 0 || wproto_hdr_parse(raw, &h, &e) < 0)
		return 0;
	*body = malloc(h.length + 1);
	if (wisp_read_exact(fd, *body, h.length) < 0 || wproto_decode(&h, *body, m, &e) < 0)
		return 0;
	return h.id;
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	int fd = accept(f->lfd, NULL, NULL);
	if (fd < 0)
		return NULL;
	if (f->script <= S_VSOCK_BAD) {
		size_t n = 0;
		while (n < sizeof(f->line) - 1 && read(fd, f->line + n, 1) == 1 && f->line[n] != '\n')
			n++;
		if (f->script == S_VSOCK_CLOSE)
			goto out;
		if (f->script == S_VSOCK_BAD) {
			wisp_write_all(fd, "NO\n", 3);
			goto out;
		}
		wisp_write_all(fd, "OK 1073741824\n", 14);
	}
	if (f->script == S_NOT_HELLO) {
		struct wproto_msg p = { .type = WPROTO_PONG };
		send_msg(fd, &p);
		goto out;
	}
	send_hello(fd, f->script == S_HELLO_V2 ? 2 : WPROTO_VERSION);
	struct wproto_msg m;
	uint8_t *body = NULL;
	uint32_t id = read_frame(fd, &m, &body);
	if (f->script == S_VSOCK_OK && id) {
		struct wproto_msg p = { .type = WPROTO_PONG, .id = id, .payload = m.payload,
					.present = m.present };
		send_msg(fd, &p);
	} else if (f->script == S_WRONG_ID && id) {
		struct wproto_msg p = { .type = WPROTO_PONG, .id = id + 1 };
		send_msg(fd, &p);
	} else if (f->script == S_ERROR && id) {
		struct wproto_buf b = { 0 };
		wproto_encode_error(&b, id, ENOENT, "start /x: No such file or directory", NULL);
		wisp_write_all(fd, b.data, b.len);
		wproto_buf_free(&b);
	} else if (f->script == S_SILENT) {
		char c;
		ssize_t r = read(fd, &c, 1); /* until the client gives up */
		(void)r;
	}
	if (id)
		wproto_msg_free(&m);
	free(body);
out:
	close(fd);
	return NULL;
}

static void fake_start(struct fake *f, enum script s)
{
	memset(f, 0, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/wisp-agentc-XXXXXX");
	cr_assert_not_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/s", f->dir);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	strcpy(sa.sun_path, f->path);
	f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert(f->lfd >= 0);
	cr_assert_eq(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(f->lfd, 4), 0);
	f->script = s;
	cr_assert_eq(pthread_create(&f->thr, NULL, fake_main, f), 0);
}

static void fake_stop(struct fake *f)
{
	pthread_join(f->thr, NULL);
	close(f->lfd);
	unlink(f->path);
	rmdir(f->dir);
}

Test(agent_client, vsock_handshake_then_ping)
{
	struct fake f;
	fake_start(&f, S_VSOCK_OK);
	struct agentc *c = NULL;
	struct wisp_err err = { 0 };
	cr_assert_eq(agentc_connect_vsock(f.path, 52, 5000, &c, &err), 0, "%s", err.msg);
	cr_assert_eq(c->hello.proto_version, WPROTO_VERSION);
	cr_assert_eq(agentc_ping(c, "abc", 3, &err), 0, "%s", err.msg);
	agentc_close(c);
	fake_stop(&f);
	cr_assert_str_eq(f.line, "CONNECT 52\n");
}

Test(agent_client, vsock_refused_and_bad_answer)
{
	struct fake f;
	struct agentc *c = NULL;
	struct wisp_err err = { 0 };
	fake_start(&f, S_VSOCK_CLOSE);
	cr_assert_eq(agentc_connect_vsock(f.path, 1234, 5000, &c, &err), -ECONNREFUSED);
	cr_assert(strstr(err.msg, "port 1234"), "%s", err.msg);
	fake_stop(&f);
	cr_assert_str_eq(f.line, "CONNECT 1234\n");

	fake_start(&f, S_VSOCK_BAD);
	wisp_err_clear(&err);
	cr_assert_eq(agentc_connect_vsock(f.path, 52, 5000, &c, &err), -EPROTO);
	cr_assert(strstr(err.msg, "answered \"NO\""), "%s", err.msg);
	fake_stop(&f);
}

Test(agent_client, hello_checks)
{
	struct fake f;
	struct agentc *c = NULL;
	struct wisp_err err = { 0 };
	fake_start(&f, S_HELLO_V2);
	cr_assert_eq(agentc_connect_unix(f.path, 5000, &c, &err), -EPROTONOSUPPORT);
	fake_stop(&f);
	fake_start(&f, S_NOT_HELLO);
	wisp_err_clear(&err);
	cr_assert_eq(agentc_connect_unix(f.path, 5000, &c, &err), -EPROTO);
	cr_assert(strstr(err.msg, "before HELLO"), "%s", err.msg);
	fake_stop(&f);
	wisp_err_clear(&err);
	cr_assert_eq(agentc_connect_unix("/nonexistent/wisp.sock", 100, &c, &err), -ENOENT);
}

Test(agent_client, replies_are_matched_and_errors_mapped)
{
	struct fake f;
	struct agentc *c = NULL;
	struct wisp_err err = { 0 };
	fake_start(&f, S_WRONG_ID);
	cr_assert_eq(agentc_connect_unix(f.path, 5000, &c, &err), 0, "%s", err.msg);
	cr_assert_eq(agentc_ping(c, NULL, 0, &err), -EPROTO);
	cr_assert(strstr(err.msg, "expected PONG"), "%s", err.msg);
	agentc_close(c);
	fake_stop(&f);

	fake_start(&f, S_ERROR);
	wisp_err_clear(&err);
	cr_assert_eq(agentc_connect_unix(f.path, 5000, &c, &err), 0, "%s", err.msg);
	struct agentc_run run = { .path = "/x" };
	struct agentc_result res;
	cr_assert_eq(agentc_invoke(c, &run, &res, &err), -ENOENT);
	cr_assert(strstr(err.msg, "agent: start /x"), "%s", err.msg);
	agentc_close(c);
	fake_stop(&f);
}

Test(agent_client, reply_timeout)
{
	struct fake f;
	struct agentc *c = NULL;
	struct wisp_err err = { 0 };
	fake_start(&f, S_SILENT);
	cr_assert_eq(agentc_connect_unix(f.path, 200, &c, &err), 0, "%s", err.msg);
	cr_assert_eq(agentc_ping(c, NULL, 0, &err), -ETIMEDOUT);
	agentc_close(c); /* the fake's read returns 0 and it ends */
	fake_stop(&f);
}
