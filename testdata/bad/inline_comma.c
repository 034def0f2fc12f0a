/* issue 11: a PV_INLINE replacement starting with ',' made keystone spin
 * forever (emit, lint, verify). Now: one error, no hang. */
#include "../pvpass/ops.h"

unsigned long save_fl(void)
{
	return PV_CALLEE0(unsigned long, irq.save_fl);
}

unsigned long my_save_fl(void);
static const struct pv_ops_template my_ops = { .irq.save_fl = my_save_fl };
PV_INLINE(my_ops, irq.save_fl, ", popq %rax", "rax");
