/* Direct kernel boot: loaders for ELF vmlinux and bzImage, the zero page,
 * and the structures a 64-bit entry needs. Nothing here trusts the image:
 * every offset and size is checked against the file and guest RAM. */
#include "boot.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "layout.h"

static inline uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline void wr8(uint8_t *p, uint8_t v) { *p = v; }
static inline void wr16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static inline void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void wr64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* Low RAM region (the one at guest physical 0): the loaders stay inside it. */
static uint64_t low_ram_end(const struct gmem *m)
{
	for (int i = 0; i < m->nr_regions; i++)
		if (m->regions[i].gpa == 0)
			return m->regions[i].size;
	return 0;
}

/* [gpa, gpa+size) must be RAM, above the boot structures, below the gap. */
static int check_kernel_range(const struct gmem *m, uint64_t gpa, uint64_t size,
			      const char *what, struct wisp_err *err)
{
	if (size == 0)
		return 0;
	if (gpa + size < gpa)
		return wisp_err_set(err, EINVAL, "kernel: %s at 0x%llx size 0x%llx wraps around",
				    what, (unsigned long long)gpa, (unsigned long long)size);
	if (gpa < WISP_HIMEM_START)
		return wisp_err_set(err, EINVAL,
				    "kernel: %s at 0x%llx overlaps the zero page and boot structures below 1 MiB",
				    what, (unsigned long long)gpa);
	if (gpa + size > low_ram_end(m) || !gmem_ptr(m, gpa, size))
		return wisp_err_set(err, EINVAL,
				    "kernel: %s at 0x%llx size 0x%llx lies outside guest RAM (%llu MiB below the MMIO gap)",
				    what, (unsigned long long)gpa, (unsigned long long)size,
				    (unsigned long long)(low_ram_end(m) >> 20));
	return 0;
}

static int load_elf(const struct gmem *m, const uint8_t *img, size_t len, struct boot_kernel *k,
		    struct wisp_err *err)
{
	if (len < sizeof(Elf64_Ehdr))
		return wisp_err_set(err, EINVAL, "kernel: ELF header truncated (%zu bytes)", len);
	Elf64_Ehdr eh;
	memcpy(&eh, img, sizeof(eh));
	if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB)
		return wisp_err_set(err, EINVAL, "kernel: not a 64-bit little-endian ELF");
	if (eh.e_machine != EM_X86_64)
		return wisp_err_set(err, EINVAL, "kernel: ELF machine %u is not x86-64", eh.e_machine);
	if (eh.e_type != ET_EXEC)
		return wisp_err_set(err, EINVAL, "kernel: ELF type %u is not an executable", eh.e_type);
	if (eh.e_phentsize != sizeof(Elf64_Phdr))
		return wisp_err_set(err, EINVAL, "kernel: ELF program header size %u", eh.e_phentsize);
	if (eh.e_phnum == 0 || eh.e_phnum > BOOT_ELF_MAX_PHDRS)
		return wisp_err_set(err, EINVAL, "kernel: %u ELF program headers (1..%d allowed)",
				    eh.e_phnum, BOOT_ELF_MAX_PHDRS);
	if (eh.e_phoff > len || (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr) > len - eh.e_phoff)
		return wisp_err_set(err, EINVAL, "kernel: ELF program headers lie past the end of the file");

	uint64_t lo = UINT64_MAX, hi = 0;
	bool entry_ok = false;
	int loads = 0;
	/* Check every segment before copying any. */
	for (int pass = 0; pass < 2; pass++) {
		for (unsigned i = 0; i < eh.e_phnum; i++) {
			Elf64_Phdr ph;
			memcpy(&ph, img + eh.e_phoff + i * sizeof(ph), sizeof(ph));
			if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
				continue;
			if (pass == 1) {
				uint8_t *dst = gmem_ptr(m, ph.p_paddr, ph.p_memsz);
				memcpy(dst, img + ph.p_offset, ph.p_filesz);
				memset(dst + ph.p_filesz, 0, ph.p_memsz - ph.p_filesz);
				continue;
			}
			if (ph.p_filesz > ph.p_memsz)
				return wisp_err_set(err, EINVAL,
						    "kernel: segment %u file size exceeds its memory size", i);
			if (ph.p_offset > len || ph.p_filesz > len - ph.p_offset)
				return wisp_err_set(err, EINVAL,
						    "kernel: segment %u (offset 0x%llx, 0x%llx bytes) is truncated: file has %zu bytes",
						    i, (unsigned long long)ph.p_offset,
						    (unsigned long long)ph.p_filesz, len);
			char what[32];
			snprintf(what, sizeof(what), "segment %u", i);
			int r = check_kernel_range(m, ph.p_paddr, ph.p_memsz, what, err);
			if (r)
				return r;
			if (eh.e_entry >= ph.p_paddr && eh.e_entry - ph.p_paddr < ph.p_filesz)
				entry_ok = true;
			lo = ph.p_paddr < lo ? ph.p_paddr : lo;
			hi = ph.p_paddr + ph.p_memsz > hi ? ph.p_paddr + ph.p_memsz : hi;
			loads++;
		}
		if (pass == 0 && loads == 0)
			return wisp_err_set(err, EINVAL, "kernel: ELF has no loadable segment");
		if (pass == 0 && !entry_ok)
			return wisp_err_set(err, EINVAL,
					    "kernel: ELF entry 0x%llx is not inside a loaded segment",
					    (unsigned long long)eh.e_entry);
	}
	k->kind = BOOT_KERNEL_ELF;
	k->entry = eh.e_entry;
	k->start = lo;
	k->end = hi;
	k->initrd_addr_max = UINT32_MAX;
	k->cmdline_max = WISP_CMDLINE_MAX - 1;
	k->setup_hdr_len = 0;
	return 0;
}

static int load_bzimage(const struct gmem *m, const uint8_t *img, size_t len,
			struct boot_kernel *k, struct wisp_err *err)
{
	if (len < BP_JUMP + 2 + 0x64)
		return wisp_err_set(err, EINVAL, "kernel: bzImage truncated (%zu bytes)", len);
	uint16_t version = rd16(img + BP_VERSION);
	if (version < 0x206)
		return wisp_err_set(err, EINVAL,
				    "kernel: boot protocol %u.%02u too old (2.06 or newer needed)",
				    version >> 8, version & 0xff);
	size_t hdr_end = BP_JUMP + 2 + img[BP_JUMP + 1];
	if (hdr_end > BP_SETUP_HDR_END_MAX || hdr_end > len || hdr_end < BP_CMDLINE_SIZE + 4)
		return wisp_err_set(err, EINVAL, "kernel: bzImage setup header length %zu is invalid",
				    hdr_end);
	if (version >= 0x20c && !(rd16(img + BP_XLOADFLAGS) & 1))
		return wisp_err_set(err, EINVAL, "kernel: bzImage has no 64-bit entry point (XLF_KERNEL_64)");
	if (!(img[BP_LOADFLAGS] & 1))
		return wisp_err_set(err, EINVAL, "kernel: bzImage is not loaded high (zImage is not supported)");
	unsigned setup_sects = img[BP_SETUP_SECTS] ? img[BP_SETUP_SECTS] : 4;
	size_t setup_len = (size_t)(setup_sects + 1) * 512;
	if (setup_len >= len)
		return wisp_err_set(err, EINVAL,
				    "kernel: bzImage truncated: %zu bytes, setup alone is %zu", len,
				    setup_len);
	size_t payload = len - setup_len;
	uint64_t load = WISP_HIMEM_START;
	uint64_t init_size = 0;
	if (version >= 0x20a) {
		load = rd64(img + BP_PREF_ADDRESS);
		init_size = rd32(img + BP_INIT_SIZE);
	}
	if (load < WISP_KERNEL_DEFAULT_LOAD && img[BP_RELOCATABLE]) {
		/* A relocatable kernel runs anywhere aligned; keep it clear of low RAM. */
		uint32_t align = rd32(img + BP_KERNEL_ALIGNMENT);
		load = WISP_KERNEL_DEFAULT_LOAD;
		if (align && (align & (align - 1)) == 0 && align <= WISP_KERNEL_DEFAULT_LOAD)
			load = (load + align - 1) & ~(uint64_t)(align - 1);
	}
	uint64_t span = init_size > payload ? init_size : payload;
	if (span > BOOT_KERNEL_MAX_BYTES)
		return wisp_err_set(err, EINVAL, "kernel: bzImage init_size 0x%llx is absurd",
				    (unsigned long long)span);
	int r = check_kernel_range(m, load, span, "bzImage payload", err);
	if (r)
		return r;
	memcpy(gmem_ptr(m, load, payload), img + setup_len, payload);
	k->kind = BOOT_KERNEL_BZIMAGE;
	k->entry = load + 0x200;
	k->start = load;
	k->end = load + span;
	k->initrd_addr_max = version >= 0x203 ? rd32(img + BP_INITRD_ADDR_MAX) : 0x37ffffff;
	k->cmdline_max = rd32(img + BP_CMDLINE_SIZE);
	if (k->cmdline_max > WISP_CMDLINE_MAX - 1)
		k->cmdline_max = WISP_CMDLINE_MAX - 1;
	k->setup_hdr_len = hdr_end - BP_SETUP_SECTS;
	memcpy(k->setup_hdr, img + BP_SETUP_SECTS, k->setup_hdr_len);
	/* Tell the kernel where its 32-bit code landed. */
	wr32(k->setup_hdr + (BP_CODE32_START - BP_SETUP_SECTS), (uint32_t)load);
	return 0;
}

int boot_load_kernel(const struct gmem *m, const uint8_t *img, size_t len,
		     struct boot_kernel *k, struct wisp_err *err)
{
	memset(k, 0, sizeof(*k));
	if (len > BOOT_KERNEL_MAX_BYTES)
		return wisp_err_set(err, EFBIG, "kernel: image of %zu bytes is larger than %llu MiB",
				    len, BOOT_KERNEL_MAX_BYTES >> 20);
	if (len >= 4 && memcmp(img, ELFMAG, SELFMAG) == 0)
		return load_elf(m, img, len, k, err);
	if (len >= BP_HEADER + 4 && rd32(img + BP_HEADER) == BOOT_HDRS_MAGIC &&
	    rd16(img + BP_BOOT_FLAG) == BOOT_FLAG_MAGIC)
		return load_bzimage(m, img, len, k, err);
	return wisp_err_set(err, EINVAL, "kernel: neither an ELF vmlinux nor a bzImage (%zu bytes)",
			    len);
}

int boot_load_initrd(const struct gmem *m, const struct boot_kernel *k, const uint8_t *img,
		     size_t len, uint64_t *addr, struct wisp_err *err)
{
	if (len == 0)
		return wisp_err_set(err, EINVAL, "initrd: file is empty");
	if (len > BOOT_INITRD_MAX_BYTES)
		return wisp_err_set(err, EFBIG, "initrd: %zu bytes is larger than %llu MiB", len,
				    BOOT_INITRD_MAX_BYTES >> 20);
	uint64_t top = low_ram_end(m);
	if ((uint64_t)k->initrd_addr_max + 1 < top)
		top = (uint64_t)k->initrd_addr_max + 1;
	if (len > top || ((top - len) & ~(WISP_PAGE_SIZE - 1)) < k->end)
		return wisp_err_set(err, ENOSPC,
				    "initrd: %zu bytes do not fit between the kernel (ends at 0x%llx) and 0x%llx",
				    len, (unsigned long long)k->end, (unsigned long long)top);
	uint64_t gpa = (top - len) & ~(WISP_PAGE_SIZE - 1);
	if (gpa < WISP_HIMEM_START || gmem_write(m, gpa, img, len))
		return wisp_err_set(err, ENOSPC, "initrd: no room in guest RAM");
	*addr = gpa;
	return 0;
}

/* GDT: null, a TSS placeholder (KVM wants a usable TR), flat 64-bit code at
 * __BOOT_CS and flat data at __BOOT_DS. */
static const uint64_t boot_gdt[4] = {
	0,
	0x00008b0000000fffULL, /* TSS, busy, limit 0xfff */
	0x00af9b000000ffffULL, /* code: L=1, G=1, present, DPL 0, exec/read */
	0x00cf93000000ffffULL, /* data: G=1, D/B=1, present, read/write */
};

static int write_tables(const struct gmem *m, struct wisp_err *err)
{
	uint8_t *gdt = gmem_ptr(m, WISP_BOOT_GDT_ADDR, sizeof(boot_gdt));
	uint8_t *idt = gmem_ptr(m, WISP_BOOT_IDT_ADDR, 8);
	uint8_t *pml4 = gmem_ptr(m, WISP_PML4_ADDR, WISP_PAGE_SIZE);
	uint8_t *pdpte = gmem_ptr(m, WISP_PDPTE_ADDR, WISP_PAGE_SIZE);
	uint8_t *pde = gmem_ptr(m, WISP_PDE_ADDR, 4 * WISP_PAGE_SIZE);
	if (!gdt || !idt || !pml4 || !pdpte || !pde)
		return wisp_err_set(err, EINVAL, "boot: guest RAM does not cover the boot structures");
	memcpy(gdt, boot_gdt, sizeof(boot_gdt));
	memset(idt, 0, 8);
	memset(pml4, 0, WISP_PAGE_SIZE);
	memset(pdpte, 0, WISP_PAGE_SIZE);
	/* Present | writable; 2 MiB pages (PS) identity-map the first 4 GiB. */
	wr64(pml4, WISP_PDPTE_ADDR | 0x3);
	for (uint64_t i = 0; i < 4; i++)
		wr64(pdpte + i * 8, (WISP_PDE_ADDR + i * WISP_PAGE_SIZE) | 0x3);
	for (uint64_t i = 0; i < 4 * 512; i++)
		wr64(pde + i * 8, (i << 21) | 0x83);
	return 0;
}

int boot_write_params(const struct gmem *m, const struct boot_kernel *k, const char *cmdline,
		      uint64_t initrd_addr, uint64_t initrd_size, struct wisp_err *err)
{
	size_t clen = strlen(cmdline);
	if (clen > k->cmdline_max)
		return wisp_err_set(err, E2BIG,
				    "boot: command line of %zu bytes is longer than the kernel's %u",
				    clen, k->cmdline_max);
	if (gmem_write(m, WISP_CMDLINE_ADDR, cmdline, clen + 1))
		return wisp_err_set(err, EINVAL, "boot: command line outside guest RAM");
	uint8_t *bp = gmem_ptr(m, WISP_ZERO_PAGE_ADDR, WISP_PAGE_SIZE);
	if (!bp)
		return wisp_err_set(err, EINVAL, "boot: zero page outside guest RAM");
	memset(bp, 0, WISP_PAGE_SIZE);
	if (k->setup_hdr_len) {
		memcpy(bp + BP_SETUP_SECTS, k->setup_hdr, k->setup_hdr_len);
	} else {
		wr16(bp + BP_BOOT_FLAG, BOOT_FLAG_MAGIC);
		wr32(bp + BP_HEADER, BOOT_HDRS_MAGIC);
		wr16(bp + BP_VERSION, 0x020f);
		wr32(bp + BP_KERNEL_ALIGNMENT, 0x1000000);
		wr8(bp + BP_LOADFLAGS, 0x01);
		wr32(bp + BP_CMDLINE_SIZE, k->cmdline_max);
	}
	wr8(bp + BP_TYPE_OF_LOADER, 0xff); /* undefined loader */
	wr32(bp + BP_CMD_LINE_PTR, (uint32_t)WISP_CMDLINE_ADDR);
	wr32(bp + BP_EXT_CMD_LINE_PTR, (uint32_t)(WISP_CMDLINE_ADDR >> 32));
	if (initrd_size) {
		wr32(bp + BP_RAMDISK_IMAGE, (uint32_t)initrd_addr);
		wr32(bp + BP_RAMDISK_SIZE, (uint32_t)initrd_size);
		wr32(bp + BP_EXT_RAMDISK_IMAGE, (uint32_t)(initrd_addr >> 32));
		wr32(bp + BP_EXT_RAMDISK_SIZE, (uint32_t)(initrd_size >> 32));
	}
	struct gmem_e820 e820[BP_E820_MAX];
	int n = gmem_e820(m, e820, BP_E820_MAX);
	if (n < 0)
		return wisp_err_set(err, -n, "boot: e820 map does not fit the zero page");
	wr8(bp + BP_E820_ENTRIES, (uint8_t)n);
	for (int i = 0; i < n; i++) {
		uint8_t *e = bp + BP_E820_TABLE + i * 20;
		wr64(e, e820[i].addr);
		wr64(e + 8, e820[i].size);
		wr32(e + 16, e820[i].type);
	}
	return write_tables(m, err);
}

int boot_map_file(const char *path, uint64_t max, const uint8_t **data, size_t *len,
		  struct wisp_err *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return wisp_err_sys(err, errno, "opening %s", path);
	struct stat st;
	if (fstat(fd, &st) < 0)
		return wisp_err_sys(err, errno, "stat %s", path);
	if (!S_ISREG(st.st_mode))
		return wisp_err_set(err, EINVAL, "%s is not a regular file", path);
	if ((uint64_t)st.st_size > max)
		return wisp_err_set(err, EFBIG, "%s: %lld bytes is over the %llu MiB limit", path,
				    (long long)st.st_size, (unsigned long long)(max >> 20));
	if (st.st_size == 0)
		return wisp_err_set(err, EINVAL, "%s is empty", path);
	void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED)
		return wisp_err_sys(err, errno, "mapping %s", path);
	*data = p;
	*len = (size_t)st.st_size;
	return 0;
}

void boot_unmap_file(const uint8_t *data, size_t len)
{
	if (data)
		munmap((void *)data, len);
}
