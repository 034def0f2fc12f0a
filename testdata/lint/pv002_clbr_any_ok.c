/* Linux 6.1's C-convention site: on i386 its CLBR_ANY mask, (1 << 4) - 1,
 * has the %edi bit, which no C-convention callee changes: not a PV002. */
#include "../kernel/pv61.h"

void slow_down_io(void)
{
	PVOP_VCALL0(cpu.io_delay);
}

void kick(int cpu)
{
	PVOP_VCALL1(lock.kick, cpu);
}
