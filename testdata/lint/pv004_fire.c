#include "lintops.h"

static void nop(void) { }
static void set_pte(unsigned long *p, unsigned long v) { *p = v; }
static unsigned long cr2(void) { return 2; }

static const struct lint_ops inline_ops = {
	.io_delay = nop, .set_pte = set_pte, .read_cr2 = cr2,
};
PV_ABSENT(inline_ops, save_fl);
PV_INLINE(inline_ops, save_fl, "pushfq; popq %rdx; movq %rdx, %rax", "rax, rdx");

unsigned long flags(void)
{
	return PV_CALLEE0(unsigned long, save_fl);
}
