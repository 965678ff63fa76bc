/* CMOS RAM and RTC; see cmos.h. Registers (MC146818 layout): 0x00 seconds,
 * 0x02 minutes, 0x04 hours, 0x06 day of week, 0x07 day of month, 0x08
 * month, 0x09 year, 0x0a-0x0d status A-D, 0x32 century. */
#include "cmos.h"

#include <string.h>

#include "layout.h"

enum {
	REG_SEC = 0x00,
	REG_MIN = 0x02,
	REG_HOUR = 0x04,
	REG_WDAY = 0x06,
	REG_MDAY = 0x07,
	REG_MON = 0x08,
	REG_YEAR = 0x09,
	REG_A = 0x0a,
	REG_B = 0x0b,
	REG_C = 0x0c,
	REG_D = 0x0d,
	REG_CENTURY = 0x32,
};

#define REG_A_DIVIDER  0x26   /* 32.768 kHz time base, 1024 Hz rate; UIP (bit 7) clear */
#define REG_B_DEFAULT  0x02   /* 24-hour mode, BCD, no interrupts enabled */
#define REG_D_VRT      0x80   /* RAM and time valid (battery good) */

/* clock_gettime: the vDSO, or a syscall every seccomp filter allows */
static time_t host_now(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_REALTIME, &ts) < 0)
		return 0;
	return ts.tv_sec;
}

void cmos_init(struct cmos *c)
{
	memset(c, 0, sizeof(*c));
	pthread_mutex_init(&c->lock, NULL);
	c->now = host_now;
	c->ram[REG_A] = REG_A_DIVIDER;
	c->ram[REG_B] = REG_B_DEFAULT;
	c->ram[REG_D] = REG_D_VRT;
}

void cmos_destroy(struct cmos *c)
{
	pthread_mutex_destroy(&c->lock);
}

#define REG_B_24H_BIT  0x02
#define REG_B_BINARY   0x04

/* A clock value in the format status register B asks for: BCD or binary. */
static uint8_t fmt(const struct cmos *c, int v)
{
	if (c->ram[REG_B] & REG_B_BINARY)
		return (uint8_t)v;
	return (uint8_t)(((v / 10) % 10) << 4 | (v % 10));
}

/* Hours: 0-23, or 1-12 with bit 7 for PM in 12-hour mode. */
static uint8_t fmt_hour(const struct cmos *c, int h)
{
	if (c->ram[REG_B] & REG_B_24H_BIT)
		return fmt(c, h);
	int h12 = h % 12 ? h % 12 : 12;
	return (uint8_t)(fmt(c, h12) | (h >= 12 ? 0x80 : 0));
}

/* Called with the lock held. */
static uint8_t cmos_reg(struct cmos *c, uint8_t reg)
{
	if (reg > REG_YEAR && reg != REG_CENTURY)
		return reg == REG_C ? 0 : c->ram[reg]; /* C: no interrupt flags to report */
	time_t t = c->now();
	struct tm tm;
	if (!gmtime_r(&t, &tm))
		return 0;
	switch (reg) {
	case REG_SEC: return fmt(c, tm.tm_sec);
	case REG_MIN: return fmt(c, tm.tm_min);
	case REG_HOUR: return fmt_hour(c, tm.tm_hour);
	case REG_WDAY: return fmt(c, tm.tm_wday + 1);
	case REG_MDAY: return fmt(c, tm.tm_mday);
	case REG_MON: return fmt(c, tm.tm_mon + 1);
	case REG_YEAR: return fmt(c, tm.tm_year % 100);
	case REG_CENTURY: return fmt(c, (tm.tm_year + 1900) / 100);
	default: return c->ram[reg]; /* the alarm registers 1, 3, 5 */
	}
}

static void cmos_bus_read(void *opaque, uint64_t off, uint8_t *data, uint32_t len)
{
	struct cmos *c = opaque;
	memset(data, 0xff, len);
	pthread_mutex_lock(&c->lock);
	if (off == 0)
		data[0] = c->index; /* write-only on real hardware; reading it back is harmless */
	else
		data[0] = cmos_reg(c, c->index & (CMOS_SIZE - 1));
	pthread_mutex_unlock(&c->lock);
}

static void cmos_bus_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
	struct cmos *c = opaque;
	(void)len;
	pthread_mutex_lock(&c->lock);
	if (off == 0) {
		c->index = data[0];
	} else {
		uint8_t reg = c->index & (CMOS_SIZE - 1);
		/* the clock follows the host; C and D are read-only */
		if (reg > REG_YEAR && reg != REG_C && reg != REG_D && reg != REG_CENTURY)
			c->ram[reg] = reg == REG_A ? (uint8_t)(data[0] & 0x7f) : data[0];
	}
	pthread_mutex_unlock(&c->lock);
}

const struct bus_ops cmos_bus_ops = { .read = cmos_bus_read, .write = cmos_bus_write };
