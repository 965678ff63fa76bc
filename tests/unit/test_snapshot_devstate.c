/* The devices' own state through a snapshot image (virtio-blk, virtio-net,
 * virtio-vsock, each in its own section): a device rebuilt from the same
 * configuration takes it back, and a saved device set that does not match
 * the configured one is refused with the slot and what differs. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "virtio_fake.h"
#include "vmm/snapshot.h"

#define SECTORS 32
#define EVBUF   0x1f0000ull

static struct fake_guest g;
static struct virtio_mmio_dev *a, *b;
static char dir[64], disk[128], disk2[128];

static void mkfile(const char *path, int sectors)
{
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, sectors * 512), 0);
	close(fd);
}

static void setup(void)
{
	fake_init(&g);
	snprintf(dir, sizeof(dir), "/tmp/wisp-devstate-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(disk, sizeof(disk), "%s/disk", dir);
	snprintf(disk2, sizeof(disk2), "%s/disk2", dir);
	mkfile(disk, SECTORS);
	a = b = NULL;
}

static void teardown(void)
{
	if (a)
		virtio_device_free(a);
	if (b)
		virtio_device_free(b);
	fake_fini(&g);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(devstate, .init = setup, .fini = teardown);

static struct virtio_mmio_dev *blk(const char *id, const char *path, bool ro)
{
	struct vmcfg_drive cfg = { .path_on_host = (char *)path, .is_read_only = ro };
	snprintf(cfg.drive_id, sizeof(cfg.drive_id), "%s", id);
	struct virtio_mmio_dev *d;
	struct wisp_err e = { 0 };
	cr_assert_eq(virtio_blk_create(&g.mem, NULL, &cfg, &d, &e), 0, "%s", e.msg);
	return d;
}

static struct virtio_mmio_dev *vsock(uint32_t cid, const char *name)
{
	char uds[128];
	snprintf(uds, sizeof(uds), "%s/%s", dir, name);
	struct vmcfg_vsock cfg = { .present = true, .guest_cid = cid, .uds_path = uds };
	struct virtio_mmio_dev *d;
	struct wisp_err e = { 0 };
	cr_assert_eq(virtio_vsock_create(&g.mem, NULL, &cfg, &d, &e), 0, "%s", e.msg);
	return d;
}

/* Everything the device offers. */
static void bringup(struct virtio_mmio_dev *d)
{
	mw32(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	uint64_t f = mr32(d, VIRTIO_MMIO_DEVICE_FEATURES);
	fake_bringup(d, f | VIRTIO_BIT(VIRTIO_F_VERSION_1), 16);
}

/* Save d in slot; the image and its buffer (free both). */
static uint8_t *save(struct virtio_mmio_dev *d, uint32_t slot, struct snap_image *img)
{
	struct snap_writer w;
	cr_assert_eq(snap_writer_init(&w, 1 << 20, 0), 0);
	struct wisp_err e = { 0 };
	cr_assert_eq(snap_virtio_save(d, slot, &w, &e), 0, "%s", e.msg);
	const uint8_t *buf;
	size_t len;
	cr_assert_eq(snap_writer_finish(&w, &buf, &len, &e), 0, "%s", e.msg);
	uint8_t *copy = malloc(len);
	memcpy(copy, buf, len);
	snap_writer_free(&w);
	cr_assert_eq(snap_parse(copy, len, img, &e), 0, "%s", e.msg);
	return copy;
}

static void restore_refused(struct virtio_mmio_dev *d, uint32_t slot, struct snap_image *img,
			    const char *needle)
{
	struct wisp_err e = { 0 };
	cr_assert_lt(snap_virtio_restore(d, slot, img, &e), 0, "restore accepted, expected '%s'",
		     needle);
	cr_assert(strstr(e.msg, needle) != NULL, "'%s' lacks '%s'", e.msg, needle);
	cr_assert_not(d->active, "a refused restore started the device");
}

Test(devstate, blk_round_trip)
{
	a = blk("rootfs", disk, false);
	bringup(a);
	struct snap_image img;
	uint8_t *buf = save(a, 1, &img);
	cr_assert(snap_has(&img, SNAP_SEC_VIRTIO_MMIO, 1));
	cr_assert(snap_has(&img, SNAP_SEC_VIRTIO_BLK, 1), "no virtio-blk section");

	/* a clone's copy of the disk, same size */
	mkfile(disk2, SECTORS);
	b = blk("rootfs", disk2, false);
	struct wisp_err e = { 0 };
	cr_assert_eq(snap_virtio_restore(b, 1, &img, &e), 0, "%s", e.msg);
	cr_assert_eq(snap_check_all_used(&img, &e), 0, "%s", e.msg);
	cr_assert(b->active);
	cr_assert_eq(b->driver_features, a->driver_features);
	cr_assert_eq(mr32(b, VIRTIO_MMIO_CONFIG), SECTORS, "capacity in config space");
	snap_image_free(&img);
	free(buf);
}

Test(devstate, blk_refusals)
{
	a = blk("rootfs", disk, false);
	bringup(a);
	struct snap_image img;
	uint8_t *buf = save(a, 1, &img);

	b = blk("data", disk, false);
	restore_refused(b, 1, &img, "virtio slot 1: the snapshot has drive \"rootfs\" there, the restored VM has drive \"data\"");
	virtio_device_free(b);

	mkfile(disk2, SECTORS * 2);
	b = blk("rootfs", disk2, false);
	restore_refused(b, 1, &img, "drive rootfs: the guest knows a disk of 32 sectors, its file here has 64");
	virtio_device_free(b);

	/* read-only offers other features: refused before the device's checks */
	b = blk("rootfs", disk, true);
	restore_refused(b, 1, &img, "does not offer");
	virtio_device_free(b);

	/* another device type in the slot */
	b = vsock(3, "v.sock");
	restore_refused(b, 1, &img, "virtio slot 1: the snapshot has device type 2 there");
	virtio_device_free(b);

	/* the slot of another device: no state for it */
	b = blk("rootfs", disk, false);
	restore_refused(b, 2, &img, "no virtio-mmio state for instance 2");
	snap_image_free(&img);
	free(buf);
}

/* A saved device without its own section, or one with a section no device
 * reads: both refused. */
Test(devstate, missing_and_extra_device_sections)
{
	a = blk("rootfs", disk, false);
	bringup(a);
	struct snap_image img;
	uint8_t *buf = save(a, 1, &img);
	const uint8_t *data;
	size_t len;
	struct wisp_err e = { 0 };
	cr_assert_eq(snap_get_var(&img, SNAP_SEC_VIRTIO_MMIO, 1, 1, &data, &len, &e), 0, "%s", e.msg);
	struct snap_writer w;
	cr_assert_eq(snap_writer_init(&w, 1 << 20, 0), 0);
	cr_assert_eq(snap_put(&w, SNAP_SEC_VIRTIO_MMIO, 1, 1, data, len), 0);
	const uint8_t *out;
	size_t olen;
	cr_assert_eq(snap_writer_finish(&w, &out, &olen, &e), 0);
	struct snap_image only_transport;
	cr_assert_eq(snap_parse(out, olen, &only_transport, &e), 0, "%s", e.msg);
	b = blk("rootfs", disk, false);
	restore_refused(b, 1, &only_transport, "no virtio-blk state for instance 1");
	snap_image_free(&only_transport);
	snap_writer_free(&w);
	virtio_device_free(b);

	/* the snapshot had a vsock device in slot 2 the restored VM lacks */
	struct virtio_mmio_dev *v = vsock(3, "v.sock");
	bringup(v);
	cr_assert_eq(snap_writer_init(&w, 1 << 20, 0), 0);
	cr_assert_eq(snap_virtio_save(a, 1, &w, &e), 0);
	cr_assert_eq(snap_virtio_save(v, 2, &w, &e), 0);
	cr_assert_eq(snap_writer_finish(&w, &out, &olen, &e), 0);
	struct snap_image both;
	cr_assert_eq(snap_parse(out, olen, &both, &e), 0, "%s", e.msg);
	b = blk("rootfs", disk, false);
	cr_assert_eq(snap_virtio_restore(b, 1, &both, &e), 0, "%s", e.msg);
	cr_assert_lt(snap_check_all_used(&both, &e), 0);
	cr_assert(strstr(e.msg, "instance 2") != NULL, "%s", e.msg);
	snap_image_free(&both);
	snap_writer_free(&w);
	virtio_device_free(v);
	snap_image_free(&img);
	free(buf);
}

Test(devstate, vsock_keeps_its_cid_and_resets_connections)
{
	a = vsock(3, "a.sock");
	bringup(a);
	struct snap_image img;
	uint8_t *buf = save(a, 2, &img);
	cr_assert(snap_has(&img, SNAP_SEC_VIRTIO_VSOCK, 2), "no virtio-vsock section");

	b = vsock(4, "b.sock");
	restore_refused(b, 2, &img, "the guest has CID 3, the configuration gives 4");
	virtio_device_free(b);

	b = vsock(3, "b.sock");   /* vsock_override: another socket */
	struct wisp_err e = { 0 };
	cr_assert_eq(snap_virtio_restore(b, 2, &img, &e), 0, "%s", e.msg);
	cr_assert_eq(snap_check_all_used(&img, &e), 0, "%s", e.msg);
	cr_assert(b->active);
	uint64_t cid = 0;
	virtio_mmio_read(b, VIRTIO_MMIO_CONFIG, (uint8_t *)&cid, 8);
	cr_assert_eq(cid, 3);
	/* what snap_vm_load does next: the guest hears TRANSPORT_RESET on
	 * its event queue, from where the saved queue stopped */
	uint32_t *ev = fake_ptr(&g, EVBUF);
	*ev = 0xffffffffu;
	fake_desc(&g, 2, 0, EVBUF, 8, VIRTQ_DESC_F_WRITE, 0);
	fake_avail(&g, 2, 16, 0);
	virtio_vsock_reset(b);
	cr_assert_eq(fake_used_idx(&g, 2), 1, "no event was delivered");
	cr_assert_eq(*ev, 0, "the event is not TRANSPORT_RESET");
	snap_image_free(&img);
	free(buf);
}

/* virtio-net needs a tap: root and /dev/net/tun. */
static struct virtio_mmio_dev *net(const char *tap, uint8_t last_mac_byte)
{
	struct vmcfg_net cfg = { .has_guest_mac = true,
				 .guest_mac = { 0x06, 0, 0xac, 0x10, 0, last_mac_byte } };
	snprintf(cfg.iface_id, sizeof(cfg.iface_id), "eth0");
	snprintf(cfg.host_dev_name, sizeof(cfg.host_dev_name), "%s", tap);
	struct virtio_mmio_dev *d;
	struct wisp_err e = { 0 };
	cr_assert_eq(virtio_net_create(&g.mem, NULL, &cfg, &d, &e), 0, "%s", e.msg);
	return d;
}

Test(devstate, net_keeps_mac_and_offloads)
{
	if (access("/dev/net/tun", R_OK | W_OK) != 0 || geteuid() != 0)
		cr_skip_test("needs root and /dev/net/tun");
	char t1[16], t2[16];
	snprintf(t1, sizeof(t1), "wss%da", getpid() % 100000);
	snprintf(t2, sizeof(t2), "wss%db", getpid() % 100000);
	a = net(t1, 2);
	bringup(a);
	struct snap_image img;
	uint8_t *buf = save(a, 0, &img);
	cr_assert(snap_has(&img, SNAP_SEC_VIRTIO_NET, 0), "no virtio-net section");

	b = net(t2, 3);
	restore_refused(b, 0, &img, "the guest has MAC 06:00:ac:10:00:02, the configuration gives 06:00:ac:10:00:03");
	virtio_device_free(b);

	b = net(t2, 2);           /* network_overrides: another tap */
	struct wisp_err e = { 0 };
	cr_assert_eq(snap_virtio_restore(b, 0, &img, &e), 0, "%s", e.msg);
	cr_assert_eq(snap_check_all_used(&img, &e), 0, "%s", e.msg);
	cr_assert(b->active);
	cr_assert_eq(b->driver_features, a->driver_features);
	uint8_t mac[6];
	virtio_mmio_read(b, VIRTIO_MMIO_CONFIG, mac, 4);
	virtio_mmio_read(b, VIRTIO_MMIO_CONFIG + 4, mac + 4, 2);
	cr_assert_eq(mac[5], 2);
	snap_image_free(&img);
	free(buf);
}
