#include "lintops.h"

void delay(void)
{
	/* pvpass-lint: allow PV001 nothing to allow here */
	PV_VCALL0(io_delay);
}
