/* Port I/O and MMIO dispatch from vCPU exits. Ranges are registered while
 * the VM is built and never change once vCPUs run, so lookups take no lock;
 * each device guards its own state. */
#ifndef WISP_BUS_H
#define WISP_BUS_H

#include <stdint.h>

#include "common/err.h"

struct bus_ops {
	/* offset is relative to the range base; len is 1, 2, 4 or 8.
	 * read must fill all len bytes of data. */
	void (*read)(void *opaque, uint64_t offset, uint8_t *data, uint32_t len);
	void (*write)(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len);
};

struct bus_range {
	uint64_t base, len;
	const struct bus_ops *ops;
	void *opaque;
	const char *name;
};

#define BUS_MAX_RANGES 32

struct bus {
	const char *name;   /* "pio" or "mmio", for log lines */
	struct bus_range ranges[BUS_MAX_RANGES];
	int nr;
};

/* Refuses overlapping or empty ranges and a full table. */
int bus_register(struct bus *b, uint64_t base, uint64_t len, const struct bus_ops *ops,
		 void *opaque, const char *name, struct wisp_err *err);
/* Returns 0 when a device took the access, -ENOENT when nothing is mapped
 * there (reads then return all ones). */
int bus_read(const struct bus *b, uint64_t addr, uint8_t *data, uint32_t len);
int bus_write(const struct bus *b, uint64_t addr, const uint8_t *data, uint32_t len);

#endif
