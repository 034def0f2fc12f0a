#include "lintops.h"

void delay(void)
{
	asm volatile("#\"pvpass: site io_delay }(rax rcx)\xmm0\t"
		     "call *%[pv_op]" : : [pv_op] "m" (pv_ops.io_delay) : "memory", "rax", "rcx");
}
