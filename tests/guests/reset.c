/* Resets at once: the boot timer write comes first, so --boot-timer logs
 * exec-to-first-guest-instruction (benchmarks). */
#include "guest.h"

void main(void)
{
	MMIO8(0xc0000000) = 123;
	guest_reset();
}
