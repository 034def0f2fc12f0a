#include "lintops.h"

__attribute__((optimize("O1"))) void delays(int n)
{
	for (int i = 0; i < n; i++) {
		asm volatile(PVPASS_RZ_SKIP PVPASS_SITE(io_delay, "rax") PVPASS_CALL PVPASS_RZ_END
			     : : [pv_op] "m" (pv_ops.io_delay) PVPASS_RZ_FRAME : "rax", "memory", "cc");
		asm volatile(PVPASS_RZ_SKIP PVPASS_SITE(save_fl, "rax") PVPASS_CALL PVPASS_RZ_END
			     : : [pv_op] "m" (pv_ops.save_fl) PVPASS_RZ_FRAME : "rax", "memory", "cc");
	}
}
