#include "../pvpass/ops.h"

unsigned long unknown(void)
{
	unsigned long v;
	asm volatile("# pvpass: site irq.save_flags clobbers(rax)\n\t"
		     "call *%[pv_op]"
		     : "=a" (v) : [pv_op] "m" (pv_ops.irq.save_fl) : "memory");
	return v;
}
