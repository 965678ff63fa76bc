/* Port I/O and MMIO dispatch. The table is filled while the VM is built and
 * read without locks afterwards. */
#include "bus.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

int bus_register(struct bus *b, uint64_t base, uint64_t len, const struct bus_ops *ops,
		 void *opaque, const char *name, struct wisp_err *err)
{
	if (len == 0 || base + len < base)
		return wisp_err_set(err, EINVAL, "%s bus: range for %s at 0x%llx is empty or wraps",
				    b->name, name, (unsigned long long)base);
	if (!ops || !ops->read || !ops->write)
		return wisp_err_set(err, EINVAL, "%s bus: %s has no read/write handlers", b->name,
				    name);
	if (b->nr >= BUS_MAX_RANGES)
		return wisp_err_set(err, ENOSPC, "%s bus: no room for %s (%d ranges)", b->name,
				    name, BUS_MAX_RANGES);
	for (int i = 0; i < b->nr; i++) {
		const struct bus_range *r = &b->ranges[i];
		if (base < r->base + r->len && r->base < base + len)
			return wisp_err_set(err, EEXIST,
					    "%s bus: %s at 0x%llx+0x%llx overlaps %s at 0x%llx+0x%llx",
					    b->name, name, (unsigned long long)base,
					    (unsigned long long)len, r->name,
					    (unsigned long long)r->base, (unsigned long long)r->len);
	}
	b->ranges[b->nr++] = (struct bus_range){
		.base = base, .len = len, .ops = ops, .opaque = opaque, .name = name,
	};
	return 0;
}

/* The access must lie wholly inside one range. */
static const struct bus_range *bus_find(const struct bus *b, uint64_t addr, uint32_t len)
{
	for (int i = 0; i < b->nr; i++) {
		const struct bus_range *r = &b->ranges[i];
		if (addr >= r->base && addr - r->base < r->len && len <= r->len - (addr - r->base))
			return r;
	}
	return NULL;
}

static bool bus_len_ok(uint32_t len)
{
	return len == 1 || len == 2 || len == 4 || len == 8;
}

int bus_read(const struct bus *b, uint64_t addr, uint8_t *data, uint32_t len)
{
	const struct bus_range *r = bus_len_ok(len) ? bus_find(b, addr, len) : NULL;
	if (!r) {
		memset(data, 0xff, len);
		return -ENOENT;
	}
	r->ops->read(r->opaque, addr - r->base, data, len);
	return 0;
}

int bus_write(const struct bus *b, uint64_t addr, const uint8_t *data, uint32_t len)
{
	const struct bus_range *r = bus_len_ok(len) ? bus_find(b, addr, len) : NULL;
	if (!r)
		return -ENOENT;
	r->ops->write(r->opaque, addr - r->base, data, len);
	return 0;
}
