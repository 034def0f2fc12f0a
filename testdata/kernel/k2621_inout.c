/* 2.6.21 i386 form: arguments in an in-out operand ("+a") and in a matching
 * one ("0"): with regparm(3) both carry argument 1 (PV007 must count them). */
#include "pv2621.h"

static inline void write_cr0(unsigned long x)
{
	unsigned long __edx, __ecx;
	__asm__ __volatile__(paravirt_alt(PARAVIRT_CALL)
			     : "+a"(x), "=d"(__edx), "=c"(__ecx)
			     : paravirt_type(PARAVIRT_PATCH(write_cr0)),
			       paravirt_clobber(CLBR_ANY)
			     : "memory", "cc");
}

void set_cr0(unsigned long cr0)
{
	write_cr0(cr0 | 1);
}

void switch_mm(unsigned long pgd)
{
	write_cr3(pgd);
}
