/* Console input: echoes what arrives on the UART, upper-cased, until a 'q'
 * arrives, then resets. Polls LSR.DR (the interrupt path is Linux's). */
#include "guest.h"

void main(void)
{
	puts_serial("echo: ready\n");
	for (;;) {
		while (!(inb(0x3f8 + 5) & 0x01))
			__asm__ volatile("pause");
		char c = (char)inb(0x3f8);
		if (c == 'q')
			break;
		if (c >= 'a' && c <= 'z')
			c = (char)(c - 'a' + 'A');
		putc_serial(c);
	}
	puts_serial("\necho: bye\n");
	guest_reset();
}
