/* Direct kernel boot (x86_64): the ELF vmlinux and bzImage loaders, the
 * zero page (boot_params), initrd placement, and the low-memory structures
 * the 64-bit entry needs (GDT, IDT, identity page tables). Everything is
 * written through gmem, so the loaders run against any guest memory. */
#ifndef WISP_BOOT_H
#define WISP_BOOT_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "mem.h"

/* Kernels larger than this are refused before they are read. */
#define BOOT_KERNEL_MAX_BYTES  (512ULL << 20)
#define BOOT_INITRD_MAX_BYTES  (1ULL << 30)
#define BOOT_ELF_MAX_PHDRS     64

/* Selectors the Linux 64-bit boot protocol asks for (__BOOT_CS/__BOOT_DS). */
#define BOOT_TSS_SEL  0x08
#define BOOT_CS_SEL   0x10
#define BOOT_DS_SEL   0x18

/* boot_params offsets (Documentation/x86/zero-page.rst, boot.rst). */
#define BP_EXT_RAMDISK_IMAGE  0x0c0
#define BP_EXT_RAMDISK_SIZE   0x0c4
#define BP_EXT_CMD_LINE_PTR   0x0c8
#define BP_E820_ENTRIES       0x1e8
#define BP_SETUP_SECTS        0x1f1
#define BP_BOOT_FLAG          0x1fe
#define BP_JUMP               0x200
#define BP_HEADER             0x202
#define BP_VERSION            0x206
#define BP_TYPE_OF_LOADER     0x210
#define BP_LOADFLAGS          0x211
#define BP_CODE32_START       0x214
#define BP_RAMDISK_IMAGE      0x218
#define BP_RAMDISK_SIZE       0x21c
#define BP_CMD_LINE_PTR       0x228
#define BP_INITRD_ADDR_MAX    0x22c
#define BP_KERNEL_ALIGNMENT   0x230
#define BP_RELOCATABLE        0x234
#define BP_XLOADFLAGS         0x236
#define BP_CMDLINE_SIZE       0x238
#define BP_PREF_ADDRESS       0x258
#define BP_INIT_SIZE          0x260
#define BP_E820_TABLE         0x2d0
#define BP_E820_MAX           128
#define BP_SETUP_HDR_END_MAX  0x290  /* the header never extends past this */

#define BOOT_HDRS_MAGIC       0x53726448u /* "HdrS" */
#define BOOT_FLAG_MAGIC       0xaa55

enum boot_kernel_kind {
	BOOT_KERNEL_ELF = 1,
	BOOT_KERNEL_BZIMAGE,
};

struct boot_kernel {
	enum boot_kernel_kind kind;
	uint64_t entry;        /* 64-bit entry point (guest physical) */
	uint64_t start, end;   /* guest-physical span the kernel may use */
	uint32_t initrd_addr_max;
	uint32_t cmdline_max;  /* bytes, without the NUL */
	/* bzImage: the setup header as the file has it, [0x1f1, hdr_end). */
	uint8_t setup_hdr[BP_SETUP_HDR_END_MAX - BP_SETUP_SECTS];
	size_t setup_hdr_len;
};

/* Parse and load a kernel image (ELF vmlinux or bzImage) into guest RAM.
 * Refuses truncated or malformed images, segments outside RAM or below
 * 1 MiB (where the zero page and boot structures live), absurd sizes. */
int boot_load_kernel(const struct gmem *m, const uint8_t *img, size_t len,
		     struct boot_kernel *k, struct wisp_err *err);
/* Place an initrd at the top of low RAM, below the kernel's limit and above
 * the kernel; returns its address in *addr. */
int boot_load_initrd(const struct gmem *m, const struct boot_kernel *k, const uint8_t *img,
		     size_t len, uint64_t *addr, struct wisp_err *err);
/* Write the command line, the zero page (setup header, e820 from the RAM
 * layout, initrd) and the GDT, IDT and identity page tables. */
int boot_write_params(const struct gmem *m, const struct boot_kernel *k, const char *cmdline,
		      uint64_t initrd_addr, uint64_t initrd_size, struct wisp_err *err);

/* Map a file read-only for loading; refuses files over max bytes. */
int boot_map_file(const char *path, uint64_t max, const uint8_t **data, size_t *len,
		  struct wisp_err *err);
void boot_unmap_file(const uint8_t *data, size_t len);

#endif
