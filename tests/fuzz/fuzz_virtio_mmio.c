/* libFuzzer target: virtio-mmio register writes and reads in every device
 * state, with queue kicks, against the real virtio-blk and virtio-vsock
 * devices over a fake guest memory the input also fills. The input is a
 * list of operations; the devices must survive all of them (ASan/UBSan
 * watch), and a reset must always bring a device back. */
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/mem.h"
#include "vmm/virtio/virtio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RAM (256u << 10)

static uint8_t *ram;
static struct gmem mem;
static struct virtio_mmio_dev *devs[2];

static void init_once(void)
{
	if (ram)
		return;
	ram = calloc(1, RAM);
	gmem_add_region(&mem, 0, ram, RAM);
	char img[] = "/tmp/wisp-fuzz-blk-XXXXXX";
	int fd = mkstemp(img);
	if (fd < 0 || ftruncate(fd, 1 << 20) < 0)
		abort();
	close(fd);
	struct vmcfg_drive dr = { 0 };
	snprintf(dr.drive_id, sizeof(dr.drive_id), "fuzz");
	dr.path_on_host = img;
	struct wisp_err e = { 0 };
	if (virtio_blk_create(&mem, NULL, &dr, &devs[0], &e) < 0)
		abort();
	unlink(img); /* the open fd keeps it */
	char dir[] = "/tmp/wisp-fuzz-vsock-XXXXXX";
	if (!mkdtemp(dir))
		abort();
	static char uds[64];
	snprintf(uds, sizeof(uds), "%s/v", dir);
	struct vmcfg_vsock vc = { .present = true, .guest_cid = 3, .uds_path = uds };
	if (virtio_vsock_create(&mem, NULL, &vc, &devs[1], &e) < 0)
		abort();
}

struct op {
	uint8_t kind;     /* low bits: what; bit 7: which device */
	uint8_t len;      /* access size selector */
	uint16_t off;
	uint32_t val;
} __attribute__((packed));

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	init_once();
	for (int i = 0; i < 2; i++) {
		uint32_t zero = 0;
		virtio_mmio_write(devs[i], VIRTIO_MMIO_STATUS, (const uint8_t *)&zero, 4);
	}
	memset(ram, 0, RAM);
	while (size >= sizeof(struct op)) {
		struct op o;
		memcpy(&o, data, sizeof(o));
		data += sizeof(o);
		size -= sizeof(o);
		struct virtio_mmio_dev *d = devs[o.kind >> 7];
		static const uint32_t lens[4] = { 4, 1, 2, 8 };
		uint32_t len = lens[o.len & 3];
		uint64_t off = o.off & 0xfff;
		uint8_t buf[8] = { 0 };
		memcpy(buf, &o.val, 4);
		switch (o.kind & 7) {
		case 0:
		case 1:
		case 2: /* register write, mostly 32-bit and aligned */
			if ((o.kind & 7) != 2)
				off &= ~3ull, len = 4;
			virtio_mmio_write(d, off, buf, len);
			break;
		case 3:
			virtio_mmio_read(d, off, buf, len);
			break;
		case 4: /* guest memory: 4 bytes anywhere */
			memcpy(ram + ((size_t)o.off * 4 + o.len) % (RAM - 4), &o.val, 4);
			break;
		case 5: /* guest memory: a short run of bytes from the input */
		{
			size_t n = o.len < size ? o.len : size;
			memcpy(ram + ((size_t)o.val % (RAM - 256)), data, n);
			data += n;
			size -= n;
			break;
		}
		case 6:
			virtio_mmio_kick(d, (int)(o.val % 3));
			break;
		case 7: /* a friendly bring-up, so fuzzing reaches the queues */
		{
			static const uint32_t seq[] = { 0, 1, 3 };
			for (size_t i = 0; i < 3; i++)
				virtio_mmio_write(d, VIRTIO_MMIO_STATUS, (const uint8_t *)&seq[i], 4);
			uint32_t f[2] = { (uint32_t)d->device_features & o.val,
					  (uint32_t)(d->device_features >> 32) };
			for (uint32_t s = 0; s < 2; s++) {
				virtio_mmio_write(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, (const uint8_t *)&s, 4);
				virtio_mmio_write(d, VIRTIO_MMIO_DRIVER_FEATURES, (const uint8_t *)&f[s], 4);
			}
			uint32_t st = 11;
			virtio_mmio_write(d, VIRTIO_MMIO_STATUS, (const uint8_t *)&st, 4);
			for (uint32_t q = 0; q < (uint32_t)d->ops->nr_queues; q++) {
				uint32_t regs[][2] = {
					{ VIRTIO_MMIO_QUEUE_SEL, q }, { VIRTIO_MMIO_QUEUE_NUM, 16 },
					{ VIRTIO_MMIO_QUEUE_DESC_LOW, 0x1000 + q * 0x1000 },
					{ VIRTIO_MMIO_QUEUE_AVAIL_LOW, 0x4000 + q * 0x1000 },
					{ VIRTIO_MMIO_QUEUE_USED_LOW, 0x7000 + q * 0x1000 },
					{ VIRTIO_MMIO_QUEUE_READY, 1 },
				};
				for (size_t i = 0; i < sizeof(regs) / sizeof(regs[0]); i++)
					virtio_mmio_write(d, regs[i][0], (const uint8_t *)&regs[i][1], 4);
			}
			st = 15;
			virtio_mmio_write(d, VIRTIO_MMIO_STATUS, (const uint8_t *)&st, 4);
			break;
		}
		}
	}
	return 0;
}
