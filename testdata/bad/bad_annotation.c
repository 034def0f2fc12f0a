#include "../pvpass/ops.h"

unsigned long bad(void)
{
	unsigned long v;
	asm volatile("# pvpass: site irq.save_fl clobbers(rax eax)\n\t"
		     "call *%[pv_op]"
		     : "=a" (v) : [pv_op] "m" (pv_ops.irq.save_fl) : "memory");
	return v;
}
