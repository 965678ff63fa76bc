/* PATCH /drives and PATCH /network-interfaces reach the devices:
 * virtio_blk_update swaps the backing file (the capacity the guest reads
 * follows, a config-change is signalled) and the rate limiter;
 * virtio_net_update swaps rate limiters; unknown ids and bad files change
 * nothing. No KVM: the devices sit on fake guest memory in a struct vm. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "virtio_fake.h"
#include "vmm/metrics.h"
#include "vmm/vm.h"

static struct fake_guest g;
static struct vm vm;
static char dir[64], img1[128], img2[128];

static void make_file(const char *path, size_t bytes)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, (off_t)bytes), 0);
	close(fd);
}

static void setup(void)
{
	struct wisp_err e = { 0 };
	fake_init(&g);
	memset(&vm, 0, sizeof(vm));
	cr_assert_eq(evloop_init(&vm.loop, &e), 0, "%s", e.msg);
	snprintf(dir, sizeof(dir), "/tmp/wisp-devupd-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(img1, sizeof(img1), "%s/a.img", dir);
	snprintf(img2, sizeof(img2), "%s/b.img", dir);
	make_file(img1, 1 << 20);
	make_file(img2, 4 << 20);

	struct vmcfg_drive d = { 0 };
	snprintf(d.drive_id, sizeof(d.drive_id), "a_long_drive_id_longer_than_the_twenty_byte_serial");
	d.path_on_host = img1;
	struct virtio_mmio_dev *dev;
	cr_assert_eq(virtio_blk_create(&g.mem, &vm.loop, &d, &dev, &e), 0, "%s", e.msg);
	vm.virtio[vm.nr_virtio++] = dev;
}

static void teardown(void)
{
	for (int i = 0; i < vm.nr_virtio; i++)
		virtio_device_free(vm.virtio[i]);
	evloop_destroy(&vm.loop);
	fake_fini(&g);
	unlink(img1);
	unlink(img2);
	rmdir(dir);
}

static uint64_t capacity(void)
{
	struct virtio_mmio_dev *d = vm.virtio[0];
	uint32_t lo = mr32(d, VIRTIO_MMIO_CONFIG), hi = mr32(d, VIRTIO_MMIO_CONFIG + 4);
	return ((uint64_t)hi << 32) | lo;
}

TestSuite(devupdate, .init = setup, .fini = teardown);

Test(devupdate, drive_file_and_limiter)
{
	struct wisp_err e = { 0 };
	const char *id = "a_long_drive_id_longer_than_the_twenty_byte_serial";
	cr_assert_eq(capacity(), (1 << 20) / 512);
	uint32_t gen = mr32(vm.virtio[0], VIRTIO_MMIO_CONFIG_GENERATION);

	/* A file that cannot be opened changes nothing. */
	cr_assert_lt(virtio_blk_update(&vm, id, "/nonexistent/disk", NULL, &e), 0);
	cr_assert(strstr(e.msg, "drive a_long"), "%s", e.msg);
	cr_assert_eq(capacity(), (1 << 20) / 512);

	memset(&e, 0, sizeof(e));
	cr_assert_eq(virtio_blk_update(&vm, id, img2, NULL, &e), 0, "%s", e.msg);
	cr_assert_eq(capacity(), (4 << 20) / 512);
	cr_assert_neq(mr32(vm.virtio[0], VIRTIO_MMIO_CONFIG_GENERATION), gen,
		      "the config generation moves so the guest rereads the capacity");

	struct vmcfg_rate_limiter rl = { .present = true,
		.ops = { .present = true, .size = 100, .refill_time = 1000 } };
	cr_assert_eq(virtio_blk_update(&vm, id, NULL, &rl, &e), 0, "%s", e.msg);
	cr_assert_eq(capacity(), (4 << 20) / 512, "a limiter-only update keeps the file");

	memset(&e, 0, sizeof(e));
	cr_assert_eq(virtio_blk_update(&vm, "nodrive", img1, NULL, &e), -ENOENT);
	cr_assert(strstr(e.msg, "no block device \"nodrive\""), "%s", e.msg);
}

Test(devupdate, net_limiters_unknown_iface)
{
	struct wisp_err e = { 0 };
	struct vmcfg_rate_limiter rl = { .present = true,
		.bandwidth = { .present = true, .size = 1000, .refill_time = 100 } };
	cr_assert_eq(virtio_net_update(&vm, "eth0", &rl, NULL, &e), -ENOENT);
	cr_assert(strstr(e.msg, "no interface \"eth0\""), "%s", e.msg);
}

Test(devupdate, device_counters_in_metrics)
{
	char *line = metrics_flush_to_string();     /* start from zero */
	free(line);
	virtio_mmio_fail(vm.virtio[0], "test: a misbehaving guest");
	line = metrics_flush_to_string();
	cr_assert_not_null(line);
	cr_assert(strstr(line, "\"block_a_long_drive_id_longer_than_the_twenty_byte_serial\":{"),
		  "%s", line);
	cr_assert(strstr(line, "\"failed\":1"), "%s", line);
	free(line);
}
