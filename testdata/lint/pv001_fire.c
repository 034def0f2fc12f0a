#include "lintops.h"

void delay(void)
{
	pv_ops.io_delay();
}
