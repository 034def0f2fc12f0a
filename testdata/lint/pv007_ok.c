#include "lintops.h"

void set(unsigned long *p)
{
	PV_VCALL2(set_pte, p, 0);
}

void delay(void)
{
	PV_VCALL0(io_delay);
}
