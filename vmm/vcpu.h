/* vCPU threads: one per vCPU, each looping on KVM_RUN and dispatching port
 * I/O and MMIO exits to the buses. Pause and stop use a kick signal plus
 * kvm_run->immediate_exit, so a vCPU always stops at a safe point. */
#ifndef WISP_VCPU_H
#define WISP_VCPU_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>

#include "common/err.h"

struct vm;

struct vcpu {
	struct vm *vm;
	int id;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool pause_req, paused, stop_req;
	bool failed;                      /* the thread ended before running: no filter */
};

/* KVM_CREATE_VCPU, map kvm_run, CPU setup (CPUID, MSRs, LAPIC, FPU); the
 * BSP (id 0) also gets the 64-bit boot registers. APs wait for INIT/SIPI. */
int vcpu_create(struct vm *vm, struct vcpu *v, int id, const struct kvm_cpuid2 *cpuid,
		struct wisp_err *err);
int vcpu_start(struct vcpu *v, struct wisp_err *err);
/* Ask the vCPU to park at a safe point; vcpu_wait_paused waits for it. */
void vcpu_request_pause(struct vcpu *v);
/* 0 once parked; -EIO if the thread could not start (it never ran the guest). */
int vcpu_wait_paused(struct vcpu *v);
void vcpu_resume(struct vcpu *v);
/* Stop the thread and join it. */
void vcpu_stop(struct vcpu *v);
void vcpu_destroy(struct vcpu *v);
/* Install the (empty) kick signal handler once per process. */
int vcpu_signals_init(struct wisp_err *err);

#endif
