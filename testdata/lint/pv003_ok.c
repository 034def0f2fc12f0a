#include "lintops.h"

void delay(void)
{
	asm volatile(PVPASS_SITE(io_delay, "any") PVPASS_CALL
		     : : [pv_op] "m" (pv_ops.io_delay)
		     : "memory", "cc", "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11");
}
