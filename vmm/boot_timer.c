/* Boot timer device: one write of BOOT_TIMER_MAGIC logs the boot time. */
#include "boot_timer.h"

#include <stdatomic.h>
#include <string.h>

#include "common/io.h"
#include "common/log.h"

static void boot_timer_read(void *opaque, uint64_t off, uint8_t *data, uint32_t len)
{
	(void)opaque;
	(void)off;
	memset(data, 0, len);
}

static void boot_timer_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
	struct boot_timer *t = opaque;
	(void)len;
	if (off != 0 || data[0] != BOOT_TIMER_MAGIC)
		return;
	uint64_t now = wisp_now_ns();
	int expected = 0;
	if (!atomic_compare_exchange_strong_explicit(&t->fired, &expected, 1,
						     memory_order_acq_rel, memory_order_acquire))
		return;
	wlog_info("Guest-boot-time = %llu us since exec, %llu us since vCPU start",
		  (unsigned long long)((now - *t->exec_ns) / 1000),
		  (unsigned long long)((now - *t->start_ns) / 1000));
}

const struct bus_ops boot_timer_bus_ops = { .read = boot_timer_read, .write = boot_timer_write };
