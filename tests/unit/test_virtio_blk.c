/* virtio-blk request parsing against a temporary image file, through the
 * whole device (transport, queue, backend) over a fake guest. Also the
 * token-bucket rate limiter. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "virtio_fake.h"
#include "vmm/ratelimit.h"

#define IMG_SECTORS 2048 /* 1 MiB */
#define HDR_GPA     0x20000ull
#define DATA_GPA    0x21000ull
#define STATUS_GPA  0x30000ull

static struct fake_guest g;
static struct virtio_mmio_dev *dev;
static char img[64];
static uint16_t next_head;

static void make_image(void)
{
	snprintf(img, sizeof(img), "/tmp/wisp-blk-XXXXXX");
	int fd = mkstemp(img);
	cr_assert_geq(fd, 0);
	uint8_t sec[512];
	for (int s = 0; s < IMG_SECTORS; s++) {
		memset(sec, s & 0xff, sizeof(sec));
		cr_assert_eq(write(fd, sec, sizeof(sec)), (ssize_t)sizeof(sec));
	}
	close(fd);
}

static void open_dev(bool ro, const struct vmcfg_rate_limiter *rl)
{
	struct vmcfg_drive cfg = { 0 };
	snprintf(cfg.drive_id, sizeof(cfg.drive_id), "rootfs");
	cfg.path_on_host = img;
	cfg.is_read_only = ro;
	if (rl)
		cfg.rate_limiter = *rl;
	struct wisp_err e = { 0 };
	cr_assert_eq(virtio_blk_create(&g.mem, NULL, &cfg, &dev, &e), 0, "%s", e.msg);
	mw32(dev, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	uint64_t f = mr32(dev, VIRTIO_MMIO_DEVICE_FEATURES);
	fake_bringup(dev, f | VIRTIO_BIT(VIRTIO_F_VERSION_1), 16);
}

static void setup(void)
{
	fake_init(&g);
	make_image();
	next_head = 0;
}

static void teardown(void)
{
	virtio_device_free(dev);
	unlink(img);
	fake_fini(&g);
}

/* One request: header, optional data buffer, status byte. Returns the
 * status byte (0xee when the device did not complete it). */
static uint8_t request(uint32_t type, uint64_t sector, uint32_t len, bool data_out)
{
	struct { uint32_t type, reserved; uint64_t sector; } __attribute__((packed)) h = {
		type, 0, sector
	};
	memcpy(fake_ptr(&g, HDR_GPA), &h, sizeof(h));
	*(uint8_t *)fake_ptr(&g, STATUS_GPA) = 0xee;
	uint16_t head = next_head;
	uint16_t i = head;
	fake_desc(&g, 0, i, HDR_GPA, sizeof(h), VIRTQ_DESC_F_NEXT, (uint16_t)((i + 1) % 16));
	i = (uint16_t)((i + 1) % 16);
	if (len) {
		fake_desc(&g, 0, i, DATA_GPA, len,
			  VIRTQ_DESC_F_NEXT | (data_out ? 0 : VIRTQ_DESC_F_WRITE),
			  (uint16_t)((i + 1) % 16));
		i = (uint16_t)((i + 1) % 16);
	}
	fake_desc(&g, 0, i, STATUS_GPA, 1, VIRTQ_DESC_F_WRITE, 0);
	next_head = (uint16_t)((i + 1) % 16);
	fake_avail(&g, 0, 16, head);
	virtio_mmio_kick(dev, 0);
	return *(uint8_t *)fake_ptr(&g, STATUS_GPA);
}

static uint8_t file_byte(uint64_t off)
{
	int fd = open(img, O_RDONLY);
	uint8_t b = 0;
	cr_assert_eq(pread(fd, &b, 1, (off_t)off), 1);
	close(fd);
	return b;
}

TestSuite(blk, .init = setup, .fini = teardown);

Test(blk, config_and_features)
{
	open_dev(false, NULL);
	uint64_t cap = 0;
	virtio_mmio_read(dev, VIRTIO_MMIO_CONFIG, (uint8_t *)&cap, 8);
	cr_assert_eq(cap, IMG_SECTORS);
	cr_assert(virtio_has_feature(dev, 9), "FLUSH");
	cr_assert(virtio_has_feature(dev, 13), "DISCARD");
	cr_assert(virtio_has_feature(dev, 14), "WRITE_ZEROES");
	cr_assert_not(virtio_has_feature(dev, 5), "not RO");
}

Test(blk, read_returns_image_data)
{
	open_dev(false, NULL);
	cr_assert_eq(request(0, 7, 1024, false), 0);
	uint8_t *p = fake_ptr(&g, DATA_GPA);
	cr_assert_eq(p[0], 7);
	cr_assert_eq(p[511], 7);
	cr_assert_eq(p[512], 8);
	struct virtq_used_elem e = fake_used_elem(&g, 0, 0, 16);
	cr_assert_eq(e.len, 1024 + 1, "used length counts data and status");
	cr_assert_eq(dev->violations, 0);
}

Test(blk, write_reaches_the_file)
{
	open_dev(false, NULL);
	memset(fake_ptr(&g, DATA_GPA), 0xa5, 512);
	cr_assert_eq(request(1, 100, 512, true), 0);
	cr_assert_eq(file_byte(100 * 512), 0xa5);
	cr_assert_eq(file_byte(100 * 512 + 511), 0xa5);
	cr_assert_eq(file_byte(101 * 512), 101 & 0xff);
	cr_assert_eq(request(4, 0, 0, false), 0, "flush");
}

Test(blk, requests_outside_capacity_fail)
{
	open_dev(false, NULL);
	cr_assert_eq(request(0, IMG_SECTORS, 512, false), 1, "one past the end");
	cr_assert_eq(request(0, IMG_SECTORS - 1, 1024, false), 1, "straddling the end");
	cr_assert_eq(request(1, 0xffffffffffffffffull, 512, true), 1, "sector overflow");
	cr_assert_eq(request(0, 0x0080000000000000ull, 512, false), 1, "sector*512 overflow");
	cr_assert_eq(request(0, 0, 100, false), 1, "not a multiple of 512");
	cr_assert_eq(request(0, IMG_SECTORS - 1, 512, false), 0, "last sector is fine");
	cr_assert_not(dev->failed, "bad requests are I/O errors, not device failures");
}

Test(blk, read_only_drive_refuses_writes)
{
	open_dev(true, NULL);
	cr_assert(virtio_has_feature(dev, 5), "RO offered and accepted");
	cr_assert_not(virtio_has_feature(dev, 13), "no DISCARD on a read-only drive");
	memset(fake_ptr(&g, DATA_GPA), 0x5a, 512);
	cr_assert_eq(request(1, 3, 512, true), 1);
	cr_assert_eq(file_byte(3 * 512), 3);
	cr_assert_eq(request(0, 3, 512, false), 0, "reads still work");
}

Test(blk, get_id_discard_write_zeroes_unsupported)
{
	open_dev(false, NULL);
	cr_assert_eq(request(8, 0, 20, false), 0);
	cr_assert_eq(memcmp(fake_ptr(&g, DATA_GPA), "rootfs\0\0", 8), 0);
	struct { uint64_t sector; uint32_t num, flags; } __attribute__((packed)) seg = { 8, 8, 0 };
	memcpy(fake_ptr(&g, DATA_GPA), &seg, sizeof(seg));
	cr_assert_eq(request(13, 0, sizeof(seg), true), 0, "write zeroes");
	cr_assert_eq(file_byte(8 * 512), 0);
	cr_assert_eq(file_byte(15 * 512 + 511), 0);
	cr_assert_eq(file_byte(16 * 512), 16);
	seg = (typeof(seg)){ 32, 8, 0 };
	memcpy(fake_ptr(&g, DATA_GPA), &seg, sizeof(seg));
	cr_assert_eq(request(11, 0, sizeof(seg), true), 0, "discard");
	cr_assert_eq(file_byte(32 * 512), 0, "punched hole reads zero");
	seg = (typeof(seg)){ 32, 8, 1 };
	memcpy(fake_ptr(&g, DATA_GPA), &seg, sizeof(seg));
	cr_assert_eq(request(11, 0, sizeof(seg), true), 2, "discard with unmap flag");
	seg = (typeof(seg)){ IMG_SECTORS - 4, 8, 0 };
	memcpy(fake_ptr(&g, DATA_GPA), &seg, sizeof(seg));
	cr_assert_eq(request(13, 0, sizeof(seg), true), 1, "zeroes past the end");
	cr_assert_eq(request(10, 0, 16, false), 2, "GET_LIFETIME unsupported");
	cr_assert_eq(request(0x7777, 0, 0, false), 2, "unknown type");
}

Test(blk, request_without_status_fails_the_device)
{
	open_dev(false, NULL);
	fake_desc(&g, 0, 0, HDR_GPA, 16, 0, 0);
	fake_avail(&g, 0, 16, 0);
	virtio_mmio_kick(dev, 0);
	cr_assert(dev->failed);
	cr_assert(mr32(dev, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
}

Test(blk, header_split_across_buffers)
{
	open_dev(false, NULL);
	struct { uint32_t type, reserved; uint64_t sector; } __attribute__((packed)) h = { 0, 0, 5 };
	memcpy(fake_ptr(&g, HDR_GPA), &h, sizeof(h));
	fake_desc(&g, 0, 0, HDR_GPA, 6, VIRTQ_DESC_F_NEXT, 1);
	fake_desc(&g, 0, 1, HDR_GPA + 6, 10, VIRTQ_DESC_F_NEXT, 2);
	/* data and status in one buffer */
	fake_desc(&g, 0, 2, DATA_GPA, 513, VIRTQ_DESC_F_WRITE, 0);
	fake_avail(&g, 0, 16, 0);
	virtio_mmio_kick(dev, 0);
	uint8_t *p = fake_ptr(&g, DATA_GPA);
	cr_assert_eq(p[0], 5);
	cr_assert_eq(p[511], 5);
	cr_assert_eq(p[512], 0, "status OK in the data buffer's last byte");
}

Test(blk, rate_limited_request_waits)
{
	struct vmcfg_rate_limiter rl = { .present = true,
					 .ops = { .present = true, .size = 1, .refill_time = 100000 } };
	open_dev(false, &rl);
	cr_assert_eq(request(0, 0, 512, false), 0);
	cr_assert_eq(request(0, 1, 512, false), 0xee, "second op waits for a token");
	cr_assert_eq(fake_used_idx(&g, 0), 1);
	cr_assert_not(dev->failed);
}

Test(ratelimit, bucket_refills_linearly)
{
	struct ratelimit r;
	struct vmcfg_rate_limiter cfg = {
		.present = true,
		.bandwidth = { .present = true, .size = 1000, .one_time_burst = 500, .refill_time = 1000 },
	};
	cr_assert_eq(ratelimit_init(&r, &cfg, NULL), 0);
	uint64_t t0 = r.bw.last_ns;
	cr_assert(ratelimit_consume_at(&r, 1500, 0, t0), "burst + full bucket");
	cr_assert_not(ratelimit_consume_at(&r, 100, 0, t0), "empty");
	cr_assert(r.blocked);
	ratelimit_timer_event(&r);
	cr_assert_not(ratelimit_consume_at(&r, 100, 0, t0 + 50 * 1000000ull), "50 tokens only");
	ratelimit_timer_event(&r);
	cr_assert(ratelimit_consume_at(&r, 100, 0, t0 + 100 * 1000000ull), "100 ms: 100 tokens");
	ratelimit_timer_event(&r);
	/* oversized request: passes on a full bucket, leaves a debt */
	cr_assert(ratelimit_consume_at(&r, 5000, 0, t0 + 10000 * 1000000ull));
	cr_assert_not(ratelimit_consume_at(&r, 1, 0, t0 + 12000 * 1000000ull), "still in debt");
	ratelimit_timer_event(&r);
	cr_assert(ratelimit_consume_at(&r, 1, 0, t0 + 15000 * 1000000ull));
	ratelimit_destroy(&r);
}

Test(ratelimit, absent_config_passes_everything)
{
	struct ratelimit r;
	cr_assert_eq(ratelimit_init(&r, NULL, NULL), 0);
	cr_assert_not(ratelimit_enabled(&r));
	cr_assert(ratelimit_consume(&r, ~0ull, ~0ull));
	cr_assert_eq(r.timer_fd, -1);
}
