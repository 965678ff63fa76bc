#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/bus.h"
#include "vmm/evloop.h"
#include "vmm/layout.h"
#include "vmm/mem.h"

Test(gmem, ptr_checks_whole_range_and_overflow)
{
	static uint8_t low[0x10000], high[0x1000];
	struct gmem m = { 0 };
	cr_assert_eq(gmem_add_region(&m, 0, low, sizeof(low)), 0);
	cr_assert_eq(gmem_add_region(&m, 0x100000, high, sizeof(high)), 0);
	cr_assert_eq(gmem_add_region(&m, 0x8000, high, 0x1000), -EEXIST);
	cr_assert_eq(gmem_ptr(&m, 0, 1), low);
	cr_assert_eq(gmem_ptr(&m, 0xffff, 1), low + 0xffff);
	cr_assert_null(gmem_ptr(&m, 0xffff, 2));
	cr_assert_null(gmem_ptr(&m, 0x10000, 1));
	cr_assert_null(gmem_ptr(&m, 0, 0));
	cr_assert_eq(gmem_ptr(&m, 0x100000, 0x1000), high);
	cr_assert_null(gmem_ptr(&m, 0x100000, 0x1001));
	cr_assert_null(gmem_ptr(&m, 0x100001, UINT64_MAX));
	cr_assert_null(gmem_ptr(&m, UINT64_MAX, 2));
	/* A range spanning two regions is refused even if both are RAM. */
	static uint8_t adj[0x1000];
	struct gmem m2 = { 0 };
	cr_assert_eq(gmem_add_region(&m2, 0, low, 0x1000), 0);
	cr_assert_eq(gmem_add_region(&m2, 0x1000, adj, 0x1000), 0);
	cr_assert_null(gmem_ptr(&m2, 0xfff, 2));
	uint32_t v = 0x12345678, w = 0;
	cr_assert_eq(gmem_write(&m, 0x100, &v, 4), 0);
	cr_assert_eq(gmem_read(&m, 0x100, &w, 4), 0);
	cr_assert_eq(w, v);
	cr_assert_eq(gmem_write(&m, 0xfffe, &v, 4), -EFAULT);
}

Test(gmem, anon_layout_and_e820_small)
{
	struct gmem m;
	struct wisp_err e = { 0 };
	cr_assert_eq(gmem_init_anon(&m, 128ULL << 20, &e), 0, "%s", e.msg);
	cr_assert_eq(m.nr_regions, 1);
	cr_assert_eq(m.ram_size, 128ULL << 20);
	struct gmem_e820 t[8];
	int n = gmem_e820(&m, t, 8);
	cr_assert_eq(n, 3);
	cr_assert_eq(t[0].addr, 0);
	cr_assert_eq(t[0].size, WISP_EBDA_START);
	cr_assert_eq(t[0].type, 1);
	cr_assert_eq(t[1].addr, WISP_EBDA_START);
	cr_assert_eq(t[1].type, 2);
	cr_assert_eq(t[2].addr, WISP_HIMEM_START);
	cr_assert_eq(t[2].addr + t[2].size, 128ULL << 20);
	cr_assert_eq(gmem_e820(&m, t, 2), -ENOSPC);
	gmem_destroy(&m);
}

Test(gmem, anon_layout_and_e820_above_gap)
{
	struct gmem m;
	struct wisp_err e = { 0 };
	uint64_t ram = WISP_MMIO_GAP_START + (256ULL << 20);
	cr_assert_eq(gmem_init_anon(&m, ram, &e), 0, "%s", e.msg);
	cr_assert_eq(m.nr_regions, 2);
	cr_assert_eq(m.regions[0].size, WISP_MMIO_GAP_START);
	cr_assert_eq(m.regions[1].gpa, WISP_HIGH_RAM_START);
	cr_assert_eq(m.regions[1].size, 256ULL << 20);
	cr_assert_eq(m.regions[1].file_off, WISP_MMIO_GAP_START);
	struct gmem_e820 t[8];
	int n = gmem_e820(&m, t, 8);
	cr_assert_eq(n, 4);
	cr_assert_eq(t[2].addr + t[2].size, WISP_MMIO_GAP_START);
	cr_assert_eq(t[3].addr, WISP_HIGH_RAM_START);
	cr_assert_eq(t[3].size, 256ULL << 20);
	uint64_t total = 0;
	for (int i = 0; i < n; i++)
		if (t[i].type == 1)
			total += t[i].size;
	cr_assert_eq(total, ram - (WISP_HIMEM_START - WISP_EBDA_START));
	/* Nothing maps inside the gap. */
	cr_assert_null(gmem_ptr(&m, WISP_MMIO_GAP_START, 1));
	cr_assert_not_null(gmem_ptr(&m, WISP_HIGH_RAM_START, 1));
	gmem_destroy(&m);
}

Test(gmem, refuses_bad_sizes)
{
	struct gmem m;
	struct wisp_err e = { 0 };
	cr_assert_eq(gmem_init_anon(&m, 0, &e), -EINVAL);
	cr_assert_eq(gmem_init_anon(&m, (128ULL << 20) + 1, &e), -EINVAL);
	cr_assert_eq(gmem_init_anon(&m, 1ULL << 20, &e), -EINVAL);
	cr_assert(strstr(e.msg, "MiB") != NULL);
}

struct fake_dev {
	uint8_t regs[16];
	int reads, writes;
	uint64_t last_off;
};

static void fake_read(void *o, uint64_t off, uint8_t *data, uint32_t len)
{
	struct fake_dev *d = o;
	d->reads++;
	d->last_off = off;
	memcpy(data, d->regs + off, len);
}

static void fake_write(void *o, uint64_t off, const uint8_t *data, uint32_t len)
{
	struct fake_dev *d = o;
	d->writes++;
	d->last_off = off;
	memcpy(d->regs + off, data, len);
}

static const struct bus_ops fake_ops = { .read = fake_read, .write = fake_write };

Test(bus, dispatch_overlap_and_unmapped)
{
	struct bus b = { .name = "pio" };
	struct fake_dev d = { 0 }, d2 = { 0 };
	struct wisp_err e = { 0 };
	cr_assert_eq(bus_register(&b, 0x3f8, 8, &fake_ops, &d, "serial", &e), 0);
	cr_assert_eq(bus_register(&b, 0x3fc, 8, &fake_ops, &d2, "other", &e), -EEXIST);
	cr_assert(strstr(e.msg, "serial") != NULL);
	cr_assert_eq(bus_register(&b, 0x10, 0, &fake_ops, &d2, "empty", &e), -EINVAL);
	cr_assert_eq(bus_register(&b, UINT64_MAX, 2, &fake_ops, &d2, "wrap", &e), -EINVAL);
	cr_assert_eq(bus_register(&b, 0x400, 8, &fake_ops, &d2, "next", &e), 0);
	uint8_t v = 0x41;
	cr_assert_eq(bus_write(&b, 0x3fb, &v, 1), 0);
	cr_assert_eq(d.last_off, 3);
	cr_assert_eq(d.regs[3], 0x41);
	uint8_t r[4] = { 0 };
	cr_assert_eq(bus_read(&b, 0x3fb, r, 1), 0);
	cr_assert_eq(r[0], 0x41);
	/* An access straddling the end of a range goes nowhere. */
	cr_assert_eq(bus_read(&b, 0x3fe, r, 4), -ENOENT);
	cr_assert_eq(r[0], 0xff);
	cr_assert_eq(r[3], 0xff);
	cr_assert_eq(bus_read(&b, 0x1234, r, 2), -ENOENT);
	cr_assert_eq(bus_write(&b, 0x1234, r, 2), -ENOENT);
	cr_assert_eq(bus_read(&b, 0x400, r, 3), -ENOENT);
	cr_assert_eq(d2.reads, 0);
	struct bus full = { .name = "mmio" };
	for (int i = 0; i < BUS_MAX_RANGES; i++)
		cr_assert_eq(bus_register(&full, 0x1000ULL * i, 0x1000, &fake_ops, &d, "x", &e), 0);
	cr_assert_eq(bus_register(&full, 0x100000, 0x1000, &fake_ops, &d, "x", &e), -ENOSPC);
}

static int add_one(void *arg)
{
	int *p = arg;
	return ++*p;
}

struct call_ctx {
	struct evloop *l;
	int counter;
	int results[50];
};

static void *caller(void *arg)
{
	struct call_ctx *c = arg;
	for (int i = 0; i < 50; i++)
		c->results[i] = evloop_call(c->l, add_one, &c->counter);
	evloop_stop(c->l, 7);
	return NULL;
}

Test(evloop, cross_thread_calls_run_in_order_then_stop)
{
	struct evloop l;
	struct wisp_err e = { 0 };
	cr_assert_eq(evloop_init(&l, &e), 0);
	struct call_ctx c = { .l = &l };
	pthread_t t;
	pthread_create(&t, NULL, caller, &c);
	cr_assert_eq(evloop_run(&l), 7);
	pthread_join(t, NULL);
	for (int i = 0; i < 50; i++)
		cr_assert_eq(c.results[i], i + 1);
	cr_assert_eq(evloop_call(&l, add_one, &c.counter), 51); /* same thread: direct */
	evloop_destroy(&l);
}

struct pipe_ctx {
	struct evloop *l;
	int rfd;
	int got;
};

static void on_pipe(void *opaque, uint32_t events)
{
	struct pipe_ctx *p = opaque;
	char buf[8];
	(void)events;
	if (read(p->rfd, buf, sizeof(buf)) > 0)
		p->got++;
	evloop_del(p->l, p->rfd);
	evloop_stop(p->l, 3);
}

Test(evloop, fd_callback_and_del_inside_callback)
{
	struct evloop l;
	struct wisp_err e = { 0 };
	cr_assert_eq(evloop_init(&l, &e), 0);
	int fds[2];
	cr_assert_eq(pipe(fds), 0);
	struct pipe_ctx p = { .l = &l, .rfd = fds[0] };
	cr_assert_eq(evloop_add(&l, fds[0], EPOLLIN, on_pipe, &p), 0);
	cr_assert_eq(evloop_del(&l, 12345), -ENOENT);
	cr_assert_eq(write(fds[1], "x", 1), 1);
	cr_assert_eq(evloop_run(&l), 3);
	cr_assert_eq(p.got, 1);
	evloop_destroy(&l);
	close(fds[0]);
	close(fds[1]);
}

static void *late_caller(void *arg)
{
	struct call_ctx *c = arg;
	c->results[0] = evloop_call(c->l, add_one, &c->counter);
	return NULL;
}

Test(evloop, call_after_stop_fails)
{
	struct evloop l;
	struct wisp_err e = { 0 };
	cr_assert_eq(evloop_init(&l, &e), 0);
	evloop_stop(&l, 0);
	cr_assert_eq(evloop_run(&l), 0);
	struct call_ctx c = { .l = &l };
	pthread_t t;
	pthread_create(&t, NULL, late_caller, &c);
	pthread_join(t, NULL);
	cr_assert_eq(c.results[0], -ESHUTDOWN);
	cr_assert_eq(c.counter, 0);
	evloop_destroy(&l);
}
