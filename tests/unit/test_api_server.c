/* The API server in-process, without KVM: a real evhttp thread on a Unix
 * socket, a real VMM event loop thread, fake VM operations; well-behaved
 * and hostile clients over raw sockets. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "vmm/api.h"
#include "vmm/seccomp.h"

static int ok_op(void *ctx, struct wisp_err *err)
{
	(void)err;
	(*(int *)ctx)++;
	return 0;
}

static int ok_drive(void *ctx, const struct vmcfg_drive *d, const char *p,
		    const struct vmcfg_rate_limiter *rl, struct wisp_err *err)
{
	(void)d; (void)p; (void)rl; (void)err;
	(*(int *)ctx)++;
	return 0;
}

static int ok_net(void *ctx, const struct vmcfg_net *n, const struct vmcfg_rate_limiter *rx,
		  const struct vmcfg_rate_limiter *tx, struct wisp_err *err)
{
	(void)n; (void)rx; (void)tx; (void)err;
	(*(int *)ctx)++;
	return 0;
}

static const struct api_vmm_ops ops = {
	.start = ok_op, .pause = ok_op, .resume = ok_op, .ctrl_alt_del = ok_op,
	.drive_update = ok_drive, .net_update = ok_net,
};

static struct {
	char dir[64];
	char sock[128];
	struct evloop loop;
	pthread_t loop_thread;
	struct vm_config cfg;
	struct api_ctl ctl;
	struct api_server *srv;
	int calls;
} S;

static void *loop_main(void *arg)
{
	(void)arg;
	evloop_run(&S.loop);
	return NULL;
}

static void setup(void)
{
	struct wisp_err e = { 0 };
	memset(&S, 0, sizeof(S));
	/* The server's logic here; its filter is tested on the real binary
	 * (tests/host/suite-api.sh, suite-jailer.sh). */
	seccomp_configure(false, SECCOMP_SELFTEST_NONE);
	snprintf(S.dir, sizeof(S.dir), "/tmp/wisp-apisrv-XXXXXX");
	cr_assert_not_null(mkdtemp(S.dir));
	snprintf(S.sock, sizeof(S.sock), "%s/api.sock", S.dir);
	cr_assert_eq(evloop_init(&S.loop, &e), 0, "%s", e.msg);
	cr_assert_eq(pthread_create(&S.loop_thread, NULL, loop_main, NULL), 0);
	vmcfg_init(&S.cfg);
	api_ctl_init(&S.ctl, &S.cfg, "srv-test", &ops, &S.calls);
	cr_assert_eq(api_server_start(&S.srv, S.sock, &S.ctl, &S.loop, &e), 0, "%s", e.msg);
}

static void teardown(void)
{
	evloop_stop(&S.loop, 0);
	pthread_join(S.loop_thread, NULL);
	api_server_stop(S.srv);
	struct stat st;
	cr_expect_neq(stat(S.sock, &st), 0, "the socket path is removed on stop");
	evloop_destroy(&S.loop);
	vmcfg_free(&S.cfg);
	rmdir(S.dir);
}

static int connect_api(void)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", S.sock);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0, "connect: %s",
		     strerror(errno));
	return fd;
}

/* Read until the peer closes or timeout_ms passes; returns bytes read. */
static size_t read_all(int fd, char *buf, size_t cap, int timeout_ms)
{
	size_t n = 0;
	while (n + 1 < cap) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, timeout_ms) <= 0)
			break;
		ssize_t r = read(fd, buf + n, cap - 1 - n);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	buf[n] = '\0';
	return n;
}

/* One request on a fresh connection ("Connection: close"); the response. */
static char *http(const char *method, const char *path, const char *body)
{
	static char resp[65536];
	char head[512];
	int fd = connect_api();
	int n = snprintf(head, sizeof(head),
			 "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
			 "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
			 method, path, body ? strlen(body) : 0);
	cr_assert_eq(write(fd, head, (size_t)n), n);
	if (body)
		cr_assert_eq(write(fd, body, strlen(body)), (ssize_t)strlen(body));
	read_all(fd, resp, sizeof(resp), 5000);
	close(fd);
	return resp;
}

static int status_of(const char *resp)
{
	int st = 0;
	sscanf(resp, "HTTP/1.1 %d", &st);
	return st;
}

TestSuite(api_server, .init = setup, .fini = teardown, .timeout = 60);

Test(api_server, serves_endpoints)
{
	char *r = http("GET", "/", NULL);
	cr_assert_eq(status_of(r), 200, "%s", r);
	cr_assert(strstr(r, "\"state\":\"Not started\""), "%s", r);
	cr_assert(strstr(r, "application/json"), "%s", r);
	r = http("PUT", "/machine-config", "{\"vcpu_count\": 2, \"mem_size_mib\": 64}");
	cr_assert_eq(status_of(r), 204, "%s", r);
	r = http("GET", "/machine-config", NULL);
	cr_assert(strstr(r, "\"vcpu_count\":2"), "%s", r);
	r = http("PUT", "/machine-config", "{\"vcpu_count\": 99, \"mem_size_mib\": 64}");
	cr_assert_eq(status_of(r), 400, "%s", r);
	cr_assert(strstr(r, "{\"fault_message\":\"machine-config.vcpu_count: must be between 1 and 32\"}"),
		  "%s", r);
	r = http("DELETE", "/machine-config", NULL);
	cr_assert_eq(status_of(r), 400, "%s", r);
	cr_assert(strstr(r, "fault_message"), "%s", r);
	r = http("GET", "/no/such/path", NULL);
	cr_assert_eq(status_of(r), 400, "%s", r);
	/* A query string does not change the route. */
	r = http("GET", "/version?x=1", NULL);
	cr_assert_eq(status_of(r), 200, "%s", r);
	cr_assert(strstr(r, "firecracker_version"), "%s", r);
}

Test(api_server, keep_alive_connection)
{
	int fd = connect_api();
	char buf[8192];
	const char *two = "GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /version HTTP/1.1\r\nHost: x\r\n\r\n";
	cr_assert_eq(write(fd, two, strlen(two)), (ssize_t)strlen(two));
	size_t n = 0;
	for (int i = 0; i < 50 && !strstr(buf, "firecracker_version"); i++) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 100) > 0) {
			ssize_t r = read(fd, buf + n, sizeof(buf) - 1 - n);
			if (r <= 0)
				break;
			n += (size_t)r;
		}
		buf[n] = '\0';
	}
	cr_assert(strstr(buf, "Not started") && strstr(buf, "firecracker_version"), "%s", buf);
	close(fd);
}

/* HEAD is refused like any unserved method, with the header fields a GET
 * would get and no content: the next response on the connection starts
 * right after the header block. */
Test(api_server, head_gets_header_fields_only)
{
	int fd = connect_api();
	char buf[8192];
	const char *two = "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
			  "GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	cr_assert_eq(write(fd, two, strlen(two)), (ssize_t)strlen(two));
	read_all(fd, buf, sizeof(buf), 5000);
	close(fd);
	cr_assert_eq(status_of(buf), 400, "%s", buf);
	char *end = strstr(buf, "\r\n\r\n");
	cr_assert_not_null(end, "%s", buf);
	*end = '\0';
	cr_assert(strstr(buf, "\r\nContent-Type: application/json\r\n"), "%s", buf);
	const char *cl = strstr(buf, "\r\nContent-Length: ");
	size_t clen = 0;
	cr_assert(cl && sscanf(cl, "\r\nContent-Length: %zu", &clen) == 1 && clen > 0,
		  "the length of the fault a GET would carry: %s", buf);
	cr_assert_null(strstr(buf, "Connection: close"), "%s", buf);
	const char *next = end + 4;
	cr_assert_eq(status_of(next), 200, "no content after HEAD's header block: %s", next);
	cr_assert(strstr(next, "firecracker_version"), "%s", next);
}

Test(api_server, refuses_existing_socket_path)
{
	struct api_server *other = NULL;
	struct wisp_err e = { 0 };
	cr_assert_eq(api_server_start(&other, S.sock, &S.ctl, &S.loop, &e), -EEXIST);
	cr_assert(strstr(e.msg, "already exists"), "%s", e.msg);
	/* The first server is untouched. */
	cr_assert_eq(status_of(http("GET", "/", NULL)), 200);
}

Test(api_server, hostile_clients)
{
	char buf[4096];
	/* Garbage bytes. */
	int fd = connect_api();
	const char junk[] = "\x01\x02\xff\xfe garbage \r\n\r\n";
	cr_assert_eq(write(fd, junk, sizeof(junk) - 1), (ssize_t)sizeof(junk) - 1);
	read_all(fd, buf, sizeof(buf), 3000);
	close(fd);
	cr_assert_eq(status_of(http("GET", "/", NULL)), 200);

	/* A partial request, then the client goes away. */
	fd = connect_api();
	const char part[] = "PUT /machine-config HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"vcpu";
	cr_assert_eq(write(fd, part, sizeof(part) - 1), (ssize_t)sizeof(part) - 1);
	close(fd);
	cr_assert_eq(status_of(http("GET", "/", NULL)), 200);

	/* An oversized body is refused before it is read: 400 as Firecracker. */
	fd = connect_api();
	const char big[] = "PUT /boot-source HTTP/1.1\r\nContent-Length: 10000000\r\n\r\n{";
	cr_assert_eq(write(fd, big, sizeof(big) - 1), (ssize_t)sizeof(big) - 1);
	read_all(fd, buf, sizeof(buf), 3000);
	close(fd);
	cr_assert_eq(status_of(buf), 400, "%s", buf);
	cr_assert(strstr(buf, "larger than the limit of 51200 bytes"), "%s", buf);

	/* A header flood. */
	fd = connect_api();
	char hdr[API_MAX_HEADERS * 2];
	memset(hdr, 'a', sizeof(hdr));
	memcpy(hdr, "GET / HTTP/1.1\r\nX: ", 19);
	ssize_t w = write(fd, hdr, sizeof(hdr));
	cr_assert_gt(w, 0);
	read_all(fd, buf, sizeof(buf), 3000);
	close(fd);
	cr_assert_eq(status_of(http("GET", "/", NULL)), 200);
	cr_assert_eq(S.cfg.machine.vcpu_count, 1, "nothing hostile changed the configuration");
}

Test(api_server, too_many_connections)
{
	int idle[API_MAX_CONNS + 8];
	for (size_t i = 0; i < WISP_ARRAY_SIZE(idle); i++)
		idle[i] = connect_api();        /* the backlog takes the excess */
	usleep(200 * 1000);
	/* The slots are full: a new client waits in the backlog... */
	int fd = connect_api();
	const char *get = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	cr_assert_eq(write(fd, get, strlen(get)), (ssize_t)strlen(get));
	/* ... and is served as soon as the idle ones go away. */
	for (size_t i = 0; i < WISP_ARRAY_SIZE(idle); i++)
		close(idle[i]);
	char buf[4096];
	read_all(fd, buf, sizeof(buf), 5000);
	close(fd);
	cr_assert_eq(status_of(buf), 200, "%s", buf);
}

Test(api_server, slow_client_is_cut_off)
{
	/* Half a request and silence: the server closes it after the deadline. */
	int fd = connect_api();
	const char part[] = "GET / HTTP/1.1\r\n";
	cr_assert_eq(write(fd, part, sizeof(part) - 1), (ssize_t)sizeof(part) - 1);
	/* Meanwhile others are served. */
	cr_assert_eq(status_of(http("GET", "/", NULL)), 200);
	char buf[256];
	struct pollfd p = { .fd = fd, .events = POLLIN };
	cr_assert_eq(poll(&p, 1, (API_CONN_DEADLINE + 5) * 1000), 1, "not closed");
	cr_assert_leq(read(fd, buf, sizeof(buf)), 0);
	close(fd);
}

/* The response's body parsed as JSON: an object whose only member is a
 * non-empty fault_message string. */
static void assert_fault(const char *resp, int status, const char *text)
{
	cr_assert_eq(status_of(resp), status, "%s", resp);
	cr_assert(strstr(resp, "\r\nContent-Type: application/json\r\n"), "%s", resp);
	const char *body = strstr(resp, "\r\n\r\n");
	cr_assert_not_null(body, "%s", resp);
	json_error_t je;
	json_t *doc = json_loads(body + 4, 0, &je);
	cr_assert_not_null(doc, "not JSON (%s): %s", je.text, resp);
	const char *fm = json_string_value(json_object_get(doc, "fault_message"));
	cr_assert(fm && fm[0] && json_object_size(doc) == 1, "%s", resp);
	if (text)
		cr_assert(strstr(fm, text), "'%s' lacks '%s'", fm, text);
	json_decref(doc);
}

/* Raw bytes on a fresh connection; the whole answer (the server closes). */
static char *raw(const char *req, size_t len)
{
	static char resp[16384];
	int fd = connect_api();
	cr_assert_eq(write(fd, req, len), (ssize_t)len);
	read_all(fd, resp, sizeof(resp), 5000);
	close(fd);
	return resp;
}

Test(api_server, http_fault_text)
{
	char buf[512];
	static const struct { int in, out; const char *text; } cases[] = {
		{ 400, 400, "Invalid HTTP request" },
		{ 413, 400, "larger than the limit of 51200 bytes" },
		{ 501, 400, "Invalid request method" },
		{ 0, 400, "Invalid HTTP request" },
		{ 503, 503, "Invalid HTTP request" },
	};
	for (size_t i = 0; i < WISP_ARRAY_SIZE(cases); i++) {
		size_t n = api_http_fault(cases[i].in, buf, sizeof(buf));
		cr_assert_gt(n, 0);
		cr_assert_eq(n, strlen(buf));
		assert_fault(buf, cases[i].out, cases[i].text);
		cr_assert(strstr(buf, "\r\nConnection: close\r\n"), "%s", buf);
		size_t clen = 0;
		cr_assert_eq(sscanf(strstr(buf, "Content-Length: "), "Content-Length: %zu", &clen), 1);
		cr_assert_eq(clen, strlen(strstr(buf, "\r\n\r\n") + 4), "%s", buf);
	}
	cr_assert_eq(api_http_fault(400, buf, 16), 0, "a short buffer is refused");
}

/* What evhttp refuses itself answers JSON too, never its HTML page. */
Test(api_server, malformed_requests_get_json)
{
	static const struct { const char *req, *text; } cases[] = {
		{ "\x01\x02\xff\xfe garbage \r\n\r\n", "Invalid HTTP request" },
		{ "GET\r\n\r\n", "Invalid HTTP request" },
		{ "GET / HTTP/9.1\r\nHost: x\r\n\r\n", "Invalid HTTP request" },
		{ "GET / HTTP/1.1\r\nNoColonHere\r\n\r\n", "Invalid HTTP request" },
		{ "PUT /boot-source HTTP/1.1\r\nContent-Length: abc\r\n\r\n", "Invalid HTTP request" },
		{ "PUT /boot-source HTTP/1.1\r\nContent-Length: -5\r\n\r\n", "Invalid HTTP request" },
		{ "BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n", "Invalid request method" },
		{ "BREW /pot HTTP/1.0\r\n\r\n", "Invalid request method" },
		{ "TRACE / HTTP/1.1\r\nHost: x\r\n\r\n", "Invalid request method for /" },
		{ "CONNECT / HTTP/1.1\r\nHost: x\r\n\r\n", "Invalid request method for /" },
		{ "PUT /boot-source HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		  "chunked encoding is malformed" },
		{ "PUT /boot-source HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 51201\r\n\r\n",
		  "larger than the limit" },
	};
	for (size_t i = 0; i < WISP_ARRAY_SIZE(cases); i++) {
		char *r = raw(cases[i].req, strlen(cases[i].req));
		assert_fault(r, 400, cases[i].text);
		cr_assert_null(strstr(r, "<HTML>"), "%s", r);
	}
	/* A header block over the limit. */
	char hdr[API_MAX_HEADERS * 2];
	memset(hdr, 'a', sizeof(hdr));
	memcpy(hdr, "GET / HTTP/1.1\r\nX: ", 19);
	memcpy(hdr + sizeof(hdr) - 4, "\r\n\r\n", 4);
	assert_fault(raw(hdr, sizeof(hdr)), 400, "Invalid HTTP request");
	cr_assert_eq(status_of(http("GET", "/", NULL)), 200);
}

/* A connection that was already served (its output buffer has been
 * written, which freezes its start) still gets JSON for a bad request. */
Test(api_server, malformed_request_after_a_served_one)
{
	int fd = connect_api();
	char buf[8192];
	const char *get = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	cr_assert_eq(write(fd, get, strlen(get)), (ssize_t)strlen(get));
	size_t n = 0;
	while (n < sizeof(buf) - 1 && !strstr(buf, "Not started\"")) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		cr_assert_eq(poll(&p, 1, 5000), 1);
		ssize_t r = read(fd, buf + n, sizeof(buf) - 1 - n);
		cr_assert_gt(r, 0);
		n += (size_t)r;
		buf[n] = '\0';
	}
	cr_assert_eq(status_of(buf), 200, "%s", buf);
	const char *brew = "BREW / HTTP/1.1\r\nHost: x\r\n\r\n";
	cr_assert_eq(write(fd, brew, strlen(brew)), (ssize_t)strlen(brew));
	read_all(fd, buf, sizeof(buf), 5000);
	close(fd);
	assert_fault(buf, 400, "Invalid request method");
	cr_assert_null(strstr(buf, "HTML"), "%s", buf);
}
