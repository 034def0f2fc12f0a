/* pvpass-dialect call sites: static inline helpers used several times,
 * void and returning calls, C and callee-save conventions, 0-4 arguments,
 * and a hand-written site with its own clobber set. */
#include "ops.h"

static inline unsigned long read_tsc(void) { return PV_CALL0(unsigned long, cpu.read_tsc); }
static inline void io_delay(void) { PV_VCALL0(cpu.io_delay); }
static inline unsigned long save_fl(void) { return PV_CALLEE0(unsigned long, irq.save_fl); }
static inline void restore_fl(unsigned long f) { PV_VCALLEE1(irq.restore_fl, f); }
static inline void irq_disable(void) { PV_VCALLEE0(irq.irq_disable); }
static inline unsigned long pte_val(unsigned long p) { return PV_CALLEE1(unsigned long, mmu.pte_val, p); }
static inline void set_pte(unsigned long *p, unsigned long v) { PV_VCALL2(mmu.set_pte, p, v); }
static inline unsigned long sum4(unsigned long a, unsigned long b, unsigned long c, unsigned long d)
{
	return PV_CALL4(unsigned long, cpu.sum4, a, b, c, d);
}

/* Hand-written: the callee may change only the return register and %edx. */
#ifdef __x86_64__
#define PVPASS_CR2_REGS "rax, rdx"
#else
#define PVPASS_CR2_REGS "eax, edx"
#endif
static inline unsigned long read_cr2(void)
{
	unsigned long v, scratch;
	asm volatile(PVPASS_SITE(mmu.read_cr2, PVPASS_CR2_REGS) PVPASS_CALL
		     : "=a" (v), "=d" (scratch)
		     : [pv_op] "m" (pv_ops.mmu.read_cr2)
		     : "memory", "cc");
	return v;
}

unsigned long work(unsigned long *ptes, int n)
{
	unsigned long f = save_fl(), acc = 0;
	int i;
	irq_disable();
	for (i = 0; i < n; i++) {
		acc += pte_val(ptes[i]);
		set_pte(&ptes[i], acc);
		io_delay();
	}
	restore_fl(f);
	return acc + read_tsc() + read_cr2();
}

unsigned long more(unsigned long x)
{
	unsigned long f = save_fl();
	io_delay();
	restore_fl(f);
	return sum4(x, x + 1, x + 2, pte_val(x)) + read_tsc();
}
