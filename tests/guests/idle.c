/* Writes a pattern over 16 MiB of RAM (from 16 MiB up), prints
 * "idle: ready" and halts with interrupts off: an idle guest with memory
 * worth sharing, for the snapshot benchmark's clones. */
#include "guest.h"

void main(void)
{
	volatile uint64_t *p = (volatile uint64_t *)(uintptr_t)(16u << 20);
	for (uint64_t i = 0; i < (16u << 20) / 8; i += 512)  /* one word per page */
		p[i] = 0x5157495350ull ^ i;
	puts_serial("idle: ready\n");
	for (;;)
		__asm__ volatile("cli; hlt");
}
