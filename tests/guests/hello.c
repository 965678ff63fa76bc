/* Prints a line through the UART and resets. */
#include "guest.h"

void main(void)
{
	puts_serial("hello from the wisp tiny guest\n");
	guest_reset();
}
