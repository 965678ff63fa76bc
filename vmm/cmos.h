/* CMOS RAM and real-time clock at ports 0x70 (index) and 0x71 (data), as
 * much as a Linux guest touches on a microVM: the 128 bytes of CMOS RAM
 * (SMP boot writes the warm-reset code to register 0x0f), and the clock
 * registers, read from the host's clock in BCD, 24-hour mode. Writes to the
 * clock registers are accepted and ignored (the guest cannot move the host
 * clock); there is no alarm or periodic interrupt (IRQ 8 stays quiet, and
 * status register B says so). Bit 7 of the index is the NMI mask on real
 * hardware; it is kept and has no effect. */
#ifndef WISP_CMOS_H
#define WISP_CMOS_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "bus.h"

#define CMOS_SIZE 128

struct cmos {
	pthread_mutex_t lock;
	uint8_t index;            /* last value written to port 0x70 */
	uint8_t ram[CMOS_SIZE];
	/* the clock's source; tests replace it */
	time_t (*now)(void);
};

extern const struct bus_ops cmos_bus_ops;

void cmos_init(struct cmos *c);
void cmos_destroy(struct cmos *c);

#endif
