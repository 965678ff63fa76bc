/* The VM: one struct owned by main, built by one linear function
 * (vm_build), run by the VMM thread's event loop and one thread per vCPU. */
#ifndef WISP_VM_H
#define WISP_VM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "bus.h"
#include "config.h"
#include "evloop.h"
#include "layout.h"
#include "mem.h"

struct vcpu;
struct virtio_mmio_dev;
struct serial;
struct i8042;
struct cmos;
struct boot_timer;
struct kvm_cpuid2;

enum vm_state {
	VM_NOT_STARTED = 0,
	VM_RUNNING,
	VM_PAUSED,
	VM_STOPPED,
};

/* Exit codes (Firecracker's where they exist). */
enum {
	WISP_EXIT_OK = 0,
	WISP_EXIT_GENERIC = 1,
	WISP_EXIT_GUEST_CRASH = 2,      /* triple fault, KVM internal error */
	WISP_EXIT_BAD_SYSCALL = 148,    /* seccomp violation */
	WISP_EXIT_BAD_CONFIG = 152,
	WISP_EXIT_BAD_ARGS = 153,
};

struct vm {
	struct vm_config cfg;           /* validated configuration */
	int kvm_fd;
	int vm_fd;
	int vcpu_mmap_size;
	struct gmem mem;
	struct bus pio;
	struct bus mmio;
	struct evloop loop;             /* the VMM thread's loop */
	struct vcpu *vcpus;
	int nr_vcpus;
	int vcpus_created;              /* vcpus[0..vcpus_created) need destroying */
	_Atomic int state;              /* enum vm_state */
	/* One legacy IRQ pulse at a time: two threads pulsing the same line
	 * interleaved (1, 1, 0, 0) make one edge out of two, and KVM coalesces
	 * the second away (the API thread's SendCtrlAltDel against a vCPU's
	 * read of the i8042, the VMM thread's serial input against a vCPU's
	 * serial output). */
	pthread_mutex_t irq_lock;
	struct serial *serial;
	struct i8042 *i8042;
	struct cmos *cmos;
	struct virtio_mmio_dev *virtio[WISP_VIRTIO_MMIO_MAX];
	int nr_virtio;
	uint64_t entry_addr;            /* guest entry point after loading */
	int nr_mmio_slots;              /* virtio-mmio windows handed out */
	bool boot_timer;                /* --boot-timer: log the guest's boot time */
	uint64_t exec_ns;               /* wisp_now_ns() when main started */
	uint64_t start_ns;              /* wisp_now_ns() at vm_start */
	struct boot_timer *timer;
	int serial_out_fd;              /* guest console (default 1) */
	int serial_in_fd;               /* host input for the console; -1: none */
	bool config_error;              /* vm_build failed on its inputs (kernel, initrd, sizes) */
	uint64_t snap_id;               /* the snapshot this VM's dirty log counts from (the
					 * last one taken or the one loaded); 0: none */
};

/* The command line used when boot-source gives no boot_args. */
#define WISP_DEFAULT_BOOT_ARGS \
	"console=ttyS0 reboot=k panic=1 pci=off nomodule 8250.nr_uarts=1 " \
	"i8042.noaux i8042.nomux i8042.dumbkbd"

/* Zero the struct and set the fields vm_build reads besides cfg. */
void vm_init(struct vm *vm);

/* Create the KVM VM (irqchip, PIT, memory, legacy devices, virtio devices,
 * kernel load, boot state) from vm->cfg; no vCPU runs yet. */
int vm_build(struct vm *vm, struct wisp_err *err);
/* The same VM over a snapshot's memory file (mapped MAP_PRIVATE, so clean
 * pages stay shared through the page cache), without loading a kernel:
 * snap_vm_load() then restores every component's state. The vCPUs get
 * supported (KVM_GET_SUPPORTED_CPUID, fetched once by the load), and the
 * KVM VM is made on vm->kvm_fd when the caller opened /dev/kvm already. */
int vm_build_restored(struct vm *vm, int mem_fd, const struct kvm_cpuid2 *supported,
		      struct wisp_err *err);
/* Start the vCPU threads (InstanceStart). */
int vm_start(struct vm *vm, struct wisp_err *err);
/* Stop every vCPU at a safe point (out of KVM_RUN, registers consistent);
 * returns when all have stopped. Resume continues exactly there. */
int vm_pause(struct vm *vm, struct wisp_err *err);
int vm_resume(struct vm *vm, struct wisp_err *err);
/* Inject Ctrl+Alt+Del through the i8042 (SendCtrlAltDel). */
int vm_send_ctrl_alt_del(struct vm *vm, struct wisp_err *err);
/* Log each virtio device's transport and queue state and its IOAPIC pin
 * (SIGUSR1): what a stuck guest waits on. VMM thread. */
void vm_log_state(struct vm *vm);
/* Ask the VMM to end with this exit code (any thread). */
void vm_request_exit(struct vm *vm, int exit_code);
/* Undo vm_build (complete or not) and vm_start: stop and free the vCPUs,
 * the devices (their backends, sockets and loop entries), guest RAM and the
 * KVM VM. vm->cfg and the event loop stay, and the VM is Not started again:
 * a failed InstanceStart is torn down this way so it can be retried. */
void vm_unbuild(struct vm *vm);
/* vm_unbuild, then the event loop and the configuration. */
void vm_destroy(struct vm *vm);

/* KVM plumbing for devices. */
int vm_irqfd(struct vm *vm, int efd, unsigned int gsi, struct wisp_err *err);
int vm_ioeventfd(struct vm *vm, int efd, uint64_t addr, uint32_t len, uint64_t datamatch,
		 bool match, struct wisp_err *err);
int vm_ioeventfd_remove(struct vm *vm, int efd, uint64_t addr, uint32_t len,
			uint64_t datamatch, bool match);
/* Hand out the next virtio-mmio window (WISP_VIRTIO_MMIO_SIZE bytes) and
 * its IRQ. Call during vm_build before the kernel is loaded: the boot code
 * appends "virtio_mmio.device=4K@<addr>:<irq>" to the command line for every
 * window handed out, in order. */
int vm_alloc_mmio_slot(struct vm *vm, uint64_t *addr, unsigned int *irq, struct wisp_err *err);
/* Raise or lower an IOAPIC line (KVM_IRQ_LINE), for level devices. */
int vm_irq_line(struct vm *vm, unsigned int gsi, int level);

#endif
