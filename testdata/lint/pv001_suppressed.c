#include "lintops.h"

void early_delay(void)
{
	/* pvpass-lint: allow PV001 runs before the patcher */
	pv_ops.io_delay();
}
