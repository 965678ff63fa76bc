/* Boot timer (--boot-timer, as in Firecracker): the guest writes the byte
 * 123 to WISP_BOOT_TIMER_ADDR once it is up, and the VMM logs how long that
 * took since the process started and since the vCPUs started. */
#ifndef WISP_BOOT_TIMER_H
#define WISP_BOOT_TIMER_H

#include <stdbool.h>
#include <stdint.h>

#include "bus.h"

#define BOOT_TIMER_MAGIC 123

struct boot_timer {
	const uint64_t *exec_ns;   /* process start */
	const uint64_t *start_ns;  /* vm_start */
	_Atomic int fired;
};

extern const struct bus_ops boot_timer_bus_ops;

#endif
