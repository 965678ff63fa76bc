/* libFuzzer target: the split-virtqueue walk. The input is a queue's
 * geometry followed by the guest memory the rings and tables live in; the
 * walk must never touch anything outside the two fake RAM regions (ASan
 * watches) and must end on every input. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "vmm/mem.h"
#include "vmm/virtio/virtio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RAM0 (64u << 10)
#define RAM1 (16u << 10)
#define RAM1_GPA 0x20000ull

static uint8_t ram0[RAM0], ram1[RAM1];
static struct virtq_chain chain;

struct geom {
	uint16_t num, num_max;
	uint32_t desc, avail, used;   /* gpa, small enough to land in RAM often */
	uint8_t flags;                /* 1 event_idx, 2 indirect */
	uint8_t rounds;
} __attribute__((packed));

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct geom g;
	if (size < sizeof(g))
		return 0;
	memcpy(&g, data, sizeof(g));
	data += sizeof(g);
	size -= sizeof(g);
	memset(ram0, 0, sizeof(ram0));
	memset(ram1, 0, sizeof(ram1));
	size_t k = size < RAM0 ? size : RAM0;
	memcpy(ram0, data, k);
	if (size > k)
		memcpy(ram1, data + k, size - k < RAM1 ? size - k : RAM1);

	struct gmem m = { 0 };
	gmem_add_region(&m, 0, ram0, RAM0);
	gmem_add_region(&m, RAM1_GPA, ram1, RAM1);
	struct virtq q = { 0 };
	q.num_max = g.num_max ? g.num_max : 256;
	virtq_reset(&q);
	q.num = g.num;
	q.desc_gpa = g.desc;
	q.avail_gpa = g.avail;
	q.used_gpa = g.used;
	q.event_idx = g.flags & 1;
	q.indirect = g.flags & 2;
	if (virtq_setup(&q, &m) < 0)
		return 0;
	q.ready = true;
	for (int i = 0; i < 1 + (g.rounds & 31); i++) {
		int r = virtq_pop(&q, &m, &chain);
		if (r <= 0) {
			virtq_enable_notify(&q);
			break;
		}
		uint8_t buf[512];
		size_t n = virtq_chain_read(&chain, (size_t)i, buf, sizeof(buf));
		virtq_chain_write(&chain, (size_t)i * 3, buf, n);
		if (i & 1)
			virtq_push(&q, chain.head, (uint32_t)chain.write_len);
		else
			virtq_unpop(&q), virtq_pop(&q, &m, &chain), virtq_push(&q, chain.head, 0);
		virtq_should_notify(&q);
	}
	return 0;
}
