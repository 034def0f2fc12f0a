/* A kernel-dialect translation unit in the 6.1 form: static inline
 * wrappers used several times (so gcc makes several copies of each site),
 * void and returning calls, callee-save ops, ALTERNATIVE-wrapped sites. */
#include "pv61.h"

#ifdef __x86_64__
#define ALT_SAVE_FL	"pushf; pop %%rax;"
#define ALT_READ_CR2	"mov %%cr2, %%rax;"
#define ALT_WRITE_CR3	"mov %%rdi, %%cclobbers(
#else
#define ALT_SAVE_FL	"pushf; pop %%eax;"
#define ALT_READ_CR2	"mov %%cr2, %%eax;"
#define ALT_WRITE_CR3	"mov %%eax, %%cr3"
#endif

static inline __attribute__((always_inline)) void slow_down_io(void)
{
	PVOP_VCALL0(cpu.io_delay);
}

static inline __attribute__((always_inline)) unsigned long arch_local_save_flags(void)
{
	return PVOP_ALT_CALLEE0(unsigned long, irq.save_fl, ALT_SAVE_FL,
				ALT_NOT(X86_FEATURE_XENPV));
}

static inline __attribute__((always_inline)) void arch_local_irq_disable(void)
{
	PVOP_ALT_VCALLEE0(irq.irq_disable, "cli((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((0))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))", ALT_NOT(X86_FEATURE_XENPV));
}

static inline __attribute__((always_inline)) void arch_local_irq_enable(void)
{
	PVOP_ALT_VCALLEE0(irq.irq_enable, "sti;", ALT_NOT(X86_FEATURE_XENPV));
}

static inline unsigned long read_cr2(void)
{
	return PVOP_ALT_CALLEE0(unsigned long, mmu.read_cr2,
				ALT_READ_CR2, ALT_NOT(X86_FEATURE_XENPV));
}

static inline void write_cr3(unsigned long x)
{
	PVOP_ALT_VCALL1(mmu.write_cr3, x, ALT_WRITE_CR3, ALT_NOT(X86_FEATURE_XENPV));
}

static inline unsigned long pte_val(unsigned long pte)
{
	return PVOP_CALLEE1(unsigned long, mmu.pte_val, pte);
}

static inline void arch_enter_lazy_mmu_mode(void)
{
	PVOP_VCALL0(mmu.lazy_mode.enter);
}

static inline void paravirt_write_msr(unsigned msr, unsigned low, unsigned high)
{
	PVOP_VCALL3(cpu.write_msr, msr, low, high);
}

static inline unsigned long paravirt_get_debugreg(int reg)
{
	return PVOP_CALL1(unsigned long, cpu.get_debugreg, reg);
}

static inline void pv_kick(int cpu)
{
	PVOP_VCALL1(lock.kick, cpu);
}

unsigned long flags_twice(void)
{
	unsigned long a = arch_local_save_flags();
	arch_local_irq_disable();
	slow_down_io();
	arch_local_irq_enable();
	return a ^ arch_local_save_flags();
}

void io_loop(int n)
{
	int i;
	for (i = 0; i < n; i++)
		slow_down_io();
}

unsigned long mm_stuff(unsigned long cr3, unsigned long pte)
{
	arch_enter_lazy_mmu_mode();
	write_cr3(cr3);
	return read_cr2() + pte_val(pte) + paravirt_get_debugreg(7);
}

void msr_and_kick(unsigned msr)
{
	paravirt_write_msr(msr, 1, 2);
	pv_kick(3);
}

/* Sites in a custom text section, as the kernel's noinstr code has them. */
__attribute__((section(".noinstr.text"), noinline)) unsigned long noinstr_flags(void)
{
	unsigned long f = arch_local_save_flags();
	arch_local_irq_disable();
	return f;
}
