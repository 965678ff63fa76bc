/* A virtio-vsock device on a real event loop thread over the fake guest
 * memory, for the end-to-end vsock tests: the device's kick eventfds are
 * on the loop as the VMM registers them, its hybrid Unix socket is in a
 * fresh temporary directory. One fixture per test file (static state). */
#ifndef WISP_TEST_VSOCK_FIXTURE_H
#define WISP_TEST_VSOCK_FIXTURE_H

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>

#include "virtio_fake.h"
#include "vmm/evloop.h"
#include "vmm/virtio/vsock.h"

static struct fake_guest g;
static struct virtio_mmio_dev *dev;
static struct evloop loop;
static pthread_t loop_thread;
static char dir[64], uds[128];

static void vsock_fixture_kick(void *opaque, uint32_t ev)
{
	(void)ev;
	struct virtio_kick *k = opaque;
	uint64_t v;
	if (read(k->d->kick_fd[k->qi], &v, sizeof(v)) < 0)
		return;
	virtio_mmio_kick(k->d, k->qi);
}

static void *vsock_fixture_loop(void *arg)
{
	(void)arg;
	evloop_run(&loop);
	return NULL;
}

/* TMPL: a mkdtemp template for the directory of the Unix socket. */
static void vsock_fixture_setup(const char *tmpl, uint64_t cid)
{
	fake_init(&g);
	struct wisp_err e = { 0 };
	cr_assert_eq(evloop_init(&loop, &e), 0);
	snprintf(dir, sizeof(dir), "%s", tmpl);
	cr_assert_not_null(mkdtemp(dir));
	snprintf(uds, sizeof(uds), "%s/v.sock", dir);
	struct vmcfg_vsock cfg = { .present = true, .guest_cid = cid, .uds_path = uds };
	cr_assert_eq(virtio_vsock_create(&g.mem, &loop, &cfg, &dev, &e), 0, "%s", e.msg);
	for (int i = 0; i < 3; i++) {
		dev->kick[i] = (struct virtio_kick){ .d = dev, .qi = i };
		cr_assert_eq(evloop_add(&loop, dev->kick_fd[i], EPOLLIN, vsock_fixture_kick,
					&dev->kick[i]), 0);
	}
	cr_assert_eq(pthread_create(&loop_thread, NULL, vsock_fixture_loop, NULL), 0);
}

static void vsock_fixture_teardown(void)
{
	evloop_stop(&loop, 0);
	pthread_join(loop_thread, NULL);
	virtio_device_free(dev);
	evloop_destroy(&loop);
	char p[160];
	snprintf(p, sizeof(p), "rm -rf %s", dir);
	if (system(p) != 0)
		cr_log_warn("cleanup of %s failed", dir);
	fake_fini(&g);
}

#endif
