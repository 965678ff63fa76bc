/* Faults with no usable IDT: #UD -> #DF -> triple fault (KVM_EXIT_SHUTDOWN). */
#include "guest.h"

void main(void)
{
	struct __attribute__((packed)) { uint16_t limit; uint64_t base; } idt = { 0, 0 };
	puts_serial("triple: faulting now\n");
	__asm__ volatile("lidt %0; ud2" : : "m"(idt));
	puts_serial("triple: still alive (wrong)\n");
	guest_reset();
}
