/* Seccomp allow-lists for wisp-vmm, one per thread kind (VMM thread, API
 * thread, vCPU threads), kept as commented tables in seccomp.c and loaded
 * with libseccomp. A syscall outside a thread's list traps: a SIGSYS handler
 * writes the syscall's name to stderr and the process exits with 148
 * (Firecracker's code for a seccomp violation).
 *
 * A thread inherits the filters of the thread that created it, and filters
 * only add up. So: create the vCPU threads and the API thread before the VMM
 * thread installs its own filter (the VMM thread's list allows creating
 * threads, the others do not), and call seccomp_install() on each thread
 * before it handles any guest or client input (vCPUs: before the first
 * KVM_RUN). */
#ifndef WISP_SECCOMP_H
#define WISP_SECCOMP_H

#include <errno.h>
#include <stdbool.h>

#include "common/err.h"

enum seccomp_thread_kind {
	SECCOMP_VMM = 0,        /* main thread: event loop, device backends, snapshots */
	SECCOMP_API,            /* HTTP API over the Unix socket (libevent) */
	SECCOMP_VCPU,           /* KVM_RUN and device register access */
	SECCOMP_KIND_COUNT,
};

#define SECCOMP_EXIT_CODE 148
#define SECCOMP_SELFTEST_NONE (-1)
/* err->code of a self-test call that no filter stopped (--no-seccomp):
 * wisp-vmm then exits 1 whichever thread ran it. */
#define SECCOMP_SELFTEST_UNSTOPPED ENOTRECOVERABLE

/* Set once by main before any thread starts. enabled=false (--no-seccomp)
 * makes seccomp_install log that filters are off and load nothing.
 * selftest: a kind, or SECCOMP_SELFTEST_NONE. When a kind is given (the
 * hidden test flag --seccomp-selftest=vmm|api|vcpu), that kind's
 * seccomp_install performs a forbidden syscall (execve of a path that does
 * not exist) right after loading its filter: the process must die with 148.
 * With filters off the call fails with ENOENT and seccomp_install reports
 * it (see SECCOMP_SELFTEST_UNSTOPPED). */
void seccomp_configure(bool enabled, int selftest);

/* "vmm", "api", "vcpu" -> kind; -EINVAL otherwise. */
int seccomp_kind_parse(const char *s, enum seccomp_thread_kind *out);
const char *seccomp_kind_name(enum seccomp_thread_kind kind);

/* Load the calling thread's filter (and the SIGSYS reporter, once per
 * process). Returns 0, or -errno with err filled. With a self-test that the
 * filter did not stop (filters off), returns -SECCOMP_SELFTEST_UNSTOPPED
 * with a message saying the call "was not stopped". */
int seccomp_install(enum seccomp_thread_kind kind, struct wisp_err *err);

/* Number of rules in a kind's table (for tests and the log line). */
int seccomp_rule_count(enum seccomp_thread_kind kind);

#endif
