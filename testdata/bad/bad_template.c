#include "../pvpass/ops.h"

void bad_tpl(void)
{
	asm volatile("# pvpass: site cpu.io_delay clobbers(rax)\n\t"
		     "call *%[pv_op] ) ("
		     : : [pv_op] "m" (pv_ops.cpu.io_delay) : "memory", "rax");
}
