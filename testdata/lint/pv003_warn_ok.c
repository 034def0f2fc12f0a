#include "lintops.h"

static unsigned long fast_cr2(void) { return 2; }
static void nop(void) { }
static void set_pte(unsigned long *p, unsigned long v) { *p = v; }
static unsigned long save_fl(void) { return 0x200; }

static const struct lint_ops fast_ops = {
	.save_fl = save_fl, .io_delay = nop, .set_pte = set_pte, .read_cr2 = fast_cr2,
};
PV_INLINE(fast_ops, read_cr2, "movq %cr2, %rax", "rax");

unsigned long cr2(void)
{
	return PV_CALL0(unsigned long, read_cr2);
}
