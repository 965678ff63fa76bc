/* The virtio-mmio transport and split virtqueue against a hostile fake
 * guest: every case must end with the device failed (or the write
 * ignored), the violation counted, and nothing outside guest RAM touched. */
#include <criterion/criterion.h>
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include "virtio_fake.h"

/* A test device: two queues of up to 16 entries, 8 bytes of config. Its
 * queue handler pops every chain, records it, and completes it. */
struct tdev {
	int notified;
	int chains;
	uint64_t last_read_len, last_write_len;
	int last_nr;
	int popped_error;
	uint8_t config[8];
	int activated, resets;
};

static void t_config_read(struct virtio_mmio_dev *d, uint32_t off, uint8_t *data, uint32_t len)
{
	struct tdev *t = d->priv;
	memcpy(data, t->config + off, len);
}

static int t_activate(struct virtio_mmio_dev *d)
{
	struct tdev *t = d->priv;
	t->activated++;
	return 0;
}

static void t_reset(struct virtio_mmio_dev *d)
{
	struct tdev *t = d->priv;
	t->resets++;
}

static void t_notify(struct virtio_mmio_dev *d, int qi)
{
	struct tdev *t = d->priv;
	static struct virtq_chain c;
	t->notified++;
	for (;;) {
		int r = virtio_mmio_pop(d, qi, &c);
		if (r < 0) {
			t->popped_error++;
			return;
		}
		if (r == 0)
			break;
		t->chains++;
		t->last_read_len = c.read_len;
		t->last_write_len = c.write_len;
		t->last_nr = c.nr;
		virtq_push(&d->queues[qi], c.head, (uint32_t)c.write_len);
	}
	virtio_mmio_notify_queue(d, qi);
}

static const struct virtio_dev_ops tdev_ops = {
	.name = "test",
	.device_id = 42,
	.nr_queues = 2,
	.queue_max = 16,
	.config_size = 8,
	.config_read = t_config_read,
	.activate = t_activate,
	.reset = t_reset,
	.queue_notify = t_notify,
};

#define FEAT_ALL (VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | \
		  VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC))

static struct fake_guest g;
static struct virtio_mmio_dev dev;
static struct tdev td;

static void setup(void)
{
	fake_init(&g);
	memset(&td, 0, sizeof(td));
	struct wisp_err e = { 0 };
	cr_assert_eq(virtio_mmio_init(&dev, &tdev_ops, &td, &g.mem,
				      VIRTIO_BIT(VIRTIO_F_EVENT_IDX) |
					      VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC), &e), 0, "%s", e.msg);
}

static void teardown(void)
{
	virtio_mmio_destroy(&dev);
	fake_fini(&g);
}

static void kick(int qi)
{
	virtio_mmio_kick(&dev, qi);
}

static void assert_failed(void)
{
	cr_assert(dev.failed, "device not failed");
	cr_assert(mr32(&dev, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	cr_assert_geq(dev.violations, 1);
}

/* One chain: a 16-byte readable buffer and a 32-byte writable one. */
static void good_chain(uint16_t head)
{
	fake_desc(&g, 0, head, FAKE_DATA, 16, VIRTQ_DESC_F_NEXT, (uint16_t)(head + 1));
	fake_desc(&g, 0, (uint16_t)(head + 1), FAKE_DATA + 0x100, 32, VIRTQ_DESC_F_WRITE, 0);
}

TestSuite(virtio, .init = setup, .fini = teardown);

/* ---- sane behaviour first: the hostile cases mean nothing without it ---- */

Test(virtio, identity_registers)
{
	cr_assert_eq(mr32(&dev, VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
	cr_assert_eq(mr32(&dev, VIRTIO_MMIO_VERSION_REG), 2);
	cr_assert_eq(mr32(&dev, VIRTIO_MMIO_DEVICE_ID), 42);
	mw32(&dev, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	cr_assert_eq(mr32(&dev, VIRTIO_MMIO_DEVICE_FEATURES), 1, "VERSION_1 (bit 32) offered");
	mw32(&dev, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	cr_assert_eq(mr32(&dev, VIRTIO_MMIO_DEVICE_FEATURES),
		     (1u << VIRTIO_F_EVENT_IDX) | (1u << VIRTIO_F_INDIRECT_DESC));
	mw32(&dev, VIRTIO_MMIO_QUEUE_SEL, 1);
	cr_assert_eq(mr32(&dev, VIRTIO_MMIO_QUEUE_NUM_MAX), 16);
	cr_assert_eq(mr32(&dev, VIRTIO_MMIO_SHM_LEN_LOW), 0xffffffffu);
}

Test(virtio, good_chain_is_walked_and_completed)
{
	fake_bringup(&dev, FEAT_ALL, 16);
	cr_assert_eq(td.activated, 1);
	good_chain(0);
	fake_avail(&g, 0, 16, 0);
	kick(0);
	cr_assert_eq(td.chains, 1);
	cr_assert_eq(td.last_read_len, 16);
	cr_assert_eq(td.last_write_len, 32);
	cr_assert_eq(fake_used_idx(&g, 0), 1);
	struct virtq_used_elem e = fake_used_elem(&g, 0, 0, 16);
	cr_assert_eq(e.id, 0);
	cr_assert_eq(e.len, 32);
	cr_assert_eq(fake_irqs(&dev), 1);
	cr_assert_eq(mr32(&dev, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_INT_VRING);
	mw32(&dev, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_INT_VRING);
	cr_assert_eq(mr32(&dev, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	cr_assert_eq(dev.violations, 0);
}

Test(virtio, indirect_chain_is_walked)
{
	fake_bringup(&dev, FEAT_ALL, 16);
	uint64_t tab = FAKE_DATA + 0x1000;
	fake_indirect(&g, tab, 0, FAKE_DATA, 10, VIRTQ_DESC_F_NEXT, 2);
	fake_indirect(&g, tab, 2, FAKE_DATA + 0x100, 20, VIRTQ_DESC_F_WRITE, 0);
	fake_desc(&g, 0, 3, tab, 48, VIRTQ_DESC_F_INDIRECT, 0);
	fake_avail(&g, 0, 16, 3);
	kick(0);
	cr_assert_eq(td.chains, 1);
	cr_assert_eq(td.last_read_len, 10);
	cr_assert_eq(td.last_write_len, 20);
	cr_assert_not(dev.failed);
}

Test(virtio, zero_length_buffers_are_skipped)
{
	fake_bringup(&dev, FEAT_ALL, 16);
	fake_desc(&g, 0, 0, 0xdeadbeef000ull, 0, VIRTQ_DESC_F_NEXT, 1);
	fake_desc(&g, 0, 1, FAKE_DATA, 8, 0, 0);
	fake_avail(&g, 0, 16, 0);
	kick(0);
	cr_assert_eq(td.chains, 1);
	cr_assert_eq(td.last_nr, 1);
	cr_assert_not(dev.failed);
}

Test(virtio, event_idx_suppresses_interrupts)
{
	fake_bringup(&dev, FEAT_ALL, 16);
	uint16_t *avail = fake_ptr(&g, FAKE_AVAIL);
	good_chain(0);
	fake_avail(&g, 0, 16, 0);
	kick(0);
	cr_assert_eq(fake_irqs(&dev), 1, "first completion always signalled");
	/* used_event = 5: no interrupt until used idx passes 5 */
	avail[2 + 16] = 5;
	for (int i = 0; i < 4; i++) {
		fake_avail(&g, 0, 16, 0);
		kick(0);
	}
	cr_assert_eq(fake_used_idx(&g, 0), 5);
	cr_assert_eq(fake_irqs(&dev), 0, "no interrupt before used_event is crossed");
	fake_avail(&g, 0, 16, 0);
	kick(0);
	cr_assert_eq(fake_irqs(&dev), 1, "interrupt when used idx crosses used_event");
}

/* The state line SIGUSR1 logs: the driver's indices as guest memory holds
 * them beside the device's own, here with a buffer published but not yet
 * consumed (what a lost kick looks like). */
Test(virtio, describe_shows_driver_and_device_indices)
{
	char line[320];
	virtq_describe(&dev.queues[0], line, sizeof(line));
	cr_assert_str_eq(line, "not ready");
	fake_bringup(&dev, FEAT_ALL, 16);
	uint16_t *avail = fake_ptr(&g, FAKE_AVAIL);
	good_chain(0);
	fake_avail(&g, 0, 16, 0);
	kick(0);
	cr_assert_not(virtq_enable_notify(&dev.queues[0])); /* as the devices do when drained */
	avail[2 + 16] = 7; /* used_event */
	fake_avail(&g, 0, 16, 0); /* published, no kick */
	virtq_describe(&dev.queues[0], line, sizeof(line));
	cr_assert_str_eq(line,
			 "size 16, driver: avail idx 2 flags 0x0 used_event 7; device: next avail 1, "
			 "used idx 1 (in memory 1) avail_event 1, last signalled 1");
}

Test(virtio, no_interrupt_flag_without_event_idx)
{
	fake_bringup(&dev, VIRTIO_BIT(VIRTIO_F_VERSION_1), 16);
	uint16_t *avail = fake_ptr(&g, FAKE_AVAIL);
	avail[0] = VIRTQ_AVAIL_F_NO_INTERRUPT;
	good_chain(0);
	fake_avail(&g, 0, 16, 0);
	kick(0);
	cr_assert_eq(td.chains, 1);
	cr_assert_eq(fake_irqs(&dev), 0);
	avail[0] = 0;
	fake_avail(&g, 0, 16, 0);
	kick(0);
	cr_assert_eq(fake_irqs(&dev), 1);
}

Test(virtio, enable_notify_publishes_avail_event)
{
	fake_bringup(&dev, FEAT_ALL, 16);
	good_chain(0);
	fake_avail(&g, 0, 16, 0);
	fake_avail(&g, 0, 16, 0);
	kick(0);
	cr_assert_not(virtq_enable_notify(&dev.queues[0]));
	uint16_t *used = fake_ptr(&g, FAKE_USED);
	cr_assert_eq(used[2 + 4 * 16], 2, "avail_event = next index the device wants");
	fake_avail(&g, 0, 16, 0);
	cr_assert(virtq_enable_notify(&dev.queues[0]), "a racing buffer is reported");
}

Test(virtio, config_space_and_generation)
{
	td.config[0] = 0xab;
	td.config[7] = 0xcd;
	uint8_t b = 0;
	virtio_mmio_read(&dev, VIRTIO_MMIO_CONFIG, &b, 1);
	cr_assert_eq(b, 0xab);
	virtio_mmio_read(&dev, VIRTIO_MMIO_CONFIG + 7, &b, 1);
	cr_assert_eq(b, 0xcd);
	uint32_t v = 0x12345678;
	virtio_mmio_read(&dev, VIRTIO_MMIO_CONFIG + 6, (uint8_t *)&v, 4);
	cr_assert_eq(v, 0, "a read crossing the end of config space returns zeros");
	uint32_t gen = mr32(&dev, VIRTIO_MMIO_CONFIG_GENERATION);
	fake_bringup(&dev, FEAT_ALL, 16);
	fake_irqs(&dev);
	pthread_mutex_lock(&dev.lock);
	virtio_mmio_config_changed(&dev);
	pthread_mutex_unlock(&dev.lock);
	cr_assert_eq(mr32(&dev, VIRTIO_MMIO_CONFIG_GENERATION), gen + 1);
	cr_assert(mr32(&dev, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_INT_CONFIG);
	cr_assert_eq(fake_irqs(&dev), 1);
}

Test(virtio, reset_after_failure_recovers)
{
	fake_bringup(&dev, FEAT_ALL, 16);
	fake_desc(&g, 0, 0, FAKE_DATA, 8, VIRTQ_DESC_F_NEXT, 0);
	fake_avail(&g, 0, 16, 0);
	kick(0);
	assert_failed();
	cr_assert(mr32(&dev, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_INT_CONFIG,
		  "NEEDS_RESET raises a config interrupt");
	int resets = td.resets;
	mw32(&dev, VIRTIO_MMIO_STATUS, 0);
	cr_assert_eq(mr32(&dev, VIRTIO_MMIO_STATUS), 0);
	cr_assert_not(dev.failed);
	cr_assert_eq(td.resets, resets + 1);
	memset(g.ram0 + FAKE_AVAIL, 0, 0x1000);
	memset(g.ram0 + FAKE_USED, 0, 0x1000);
	g.avail_idx[0] = 0;
	fake_bringup(&dev, FEAT_ALL, 16);
	good_chain(0);
	fake_avail(&g, 0, 16, 0);
	kick(0);
	cr_assert_eq(td.chains, 1);
	cr_assert_not(dev.failed);
}

Test(virtio, failed_device_does_not_stop_another)
{
	struct fake_guest g2;
	struct virtio_mmio_dev d2;
	struct tdev t2 = { 0 };
	struct wisp_err e = { 0 };
	fake_init(&g2);
	cr_assert_eq(virtio_mmio_init(&d2, &tdev_ops, &t2, &g2.mem, 0, &e), 0);
	fake_bringup(&dev, FEAT_ALL, 16);
	fake_bringup(&d2, VIRTIO_BIT(VIRTIO_F_VERSION_1), 16);
	fake_desc(&g, 0, 0, FAKE_DATA, 8, VIRTQ_DESC_F_NEXT, 0); /* loop on dev */
	fake_avail(&g, 0, 16, 0);
	kick(0);
	assert_failed();
	/* the healthy device on its own memory */
	struct virtq_desc dd = { .addr = FAKE_DATA, .len = 4, .flags = 0 };
	memcpy(g2.ram0 + FAKE_DESC, &dd, sizeof(dd));
	fake_avail(&g2, 0, 16, 0);
	virtio_mmio_kick(&d2, 0);
	cr_assert_eq(t2.chains, 1);
	cr_assert_not(d2.failed);
	/* and the failed one processes nothing more */
	int before = td.chains;
	good_chain(2);
	fake_avail(&g, 0, 16, 2);
	kick(0);
	cr_assert_eq(td.chains, before);
	virtio_mmio_destroy(&d2);
	fake_fini(&g2);
}

/* ---- hostile queue geometry ---- */

static void bad_geometry(uint32_t num, uint64_t desc, uint64_t avail, uint64_t used)
{
	cr_assert(fake_negotiate(&dev, FEAT_ALL) & VIRTIO_STATUS_FEATURES_OK);
	fake_queue(&dev, 0, num, desc, avail, used);
	assert_failed();
	cr_assert_eq(mr32(&dev, VIRTIO_MMIO_QUEUE_READY), 0);
	fake_driver_ok(&dev);
	cr_assert_not(dev.active, "a failed device does not start");
	cr_assert_eq(td.activated, 0);
}

Test(virtio, h01_queue_size_not_power_of_two) { bad_geometry(12, FAKE_DESC, FAKE_AVAIL, FAKE_USED); }
Test(virtio, h02_queue_size_above_max) { bad_geometry(32, FAKE_DESC, FAKE_AVAIL, FAKE_USED); }
Test(virtio, h03_queue_size_zero) { bad_geometry(0, FAKE_DESC, FAKE_AVAIL, FAKE_USED); }
Test(virtio, h04_queue_size_above_16_bits) { bad_geometry(0x10010, FAKE_DESC, FAKE_AVAIL, FAKE_USED); }
Test(virtio, h05_desc_misaligned) { bad_geometry(16, FAKE_DESC + 8, FAKE_AVAIL, FAKE_USED); }
Test(virtio, h06_avail_misaligned) { bad_geometry(16, FAKE_DESC, FAKE_AVAIL + 1, FAKE_USED); }
Test(virtio, h07_used_misaligned) { bad_geometry(16, FAKE_DESC, FAKE_AVAIL, FAKE_USED + 2); }
Test(virtio, h08_ring_outside_ram) { bad_geometry(16, 0x7fff0000ull, FAKE_AVAIL, FAKE_USED); }
Test(virtio, h09_ring_above_4g) { bad_geometry(16, FAKE_DESC | (1ull << 40), FAKE_AVAIL, FAKE_USED); }
Test(virtio, h10_ring_spanning_region_end)
{
	bad_geometry(16, FAKE_DESC, FAKE_AVAIL, FAKE_RAM0_SIZE - 64);
}
Test(virtio, h11_ring_in_gap_between_regions)
{
	bad_geometry(16, FAKE_DESC, FAKE_RAM1_GPA - 16, FAKE_USED);
}

/* ---- hostile descriptor chains ---- */

static void bad_chain_kick(uint16_t head)
{
	fake_avail(&g, 0, 16, head);
	kick(0);
	assert_failed();
	cr_assert_eq(td.chains, 0, "nothing completed from a bad chain");
	cr_assert_eq(fake_used_idx(&g, 0), 0);
}

Test(virtio, h12_head_index_out_of_range)
{
	fake_bringup(&dev, FEAT_ALL, 16);
	bad_chain_kick(16);
}

Test(virtio, h13_next_index_out_of_range)
{
	fake_bringup(&dev, FEAT_ALL, 16);
	fake_desc(&g, 0, 0, FAKE_DATA, 8, VIRTQ_DESC_F_NEXT, 200);
	bad_chain_kick(0);
}

Test(virtio, h14_self_loop)
{
	fake_bringup(&dev, FEAT_ALL, 16);
	fake_desc(&g, 0, 0, FAKE_DATA, 8, VIRTQ_DESC_F_NEXT, 0);
	bad_chain_kick(0);
}

Test(virtio, h15_two_descriptor_loop)
{
	fake_bringup(&dev, FEAT_ALL, 16);
	fake_desc(&g, 0, 0, FAKE_DATA, 8, VIRTQ_DESC_F_NEXT, 1);
	fake_desc(&g, 0, 1, FAKE_DATA, 8, VIRTQ_DESC_F_NEXT, 0);
	bad_chain_kick(0);
}

Test(virtio, h16_loop_through_whole_table)
{
	fake_bringup(&dev, FEAT_ALL, 16);
	for (uint16_t i = 0; i < 16; i++)
		fake_desc(&g, 0, i, FAKE_DATA, 1, VIRTQ_DESC_F_NEXT, (uint16_t)((i + 1) % 16));
	bad_chain_kick(5);
}

Test(virtio, h17_buffer_outside_ram)
{
	fake_bringup(&dev, FEAT_ALL, 16);
	fake_desc(&g, 0, 0, 0x40000000ull, 8, 0, 0);
	bad_chain_kick(0);
}

Test(virtio, h18_buffer_spanning_end_of_region)
{
	fake_bringup(&dev, FEAT_ALL, 16);
	fake_desc(&g, 0, 0, FAKE_RAM0_SIZE - 4, 8, 0, 0);
	bad_chain_kick(0);
}

Test(virtio, h19_buffer_spanning_two_regions_across_gap)
{
	fake_bringup(&dev, FEAT_ALL, 16);
	fake_desc(&g, 0, 0, FAKE_RAM0_SIZE - 4096, FAKE_RAM1_GPA + 4096 - (FAKE_RAM0_SIZE - 4096),
		  0, 0);
	bad_chain_kick(0);
}

Test(virtio, h20_buffer_address_overflow)
{
	fake_bringup(&dev, FEAT_ALL, 16);
	fake_desc(&g, 0, 0, 0xfffffffffffffff0ull, 0x100, 0, 0);
	bad_chain_kick(0);
}

Test(virtio, h21_buffer_second_region_overrun)
{
	fake_bringup(&dev, FEAT_ALL, 16);
	fake_desc(&g, 0, 0, FAKE_RAM1_GPA + FAKE_RAM1_SIZE - 100, 101, VIRTQ_DESC_F_WRITE, 0);
	bad_chain_kick(0);
}

Test(virtio, h22_readable_after_writable)
{
	fake_bringup(&dev, FEAT_ALL, 16);
	fake_desc(&g, 0, 0, FAKE_DATA, 8, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	fake_desc(&g, 0, 1, FAKE_DATA, 8, 0, 0);
	bad_chain_kick(0);
}

Test(virtio, h23_avail_index_jump)
{
	fake_bringup(&dev, FEAT_ALL, 16);
	good_chain(0);
	uint16_t *avail = fake_ptr(&g, FAKE_AVAIL);
	avail[1] = 17;
	kick(0);
	assert_failed();
	cr_assert_eq(td.chains, 0);
}

Test(virtio, h24_avail_index_backwards)
{
	fake_bringup(&dev, FEAT_ALL, 16);
	good_chain(0);
	fake_avail(&g, 0, 16, 0);
	kick(0);
	cr_assert_eq(td.chains, 1);
	uint16_t *avail = fake_ptr(&g, FAKE_AVAIL);
	avail[1] = 0xfff0; /* 0xffef entries "pending" */
	kick(0);
	assert_failed();
}

Test(virtio, h25_indirect_without_feature)
{
	fake_bringup(&dev, VIRTIO_BIT(VIRTIO_F_VERSION_1), 16);
	fake_indirect(&g, FAKE_DATA + 0x1000, 0, FAKE_DATA, 8, 0, 0);
	fake_desc(&g, 0, 0, FAKE_DATA + 0x1000, 16, VIRTQ_DESC_F_INDIRECT, 0);
	bad_chain_kick(0);
}

Test(virtio, h26_indirect_with_next)
{
	fake_bringup(&dev, FEAT_ALL, 16);
	fake_indirect(&g, FAKE_DATA + 0x1000, 0, FAKE_DATA, 8, 0, 0);
	fake_desc(&g, 0, 0, FAKE_DATA + 0x1000, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
	fake_desc(&g, 0, 1, FAKE_DATA, 8, 0, 0);
	bad_chain_kick(0);
}

Test(virtio, h27_indirect_length_not_multiple_of_16)
{
	fake_bringup(&dev, FEAT_ALL, 16);
	fake_indirect(&g, FAKE_DATA + 0x1000, 0, FAKE_DATA, 8, 0, 0);
	fake_desc(&g, 0, 0, FAKE_DATA + 0x1000, 20, VIRTQ_DESC_F_INDIRECT, 0);
	bad_chain_kick(0);
}

Test(virtio, h28_indirect_table_outside_ram)
{
	fake_bringup(&dev, FEAT_ALL, 16);
	fake_desc(&g, 0, 0, FAKE_RAM0_SIZE - 16, 32, VIRTQ_DESC_F_INDIRECT, 0);
	bad_chain_kick(0);
}

Test(virtio, h29_nested_indirect)
{
	fake_bringup(&dev, FEAT_ALL, 16);
	fake_indirect(&g, FAKE_DATA + 0x1000, 0, FAKE_DATA + 0x2000, 16, VIRTQ_DESC_F_INDIRECT, 0);
	fake_indirect(&g, FAKE_DATA + 0x2000, 0, FAKE_DATA, 8, 0, 0);
	fake_desc(&g, 0, 0, FAKE_DATA + 0x1000, 16, VIRTQ_DESC_F_INDIRECT, 0);
	bad_chain_kick(0);
}

Test(virtio, h30_indirect_loop)
{
	fake_bringup(&dev, FEAT_ALL, 16);
	fake_indirect(&g, FAKE_DATA + 0x1000, 0, FAKE_DATA, 8, VIRTQ_DESC_F_NEXT, 1);
	fake_indirect(&g, FAKE_DATA + 0x1000, 1, FAKE_DATA, 8, VIRTQ_DESC_F_NEXT, 0);
	fake_desc(&g, 0, 0, FAKE_DATA + 0x1000, 32, VIRTQ_DESC_F_INDIRECT, 0);
	bad_chain_kick(0);
}

Test(virtio, h31_indirect_next_out_of_range)
{
	fake_bringup(&dev, FEAT_ALL, 16);
	fake_indirect(&g, FAKE_DATA + 0x1000, 0, FAKE_DATA, 8, VIRTQ_DESC_F_NEXT, 2);
	fake_desc(&g, 0, 0, FAKE_DATA + 0x1000, 32, VIRTQ_DESC_F_INDIRECT, 0);
	bad_chain_kick(0);
}

Test(virtio, h32_indirect_in_the_middle_of_a_chain)
{
	fake_bringup(&dev, FEAT_ALL, 16);
	fake_indirect(&g, FAKE_DATA + 0x1000, 0, FAKE_DATA, 8, 0, 0);
	fake_desc(&g, 0, 0, FAKE_DATA, 8, VIRTQ_DESC_F_NEXT, 1);
	fake_desc(&g, 0, 1, FAKE_DATA + 0x1000, 16, VIRTQ_DESC_F_INDIRECT, 0);
	bad_chain_kick(0);
}

Test(virtio, h33_indirect_chain_longer_than_limit)
{
	fake_bringup(&dev, FEAT_ALL, 16);
	uint64_t tab = FAKE_DATA + 0x10000;
	uint16_t n = VIRTQ_CHAIN_MAX + 10;
	for (uint16_t i = 0; i < n; i++)
		fake_indirect(&g, tab, i, FAKE_DATA, 1, i + 1 < n ? VIRTQ_DESC_F_NEXT : 0,
			      (uint16_t)(i + 1));
	fake_desc(&g, 0, 0, tab, 16u * n, VIRTQ_DESC_F_INDIRECT, 0);
	bad_chain_kick(0);
}

Test(virtio, h34_lengths_summing_past_4_gib_do_not_wrap)
{
	/* three 2 GiB buffers over one sparse 2 GiB region: 6 GiB in a chain */
	size_t big = 1ull << 31;
	uint8_t *p = mmap(NULL, big, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	cr_assert_neq(p, MAP_FAILED);
	struct gmem m = { 0 };
	cr_assert_eq(gmem_add_region(&m, 0, p, big), 0);
	struct virtq q = { .num_max = 16 };
	virtq_reset(&q);
	q.desc_gpa = 0x1000;
	q.avail_gpa = 0x2000;
	q.used_gpa = 0x3000;
	cr_assert_eq(virtq_setup(&q, &m), 0);
	q.ready = true;
	struct virtq_desc d[3] = {
		{ .addr = 0, .len = 0x80000000u, .flags = VIRTQ_DESC_F_NEXT, .next = 1 },
		{ .addr = 0, .len = 0x80000000u, .flags = VIRTQ_DESC_F_NEXT, .next = 2 },
		{ .addr = 0, .len = 0x80000000u, .flags = 0 },
	};
	memcpy(p + 0x1000, d, sizeof(d));
	uint16_t *avail = (uint16_t *)(p + 0x2000);
	avail[2] = 0;
	avail[1] = 1;
	static struct virtq_chain c;
	cr_assert_eq(virtq_pop(&q, &m, &c), 1);
	cr_assert_eq(c.read_len, 3ull << 31, "sum is exact, no 32-bit wrap");
	/* a buffer whose own end passes the region fails */
	d[2].addr = 1;
	memcpy(p + 0x1000, d, sizeof(d));
	avail[3] = 0;
	avail[1] = 2;
	cr_assert_eq(virtq_pop(&q, &m, &c), -EINVAL);
	munmap(p, big);
}

/* ---- hostile transport use ---- */

Test(virtio, h35_queue_size_change_after_driver_ok)
{
	fake_bringup(&dev, FEAT_ALL, 16);
	mw32(&dev, VIRTIO_MMIO_QUEUE_SEL, 0);
	mw32(&dev, VIRTIO_MMIO_QUEUE_NUM, 8);
	assert_failed();
	cr_assert_eq(dev.queues[0].num, 16, "geometry unchanged");
}

Test(virtio, h36_ring_address_change_after_driver_ok)
{
	fake_bringup(&dev, FEAT_ALL, 16);
	mw32(&dev, VIRTIO_MMIO_QUEUE_SEL, 1);
	mw32(&dev, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x9000);
	assert_failed();
	cr_assert_eq(dev.queues[1].desc_gpa, FAKE_DESC1);
}

Test(virtio, h37_queue_ready_toggle_after_driver_ok)
{
	fake_bringup(&dev, FEAT_ALL, 16);
	mw32(&dev, VIRTIO_MMIO_QUEUE_SEL, 0);
	mw32(&dev, VIRTIO_MMIO_QUEUE_READY, 0);
	assert_failed();
}

Test(virtio, h38_geometry_before_features_ok_is_ignored)
{
	mw32(&dev, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	mw32(&dev, VIRTIO_MMIO_QUEUE_SEL, 0);
	mw32(&dev, VIRTIO_MMIO_QUEUE_NUM, 4);
	mw32(&dev, VIRTIO_MMIO_QUEUE_READY, 1);
	cr_assert_eq(dev.queues[0].num, 16);
	cr_assert_not(dev.queues[0].ready);
	cr_assert_geq(dev.violations, 2);
	cr_assert_not(dev.failed);
}

Test(virtio, h39_geometry_change_while_queue_ready_is_ignored)
{
	cr_assert(fake_negotiate(&dev, FEAT_ALL) & VIRTIO_STATUS_FEATURES_OK);
	fake_queue(&dev, 0, 16, FAKE_DESC, FAKE_AVAIL, FAKE_USED);
	cr_assert(dev.queues[0].ready);
	mw32(&dev, VIRTIO_MMIO_QUEUE_USED_LOW, 0x3ff0);
	cr_assert_eq(dev.queues[0].used_gpa, FAKE_USED);
	cr_assert_geq(dev.violations, 1);
}

Test(virtio, h40_unoffered_feature_refused)
{
	mw32(&dev, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	mw32(&dev, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	mw32(&dev, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	mw32(&dev, VIRTIO_MMIO_DRIVER_FEATURES, 1u << 5); /* never offered */
	mw32(&dev, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	mw32(&dev, VIRTIO_MMIO_DRIVER_FEATURES, 1);
	mw32(&dev, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
					       VIRTIO_STATUS_FEATURES_OK);
	cr_assert_not(mr32(&dev, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK);
	cr_assert_geq(dev.violations, 1);
	fake_driver_ok(&dev);
	cr_assert_not(dev.active);
}

Test(virtio, h41_legacy_driver_without_version_1_refused)
{
	cr_assert_not(fake_negotiate(&dev, VIRTIO_BIT(VIRTIO_F_EVENT_IDX)) &
		      VIRTIO_STATUS_FEATURES_OK);
	cr_assert_geq(dev.violations, 1);
}

Test(virtio, h42_feature_bits_beyond_64_refused)
{
	mw32(&dev, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	mw32(&dev, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	mw32(&dev, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 2);
	mw32(&dev, VIRTIO_MMIO_DRIVER_FEATURES, 1);
	cr_assert_geq(dev.violations, 1);
	mw32(&dev, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 7);
	cr_assert_eq(mr32(&dev, VIRTIO_MMIO_DEVICE_FEATURES), 0);
}

Test(virtio, h43_feature_change_after_features_ok_ignored)
{
	cr_assert(fake_negotiate(&dev, VIRTIO_BIT(VIRTIO_F_VERSION_1)) &
		  VIRTIO_STATUS_FEATURES_OK);
	mw32(&dev, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	mw32(&dev, VIRTIO_MMIO_DRIVER_FEATURES, 1u << VIRTIO_F_EVENT_IDX);
	cr_assert_not(virtio_has_feature(&dev, VIRTIO_F_EVENT_IDX));
	cr_assert_geq(dev.violations, 1);
}

Test(virtio, h44_driver_ok_without_features_ok)
{
	mw32(&dev, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	mw32(&dev, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	mw32(&dev, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
					       VIRTIO_STATUS_DRIVER_OK);
	cr_assert_eq(mr32(&dev, VIRTIO_MMIO_STATUS),
		     VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	cr_assert_not(dev.active);
	cr_assert_eq(td.activated, 0);
}

Test(virtio, h45_status_bits_cleared_without_reset)
{
	fake_bringup(&dev, FEAT_ALL, 16);
	mw32(&dev, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	cr_assert(mr32(&dev, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DRIVER_OK);
	cr_assert(dev.active);
	cr_assert_geq(dev.violations, 1);
}

Test(virtio, h46_status_out_of_order_and_unknown_bits)
{
	mw32(&dev, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_DRIVER);
	cr_assert_eq(mr32(&dev, VIRTIO_MMIO_STATUS), 0);
	mw32(&dev, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_FEATURES_OK);
	cr_assert_eq(mr32(&dev, VIRTIO_MMIO_STATUS), 0);
	mw32(&dev, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | 0x10);
	cr_assert_eq(mr32(&dev, VIRTIO_MMIO_STATUS), 0);
	cr_assert_eq(dev.violations, 3);
}

Test(virtio, h47_notify_of_missing_queue_and_bad_queue_sel)
{
	fake_bringup(&dev, FEAT_ALL, 16);
	mw32(&dev, VIRTIO_MMIO_QUEUE_NOTIFY, 7);
	mw32(&dev, VIRTIO_MMIO_QUEUE_NOTIFY, 0xffffffffu);
	cr_assert_eq(dev.violations, 2);
	mw32(&dev, VIRTIO_MMIO_QUEUE_SEL, 9);
	cr_assert_eq(mr32(&dev, VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
	cr_assert_eq(mr32(&dev, VIRTIO_MMIO_QUEUE_READY), 0);
	cr_assert(dev.active);
}

Test(virtio, h48_odd_sized_and_unaligned_register_access)
{
	uint16_t v16 = 0xffff;
	virtio_mmio_write(&dev, VIRTIO_MMIO_STATUS, (const uint8_t *)&v16, 2);
	uint64_t v64 = ~0ull;
	virtio_mmio_write(&dev, VIRTIO_MMIO_QUEUE_DESC_LOW, (const uint8_t *)&v64, 8);
	uint32_t v = 1;
	virtio_mmio_write(&dev, VIRTIO_MMIO_STATUS + 1, (const uint8_t *)&v, 4);
	cr_assert_eq(dev.status, 0);
	uint8_t b = 0x55;
	virtio_mmio_read(&dev, VIRTIO_MMIO_MAGIC_VALUE, &b, 1);
	cr_assert_eq(b, 0, "sub-word register reads return zero");
	cr_assert_eq(dev.violations, 4);
}

Test(virtio, h49_writes_to_read_only_registers)
{
	mw32(&dev, VIRTIO_MMIO_MAGIC_VALUE, 0);
	mw32(&dev, VIRTIO_MMIO_DEVICE_ID, 7);
	mw32(&dev, VIRTIO_MMIO_INTERRUPT_STATUS, 3);
	mw32(&dev, VIRTIO_MMIO_CONFIG_GENERATION, 9);
	mw32(&dev, VIRTIO_MMIO_CONFIG + 0xe00, 9);
	cr_assert_eq(mr32(&dev, VIRTIO_MMIO_MAGIC_VALUE), VIRTIO_MMIO_MAGIC);
	cr_assert_eq(mr32(&dev, VIRTIO_MMIO_DEVICE_ID), 42);
	cr_assert_eq(dev.violations, 5);
}

Test(virtio, h50_random_register_storm_in_every_state)
{
	/* garbage to every register offset, in every status the driver can
	 * reach, with a ring of garbage: nothing crashes, nothing escapes RAM
	 * (ASan watches), and the device can still be reset and used */
	srand(1234);
	for (int round = 0; round < 2000; round++) {
		uint64_t off = (uint64_t)(rand() % 0x110) & ~3ull;
		uint32_t v = (uint32_t)rand() ^ ((uint32_t)rand() << 16);
		if (round % 7 == 0)
			v &= 0xff;
		mw32(&dev, off, v);
		mr32(&dev, off & ~3ull);
		if (round % 50 == 0) {
			for (size_t i = 0; i < 0x8000; i += 4)
				*(uint32_t *)(g.ram0 + i) = (uint32_t)rand();
			kick(round % 2);
		}
	}
	mw32(&dev, VIRTIO_MMIO_STATUS, 0);
	memset(g.ram0, 0, 0x10000);
	g.avail_idx[0] = 0;
	fake_bringup(&dev, FEAT_ALL, 16);
	good_chain(0);
	fake_avail(&g, 0, 16, 0);
	kick(0);
	cr_assert_eq(fake_used_idx(&g, 0), 1);
	cr_assert_not(dev.failed);
}
