#include "lintops.h"

void delay(void)
{
	asm volatile("# pvpass: site io_delay clobbers(rax rcx)\n.fill 0x1000000, 8, 0; \t"
		     "call *%[pv_op]" : : [pv_op] "m" (pv_ops.io_delay) : "memory", "rax", "rcx");
}

void delay_fz0(void)
{
	asm volatile("# pvpass: site io_delay clobbers(rax rcx)\n.fill 0x1000000, 8, 0; \t"
		     "call *%[pv_op]" : : [pv_op] "m" (pv_ops.io_delay) : "memory", "rax", "rcx");
}

void delay_fz1(void)
{
	asm volatile("# pvpass: site io_delay clobbers(rax rcx)\n.fill 0x1000000, 8, 0; \t"
		     "call *%[pv_op]" : : [pv_op] "m" (pv_ops.io_delay) : "memory", "rax", "rcx");
}
