/* virtio-mmio transport state through a snapshot: a device restored from a
 * state image continues exactly where the saved one stopped, and a state
 * that does not fit the restored device is refused. */
#include <criterion/criterion.h>
#include <errno.h>
#include <unistd.h>

#include "virtio_fake.h"
#include "vmm/snapshot.h"

struct cdev {
	int activated;
	int chains;
};

static int c_activate(struct virtio_mmio_dev *d)
{
	((struct cdev *)d->priv)->activated++;
	return 0;
}

static void c_notify(struct virtio_mmio_dev *d, int qi)
{
	static struct virtq_chain c;
	while (virtio_mmio_pop(d, qi, &c) == 1) {
		((struct cdev *)d->priv)->chains++;
		virtq_push(&d->queues[qi], c.head, (uint32_t)c.write_len);
	}
	virtio_mmio_notify_queue(d, qi);
}

static const struct virtio_dev_ops cdev_ops = {
	.name = "snap", .device_id = 42, .nr_queues = 2, .queue_max = 16,
	.activate = c_activate, .queue_notify = c_notify,
};
static const struct virtio_dev_ops other_ops = {
	.name = "other", .device_id = 43, .nr_queues = 2, .queue_max = 16,
	.activate = c_activate, .queue_notify = c_notify,
};

#define FEATS (VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC))

static struct fake_guest g;
static struct virtio_mmio_dev a, b;
static struct cdev ca, cb;

static void setup(void)
{
	fake_init(&g);
	memset(&ca, 0, sizeof(ca));
	memset(&cb, 0, sizeof(cb));
	struct wisp_err e = { 0 };
	cr_assert_eq(virtio_mmio_init(&a, &cdev_ops, &ca, &g.mem, FEATS, &e), 0, "%s", e.msg);
}

static void teardown(void)
{
	virtio_mmio_destroy(&a);
	if (b.ops)
		virtio_mmio_destroy(&b);
	memset(&b, 0, sizeof(b));
	fake_fini(&g);
}

TestSuite(snapdev, .init = setup, .fini = teardown);

static void one_request(struct virtio_mmio_dev *d, uint16_t head)
{
	fake_desc(&g, 0, head, FAKE_DATA, 16, VIRTQ_DESC_F_NEXT, (uint16_t)(head + 1));
	fake_desc(&g, 0, (uint16_t)(head + 1), FAKE_DATA + 0x100, 32, VIRTQ_DESC_F_WRITE, 0);
	fake_avail(&g, 0, 16, head);
	virtio_mmio_kick(d, 0);
}

/* Save device a after one request; returns a parsed image. */
static uint8_t *save_a(struct snap_image *img)
{
	struct snap_writer w;
	cr_assert_eq(snap_writer_init(&w, 1 << 20, 0), 0);
	struct wisp_err e = { 0 };
	cr_assert_eq(snap_virtio_save(&a, 3, &w, &e), 0, "%s", e.msg);
	const uint8_t *buf;
	size_t len;
	cr_assert_eq(snap_writer_finish(&w, &buf, &len, &e), 0);
	uint8_t *copy = malloc(len);
	memcpy(copy, buf, len);
	snap_writer_free(&w);
	cr_assert_eq(snap_parse(copy, len, img, &e), 0, "%s", e.msg);
	return copy;
}

Test(snapdev, restored_device_continues)
{
	fake_bringup(&a, VIRTIO_BIT(VIRTIO_F_VERSION_1) | FEATS, 16);
	one_request(&a, 0);
	cr_assert_eq(ca.chains, 1);
	cr_assert_eq(fake_used_idx(&g, 0), 1);
	fake_irqs(&a);
	struct snap_image img;
	uint8_t *buf = save_a(&img);

	struct wisp_err e = { 0 };
	cr_assert_eq(virtio_mmio_init(&b, &cdev_ops, &cb, &g.mem, FEATS, &e), 0);
	cr_assert_eq(snap_virtio_restore(&b, 3, &img, &e), 0, "%s", e.msg);
	cr_assert_eq(snap_check_all_used(&img, &e), 0);
	cr_assert_eq(cb.activated, 1, "the backend was not started");
	cr_assert(b.active);
	cr_assert_eq(b.status, a.status);
	cr_assert_eq(b.driver_features, a.driver_features);
	cr_assert_eq(b.queues[0].last_avail, 1);
	cr_assert_eq(b.queues[0].used_idx, 1);
	cr_assert(b.queues[0].ready && b.queues[1].ready);
	cr_assert(b.queues[0].event_idx);
	cr_assert_eq(mr32(&b, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_INT_VRING);

	/* the next request is taken from where a stopped, not re-run */
	one_request(&b, 2);
	cr_assert_eq(cb.chains, 1);
	cr_assert_eq(fake_used_idx(&g, 0), 2);
	cr_assert_eq(fake_used_elem(&g, 0, 1, 16).id, 2);
	snap_image_free(&img);
	free(buf);
}

Test(snapdev, kick_after_restore_delivers_queued_work)
{
	fake_bringup(&a, VIRTIO_BIT(VIRTIO_F_VERSION_1) | FEATS, 16);
	/* the guest queued a request but the device never saw the kick */
	fake_desc(&g, 0, 0, FAKE_DATA, 16, VIRTQ_DESC_F_NEXT, 1);
	fake_desc(&g, 0, 1, FAKE_DATA + 0x100, 32, VIRTQ_DESC_F_WRITE, 0);
	fake_avail(&g, 0, 16, 0);
	struct snap_image img;
	uint8_t *buf = save_a(&img);
	struct wisp_err e = { 0 };
	cr_assert_eq(virtio_mmio_init(&b, &cdev_ops, &cb, &g.mem, FEATS, &e), 0);
	cr_assert_eq(snap_virtio_restore(&b, 3, &img, &e), 0, "%s", e.msg);
	snap_virtio_kick(&b);
	uint64_t v;
	cr_assert_eq(read(b.kick_fd[0], &v, sizeof(v)), sizeof(v), "queue 0 was not kicked");
	virtio_mmio_kick(&b, 0);
	cr_assert_eq(cb.chains, 1);
	snap_image_free(&img);
	free(buf);
}

Test(snapdev, refuses_another_device_type)
{
	fake_bringup(&a, VIRTIO_BIT(VIRTIO_F_VERSION_1) | FEATS, 16);
	struct snap_image img;
	uint8_t *buf = save_a(&img);
	struct wisp_err e = { 0 };
	cr_assert_eq(virtio_mmio_init(&b, &other_ops, &cb, &g.mem, FEATS, &e), 0);
	cr_assert_eq(snap_virtio_restore(&b, 3, &img, &e), -EINVAL);
	cr_assert(strstr(e.msg, "device type 42") != NULL, "%s", e.msg);
	cr_assert_eq(cb.activated, 0);
	snap_image_free(&img);
	free(buf);
}

Test(snapdev, refuses_features_the_device_lacks)
{
	fake_bringup(&a, VIRTIO_BIT(VIRTIO_F_VERSION_1) | FEATS, 16);
	struct snap_image img;
	uint8_t *buf = save_a(&img);
	struct wisp_err e = { 0 };
	cr_assert_eq(virtio_mmio_init(&b, &cdev_ops, &cb, &g.mem, 0, &e), 0);
	cr_assert_eq(snap_virtio_restore(&b, 3, &img, &e), -EINVAL);
	cr_assert(strstr(e.msg, "does not offer") != NULL, "%s", e.msg);
	snap_image_free(&img);
	free(buf);
}

Test(snapdev, refuses_rings_outside_guest_ram)
{
	fake_bringup(&a, VIRTIO_BIT(VIRTIO_F_VERSION_1) | FEATS, 16);
	a.queues[1].used_gpa = 0x40000000ull;  /* no RAM there */
	struct snap_image img;
	uint8_t *buf = save_a(&img);
	struct wisp_err e = { 0 };
	cr_assert_eq(virtio_mmio_init(&b, &cdev_ops, &cb, &g.mem, FEATS, &e), 0);
	cr_assert_eq(snap_virtio_restore(&b, 3, &img, &e), -EINVAL);
	cr_assert(strstr(e.msg, "queue 1") != NULL, "%s", e.msg);
	cr_assert_eq(cb.activated, 0);
	cr_assert_eq(snap_virtio_restore(&b, 4, &img, &e), -ENOENT);
	snap_image_free(&img);
	free(buf);
}

/* Legacy devices: the serial port's registers and receive FIFO, the
 * i8042's command byte and buffer, through a state image. */
#include "vmm/i8042.h"
#include "vmm/serial.h"

static void no_irq(void *o) { (void)o; }

Test(snaplegacy, serial_and_i8042_round_trip_and_refusals)
{
	struct serial s1, s2;
	struct i8042 k1, k2;
	serial_init(&s1, -1, no_irq, NULL);
	serial_init(&s2, -1, no_irq, NULL);
	i8042_init(&k1, no_irq, no_irq, NULL);
	i8042_init(&k2, no_irq, no_irq, NULL);
	s1.ier = 0x05;
	s1.lcr = 0x03;
	cr_assert_eq(serial_input(&s1, (const uint8_t *)"abc", 3), 3);
	cr_assert_eq(i8042_send_ctrl_alt_del(&k1), 0);
	struct snap_writer w;
	cr_assert_eq(snap_writer_init(&w, 1 << 20, 0), 0);
	cr_assert_eq(snap_serial_save(&s1, &w), 0);
	cr_assert_eq(snap_i8042_save(&k1, &w), 0);
	const uint8_t *buf;
	size_t len;
	struct wisp_err e = { 0 };
	cr_assert_eq(snap_writer_finish(&w, &buf, &len, &e), 0);
	struct snap_image img;
	cr_assert_eq(snap_parse(buf, len, &img, &e), 0, "%s", e.msg);
	cr_assert_eq(snap_serial_restore(&s2, &img, &e), 0, "%s", e.msg);
	cr_assert_eq(snap_i8042_restore(&k2, &img, &e), 0, "%s", e.msg);
	cr_assert_eq(snap_check_all_used(&img, &e), 0);
	cr_assert_eq(s2.ier, 0x05);
	cr_assert_eq(s2.lcr, 0x03);
	cr_assert_eq(s2.rx_count, 3);
	cr_assert_eq(memcmp(&s2.rx[s2.rx_head], "abc", 3), 0);
	cr_assert_eq(k2.count, k1.count);
	cr_assert_gt(k2.count, 0);
	cr_assert_eq(memcmp(k2.buf, k1.buf, sizeof(k1.buf)), 0);
	snap_image_free(&img);
	snap_writer_free(&w);

	/* a FIFO position out of range is refused, the device left alone */
	s1.rx_head = SERIAL_FIFO_SIZE + 5;
	cr_assert_eq(snap_writer_init(&w, 1 << 20, 0), 0);
	cr_assert_eq(snap_serial_save(&s1, &w), 0);
	cr_assert_eq(snap_writer_finish(&w, &buf, &len, &e), 0);
	cr_assert_eq(snap_parse(buf, len, &img, &e), 0);
	serial_init(&s2, -1, no_irq, NULL);
	cr_assert_eq(snap_serial_restore(&s2, &img, &e), -EINVAL);
	cr_assert(strstr(e.msg, "out of range") != NULL, "%s", e.msg);
	cr_assert_eq(s2.rx_count, 0);
	snap_image_free(&img);
	snap_writer_free(&w);
}
