#include "lintops.h"

void delay(void)
{
	PV_VCALL0(io_delay);
}
