#include "../pvpass/ops.h"

unsigned long broken(void)
{
	unsigned long x = PV_CALL0(unsigned long, cpu.read_tsc)
	return x +;
}
