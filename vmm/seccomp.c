/* Seccomp allow-lists as data: one table of syscalls and one of ioctl
 * request numbers per thread kind, every entry with the reason it is there.
 * Anything else traps (SIGSYS): the handler names the syscall and the
 * process exits with 148.
 *
 * Argument filters where it matters:
 *   ioctl        only the listed request numbers (lower 32 bits, as the
 *                kernel reads them)
 *   mmap,
 *   mprotect     never PROT_EXEC: no new executable memory
 *   socket       AF_UNIX only (vsock's host side and nothing else)
 *   clone        only with CLONE_THREAD (threads, never processes); clone3
 *                fails with ENOSYS so glibc falls back to clone, whose flags
 *                a filter can read
 * Not on any list: execve, execveat, fork, vfork, ptrace, mount, setns,
 * unshare, chroot, kexec, bpf, init/finit_module, process_vm_*, keyctl, ... */
#include "seccomp.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

struct sc_rule {
	int nr;                         /* SCMP_SYS(name) */
	unsigned int nargs;             /* 0: any arguments */
	struct scmp_arg_cmp arg[1];
};

#define ALLOW(name) { SCMP_SYS(name), 0, { { 0 } } }
/* argument n masked with m equals v */
#define ALLOW_MASKED(name, n, m, v) \
	{ SCMP_SYS(name), 1, { { .arg = (n), .op = SCMP_CMP_MASKED_EQ, .datum_a = (m), .datum_b = (v) } } }
#define ALLOW_EQ(name, n, v) \
	{ SCMP_SYS(name), 1, { { .arg = (n), .op = SCMP_CMP_EQ, .datum_a = (v) } } }

/* What every thread needs: memory, locks, time, logging, signals, exit. */
#define COMMON_RULES \
	ALLOW(read),            /* eventfds, timerfds, sockets, tap */ \
	ALLOW(write),           /* log lines, eventfd signals, serial output */ \
	ALLOW(readv),           /* tap frames, socket buffers */ \
	ALLOW(writev),          /* tap frames, socket buffers */ \
	ALLOW(close),           /* connections and files a thread is done with */ \
	ALLOW(lseek),           /* file backends */ \
	ALLOW(fstat),           /* glibc stdio, file sizes */ \
	ALLOW(newfstatat),      /* glibc's fstat is fstatat(fd, "", AT_EMPTY_PATH) */ \
	ALLOW(fcntl),           /* O_NONBLOCK / FD_CLOEXEC on accepted fds */ \
	ALLOW(futex),           /* pthread mutexes and condition variables */ \
	ALLOW(brk),             /* malloc */ \
	ALLOW_MASKED(mmap, 2, PROT_EXEC, 0),     /* malloc, snapshot memory; never executable */ \
	ALLOW_MASKED(mprotect, 2, PROT_EXEC, 0), /* guard pages; never executable */ \
	ALLOW(munmap),          /* malloc, snapshot memory */ \
	ALLOW(mremap),          /* realloc of large buffers */ \
	ALLOW(madvise),         /* malloc trimming, guest memory hints */ \
	ALLOW(clock_gettime),   /* log timestamps, metrics (when the vDSO is not used) */ \
	ALLOW(gettimeofday),    /* libevent's clock when the vDSO cannot serve it (nested KVM) */ \
	ALLOW(time),            /* evhttp's Date header (when the vDSO is not used) */ \
	ALLOW(clock_getres),    /* libevent probes its monotonic clock */ \
	ALLOW(clock_nanosleep), /* short waits */ \
	ALLOW(nanosleep),       /* short waits */ \
	ALLOW(sched_yield),     /* spin-then-sleep locks */ \
	ALLOW(getrandom),       /* glibc's malloc and hash seeds */ \
	ALLOW(gettid),          /* thread names in the log */ \
	ALLOW(getpid),          /* pthread_kill */ \
	ALLOW(tgkill),          /* kicking a vCPU out of KVM_RUN, abort() */ \
	ALLOW(rt_sigprocmask),  /* signal masks around waits */ \
	ALLOW(rt_sigaction),    /* abort() resets SIGABRT */ \
	ALLOW(rt_sigreturn),    /* return from the vCPU kick and SIGSYS handlers */ \
	ALLOW(restart_syscall), /* an interrupted sleep restarting */ \
	ALLOW(sigaltstack),     /* thread start and exit in sanitizer builds */ \
	ALLOW(exit),            /* a thread ending */ \
	ALLOW(exit_group)       /* the VMM ending */

/* The VMM thread: epoll loop, device backends (tap, block file, vsock Unix
 * sockets), interrupts (irqfd, KVM_IRQ_LINE), pause/resume, snapshots. */
static const struct sc_rule vmm_rules[] = {
	COMMON_RULES,
	ALLOW(epoll_wait),      /* the event loop */
	ALLOW(epoll_pwait),     /* the event loop (glibc may use it) */
	ALLOW(epoll_ctl),       /* sockets and timers come and go */
	ALLOW(timerfd_settime), /* rate limiters, device timers */
	ALLOW(timerfd_gettime), /* rate limiters */
	ALLOW(pread64),         /* virtio-blk reads, snapshot files */
	ALLOW(pwrite64),        /* virtio-blk writes, snapshot files */
	ALLOW(preadv),          /* virtio-blk scatter reads */
	ALLOW(pwritev),         /* virtio-blk gather writes */
	ALLOW(preadv2),         /* virtio-blk scatter reads */
	ALLOW(pwritev2),        /* virtio-blk gather writes */
	ALLOW(fsync),           /* virtio-blk flush, snapshot files */
	ALLOW(fdatasync),       /* virtio-blk flush */
	ALLOW(fallocate),       /* virtio-blk discard/write-zeroes, sparse snapshots */
	ALLOW(ftruncate),       /* snapshot memory file size */
	ALLOW(msync),           /* snapshot of shared guest memory */
	ALLOW(mincore),         /* sparse memory snapshots skip absent pages */
	ALLOW(openat),          /* snapshot files, logger and metrics files, in the jail */
	ALLOW(access),          /* checking a path named in a request */
	ALLOW(faccessat),       /* checking a path named in a request */
	ALLOW(faccessat2),      /* checking a path named in a request */
	ALLOW(timerfd_create),  /* metrics flushing configured through the API */
	ALLOW(rename),          /* snapshot files replaced atomically */
	ALLOW(renameat),        /* snapshot files replaced atomically */
	ALLOW(renameat2),       /* snapshot files replaced atomically */
	ALLOW(unlink),          /* a failed snapshot's temporary file */
	ALLOW(unlinkat),        /* a failed snapshot's temporary file */
	ALLOW_EQ(socket, 0, AF_UNIX), /* vsock: guest connections to <uds>_<port> */
	ALLOW(connect),         /* vsock: guest connections to <uds>_<port> */
	ALLOW(accept4),         /* vsock: host connections on the device socket */
	ALLOW(recvfrom),        /* vsock streams */
	ALLOW(sendto),          /* vsock streams */
	ALLOW(recvmsg),         /* vsock streams */
	ALLOW(sendmsg),         /* vsock streams */
	ALLOW(shutdown),        /* vsock half-close */
	ALLOW(getsockopt),      /* SO_ERROR after a non-blocking connect */
	ALLOW_MASKED(clone, 0, CLONE_THREAD, CLONE_THREAD), /* threads only, never processes */
	ALLOW(set_robust_list), /* a new thread's first call */
	ALLOW(rseq),            /* a new thread's first call */
	ALLOW(sched_getaffinity), /* a new thread's setup (pthread_getattr_np, sanitizers) */
};

/* The API thread: libevent's evhttp on the Unix socket; requests become
 * actions run on the VMM thread (evloop_call), so no KVM here. */
static const struct sc_rule api_rules[] = {
	COMMON_RULES,
	ALLOW(epoll_wait),      /* libevent's epoll backend */
	ALLOW(epoll_pwait),     /* libevent's epoll backend */
	ALLOW(epoll_ctl),       /* connections come and go */
	ALLOW(timerfd_settime), /* libevent's precise timers */
	ALLOW(accept4),         /* API connections */
	ALLOW(recvfrom),        /* requests */
	ALLOW(sendto),          /* responses */
	ALLOW(recvmsg),         /* requests */
	ALLOW(sendmsg),         /* responses */
	ALLOW(shutdown),        /* closing a connection */
	ALLOW(getsockname),     /* evhttp's connection bookkeeping */
	ALLOW(getpeername),     /* evhttp's connection bookkeeping */
	ALLOW(getsockopt),      /* libevent socket errors */
	ALLOW(setsockopt),      /* libevent socket options on accepted fds */
	ALLOW(uname),           /* getnameinfo for a Unix socket peer */
	ALLOW(openat),          /* PUT /logger, /metrics: open the named file */
	ALLOW(access),          /* PUT /drives: the backing file is usable */
	ALLOW(faccessat),       /* PUT /drives: the backing file is usable */
	ALLOW(faccessat2),      /* PUT /drives: the backing file is usable */
};

/* A vCPU thread: KVM_RUN and the device registers it reaches from an exit,
 * its own state for pause and snapshots, nothing slow. */
static const struct sc_rule vcpu_rules[] = {
	COMMON_RULES,
	ALLOW(rt_sigtimedwait), /* waiting for a kick while paused */
	ALLOW(epoll_ctl),       /* a device reset (guest status write) drops its sockets */
	ALLOW(shutdown),        /* a vsock reset closing its connections */
	ALLOW(timerfd_settime), /* device timers re-armed from a register write */
};

/* ioctl request numbers per kind. */
static const unsigned long vmm_ioctls[] = {
	KVM_IRQFD,              /* device interrupts */
	KVM_IOEVENTFD,          /* queue notifications */
	KVM_IRQ_LINE,           /* level interrupts (serial, i8042) */
	KVM_SET_USER_MEMORY_REGION, /* dirty logging on/off for diff snapshots */
	KVM_GET_DIRTY_LOG,      /* diff snapshots */
	KVM_CHECK_EXTENSION,    /* snapshot: what the host KVM can save */
	KVM_GET_MSR_INDEX_LIST, /* snapshot: MSRs to save */
	KVM_GET_CLOCK, KVM_SET_CLOCK,           /* snapshot: kvmclock */
	KVM_GET_IRQCHIP, KVM_SET_IRQCHIP,       /* snapshot: PIC, IOAPIC */
	KVM_GET_PIT2, KVM_SET_PIT2,             /* snapshot: PIT */
	/* vCPU state, when a snapshot is taken from the VMM thread while the
	 * vCPUs are paused */
	KVM_GET_REGS, KVM_GET_SREGS, KVM_GET_FPU, KVM_GET_MSRS, KVM_GET_LAPIC,
	KVM_GET_XSAVE, KVM_GET_XCRS, KVM_GET_VCPU_EVENTS, KVM_GET_DEBUGREGS,
	KVM_GET_MP_STATE, KVM_GET_TSC_KHZ, KVM_KVMCLOCK_CTRL,
	KVM_GET_CPUID2,         /* snapshot: the CPUID the guest sees */
	TUNSETOFFLOAD,          /* virtio-net feature negotiation (offloads) */
	TUNSETVNETHDRSZ,        /* virtio-net header size after negotiation */
	FIONBIO,                /* non-blocking sockets */
	TCGETS, TCSETS,         /* the console's terminal mode, restored at exit */
};

static const unsigned long api_ioctls[] = {
	FIONREAD,               /* libevent: bytes waiting on a connection */
	FIONBIO,                /* non-blocking accepted sockets */
};

static const unsigned long vcpu_ioctls[] = {
	KVM_RUN,                /* the point of the thread */
	KVM_IRQ_LINE,           /* a device raising a level interrupt from an exit */
	KVM_GET_REGS, KVM_SET_REGS,             /* boot state, pause, snapshots */
	KVM_GET_SREGS, KVM_SET_SREGS,
	KVM_GET_FPU, KVM_SET_FPU,
	KVM_GET_MSRS, KVM_SET_MSRS,
	KVM_GET_LAPIC, KVM_SET_LAPIC,
	KVM_GET_XSAVE, KVM_SET_XSAVE,
	KVM_GET_XCRS, KVM_SET_XCRS,
	KVM_GET_VCPU_EVENTS, KVM_SET_VCPU_EVENTS,
	KVM_GET_DEBUGREGS, KVM_SET_DEBUGREGS,
	KVM_GET_MP_STATE, KVM_SET_MP_STATE,
	KVM_GET_TSC_KHZ, KVM_SET_TSC_KHZ,
	KVM_KVMCLOCK_CTRL,      /* tell the guest it was paused */
	KVM_CHECK_EXTENSION,    /* snapshot: what the host KVM can save */
	TUNSETOFFLOAD,          /* virtio-net DRIVER_OK (a register write) sets offloads */
};

static const struct {
	const char *name;
	const struct sc_rule *rules;
	int nr_rules;
	const unsigned long *ioctls;
	int nr_ioctls;
} kinds[SECCOMP_KIND_COUNT] = {
	[SECCOMP_VMM] = { "vmm", vmm_rules, (int)(sizeof(vmm_rules) / sizeof(vmm_rules[0])),
			  vmm_ioctls, (int)(sizeof(vmm_ioctls) / sizeof(vmm_ioctls[0])) },
	[SECCOMP_API] = { "api", api_rules, (int)(sizeof(api_rules) / sizeof(api_rules[0])),
			  api_ioctls, (int)(sizeof(api_ioctls) / sizeof(api_ioctls[0])) },
	[SECCOMP_VCPU] = { "vcpu", vcpu_rules, (int)(sizeof(vcpu_rules) / sizeof(vcpu_rules[0])),
			   vcpu_ioctls, (int)(sizeof(vcpu_ioctls) / sizeof(vcpu_ioctls[0])) },
};

/* Process-wide: set by main before threads start (seccomp_configure), read
 * by the SIGSYS handler, which may use nothing but async-signal-safe calls;
 * hence the names are resolved ahead, once. */
#define SC_NAMES_MAX 512
static struct {
	bool enabled;
	int selftest;
	pthread_once_t once;
	const char *names[SC_NAMES_MAX];
} sc = { .enabled = true, .selftest = SECCOMP_SELFTEST_NONE, .once = PTHREAD_ONCE_INIT };

/* A thread created by a filtered one runs its creator's filter without a
 * name of its own. */
static __thread const char *sc_thread_kind = "(inherited filter)";

/* Some thread of the process runs a filter (set once, never cleared). */
static atomic_bool sc_loaded;

#if defined(__SANITIZE_ADDRESS__)
/* LeakSanitizer's check at exit stops the world with prctl, ptrace and
 * /proc reads, which no filter allows: it would end every sanitizer run
 * under seccomp with 148. This hook of the sanitizer runtime skips that
 * check once a filter is loaded; --no-seccomp runs keep it. */
int __lsan_is_turned_off(void);
int __lsan_is_turned_off(void)
{
	return atomic_load(&sc_loaded);
}
#endif

void seccomp_configure(bool enabled, int selftest)
{
	sc.enabled = enabled;
	sc.selftest = selftest;
}

int seccomp_kind_parse(const char *s, enum seccomp_thread_kind *out)
{
	for (int k = 0; k < SECCOMP_KIND_COUNT; k++) {
		if (strcmp(s, kinds[k].name) == 0) {
			*out = (enum seccomp_thread_kind)k;
			return 0;
		}
	}
	return -EINVAL;
}

const char *seccomp_kind_name(enum seccomp_thread_kind kind)
{
	return (unsigned)kind < SECCOMP_KIND_COUNT ? kinds[kind].name : "?";
}

int seccomp_rule_count(enum seccomp_thread_kind kind)
{
	if ((unsigned)kind >= SECCOMP_KIND_COUNT)
		return -EINVAL;
	return kinds[kind].nr_rules + kinds[kind].nr_ioctls;
}

static size_t sc_append(char *buf, size_t at, size_t cap, const char *s)
{
	while (*s && at + 1 < cap)
		buf[at++] = *s++;
	return at;
}

static size_t sc_append_num(char *buf, size_t at, size_t cap, long v)
{
	char tmp[24];
	int n = 0;
	unsigned long u = v < 0 ? (unsigned long)-v : (unsigned long)v;
	do
		tmp[n++] = (char)('0' + u % 10);
	while ((u /= 10) && n < (int)sizeof(tmp));
	if (v < 0 && at + 1 < cap)
		buf[at++] = '-';
	while (n > 0 && at + 1 < cap)
		buf[at++] = tmp[--n];
	return at;
}

/* Async-signal-safe: string building by hand, one write(), _exit. */
static void sc_sigsys(int sig, siginfo_t *si, void *uctx)
{
	(void)sig;
	(void)uctx;
	char buf[256];
	size_t n = 0;
	int nr = si->si_syscall;
	const char *name = nr >= 0 && nr < SC_NAMES_MAX && sc.names[nr] ? sc.names[nr] : "unknown";
	n = sc_append(buf, n, sizeof(buf), "wisp-vmm: seccomp violation: the ");
	n = sc_append(buf, n, sizeof(buf), sc_thread_kind);
	n = sc_append(buf, n, sizeof(buf), " thread called the forbidden syscall ");
	n = sc_append(buf, n, sizeof(buf), name);
	n = sc_append(buf, n, sizeof(buf), " (");
	n = sc_append_num(buf, n, sizeof(buf), nr);
	n = sc_append(buf, n, sizeof(buf), "); exiting with 148\n");
	/* Raw syscalls: sanitizer interceptors of write/_exit may make calls
	 * the filter traps, from inside the handler. */
	syscall(SYS_write, STDERR_FILENO, buf, n);
	syscall(SYS_exit_group, SECCOMP_EXIT_CODE);
}

static void sc_resolve_names(void)
{
	for (int nr = 0; nr < SC_NAMES_MAX; nr++)
		sc.names[nr] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
}

static int sc_build(enum seccomp_thread_kind kind, scmp_filter_ctx ctx, struct wisp_err *err)
{
	int r;
	for (int i = 0; i < kinds[kind].nr_rules; i++) {
		const struct sc_rule *rule = &kinds[kind].rules[i];
		r = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, rule->nr, rule->nargs, rule->arg);
		if (r < 0) {
			char *name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, rule->nr);
			wisp_err_sys(err, -r, "seccomp: %s table: rule for %s", kinds[kind].name,
				     name ? name : "?");
			free(name);
			return r;
		}
	}
	for (int i = 0; i < kinds[kind].nr_ioctls; i++) {
		unsigned long req = kinds[kind].ioctls[i];
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
				     SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, req & 0xffffffffu));
		if (r < 0)
			return wisp_err_sys(err, -r, "seccomp: %s table: ioctl 0x%lx",
					    kinds[kind].name, req);
	}
	/* clone3 hides its flags in memory: make glibc fall back to clone. */
	r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	if (r < 0)
		return wisp_err_sys(err, -r, "seccomp: %s table: clone3", kinds[kind].name);
	return 0;
}

static int sc_selftest(enum seccomp_thread_kind kind, struct wisp_err *err)
{
	wlog_info("seccomp self-test: calling execve on the %s thread", kinds[kind].name);
	char *argv[] = { (char *)"wisp-seccomp-selftest", NULL };
	char *envp[] = { NULL };
	long r = syscall(SYS_execve, "/nonexistent/wisp-seccomp-selftest", argv, envp);
	return wisp_err_set(err, SECCOMP_SELFTEST_UNSTOPPED,
			    "seccomp self-test: execve on the %s thread was not stopped "
			    "(returned %ld, %s): filters are off", kinds[kind].name, r,
			    strerror(errno));
}

int seccomp_install(enum seccomp_thread_kind kind, struct wisp_err *err)
{
	if ((unsigned)kind >= SECCOMP_KIND_COUNT)
		return wisp_err_set(err, EINVAL, "seccomp: unknown thread kind %d", (int)kind);
	if (!sc.enabled) {
		wlog_debug("seccomp filters are off (--no-seccomp): the %s thread runs unfiltered",
			  kinds[kind].name);
		return kind == (enum seccomp_thread_kind)sc.selftest ? sc_selftest(kind, err) : 0;
	}
	pthread_once(&sc.once, sc_resolve_names);
	/* glibc loads the time zone on the first gmtime_r/localtime (an
	 * openat of /etc/localtime): do it now, while files may be opened. */
	tzset();
	struct sigaction sa = { .sa_sigaction = sc_sigsys, .sa_flags = SA_SIGINFO };
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSYS, &sa, NULL) < 0)
		return wisp_err_sys(err, errno, "seccomp: install the SIGSYS handler");
	/* SIGSYS must reach the handler even if the thread masked it. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGSYS);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
	if (!ctx)
		return wisp_err_set(err, ENOMEM, "seccomp: init the %s filter", kinds[kind].name);
	/* Filter this thread only: the others load their own tables. */
	int r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 0);
	if (r == 0)
		r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 1);
	if (r < 0) {
		wisp_err_sys(err, -r, "seccomp: set the %s filter's attributes", kinds[kind].name);
		goto out;
	}
	r = sc_build(kind, ctx, err);
	if (r < 0)
		goto out;
	r = seccomp_load(ctx);
	if (r < 0) {
		wisp_err_sys(err, -r, "seccomp: load the %s filter", kinds[kind].name);
		goto out;
	}
	sc_thread_kind = kinds[kind].name;
	atomic_store(&sc_loaded, true);
	wlog_debug("seccomp: %s filter loaded (%d rules)", kinds[kind].name,
		   seccomp_rule_count(kind));
	if (kind == (enum seccomp_thread_kind)sc.selftest)
		r = sc_selftest(kind, err);
out:
	seccomp_release(ctx);
	/* Building the filter is the largest transient allocation a thread
	 * makes; hand its freed pages back (madvise is allowed above), or they
	 * stay resident for the VMM's life: 1672 KiB of RSS beyond guest RAM
	 * became 1548 KiB (bench/boot.sh). Not under AddressSanitizer: its
	 * allocator replaces glibc's, whose arenas are then never set up, and
	 * threads trimming them at once raced in their first-use setup (a NULL
	 * read in libc, about 1 start in 80 with filters on). */
#if !defined(__SANITIZE_ADDRESS__)
	malloc_trim(0);
#endif
	return r;
}
