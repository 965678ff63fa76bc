/* Prints "tick N" about every 2^27 TSC cycles and polls the i8042; when the
 * keyboard delivers Ctrl+Alt+Del (set 2 make codes, ending 0xe0 0x71) it
 * prints "ticker: ctrl-alt-del" and resets. The API lane cases use it to
 * see pause (no ticks), resume (ticks again) and SendCtrlAltDel. */
#include "guest.h"

void main(void)
{
	uint64_t n = 0, next = rdtsc();
	uint8_t prev = 0;
	puts_serial("ticker: up\n");
	for (;;) {
		if (inb(0x64) & 1) {
			uint8_t c = inb(0x60);
			if (prev == 0xe0 && c == 0x71) {
				puts_serial("ticker: ctrl-alt-del\n");
				guest_reset();
			}
			prev = c;
		}
		uint64_t t = rdtsc();
		if ((int64_t)(t - next) >= 0) {
			puts_serial("tick ");
			putdec(n++);
			puts_serial("\n");
			next = t + (1ULL << 27);
		}
	}
}
