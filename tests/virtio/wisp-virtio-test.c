/* wisp-virtio-test: a guest-side helper for the virtio lane cases and
 * bench/virtio.sh (busybox has no AF_VSOCK and no random I/O tool). Static,
 * injected into a copy of the test rootfs.
 *
 *   wisp-virtio-test listen PORT          vsock echo server (a child per connection)
 *   wisp-virtio-test source PORT BYTES    vsock server writing BYTES to each connection
 *   wisp-virtio-test send CID PORT        stdin to a vsock connection, its replies to stdout
 *   wisp-virtio-test randio DEV SECONDS r|w   4 KiB O_DIRECT random I/O; prints "iops N"
 *
 * and one mode for the host side of a case (one process, so a burst of
 * connections is not a burst of process starts):
 *
 *   wisp-virtio-test hostecho UDS PORT N BYTES
 *        N connections at once through the VMM's hybrid vsock socket UDS
 *        ("CONNECT PORT"), each sending BYTES of its own pattern to a guest
 *        echo server and checking every byte that comes back; one line per
 *        connection, exit 0 when all N came back intact
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int die(const char *what)
{
	fprintf(stderr, "wisp-virtio-test: %s: %s\n", what, strerror(errno));
	return 1;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int vsock_listen(unsigned port)
{
	int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port };
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 128) < 0)
		return -1;
	return fd;
}

static void serve(int lfd, void (*fn)(int fd, long arg), long arg)
{
	signal(SIGCHLD, SIG_IGN); /* children reap themselves */
	for (;;) {
		int c = accept(lfd, NULL, NULL);
		if (c < 0) {
			if (errno == EINTR)
				continue;
			exit(die("accept"));
		}
		pid_t p = fork();
		if (p == 0) {
			close(lfd);
			fn(c, arg);
			_exit(0);
		}
		close(c);
	}
}

static void echo(int fd, long arg)
{
	(void)arg;
	char buf[65536];
	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r <= 0)
			break;
		if (write_all(fd, buf, (size_t)r) < 0)
			break;
	}
	shutdown(fd, SHUT_WR);
	close(fd);
}

static void source(int fd, long bytes)
{
	static char buf[65536];
	memset(buf, 'w', sizeof(buf));
	while (bytes > 0) {
		size_t k = bytes < (long)sizeof(buf) ? (size_t)bytes : sizeof(buf);
		if (write_all(fd, buf, k) < 0)
			break;
		bytes -= (long)k;
	}
	close(fd);
}

/* Full duplex: the socket is written only as far as it takes and read
 * whenever it has data, so an echo larger than every buffer on the way
 * cannot deadlock (a blocking write of stdin would stop the reads the
 * peer's replies wait for). connect() waits up to CONNECT_TIMEOUT_S, not
 * Linux's default 2 s: in the nested lane a guest busy starting 16 clients
 * can take longer than that to run its own receive path (the VMM, not this
 * guest's scheduler, is what the cases measure). */
#define CONNECT_TIMEOUT_S 30
static int send_cmd(unsigned cid, unsigned port)
{
	int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port };
	struct timeval tv = { .tv_sec = CONNECT_TIMEOUT_S };
	if (fd >= 0 && setsockopt(fd, AF_VSOCK, SO_VM_SOCKETS_CONNECT_TIMEOUT, &tv, sizeof(tv)) < 0)
		fprintf(stderr, "wisp-virtio-test: connect timeout: %s\n", strerror(errno));
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		return die("connect");
	if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0)
		return die("fcntl");
	static char in[65536], buf[65536];
	size_t in_len = 0, in_off = 0;
	int in_open = 1;
	struct pollfd p[2] = { { .fd = 0 }, { .fd = fd } };
	for (;;) {
		/* stdin is read only when what came before has gone out */
		p[0].fd = in_open && in_off == in_len ? 0 : -1;
		p[0].events = POLLIN;
		p[1].events = POLLIN | (in_off < in_len ? POLLOUT : 0);
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return die("poll");
		}
		if (p[0].fd >= 0 && (p[0].revents & (POLLIN | POLLHUP))) {
			ssize_t r = read(0, in, sizeof(in));
			if (r <= 0) {
				in_open = 0;
				shutdown(fd, SHUT_WR);
			} else {
				in_len = (size_t)r;
				in_off = 0;
			}
		}
		if (in_off < in_len && (p[1].revents & POLLOUT)) {
			ssize_t w = send(fd, in + in_off, in_len - in_off, MSG_NOSIGNAL);
			if (w < 0 && errno != EAGAIN && errno != EINTR)
				return die("write");
			if (w > 0)
				in_off += (size_t)w;
		}
		if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t r = read(fd, buf, sizeof(buf));
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (r < 0)
				return die("read");
			if (r == 0)
				return 0;
			if (write_all(1, buf, (size_t)r) < 0)
				return die("stdout");
		}
	}
}

/* byte k of connection i's stream */
static uint8_t pat(int i, uint64_t k)
{
	return (uint8_t)(k * 31u + (unsigned)i * 101u + (k >> 9));
}

struct hconn {
	int fd;
	char line[64];               /* what came before the first '\n' */
	size_t line_len, hdr_len;    /* hdr: "CONNECT PORT\n" */
	uint64_t sent, got, bad_at;  /* sent counts the header; bad_at: first wrong byte + 1 */
	int line_done, shut, eof, err;
};

static int host_echo(const char *uds, unsigned port, int n, uint64_t bytes)
{
	struct hconn *c = calloc((size_t)n, sizeof(*c));
	struct pollfd *p = calloc((size_t)n, sizeof(*p));
	if (!c || !p)
		return die("calloc");
	char hdr[32];
	int hl = snprintf(hdr, sizeof(hdr), "CONNECT %u\n", port);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", uds);
	for (int i = 0; i < n; i++) {
		c[i].fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (c[i].fd < 0 || connect(c[i].fd, (struct sockaddr *)&a, sizeof(a)) < 0)
			return die("connect");
		fcntl(c[i].fd, F_SETFL, O_NONBLOCK);
		c[i].hdr_len = (size_t)hl;
	}
	static uint8_t buf[65536];
	int open_n = n;
	time_t deadline = time(NULL) + 300;
	while (open_n > 0 && time(NULL) < deadline) {
		for (int i = 0; i < n; i++) {
			p[i].fd = c[i].eof ? -1 : c[i].fd;
			p[i].events = POLLIN | (c[i].shut ? 0 : POLLOUT);
		}
		if (poll(p, (nfds_t)n, 1000) < 0 && errno != EINTR)
			return die("poll");
		for (int i = 0; i < n; i++) {
			struct hconn *h = &c[i];
			if (h->eof)
				continue;
			if (!h->shut && (p[i].revents & POLLOUT)) {
				uint64_t total = h->hdr_len + bytes;
				size_t k = 0;
				for (; k < sizeof(buf) && h->sent + k < total; k++) {
					uint64_t at = h->sent + k;
					buf[k] = at < h->hdr_len ? (uint8_t)hdr[at] : pat(i, at - h->hdr_len);
				}
				ssize_t w = write(h->fd, buf, k);
				if (w > 0)
					h->sent += (uint64_t)w;
				else if (w < 0 && errno != EAGAIN) {
					h->err = errno;
					h->shut = 1;
				}
				if (h->sent == total) {
					shutdown(h->fd, SHUT_WR);
					h->shut = 1;
				}
			}
			if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			ssize_t r = read(h->fd, buf, sizeof(buf));
			if (r < 0 && errno == EAGAIN)
				continue;
			if (r <= 0) {
				if (r < 0)
					h->err = errno;
				h->eof = 1;
				open_n--;
				continue;
			}
			for (ssize_t k = 0; k < r; k++) {
				if (!h->line_done) {
					if (buf[k] == '\n')
						h->line_done = 1;
					else if (h->line_len < sizeof(h->line) - 1)
						h->line[h->line_len++] = (char)buf[k];
					continue;
				}
				if (!h->bad_at && (h->got >= bytes || buf[k] != pat(i, h->got)))
					h->bad_at = h->got + 1;
				h->got++;
			}
		}
	}
	int ok = 0;
	for (int i = 0; i < n; i++) {
		struct hconn *h = &c[i];
		int good = h->eof && !h->err && !h->bad_at && h->got == bytes &&
			   !strncmp(h->line, "OK ", 3);
		ok += good;
		printf("conn %d: %s line '%s' sent %llu got %llu%s%s", i, good ? "intact" : "FAIL",
		       h->line, (unsigned long long)(h->sent - (h->sent ? h->hdr_len : 0)),
		       (unsigned long long)h->got, h->eof ? "" : " (no EOF)",
		       h->err ? " error: " : "");
		if (h->bad_at)
			printf(" first wrong byte at %llu", (unsigned long long)(h->bad_at - 1));
		printf("%s\n", h->err ? strerror(h->err) : "");
		close(h->fd);
	}
	printf("hostecho: %d of %d intact\n", ok, n);
	free(c);
	free(p);
	return ok == n ? 0 : 1;
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int randio(const char *dev, double secs, int wr)
{
	int fd = open(dev, (wr ? O_RDWR : O_RDONLY) | O_DIRECT);
	if (fd < 0)
		return die(dev);
	off_t size = lseek(fd, 0, SEEK_END);
	if (size < 4096)
		return die("device size");
	void *buf;
	if (posix_memalign(&buf, 4096, 4096))
		return die("memalign");
	memset(buf, 0x5a, 4096);
	uint64_t blocks = (uint64_t)size / 4096, x = 88172645463325252ull, n = 0;
	double t0 = now_s(), t;
	do {
		for (int i = 0; i < 64; i++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			off_t off = (off_t)((x % blocks) * 4096);
			ssize_t r = wr ? pwrite(fd, buf, 4096, off) : pread(fd, buf, 4096, off);
			if (r != 4096)
				return die("random I/O");
			n++;
		}
		t = now_s() - t0;
	} while (t < secs);
	printf("iops %.0f\n", (double)n / t);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 3 && !strcmp(argv[1], "listen")) {
		int l = vsock_listen((unsigned)atoi(argv[2]));
		if (l < 0)
			return die("listen");
		serve(l, echo, 0);
	}
	if (argc >= 4 && !strcmp(argv[1], "source")) {
		int l = vsock_listen((unsigned)atoi(argv[2]));
		if (l < 0)
			return die("listen");
		serve(l, source, atol(argv[3]));
	}
	if (argc >= 4 && !strcmp(argv[1], "send"))
		return send_cmd((unsigned)atoi(argv[2]), (unsigned)atoi(argv[3]));
	if (argc >= 5 && !strcmp(argv[1], "randio"))
		return randio(argv[2], atof(argv[3]), argv[4][0] == 'w');
	if (argc >= 6 && !strcmp(argv[1], "hostecho"))
		return host_echo(argv[2], (unsigned)atoi(argv[3]), atoi(argv[4]),
				 strtoull(argv[5], NULL, 10));
	fprintf(stderr, "usage: wisp-virtio-test listen PORT | source PORT BYTES | send CID PORT |"
			" randio DEV SECONDS r|w | hostecho UDS PORT N BYTES\n");
	return 2;
}
