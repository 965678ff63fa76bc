/* libFuzzer target: the snapshot state file parser and section lookup. */
#include <stddef.h>
#include <stdint.h>

#include "vmm/snapshot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct snap_image img;
	struct wisp_err err = { 0 };
	if (snap_parse(data, size, &img, &err) < 0)
		return 0;
	/* Every section through both accessors, as restore would. */
	for (uint32_t i = 0; i < img.nr_sections; i++) {
		const struct snap_section_hdr h = img.sections[i].hdr;
		const uint8_t *p;
		size_t len;
		if (snap_get_var(&img, h.id, h.version, h.instance, &p, &len, &err) == 0 && len) {
			volatile uint8_t sink = p[0] ^ p[len - 1];
			(void)sink;
		}
		uint64_t fixed[8];
		snap_get(&img, h.id, h.version, h.instance, fixed, sizeof(fixed), &err);
	}
	snap_check_all_used(&img, &err);
	snap_image_free(&img);
	return 0;
}
