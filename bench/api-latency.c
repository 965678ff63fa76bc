/* API latency figures for wisp-vmm (no KVM needed; nothing here boots a VM).
 *
 *   api-latency VMM_BINARY [RUNS [BASELINE_BINARY]]
 *
 * 0. with BASELINE_BINARY (a static program that exits at once): fork, exec
 *    and wait for it, the host's own floor under figure 1.
 * 1. exec to API socket ready: fork, exec VMM --api-sock, connect() in a
 *    tight loop until it succeeds; also the VMM's CPU time from exec to its
 *    exit right after (SIGTERM once ready), from wait4's rusage.
 * 2. PUT round trip on one keep-alive connection (PUT /machine-config),
 *    GET / likewise, and PUT on a fresh connection per request.
 * Prints medians and 99th percentiles; asserts nothing. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void report(const char *what, double *v, int n, const char *unit, double scale)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_d);
	printf("%-44s median %8.1f %s   p99 %8.1f %s   (n=%d)\n", what, v[n / 2] / scale, unit,
	       v[(n * 99) / 100] / scale, unit, n);
}

static int try_connect(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static pid_t spawn(const char *vmm, const char *sock)
{
	pid_t pid = fork();
	if (pid == 0) {
		int nul = open("/dev/null", O_RDWR);
		dup2(nul, 0);
		dup2(nul, 1);
		dup2(nul, 2);
		execl(vmm, vmm, "--api-sock", sock, "--id", "bench", (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* Send one request, read one response (headers + Content-Length body). */
static int round_trip(int fd, const char *req, size_t len)
{
	char buf[4096];
	if (write(fd, req, len) != (ssize_t)len)
		return -1;
	size_t got = 0;
	for (;;) {
		ssize_t r = read(fd, buf + got, sizeof(buf) - 1 - got);
		if (r <= 0)
			return -1;
		got += (size_t)r;
		buf[got] = '\0';
		char *end = strstr(buf, "\r\n\r\n");
		if (!end)
			continue;
		size_t clen = 0;
		char *cl = strcasestr(buf, "Content-Length:");
		if (cl && cl < end)
			clen = strtoul(cl + 15, NULL, 10);
		if (got >= (size_t)(end + 4 - buf) + clen)
			return strncmp(buf, "HTTP/1.1 2", 10) == 0 ? 0 : -1;
	}
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s VMM_BINARY [RUNS]\n", argv[0]);
		return 2;
	}
	const char *vmm = argv[1];
	int runs = argc > 2 ? atoi(argv[2]) : 30;
	char dir[] = "/tmp/wisp-api-bench-XXXXXX";
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	char sock[128];
	if (argc > 3) {
		double *base = calloc((size_t)runs, sizeof(double));
		for (int i = 0; i < runs; i++) {
			double t0 = now_us();
			pid_t pid = fork();
			if (pid == 0) {
				execl(argv[3], argv[3], (char *)NULL);
				_exit(127);
			}
			waitpid(pid, NULL, 0);
			base[i] = now_us() - t0;
		}
		report("host floor: fork+exec+exit of a static no-op", base, runs, "ms", 1000);
		free(base);
	}
	double *ready = calloc((size_t)runs, sizeof(double));
	double *cpu = calloc((size_t)runs, sizeof(double));

	for (int i = 0; i < runs; i++) {
		snprintf(sock, sizeof(sock), "%s/api-%d.sock", dir, i);
		double t0 = now_us();
		pid_t pid = spawn(vmm, sock);
		int fd = -1;
		while ((fd = try_connect(sock)) < 0) {
			if (now_us() - t0 > 5e6) {
				fprintf(stderr, "api-latency: %s did not open its API socket in 5 s\n", vmm);
				kill(pid, SIGKILL);
				return 1;
			}
		}
		ready[i] = now_us() - t0;
		close(fd);
		kill(pid, SIGTERM);
		struct rusage ru;
		int st;
		wait4(pid, &st, 0, &ru);
		cpu[i] = ru.ru_utime.tv_sec * 1e6 + ru.ru_utime.tv_usec + ru.ru_stime.tv_sec * 1e6 +
			 ru.ru_stime.tv_usec;
		unlink(sock);
	}
	report("exec to API socket ready", ready, runs, "ms", 1000);
	report("VMM CPU time, exec to exit (SIGTERM at ready)", cpu, runs, "ms", 1000);

	snprintf(sock, sizeof(sock), "%s/api.sock", dir);
	pid_t pid = spawn(vmm, sock);
	int fd;
	double t0 = now_us();
	while ((fd = try_connect(sock)) < 0 && now_us() - t0 < 5e6)
		;
	if (fd < 0) {
		fprintf(stderr, "api-latency: no API socket\n");
		kill(pid, SIGKILL);
		return 1;
	}
	const char body[] = "{\"vcpu_count\": 1, \"mem_size_mib\": 128}";
	char put[512];
	int plen = snprintf(put, sizeof(put),
			    "PUT /machine-config HTTP/1.1\r\nHost: localhost\r\n"
			    "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
			    sizeof(body) - 1, body);
	const char get[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
	int n = runs * 50;
	double *lat = calloc((size_t)n, sizeof(double));
	for (int i = 0; i < n; i++) {
		double a = now_us();
		if (round_trip(fd, put, (size_t)plen) < 0) {
			fprintf(stderr, "api-latency: PUT failed\n");
			return 1;
		}
		lat[i] = now_us() - a;
	}
	report("PUT /machine-config round trip (keep-alive)", lat, n, "us", 1);
	for (int i = 0; i < n; i++) {
		double a = now_us();
		if (round_trip(fd, get, sizeof(get) - 1) < 0) {
			fprintf(stderr, "api-latency: GET failed\n");
			return 1;
		}
		lat[i] = now_us() - a;
	}
	report("GET / round trip (keep-alive)", lat, n, "us", 1);
	close(fd);
	char putc[512];
	int pclen = snprintf(putc, sizeof(putc),
			     "PUT /machine-config HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
			     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
			     sizeof(body) - 1, body);
	for (int i = 0; i < n; i++) {
		double a = now_us();
		int c = try_connect(sock);
		if (c < 0 || round_trip(c, putc, (size_t)pclen) < 0) {
			fprintf(stderr, "api-latency: PUT on a new connection failed\n");
			return 1;
		}
		lat[i] = now_us() - a;
		close(c);
	}
	report("PUT round trip, new connection each", lat, n, "us", 1);
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	rmdir(dir);
	return 0;
}
