/* Loaders on well-formed and malformed images, boot_params, MP table. */
#include <criterion/criterion.h>
#include <elf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/boot.h"
#include "vmm/layout.h"
#include "vmm/mem.h"
#include "vmm/mptable.h"

#define RAM (64ULL << 20)

static struct gmem m;
static uint8_t *ram;

static void setup(void)
{
	ram = calloc(1, RAM);
	cr_assert_not_null(ram);
	memset(&m, 0, sizeof(m));
	cr_assert_eq(gmem_add_region(&m, 0, ram, RAM), 0);
}

static void teardown(void)
{
	free(ram);
}

/* A minimal ELF: header + n program headers + payload at 0x1000. */
struct elf_img {
	uint8_t buf[0x3000];
	size_t len;
};

static Elf64_Phdr *phdr(struct elf_img *e, int i)
{
	return (Elf64_Phdr *)(e->buf + sizeof(Elf64_Ehdr) + i * sizeof(Elf64_Phdr));
}

static void make_elf(struct elf_img *e, uint64_t paddr, uint64_t filesz, uint64_t memsz)
{
	memset(e, 0, sizeof(*e));
	Elf64_Ehdr *h = (Elf64_Ehdr *)e->buf;
	memcpy(h->e_ident, ELFMAG, SELFMAG);
	h->e_ident[EI_CLASS] = ELFCLASS64;
	h->e_ident[EI_DATA] = ELFDATA2LSB;
	h->e_ident[EI_VERSION] = EV_CURRENT;
	h->e_type = ET_EXEC;
	h->e_machine = EM_X86_64;
	h->e_entry = paddr;
	h->e_phoff = sizeof(Elf64_Ehdr);
	h->e_phentsize = sizeof(Elf64_Phdr);
	h->e_phnum = 1;
	Elf64_Phdr *p = phdr(e, 0);
	p->p_type = PT_LOAD;
	p->p_offset = 0x1000;
	p->p_paddr = paddr;
	p->p_vaddr = 0xffffffff80000000ULL + paddr;
	p->p_filesz = filesz;
	p->p_memsz = memsz;
	memset(e->buf + 0x1000, 0xcc, filesz);
	e->len = 0x1000 + filesz;
}

TestSuite(loader, .init = setup, .fini = teardown);

Test(loader, elf_loads_at_paddr_and_zeroes_bss)
{
	struct elf_img e;
	struct boot_kernel k;
	struct wisp_err err = { 0 };
	make_elf(&e, 0x1000000, 0x800, 0x2000);
	memset(ram + 0x1000000, 0x11, 0x2000);
	cr_assert_eq(boot_load_kernel(&m, e.buf, e.len, &k, &err), 0, "%s", err.msg);
	cr_assert_eq(k.kind, BOOT_KERNEL_ELF);
	cr_assert_eq(k.entry, 0x1000000);
	cr_assert_eq(k.end, 0x1002000);
	cr_assert_eq(ram[0x1000000], 0xcc);
	cr_assert_eq(ram[0x10007ff], 0xcc);
	cr_assert_eq(ram[0x1000800], 0);
	cr_assert_eq(ram[0x1001fff], 0);
}

Test(loader, elf_refusals)
{
	struct elf_img e;
	struct boot_kernel k;
	struct wisp_err err = { 0 };

	make_elf(&e, 0x1000000, 0x800, 0x800);
	cr_assert_eq(boot_load_kernel(&m, e.buf, 0x1400, &k, &err), -EINVAL, "truncated segment");
	cr_assert(strstr(err.msg, "truncated"), "%s", err.msg);

	cr_assert_eq(boot_load_kernel(&m, e.buf, 40, &k, &err), -EINVAL, "truncated header");

	make_elf(&e, 0x7000, 0x100, 0x100);
	cr_assert_eq(boot_load_kernel(&m, e.buf, e.len, &k, &err), -EINVAL);
	cr_assert(strstr(err.msg, "zero page"), "%s", err.msg);

	make_elf(&e, RAM - 0x400, 0x800, 0x800);
	cr_assert_eq(boot_load_kernel(&m, e.buf, e.len, &k, &err), -EINVAL);
	cr_assert(strstr(err.msg, "outside guest RAM"), "%s", err.msg);

	make_elf(&e, 0x1000000, 0x800, 0x800);
	phdr(&e, 0)->p_memsz = 0xffffffffffff0000ULL;
	cr_assert_eq(boot_load_kernel(&m, e.buf, e.len, &k, &err), -EINVAL, "wrapping size");

	make_elf(&e, 0x1000000, 0x800, 0x800);
	phdr(&e, 0)->p_offset = 0xfffffffffffff000ULL;
	cr_assert_eq(boot_load_kernel(&m, e.buf, e.len, &k, &err), -EINVAL, "offset overflow");

	make_elf(&e, 0x1000000, 0x800, 0x400);
	cr_assert_eq(boot_load_kernel(&m, e.buf, e.len, &k, &err), -EINVAL, "filesz > memsz");

	make_elf(&e, 0x1000000, 0x800, 0x800);
	((Elf64_Ehdr *)e.buf)->e_entry = 0x2000000;
	cr_assert_eq(boot_load_kernel(&m, e.buf, e.len, &k, &err), -EINVAL);
	cr_assert(strstr(err.msg, "entry"), "%s", err.msg);

	make_elf(&e, 0x1000000, 0x800, 0x800);
	((Elf64_Ehdr *)e.buf)->e_phnum = 1000;
	cr_assert_eq(boot_load_kernel(&m, e.buf, e.len, &k, &err), -EINVAL, "absurd phnum");

	make_elf(&e, 0x1000000, 0x800, 0x800);
	((Elf64_Ehdr *)e.buf)->e_phoff = e.len - 10;
	cr_assert_eq(boot_load_kernel(&m, e.buf, e.len, &k, &err), -EINVAL, "phdrs past the end");

	make_elf(&e, 0x1000000, 0x800, 0x800);
	((Elf64_Ehdr *)e.buf)->e_machine = EM_AARCH64;
	cr_assert_eq(boot_load_kernel(&m, e.buf, e.len, &k, &err), -EINVAL, "wrong machine");

	make_elf(&e, 0x1000000, 0x800, 0x800);
	phdr(&e, 0)->p_type = PT_NOTE;
	cr_assert_eq(boot_load_kernel(&m, e.buf, e.len, &k, &err), -EINVAL, "no PT_LOAD");

	/* Nothing was copied by any refused image. */
	cr_assert_eq(ram[0x1000000], 0);

	uint8_t junk[600] = { 'M', 'Z' };
	cr_assert_eq(boot_load_kernel(&m, junk, sizeof(junk), &k, &err), -EINVAL);
	cr_assert(strstr(err.msg, "neither"), "%s", err.msg);
	cr_assert_eq(boot_load_kernel(&m, junk, BOOT_KERNEL_MAX_BYTES + 1, &k, &err), -EFBIG);
}

/* A bzImage-shaped image: setup sectors then a payload. */
static uint8_t *make_bz(size_t *len, uint16_t version, uint8_t setup_sects, size_t payload,
			uint32_t init_size)
{
	size_t setup = (size_t)(setup_sects + 1) * 512;
	*len = setup + payload;
	uint8_t *b = calloc(1, *len);
	b[BP_SETUP_SECTS] = setup_sects;
	b[BP_BOOT_FLAG] = 0x55;
	b[BP_BOOT_FLAG + 1] = 0xaa;
	b[BP_JUMP] = 0xeb;
	b[BP_JUMP + 1] = 0x6a; /* header ends at 0x26c */
	uint32_t hdrs = BOOT_HDRS_MAGIC;
	memcpy(b + BP_HEADER, &hdrs, 4);
	memcpy(b + BP_VERSION, &version, 2);
	b[BP_LOADFLAGS] = 0x01;
	uint32_t v = 0x37ffffff;
	memcpy(b + BP_INITRD_ADDR_MAX, &v, 4);
	v = 0x200000;
	memcpy(b + BP_KERNEL_ALIGNMENT, &v, 4);
	b[BP_RELOCATABLE] = 1;
	uint16_t xlf = 0x1;
	memcpy(b + BP_XLOADFLAGS, &xlf, 2);
	v = 2048;
	memcpy(b + BP_CMDLINE_SIZE, &v, 4);
	uint64_t pref = 0x1000000;
	memcpy(b + BP_PREF_ADDRESS, &pref, 8);
	memcpy(b + BP_INIT_SIZE, &init_size, 4);
	memset(b + setup, 0xab, payload);
	return b;
}

Test(loader, bzimage_loads_payload_and_header)
{
	size_t len;
	uint8_t *b = make_bz(&len, 0x20f, 4, 0x4000, 0x100000);
	struct boot_kernel k;
	struct wisp_err err = { 0 };
	cr_assert_eq(boot_load_kernel(&m, b, len, &k, &err), 0, "%s", err.msg);
	cr_assert_eq(k.kind, BOOT_KERNEL_BZIMAGE);
	cr_assert_eq(k.entry, 0x1000200);
	cr_assert_eq(k.end, 0x1100000, "init_size bounds the kernel");
	cr_assert_eq(k.cmdline_max, 2048);
	cr_assert_eq(ram[0x1000000], 0xab);
	cr_assert_eq(ram[0x1003fff], 0xab);
	cr_assert_eq(k.setup_hdr_len, 0x26c - BP_SETUP_SECTS);

	cr_assert_eq(boot_write_params(&m, &k, "console=ttyS0", 0, 0, &err), 0, "%s", err.msg);
	uint8_t *bp = ram + WISP_ZERO_PAGE_ADDR;
	uint32_t code32, hdrs, cmd;
	memcpy(&code32, bp + BP_CODE32_START, 4);
	memcpy(&hdrs, bp + BP_HEADER, 4);
	memcpy(&cmd, bp + BP_CMD_LINE_PTR, 4);
	cr_assert_eq(code32, 0x1000000);
	cr_assert_eq(hdrs, BOOT_HDRS_MAGIC);
	cr_assert_eq(bp[BP_TYPE_OF_LOADER], 0xff);
	cr_assert_eq(cmd, WISP_CMDLINE_ADDR);
	cr_assert_str_eq((char *)ram + WISP_CMDLINE_ADDR, "console=ttyS0");

	char *long_cmd = malloc(3000);
	memset(long_cmd, 'x', 2999);
	long_cmd[2999] = 0;
	cr_assert_eq(boot_write_params(&m, &k, long_cmd, 0, 0, &err), -E2BIG);
	free(long_cmd);
	free(b);
}

Test(loader, bzimage_refusals)
{
	size_t len;
	struct boot_kernel k;
	struct wisp_err err = { 0 };
	uint8_t *b = make_bz(&len, 0x205, 4, 0x1000, 0);
	cr_assert_eq(boot_load_kernel(&m, b, len, &k, &err), -EINVAL, "protocol too old");
	free(b);

	b = make_bz(&len, 0x20f, 4, 0x1000, 0);
	uint16_t xlf = 0;
	memcpy(b + BP_XLOADFLAGS, &xlf, 2);
	cr_assert_eq(boot_load_kernel(&m, b, len, &k, &err), -EINVAL, "no 64-bit entry");
	free(b);

	b = make_bz(&len, 0x20f, 200, 0x1000, 0);
	cr_assert_eq(boot_load_kernel(&m, b, 100 * 512, &k, &err), -EINVAL, "setup truncated");
	free(b);

	b = make_bz(&len, 0x20f, 4, 0x1000, 0x7fffffff);
	cr_assert_eq(boot_load_kernel(&m, b, len, &k, &err), -EINVAL, "absurd init_size");
	free(b);

	b = make_bz(&len, 0x20f, 4, 0x1000, 0x4000000);
	cr_assert_eq(boot_load_kernel(&m, b, len, &k, &err), -EINVAL, "init_size beyond RAM");
	cr_assert(strstr(err.msg, "outside guest RAM"), "%s", err.msg);
	free(b);

	b = make_bz(&len, 0x20f, 4, 0x1000, 0);
	b[BP_JUMP + 1] = 0xff;
	cr_assert_eq(boot_load_kernel(&m, b, len, &k, &err), -EINVAL, "header length");
	free(b);
}

Test(loader, initrd_top_of_low_ram_below_limit)
{
	struct elf_img e;
	struct boot_kernel k;
	struct wisp_err err = { 0 };
	make_elf(&e, 0x1000000, 0x800, 0x800);
	cr_assert_eq(boot_load_kernel(&m, e.buf, e.len, &k, &err), 0);
	static uint8_t initrd[10000];
	memset(initrd, 0x5a, sizeof(initrd));
	uint64_t addr = 0;
	cr_assert_eq(boot_load_initrd(&m, &k, initrd, sizeof(initrd), &addr, &err), 0, "%s", err.msg);
	cr_assert_eq(addr % 4096, 0);
	cr_assert(addr + sizeof(initrd) <= RAM);
	cr_assert(addr + sizeof(initrd) > RAM - 8192);
	cr_assert_eq(ram[addr], 0x5a);
	/* The kernel's limit is honoured. */
	k.initrd_addr_max = 0x2000000 - 1;
	cr_assert_eq(boot_load_initrd(&m, &k, initrd, sizeof(initrd), &addr, &err), 0);
	cr_assert(addr + sizeof(initrd) <= 0x2000000);
	/* Too large to fit above the kernel. */
	k.initrd_addr_max = UINT32_MAX;
	uint8_t *big = calloc(1, RAM - 0x1000000);
	cr_assert_eq(boot_load_initrd(&m, &k, big, RAM - 0x1000000, &addr, &err), -ENOSPC);
	free(big);
	cr_assert_eq(boot_write_params(&m, &k, "x", 0x3000000, 10000, &err), 0);
	uint32_t img, size;
	memcpy(&img, ram + WISP_ZERO_PAGE_ADDR + BP_RAMDISK_IMAGE, 4);
	memcpy(&size, ram + WISP_ZERO_PAGE_ADDR + BP_RAMDISK_SIZE, 4);
	cr_assert_eq(img, 0x3000000);
	cr_assert_eq(size, 10000);
}

Test(loader, zero_page_e820_gdt_and_page_tables)
{
	struct elf_img e;
	struct boot_kernel k;
	struct wisp_err err = { 0 };
	make_elf(&e, 0x1000000, 0x800, 0x800);
	cr_assert_eq(boot_load_kernel(&m, e.buf, e.len, &k, &err), 0);
	cr_assert_eq(boot_write_params(&m, &k, "a=b", 0, 0, &err), 0);
	uint8_t *bp = ram + WISP_ZERO_PAGE_ADDR;
	cr_assert_eq(bp[BP_E820_ENTRIES], 3);
	uint64_t a, s;
	uint32_t t;
	memcpy(&a, bp + BP_E820_TABLE + 40, 8);
	memcpy(&s, bp + BP_E820_TABLE + 48, 8);
	memcpy(&t, bp + BP_E820_TABLE + 56, 4);
	cr_assert_eq(a, WISP_HIMEM_START);
	cr_assert_eq(a + s, RAM);
	cr_assert_eq(t, 1);
	uint16_t flag;
	memcpy(&flag, bp + BP_BOOT_FLAG, 2);
	cr_assert_eq(flag, BOOT_FLAG_MAGIC);
	uint64_t gdt_cs, pml4, pde1;
	memcpy(&gdt_cs, ram + WISP_BOOT_GDT_ADDR + BOOT_CS_SEL, 8);
	cr_assert_eq(gdt_cs, 0x00af9b000000ffffULL);
	memcpy(&pml4, ram + WISP_PML4_ADDR, 8);
	cr_assert_eq(pml4, WISP_PDPTE_ADDR | 3);
	memcpy(&pde1, ram + WISP_PDE_ADDR + 8, 8);
	cr_assert_eq(pde1, (1ULL << 21) | 0x83);
}

static uint8_t sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	for (size_t i = 0; i < n; i++)
		s += p[i];
	return s;
}

TestSuite(mptable, .init = setup, .fini = teardown);

Test(mptable, layout_and_checksums)
{
	struct wisp_err err = { 0 };
	for (int n = 1; n <= WISP_MAX_VCPUS; n += 31) {
		cr_assert_eq(mptable_write(&m, n, &err), 0, "%s", err.msg);
		uint8_t *mpf = ram + WISP_MPTABLE_ADDR;
		cr_assert_eq(memcmp(mpf, "_MP_", 4), 0);
		cr_assert_eq(sum(mpf, 16), 0);
		uint32_t cfg;
		memcpy(&cfg, mpf + 4, 4);
		uint8_t *c = ram + cfg;
		cr_assert_eq(memcmp(c, "PCMP", 4), 0);
		uint16_t len, count;
		memcpy(&len, c + 4, 2);
		memcpy(&count, c + 34, 2);
		cr_assert_eq(sum(c, len), 0);
		cr_assert(cfg + len <= WISP_HIMEM_START);
		int cpus = 0, bsp = 0, ioapic = 0, irqs = 0, lint = 0;
		uint8_t *p = c + 44;
		for (int i = 0; i < count; i++) {
			switch (p[0]) {
			case 0:
				cr_assert_eq(p[1], cpus, "APIC ids in order");
				cpus++;
				bsp += (p[3] & 2) != 0;
				p += 20;
				break;
			case 1:
				cr_assert_eq(memcmp(p + 2, "ISA", 3), 0);
				p += 8;
				break;
			case 2:
				ioapic++;
				cr_assert_eq(p[1], n, "IOAPIC id after the CPUs");
				p += 8;
				break;
			case 3:
				cr_assert_eq(p[5], p[7], "ISA IRQ i -> pin i");
				irqs++;
				p += 8;
				break;
			case 4:
				lint++;
				p += 8;
				break;
			default:
				cr_assert_fail("unknown entry type %d", p[0]);
			}
		}
		cr_assert_eq(p - c, len);
		cr_assert_eq(cpus, n);
		cr_assert_eq(bsp, 1);
		cr_assert_eq(ioapic, 1);
		cr_assert_eq(irqs, WISP_IRQ_MAX + 1);
		cr_assert_eq(lint, 2);
	}
	cr_assert_eq(mptable_write(&m, 0, &err), -EINVAL);
	cr_assert_eq(mptable_write(&m, WISP_MAX_VCPUS + 1, &err), -EINVAL);
}
