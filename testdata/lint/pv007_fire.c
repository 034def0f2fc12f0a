#include "lintops.h"

void set(unsigned long *p)
{
	PV_VCALL1(set_pte, p);
}

unsigned long delay_result(void)
{
	return PV_CALL0(unsigned long, io_delay);
}
