/* wisp-snap: offline tool for snapshot files.
 *
 *   wisp-snap info STATE [MEM]   check a state file (and that MEM is a
 *                                memory file it loads with) and list its
 *                                sections
 *   wisp-snap merge BASE DIFF    apply a diff snapshot's memory file onto its
 *                                base's memory file: BASE is replaced
 *                                (atomically) by a Full memory file that loads
 *                                with the diff's state file
 *
 * Exit status: 0 done, 1 a file was refused or an operation failed, 153 bad
 * arguments.
 */
#include <inttypes.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "vmm/snapshot.h"

static int usage(void)
{
	fprintf(stderr,
		"usage: wisp-snap info STATE [MEM]\n"
		"       wisp-snap merge BASE_MEM DIFF_MEM\n");
	return 153;
}

static int cmd_info(const char *state, const char *mem)
{
	struct wisp_err err = { 0 };
	struct snap_image img;
	if (snap_read_file(state, &img, &err) < 0) {
		fprintf(stderr, "wisp-snap: %s\n", err.msg);
		return 1;
	}
	printf("format version %" PRIu32 ", x86_64, %zu bytes, crc32 %08" PRIx32 "\n",
	       img.hdr.version, img.len, img.hdr.crc32);
	printf("guest memory %" PRIu64 " bytes (%" PRIu64 " MiB), %s memory file\n",
	       img.hdr.mem_size, img.hdr.mem_size >> 20,
	       (img.hdr.flags & SNAP_F_DIFF) ? "diff" : "full");
	if (img.hdr.flags & SNAP_F_DIFF)
		printf("snapshot %016" PRIx64 ", a diff of snapshot %016" PRIx64
		       ": loads with its memory file merged onto that snapshot's\n",
		       img.hdr.snap_id, img.hdr.base_id);
	else
		printf("snapshot %016" PRIx64 "\n", img.hdr.snap_id);
	for (uint32_t i = 0; i < img.nr_sections; i++) {
		const struct snap_section_hdr *h = &img.sections[i].hdr;
		printf("  %-13s instance %-3" PRIu32 " version %-3" PRIu32 " %8" PRIu32 " bytes",
		       snap_section_name(h->id), h->instance, h->version, h->len);
		struct kvm_cpuid2 *cpuid = NULL;
		if (h->id == SNAP_SEC_VCPU && snap_vcpu_cpuid(&img, h->instance, &cpuid, &err) == 0)
			printf(", %" PRIu32 " CPUID entries", cpuid->nent);
		free(cpuid);
		printf("\n");
	}
	int rc = 0;
	if (mem) {
		int fd = snap_mem_open(mem, &img.hdr, &err);
		if (fd < 0) {
			fprintf(stderr, "wisp-snap: %s\n", err.msg);
			rc = 1;
		} else {
			printf("memory file %s: size matches, snapshot %016" PRIx64 " (loads)\n",
			       mem, img.hdr.snap_id);
			close(fd);
		}
	}
	snap_image_free(&img);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		usage();
		return 0;
	}
	if (argc == 3 || argc == 4) {
		if (!strcmp(argv[1], "info"))
			return cmd_info(argv[2], argc == 4 ? argv[3] : NULL);
	}
	if (argc == 4 && !strcmp(argv[1], "merge")) {
		struct wisp_err err = { 0 };
		struct snap_mem_footer f;
		if (snap_mem_merge(argv[2], argv[3], &f, &err) < 0) {
			fprintf(stderr, "wisp-snap: %s\n", err.msg);
			return 1;
		}
		printf("%s: Full memory file of snapshot %016" PRIx64 "\n", argv[2], f.snap_id);
		return 0;
	}
	return usage();
}
