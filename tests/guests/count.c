/* Counts forever, printing "count 0x<N>" after each step; the counter
 * lives in guest RAM. The snapshot lane case restores it into two VMMs at
 * once: both must go on from the saved count. */
#include "guest.h"

static volatile uint64_t counter;

void main(void)
{
	puts_serial("count: start\n");
	for (;;) {
		counter++;
		puts_serial("count ");
		puthex(counter);
		puts_serial("\n");
		for (volatile uint32_t i = 0; i < 3000000; i++)
			;
	}
}
