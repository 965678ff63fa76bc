/* Seccomp tables: each thread kind's filter lets its own work through and
 * kills the process with 148, naming the syscall, on anything else. Every
 * case runs in a forked child (a filter cannot be unloaded). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmm/seccomp.h"

typedef int (*child_fn)(void);

/* Run fn in a child with kind's filter; returns the wait status and what the
 * child wrote to stderr. */
static int run_filtered(enum seccomp_thread_kind kind, bool enabled, int selftest, child_fn fn,
			char *out, size_t outlen)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(p[0]);
		dup2(p[1], 2);
		seccomp_configure(enabled, selftest);
		struct wisp_err e = { 0 };
		/* exit_group directly: sanitizer exit paths make calls that no
		 * filter allows */
		if (seccomp_install(kind, &e) < 0) {
			dprintf(2, "install: %s\n", e.msg);
			syscall(SYS_exit_group, e.code == SECCOMP_SELFTEST_UNSTOPPED ? 97 : 99);
		}
		syscall(SYS_exit_group, fn ? fn() : 0);
	}
	close(p[1]);
	size_t got = 0;
	ssize_t n;
	while (got + 1 < outlen && (n = read(p[0], out + got, outlen - 1 - got)) > 0)
		got += (size_t)n;
	out[got] = '\0';
	close(p[0]);
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	return st;
}

#define EXPECT_KILLED(kind, fn, name) do { \
	char _o[512]; \
	int _st = run_filtered(kind, true, SECCOMP_SELFTEST_NONE, fn, _o, sizeof(_o)); \
	cr_assert(WIFEXITED(_st) && WEXITSTATUS(_st) == 148, \
		  "%s on %s: status 0x%x, stderr: %s", name, seccomp_kind_name(kind), _st, _o); \
	cr_assert(strstr(_o, "forbidden syscall " name " (") != NULL, "stderr: %s", _o); \
	cr_assert(strstr(_o, seccomp_kind_name(kind)) != NULL, "stderr: %s", _o); \
} while (0)

#define EXPECT_ALLOWED(kind, fn) do { \
	char _o[512]; \
	int _st = run_filtered(kind, true, SECCOMP_SELFTEST_NONE, fn, _o, sizeof(_o)); \
	cr_assert(WIFEXITED(_st) && WEXITSTATUS(_st) == 0, \
		  "%s: status 0x%x, stderr: %s", seccomp_kind_name(kind), _st, _o); \
} while (0)

static int do_execve(void)
{
	char *argv[] = { "true", NULL }, *envp[] = { NULL };
	syscall(SYS_execve, "/bin/true", argv, envp);
	return 1;
}

static int do_fork(void)
{
	pid_t p = fork();
	if (p == 0)
		_exit(0);
	return 1;
}

static int do_inet_socket(void)
{
	return socket(AF_INET, SOCK_STREAM, 0) >= 0 ? 1 : 2;
}

static int do_unix_socket(void)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	return fd >= 0 && close(fd) == 0 ? 0 : 1;
}

static int do_exec_mmap(void)
{
	void *p = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? 2 : 1;
}

static int do_exec_mprotect(void)
{
	void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 3;
	mprotect(p, 4096, PROT_READ | PROT_EXEC);
	return 1;
}

static int do_rw_memory(void)
{
	char *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 1;
	memset(p, 1, 1 << 20);
	if (mprotect(p, 4096, PROT_NONE) < 0 || munmap(p, 1 << 20) < 0)
		return 2;
	char *q = malloc(100000);
	free(q);
	return write(2, "", 0) == 0 ? 0 : 3;
}

static void *thread_fn(void *arg)
{
	return arg;
}

static int do_thread(void)
{
	pthread_t t;
	if (pthread_create(&t, NULL, thread_fn, (void *)7) != 0)
		return 1;
	void *ret;
	pthread_join(t, &ret);
	return ret == (void *)7 ? 0 : 2;
}

static int do_kvm_create_vm(void)
{
	ioctl(-1, KVM_CREATE_VM, 0);
	return 1;
}

static int do_kvm_run(void)
{
	/* allowed: fails with EBADF on a bad fd rather than trapping */
	return ioctl(-1, KVM_RUN, 0) < 0 && errno == EBADF ? 0 : 1;
}

/* Every ioctl PUT /snapshot/create makes on the VMM thread (snapshot_kvm.c):
 * each is allowed, so it fails with EBADF on a bad fd instead of trapping. */
static int do_snapshot_ioctls(void)
{
	static const unsigned long reqs[] = {
		KVM_CHECK_EXTENSION, KVM_GET_MSR_INDEX_LIST, KVM_KVMCLOCK_CTRL, KVM_GET_CPUID2,
		KVM_GET_MP_STATE, KVM_GET_REGS, KVM_GET_SREGS, KVM_GET_FPU, KVM_GET_XSAVE,
		KVM_GET_XCRS, KVM_GET_DEBUGREGS, KVM_GET_LAPIC, KVM_GET_MSRS, KVM_GET_VCPU_EVENTS,
		KVM_GET_TSC_KHZ, KVM_GET_IRQCHIP, KVM_GET_PIT2, KVM_GET_CLOCK, KVM_GET_DIRTY_LOG,
	};
	for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++)
		if (ioctl(-1, reqs[i], 0) >= 0 || errno != EBADF)
			return 1;
	return 0;
}

static int do_ptrace(void)
{
	syscall(SYS_ptrace, 0, 0, 0, 0);
	return 1;
}

static int do_open(void)
{
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	return fd >= 0 ? 0 : 1;
}

Test(seccomp, kinds_parse)
{
	enum seccomp_thread_kind k;
	cr_assert_eq(seccomp_kind_parse("vcpu", &k), 0);
	cr_assert_eq(k, SECCOMP_VCPU);
	cr_assert_eq(seccomp_kind_parse("api", &k), 0);
	cr_assert_eq(k, SECCOMP_API);
	cr_assert_eq(seccomp_kind_parse("vmm", &k), 0);
	cr_assert_eq(k, SECCOMP_VMM);
	cr_assert_eq(seccomp_kind_parse("VCPU", &k), -EINVAL);
	cr_assert_eq(seccomp_kind_parse("", &k), -EINVAL);
	for (int i = 0; i < SECCOMP_KIND_COUNT; i++)
		cr_assert_gt(seccomp_rule_count(i), 20);
}

Test(seccomp, no_exec_on_any_thread)
{
	for (int k = 0; k < SECCOMP_KIND_COUNT; k++)
		EXPECT_KILLED(k, do_execve, "execve");
}

Test(seccomp, no_processes_but_threads_on_the_vmm_thread)
{
	EXPECT_KILLED(SECCOMP_VMM, do_fork, "clone");
	EXPECT_ALLOWED(SECCOMP_VMM, do_thread);
	/* glibc blocks every signal around clone: the kernel then forces
	 * SIGSYS with its default action, so the death has no message. */
	char o[512];
	int st = run_filtered(SECCOMP_VCPU, true, SECCOMP_SELFTEST_NONE, do_thread, o, sizeof(o));
	cr_assert((WIFEXITED(st) && WEXITSTATUS(st) == 148) ||
		  (WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS), "status 0x%x: %s", st, o);
	EXPECT_KILLED(SECCOMP_API, do_fork, "clone");
}

Test(seccomp, socket_families)
{
	EXPECT_KILLED(SECCOMP_VMM, do_inet_socket, "socket");
	EXPECT_ALLOWED(SECCOMP_VMM, do_unix_socket);
	EXPECT_KILLED(SECCOMP_API, do_unix_socket, "socket");
	EXPECT_KILLED(SECCOMP_VCPU, do_unix_socket, "socket");
}

Test(seccomp, no_executable_memory)
{
	for (int k = 0; k < SECCOMP_KIND_COUNT; k++) {
		EXPECT_KILLED(k, do_exec_mmap, "mmap");
		EXPECT_KILLED(k, do_exec_mprotect, "mprotect");
		EXPECT_ALLOWED(k, do_rw_memory);
	}
}

Test(seccomp, ioctl_by_request_number)
{
	EXPECT_ALLOWED(SECCOMP_VCPU, do_kvm_run);
	EXPECT_KILLED(SECCOMP_VCPU, do_kvm_create_vm, "ioctl");
	EXPECT_KILLED(SECCOMP_VMM, do_kvm_run, "ioctl");
	EXPECT_KILLED(SECCOMP_API, do_kvm_run, "ioctl");
	EXPECT_ALLOWED(SECCOMP_VMM, do_snapshot_ioctls);
}

Test(seccomp, other_forbidden_calls)
{
	for (int k = 0; k < SECCOMP_KIND_COUNT; k++)
		EXPECT_KILLED(k, do_ptrace, "ptrace");
	EXPECT_KILLED(SECCOMP_VCPU, do_open, "openat");
	EXPECT_ALLOWED(SECCOMP_VMM, do_open);
}

Test(seccomp, selftest_hook)
{
	char out[512];
	for (int k = 0; k < SECCOMP_KIND_COUNT; k++) {
		int st = run_filtered(k, true, k, NULL, out, sizeof(out));
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 148, "status 0x%x: %s", st, out);
		cr_assert(strstr(out, "forbidden syscall execve") != NULL, "%s", out);
	}
	/* another kind's self-test does nothing on this thread */
	int st = run_filtered(SECCOMP_VMM, true, SECCOMP_API, NULL, out, sizeof(out));
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x: %s", st, out);
	/* --no-seccomp: the self-test is not stopped and says so */
	st = run_filtered(SECCOMP_API, false, SECCOMP_API, NULL, out, sizeof(out));
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 97, "status 0x%x: %s", st, out);
	cr_assert(strstr(out, "filters are off") != NULL, "%s", out);
	cr_assert(strstr(out, "execve on the api thread was not stopped") != NULL, "%s", out);
}
