/* Linux 6.1 form: an argument in an in-out operand ("+D" on x86-64, "+a"
 * on i386 regparm(3)) is argument 1 (PV007 must count it). */
#include "pv61.h"

/* An argument in an in-out operand: "+D" (x86-64) / "+a" (i386 regparm(3))
 * carries argument 1 and tells gcc the callee may change it. */
#ifdef __x86_64__
#define INOUT_VCALL_CLOBBERS(x)	"+D" (x), "=S" (__esi), "=d" (__edx), "=c" (__ecx)
#else
#define INOUT_VCALL_CLOBBERS(x)	"+a" (x), "=d" (__edx), "=c" (__ecx)
#endif

static inline void write_cr4(unsigned long x)
{
	PVOP_CALL_ARGS;
	PVOP_TEST_NULL(cpu.write_cr4);
	asm volatile(paravirt_alt(PARAVIRT_CALL)
		     : INOUT_VCALL_CLOBBERS(x), ASM_CALL_CONSTRAINT
		     : paravirt_type(cpu.write_cr4), paravirt_clobber(CLBR_ANY)
		     : "memory", "cc" VEXTRA_CLOBBERS);
}

void set_cr4_bits(unsigned long bits)
{
	write_cr4(bits | 0x80);
}
