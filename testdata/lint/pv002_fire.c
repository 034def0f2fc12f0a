#include "lintops.h"

unsigned long cr2(void)
{
	unsigned long v;
	asm volatile(PVPASS_SITE(read_cr2, "rax, rdx") PVPASS_CALL
		     : "=a" (v) : [pv_op] "m" (pv_ops.read_cr2) : "memory", "cc");
	return v;
}
