/* What the agent does as the guest's init: mounts, console, hostname,
 * network, power off; and the RESTORED work (reseed, clock step). Every step
 * logs what failed and goes on: init never gives up. */
#include "agent.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/io.h"
#include "common/log.h"

int sys_cmdline_get(const char *path, const char *key, char *out, size_t outlen)
{
	_cleanup_free_ char *line = NULL;
	size_t len = 0;
	/* /proc/cmdline is not a regular file for wisp_read_file's size check */
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	line = calloc(1, 4097);
	if (!line)
		return -ENOMEM;
	ssize_t n = read(fd, line, 4096);
	if (n < 0)
		return -errno;
	len = strlen(key);
	for (char *tok = strtok(line, " \n"); tok; tok = strtok(NULL, " \n")) {
		if (!strncmp(tok, key, len) && tok[len] == '=') {
			if (strlen(tok + len + 1) >= outlen)
				return -ENAMETOOLONG;
			strcpy(out, tok + len + 1);
			return 0;
		}
	}
	return -ENOENT;
}

static void do_mount(const char *src, const char *dir, const char *type,
		     unsigned long flags, const char *data)
{
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		wlog_warn("mkdir %s: %s", dir, strerror(errno));
	if (mount(src, dir, type, flags, data) < 0 && errno != EBUSY)
		wlog_warn("mount %s on %s: %s", type, dir, strerror(errno));
}

/* The kernel opens /dev/console for init only if the root filesystem has the
 * node; after devtmpfs is mounted it always exists. */
static void open_console(void)
{
	if (fcntl(0, F_GETFD) >= 0 && fcntl(1, F_GETFD) >= 0 && fcntl(2, F_GETFD) >= 0)
		return;
	int fd = open("/dev/console", O_RDWR | O_NOCTTY);
	if (fd < 0)
		return;
	for (int i = 0; i < 3; i++)
		if (fcntl(i, F_GETFD) < 0)
			dup2(fd, i);
	if (fd > 2)
		close(fd);
}

static int if_up(int s, const char *name)
{
	struct ifreq ifr = { 0 };
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		return -errno;
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	return ioctl(s, SIOCSIFFLAGS, &ifr) < 0 ? -errno : 0;
}

static void set_sin(struct sockaddr *sa, in_addr_t addr)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = addr };
	memcpy(sa, &sin, sizeof(sin));
}

/* wisp.ip=ADDR/PREFIX[,GATEWAY] configures eth0. */
static void setup_eth0(int s, const char *cmdline)
{
	char val[128];
	if (sys_cmdline_get(cmdline, "wisp.ip", val, sizeof(val)) < 0)
		return;
	char *gw = strchr(val, ',');
	if (gw)
		*gw++ = '\0';
	char *slash = strchr(val, '/');
	unsigned prefix = 24;
	if (slash) {
		*slash = '\0';
		char *end;
		unsigned long p = strtoul(slash + 1, &end, 10);
		if (*end || p > 32) {
			wlog_error("wisp.ip: bad prefix \"%s\"", slash + 1);
			return;
		}
		prefix = (unsigned)p;
	}
	struct in_addr addr, gwaddr;
	if (inet_pton(AF_INET, val, &addr) != 1 || (gw && inet_pton(AF_INET, gw, &gwaddr) != 1)) {
		wlog_error("wisp.ip: bad address in \"%s\"", val);
		return;
	}
	struct ifreq ifr = { 0 };
	snprintf(ifr.ifr_name, IFNAMSIZ, "eth0");
	set_sin(&ifr.ifr_addr, addr.s_addr);
	if (ioctl(s, SIOCSIFADDR, &ifr) < 0) {
		wlog_error("eth0: set address: %s", strerror(errno));
		return;
	}
	uint32_t mask = prefix ? htonl(~0u << (32 - prefix)) : 0;
	set_sin(&ifr.ifr_netmask, mask);
	if (ioctl(s, SIOCSIFNETMASK, &ifr) < 0)
		wlog_error("eth0: set netmask: %s", strerror(errno));
	if (if_up(s, "eth0") < 0)
		wlog_error("eth0: up: %s", strerror(errno));
	if (gw) {
		struct rtentry rt = { 0 };
		set_sin(&rt.rt_dst, INADDR_ANY);
		set_sin(&rt.rt_genmask, INADDR_ANY);
		set_sin(&rt.rt_gateway, gwaddr.s_addr);
		rt.rt_flags = RTF_UP | RTF_GATEWAY;
		rt.rt_dev = ifr.ifr_name;
		if (ioctl(s, SIOCADDRT, &rt) < 0)
			wlog_error("eth0: default route via %s: %s", gw, strerror(errno));
	}
	wlog_info("eth0: %s/%u%s%s", val, prefix, gw ? " via " : "", gw ? gw : "");
}

void sys_init_pid1(const char *cmdline)
{
	umask(022);
	do_mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
	open_console();
	do_mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	do_mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	do_mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "mode=0620,ptmxmode=0666");
	do_mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
	do_mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
	do_mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");

	char host[65] = "wisp";
	if (sys_cmdline_get(cmdline, "wisp.hostname", host, sizeof(host)) < 0)
		strcpy(host, "wisp");
	if (sethostname(host, strlen(host)) < 0)
		wlog_warn("sethostname %s: %s", host, strerror(errno));

	_cleanup_close_ int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0) {
		wlog_warn("no IPv4 socket: %s", strerror(errno));
	} else {
		if (if_up(s, "lo") < 0)
			wlog_warn("loopback up: %s", strerror(errno));
		setup_eth0(s, cmdline);
	}
	/* Ctrl-Alt-Del becomes SIGINT to init, handled as a shutdown. */
	reboot(RB_DISABLE_CAD);
}

/* Ends the VM. wisp-vmm (like Firecracker) has no ACPI power button: the
 * guest's reboot through the i8042 reset line is what makes it exit
 * cleanly, so init "reboots" (the kernel falls back to the keyboard
 * controller without ACPI; reboot=k on the command line makes it the first
 * choice). */
void sys_shutdown_pid1(void)
{
	wlog_info("stopping all processes");
	kill(-1, SIGTERM);
	uint64_t end = wisp_now_ns() + 500000000ull;
	while (wisp_now_ns() < end) {
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		if (kill(-1, 0) < 0 && errno == ESRCH)
			break;
		usleep(10000);
	}
	kill(-1, SIGKILL);
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	sync();
	wlog_info("rebooting to end the microVM");
	reboot(RB_AUTOBOOT);
	for (;;) { /* reboot() does not return for init; if it did, stay up */
		while (waitpid(-1, NULL, 0) > 0)
			;
		pause();
	}
}

int sys_apply_restore(const struct wproto_msg *m, int apply, struct wproto_msg *ack,
		      struct wisp_err *err)
{
	uint32_t flags = 0;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	int64_t now_ns = (int64_t)now.tv_sec * 1000000000ll + now.tv_nsec;
	int64_t step = 0;
	if (WPROTO_HAS(m, WPROTO_T_ENTROPY) && m->entropy.len && apply) {
		struct {
			struct rand_pool_info info;
			uint8_t buf[WPROTO_MAX_ENTROPY];
		} req;
		req.info.entropy_count = (int)(m->entropy.len * 8);
		req.info.buf_size = (int)m->entropy.len;
		memcpy(req.buf, m->entropy.ptr, m->entropy.len);
		_cleanup_close_ int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			return wisp_err_sys(err, errno, "open /dev/urandom");
		if (ioctl(fd, RNDADDENTROPY, &req) < 0)
			return wisp_err_sys(err, errno, "RNDADDENTROPY");
		flags |= WPROTO_F_ENTROPY_ADDED;
	}
	if (WPROTO_HAS(m, WPROTO_T_REALTIME_NS)) {
		if (m->realtime_ns > (uint64_t)INT64_MAX)
			return wisp_err_set(err, EINVAL, "wall clock %llu ns is out of range",
					    (unsigned long long)m->realtime_ns);
		step = (int64_t)m->realtime_ns - now_ns;
		if (apply) {
			struct timespec ts = { .tv_sec = (time_t)(m->realtime_ns / 1000000000ull),
					       .tv_nsec = (long)(m->realtime_ns % 1000000000ull) };
			if (clock_settime(CLOCK_REALTIME, &ts) < 0)
				return wisp_err_sys(err, errno, "clock_settime");
			flags |= WPROTO_F_CLOCK_SET;
		}
	}
	clock_gettime(CLOCK_REALTIME, &now);
	ack->flags = flags;
	ack->realtime_ns = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
	ack->clock_step_ns = step;
	WPROTO_SET(ack, WPROTO_T_FLAGS);
	WPROTO_SET(ack, WPROTO_T_REALTIME_NS);
	WPROTO_SET(ack, WPROTO_T_CLOCK_STEP_NS);
	wlog_info("RESTORED: %u entropy bytes%s, clock step %lld ns%s", m->entropy.len,
		  (flags & WPROTO_F_ENTROPY_ADDED) ? " added" : " (not applied)",
		  (long long)step, (flags & WPROTO_F_CLOCK_SET) ? "" : " (not applied)");
	return 0;
}
