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
		/* Wait about 2^25 TSC cycles: a timed wait, not an instruction
		 * count, so the rate is alike on hardware KVM, in the nested lane
		 * and on PVM, where kernel-mode code runs ~3000x slower. */
		uint64_t until = rdtsc() + (1ULL << 25);
		while ((int64_t)(rdtsc() - until) < 0)
			;
	}
}
