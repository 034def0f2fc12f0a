/* A hand-written site whose argument travels in an in-out operand: "+a"
 * carries argument 1 under i386 regparm(3), "+D" under the x86-64 psABI. */
#define PVPASS_OPS cr_ops
#include <pvpass.h>
struct cr_ops {
	void (PVPASS_REGPARM *write_cr3)(unsigned long);
};
extern struct cr_ops cr_ops;

#ifdef __x86_64__
#define ARG1_INOUT(x)	"+D" (x)
#define REST_OUT	"=a" (ax), "=S" (si), "=d" (dx), "=c" (cx)
#define REST_CLOB	"r8", "r9", "r10", "r11"
#else
#define ARG1_INOUT(x)	"+a" (x)
#define REST_OUT	"=d" (dx), "=c" (cx)
#define REST_CLOB	"cc"
#endif

void switch_mm(unsigned long pgd)
{
	unsigned long ax, si, dx, cx;
	__asm__ __volatile__(PVPASS_SITE(write_cr3, PVPASS_C_REGS) PVPASS_CALL
			     : ARG1_INOUT(pgd), REST_OUT
			     : [pv_op] "m" (cr_ops.write_cr3)
			     : "memory", REST_CLOB);
}
