/* Internal KVM helpers for the VMM core (vm.h has the device-facing ones). */
#ifndef WISP_KVM_H
#define WISP_KVM_H

#include "common/err.h"

struct vm;

/* ioctl retried across EINTR; returns the result or -errno. */
int kvm_ioctl(int fd, unsigned long req, void *arg);
/* Open /dev/kvm, check capabilities, create the VM with irqchip and PIT. */
int kvm_open_vm(struct vm *vm, struct wisp_err *err);
/* One memory slot per RAM region of vm->mem. */
int kvm_map_memory(struct vm *vm, struct wisp_err *err);

#endif
