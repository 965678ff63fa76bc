/* wisp-virtio-test: a guest-side helper for the virtio lane cases and
 * bench/virtio.sh (busybox has no AF_VSOCK and no random I/O tool). Static,
 * injected into a copy of the test rootfs.
 *
 *   wisp-virtio-test listen PORT          vsock echo server (a child per connection)
 *   wisp-virtio-test source PORT BYTES    vsock server writing BYTES to each connection
 *   wisp-virtio-test send CID PORT        stdin to a vsock connection, its replies to stdout
 *   wisp-virtio-test randio DEV SECONDS r|w   4 KiB O_DIRECT random I/O; prints "iops N"
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

static int send_cmd(unsigned cid, unsigned port)
{
	int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port };
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		return die("connect");
	char buf[65536];
	int in_open = 1;
	struct pollfd p[2] = { { .fd = 0, .events = POLLIN }, { .fd = fd, .events = POLLIN } };
	for (;;) {
		p[0].fd = in_open ? 0 : -1;
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return die("poll");
		}
		if (in_open && (p[0].revents & (POLLIN | POLLHUP))) {
			ssize_t r = read(0, buf, sizeof(buf));
			if (r <= 0) {
				in_open = 0;
				shutdown(fd, SHUT_WR);
			} else if (write_all(fd, buf, (size_t)r) < 0) {
				return die("write");
			}
		}
		if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t r = read(fd, buf, sizeof(buf));
			if (r < 0)
				return die("read");
			if (r == 0)
				return 0;
			if (write_all(1, buf, (size_t)r) < 0)
				return die("stdout");
		}
	}
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
	fprintf(stderr, "usage: wisp-virtio-test listen PORT | source PORT BYTES | send CID PORT |"
			" randio DEV SECONDS r|w\n");
	return 2;
}
