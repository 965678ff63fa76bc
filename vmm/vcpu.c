/* The vCPU thread: KVM_RUN, exit dispatch, pause/stop at safe points. */
#include "vcpu.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/log.h"
#include "cpu.h"
#include "kvm.h"
#include "metrics.h"
#include "seccomp.h"
#include "vm.h"

#define VCPU_KICK_SIGNAL (SIGRTMIN + 1)

static void vcpu_kick_handler(int sig)
{
	(void)sig;
}

int vcpu_signals_init(struct wisp_err *err)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = vcpu_kick_handler;
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: the signal must interrupt KVM_RUN. */
	if (sigaction(VCPU_KICK_SIGNAL, &sa, NULL) < 0)
		return wisp_err_sys(err, errno, "installing the vCPU kick handler");
	return 0;
}

int vcpu_create(struct vm *vm, struct vcpu *v, int id, const struct kvm_cpuid2 *cpuid,
		struct wisp_err *err)
{
	memset(v, 0, sizeof(*v));
	v->vm = vm;
	v->id = id;
	v->fd = -1;
	pthread_mutex_init(&v->lock, NULL);
	pthread_cond_init(&v->cond, NULL);
	int fd = kvm_ioctl(vm->vm_fd, KVM_CREATE_VCPU, (void *)(uintptr_t)id);
	if (fd < 0)
		return wisp_err_sys(err, -fd, "KVM_CREATE_VCPU %d", id);
	v->fd = fd;
	void *run = mmap(NULL, (size_t)vm->vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED,
			 fd, 0);
	if (run == MAP_FAILED)
		return wisp_err_sys(err, errno, "mapping kvm_run of vCPU %d", id);
	v->run = run;
	struct cpu_topology topo = {
		.nr_vcpus = vm->nr_vcpus,
		.threads_per_core = vm->cfg.machine.smt ? 2 : 1,
	};
	int r = cpu_set_cpuid(fd, cpuid, id, &topo, err);
	if (!r)
		r = cpu_set_msrs(fd, err);
	if (!r)
		r = cpu_set_lapic(fd, err);
	if (!r)
		r = cpu_set_fpu(fd, err);
	if (!r && id == 0)
		r = cpu_set_boot_regs(fd, vm->entry_addr, err);
	if (r)
		return wisp_err_prefix(err, "vCPU %d", id);
	return 0;
}

static void vcpu_crash(struct vcpu *v, const char *why)
{
	wlog_error("vCPU %d: %s; the guest is stopped", v->id, why);
	cpu_dump_regs(v->fd, v->id);
	vm_request_exit(v->vm, WISP_EXIT_GUEST_CRASH);
}

static void vcpu_io(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	uint32_t size = run->io.size;
	for (uint32_t i = 0; i < run->io.count; i++, data += size) {
		int r;
		if (run->io.direction == KVM_EXIT_IO_OUT)
			r = bus_write(&v->vm->pio, run->io.port, data, size);
		else
			r = bus_read(&v->vm->pio, run->io.port, data, size);
		if (r == -ENOENT)
			wlog_rl(WISP_LOG_WARN, "vCPU %d: unhandled port %s 0x%x (%u bytes)", v->id,
				run->io.direction == KVM_EXIT_IO_OUT ? "write to" : "read from",
				run->io.port, size);
	}
}

static void vcpu_mmio(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint32_t len = run->mmio.len;
	int r;
	if (len > sizeof(run->mmio.data))
		len = sizeof(run->mmio.data);
	if (run->mmio.is_write)
		r = bus_write(&v->vm->mmio, run->mmio.phys_addr, run->mmio.data, len);
	else
		r = bus_read(&v->vm->mmio, run->mmio.phys_addr, run->mmio.data, len);
	if (r == -ENOENT)
		wlog_rl(WISP_LOG_WARN, "vCPU %d: unhandled MMIO %s 0x%llx (%u bytes)", v->id,
			run->mmio.is_write ? "write to" : "read from",
			(unsigned long long)run->mmio.phys_addr, len);
}

/* Returns false when the vCPU must stop running. */
static bool vcpu_handle_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	char why[128];
	metrics_kvm_exit(run);
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		vcpu_io(v);
		return true;
	case KVM_EXIT_MMIO:
		vcpu_mmio(v);
		return true;
	case KVM_EXIT_INTR:
	case KVM_EXIT_IRQ_WINDOW_OPEN:
		return true;
	case KVM_EXIT_HLT:
		/* Only without an in-kernel LAPIC; nothing wakes a halted CPU then. */
		wlog_info("vCPU %d halted", v->id);
		return false;
	case KVM_EXIT_SHUTDOWN:
		vcpu_crash(v, "triple fault (KVM_EXIT_SHUTDOWN)");
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		snprintf(why, sizeof(why), "KVM internal error, suberror %u",
			 run->internal.suberror);
		vcpu_crash(v, why);
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		snprintf(why, sizeof(why), "VM entry failed, reason 0x%llx",
			 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		vcpu_crash(v, why);
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		if (run->system_event.type == KVM_SYSTEM_EVENT_CRASH) {
			vcpu_crash(v, "guest reported a crash");
		} else {
			wlog_info("vCPU %d: guest %s", v->id,
				  run->system_event.type == KVM_SYSTEM_EVENT_RESET ? "reset" :
										    "shut down");
			vm_request_exit(v->vm, WISP_EXIT_OK);
		}
		return false;
	default:
		snprintf(why, sizeof(why), "unexpected exit reason %u", run->exit_reason);
		vcpu_crash(v, why);
		return false;
	}
}

/* Park until resumed or stopped. KVM_RUN with immediate_exit first
 * completes a pending I/O or MMIO read, so the saved state is consistent. */
static void vcpu_park(struct vcpu *v)
{
	v->run->immediate_exit = 1;
	int r = ioctl(v->fd, KVM_RUN, 0);
	if (r == 0 || (errno != EINTR && errno != EAGAIN))
		wlog_debug("vCPU %d: completing the last exit before pausing: %d", v->id, r);
	pthread_mutex_lock(&v->lock);
	v->paused = true;
	pthread_cond_broadcast(&v->cond);
	while (v->pause_req && !v->stop_req)
		pthread_cond_wait(&v->cond, &v->lock);
	v->paused = false;
	if (!v->stop_req)
		v->run->immediate_exit = 0;
	pthread_cond_broadcast(&v->cond);
	pthread_mutex_unlock(&v->lock);
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	char name[16];
	snprintf(name, sizeof(name), "fc_vcpu %d", v->id);
	wisp_log_set_thread(name);
	pthread_setname_np(pthread_self(), name);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	struct wisp_err err = { 0 };
	if (seccomp_install(SECCOMP_VCPU, &err) < 0) {
		wlog_error("vCPU %d: %s", v->id, err.msg);
		pthread_mutex_lock(&v->lock);
		v->failed = true;
		v->paused = true;
		pthread_cond_broadcast(&v->cond);
		pthread_mutex_unlock(&v->lock);
		return NULL;
	}

	for (;;) {
		pthread_mutex_lock(&v->lock);
		bool stop = v->stop_req, pause = v->pause_req;
		pthread_mutex_unlock(&v->lock);
		if (stop)
			break;
		if (pause) {
			vcpu_park(v);
			continue;
		}
		int r = ioctl(v->fd, KVM_RUN, 0);
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			wlog_error("vCPU %d: KVM_RUN: %s", v->id, strerror(errno));
			vm_request_exit(v->vm, WISP_EXIT_GENERIC);
			break;
		}
		if (!vcpu_handle_exit(v))
			break;
	}
	/* Anyone waiting for this vCPU to pause must not wait forever. */
	pthread_mutex_lock(&v->lock);
	v->paused = true;
	pthread_cond_broadcast(&v->cond);
	pthread_mutex_unlock(&v->lock);
	return NULL;
}

int vcpu_start(struct vcpu *v, struct wisp_err *err)
{
	int r = pthread_create(&v->thread, NULL, vcpu_thread, v);
	if (r)
		return wisp_err_sys(err, r, "starting the thread of vCPU %d", v->id);
	v->thread_started = true;
	return 0;
}

static void vcpu_kick(struct vcpu *v)
{
	/* immediate_exit covers a kick that lands just before KVM_RUN. */
	__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	if (v->thread_started)
		pthread_kill(v->thread, VCPU_KICK_SIGNAL);
}

void vcpu_request_pause(struct vcpu *v)
{
	pthread_mutex_lock(&v->lock);
	v->pause_req = true;
	pthread_mutex_unlock(&v->lock);
	vcpu_kick(v);
}

int vcpu_wait_paused(struct vcpu *v)
{
	pthread_mutex_lock(&v->lock);
	while (v->thread_started && !v->paused)
		pthread_cond_wait(&v->cond, &v->lock);
	bool failed = v->failed;
	pthread_mutex_unlock(&v->lock);
	return failed ? -EIO : 0;
}

void vcpu_resume(struct vcpu *v)
{
	pthread_mutex_lock(&v->lock);
	v->pause_req = false;
	pthread_cond_broadcast(&v->cond);
	pthread_mutex_unlock(&v->lock);
}

void vcpu_stop(struct vcpu *v)
{
	if (!v->thread_started)
		return;
	pthread_mutex_lock(&v->lock);
	v->stop_req = true;
	pthread_cond_broadcast(&v->cond);
	pthread_mutex_unlock(&v->lock);
	vcpu_kick(v);
	pthread_join(v->thread, NULL);
	v->thread_started = false;
}

void vcpu_destroy(struct vcpu *v)
{
	vcpu_stop(v);
	if (v->run)
		munmap(v->run, (size_t)v->vm->vcpu_mmap_size);
	if (v->fd >= 0)
		close(v->fd);
	v->run = NULL;
	v->fd = -1;
	pthread_mutex_destroy(&v->lock);
	pthread_cond_destroy(&v->cond);
}
