/* Prints a line and halts forever with interrupts off: the VMM must still
 * stop cleanly on SIGTERM/SIGINT. */
#include "guest.h"

void main(void)
{
	puts_serial("spin: running\n");
	for (;;)
		__asm__ volatile("cli; hlt");
}
