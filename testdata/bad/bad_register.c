#include "../pvpass/ops.h"

void bad_reg(void)
{
	asm volatile("# pvpass: site cpu.io_delay clobbers(rax, xmm0)\n\t"
		     "call *%[pv_op]"
		     : : [pv_op] "m" (pv_ops.cpu.io_delay) : "memory", "rax");
}
