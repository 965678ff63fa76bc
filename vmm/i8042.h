/* i8042 keyboard controller, as much as Linux needs on a microVM: the
 * controller self-test and command byte, the reset line (command 0xFE ends
 * the VMM with exit code 0, Linux's reboot=k), and key injection for
 * SendCtrlAltDel. */
#ifndef WISP_I8042_H
#define WISP_I8042_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "bus.h"

#define I8042_BUF_SIZE 16

/* Status register bits */
#define I8042_STR_OBF    0x01
#define I8042_STR_SYSFLAG 0x04
#define I8042_STR_CMDDAT 0x08
#define I8042_STR_KEYLOCK 0x10

/* Command byte bits */
#define I8042_CTR_KBDINT 0x01
#define I8042_CTR_SYSFLAG 0x04
#define I8042_CTR_KBDDIS 0x10
#define I8042_CTR_AUXDIS 0x20

struct i8042 {
	pthread_mutex_t lock;
	uint8_t status, ctr, pending_cmd, outp;
	uint8_t buf[I8042_BUF_SIZE];
	unsigned head, count;
	void (*reset)(void *opaque);      /* the guest pulsed the reset line */
	void (*irq)(void *opaque);        /* pulse IRQ 1 */
	void *opaque;
	uint64_t resets;
};

extern const struct bus_ops i8042_bus_ops;

void i8042_init(struct i8042 *k, void (*reset)(void *), void (*irq)(void *), void *opaque);
void i8042_destroy(struct i8042 *k);
/* Queue the scan codes of Ctrl+Alt+Del (set 2, as an untranslated
 * controller delivers them) and raise the keyboard IRQ. Thread-safe.
 * Returns -ENOSPC when the guest has not read earlier keys. */
int i8042_send_ctrl_alt_del(struct i8042 *k);

#endif
