/* A kernel module's code in the 6.1 form, for pvpass on a .ko over the
 * small image k61.img (k61.c + k61_image.c, which define pv_ops and the
 * native functions): built with gcc -c, it refers to pv_ops through
 * relocations and its .parainstructions and .altinstructions entries point
 * at its own sections through relocations. Without -DWITH_CALLS every site
 * becomes inline code or NOPs (position-independent: `pvpass patch` can
 * write them into the .ko); with it, an alternative whose replacement
 * calls a kernel function (relocated at load, then fixed up). */
#include "pv61.h"

#ifdef __x86_64__
#define ALT_SAVE_FL	"pushf; pop %%rax;"
#define ALT_READ_CR2	"mov %%cr2, %%rax;"
#else
#define ALT_SAVE_FL	"pushf; pop %%eax;"
#define ALT_READ_CR2	"mov %%cr2, %%eax;"
#endif

static inline __attribute__((always_inline)) unsigned long arch_local_save_flags(void)
{
	return PVOP_ALT_CALLEE0(unsigned long, irq.save_fl, ALT_SAVE_FL,
				ALT_NOT(X86_FEATURE_XENPV));
}

static inline __attribute__((always_inline)) void arch_local_irq_disable(void)
{
	PVOP_ALT_VCALLEE0(irq.irq_disable, "cli;", ALT_NOT(X86_FEATURE_XENPV));
}

static inline __attribute__((always_inline)) void arch_local_irq_enable(void)
{
	PVOP_ALT_VCALLEE0(irq.irq_enable, "sti;", ALT_NOT(X86_FEATURE_XENPV));
}

unsigned long mod_flags(void)
{
	unsigned long f = arch_local_save_flags();

	arch_local_irq_disable();
	f ^= PVOP_ALT_CALLEE0(unsigned long, mmu.read_cr2, ALT_READ_CR2, ALT_NOT(X86_FEATURE_XENPV));
	arch_local_irq_enable();
	return f;
}

void mod_lazy(void)
{
	PVOP_VCALL0(mmu.lazy_mode.enter);		/* _paravirt_nop: NOPs */
}

#ifdef WITH_CALLS
void mod_wbinvd_call(void)
{
	__PVOP_ALT_VCALL(cpu.wbinvd, "call native_wbinvd", ALT_NOT(X86_FEATURE_XENPV));
}
#endif

/* what modpost writes into the .mod.c: the kernel release the module is for */
static const char vermagic[] __attribute__((section(".modinfo"), used, aligned(1))) =
	"vermagic=6.1.0-pvpass SMP mod_unload ";

/* freed once the module's init returns */
__attribute__((section(".init.text"), noinline)) unsigned long mod_init(void)
{
	return arch_local_save_flags();
}
