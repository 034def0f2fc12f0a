// SPDX-License-Identifier: GPL-2.0
/* The module oracle's own module (tests/bench/kernel_module_oracle.py):
 * paravirt sites of every kind Linux 6.1 x86-64 writes at load, run once
 * from its init so the guest reaches them. Inline alternatives (!XENPV):
 * save_fl, irq_disable/enable, read_cr2, read_cr3, wbinvd; direct calls:
 * cpuid, read_msr, read_cr0, flush_tlb_user, io_delay; and one site in
 * init memory, whose patched bytes the init copies to oracle_init_copy
 * (the kernel frees .init.text once the init returns). pvmod_inline.c
 * builds it without the calls. */
#include <linux/module.h>
#include <linux/string.h>
#include <linux/irqflags.h>
#include <asm/io.h>
#include <asm/msr.h>
#include <asm/paravirt.h>
#include <asm/processor.h>
#include <asm/special_insns.h>
#include <asm/tlbflush.h>

unsigned long pvmod_sink[8];
unsigned char oracle_init_copy[256];

noinline unsigned long pvmod_irq(void)
{
	unsigned long flags;

	local_irq_save(flags);
	pvmod_sink[0] = arch_local_save_flags();
	local_irq_restore(flags);
	return flags;
}

#ifndef PVMOD_INLINE_ONLY
noinline void pvmod_cpu(void)
{
	unsigned int a = 1, b = 0, c = 0, d = 0;

	__cpuid(&a, &b, &c, &d);
	pvmod_sink[1] = a;
	pvmod_sink[2] = paravirt_read_msr(MSR_IA32_APICBASE);
	pvmod_sink[3] = read_cr0();
}
#endif

noinline void pvmod_mm(void)
{
	unsigned long flags;

	pvmod_sink[4] = read_cr2();
	pvmod_sink[5] = __read_cr3();
	local_irq_save(flags);
#ifndef PVMOD_INLINE_ONLY
	__flush_tlb_local();
#endif
	local_irq_restore(flags);
	wbinvd();
#ifndef PVMOD_INLINE_ONLY
	slow_down_io();
#endif
}

static int __init pvmod_init(void)
{
	unsigned long flags;

	local_irq_save(flags);
	pvmod_sink[6] = flags;
	local_irq_restore(flags);
	pvmod_irq();
#ifndef PVMOD_INLINE_ONLY
	pvmod_cpu();
#endif
	pvmod_mm();
	/* init_module, as module_finalize() left it (its layout is whole
	 * pages: the bytes past the function are readable) */
	memcpy(oracle_init_copy, (void *)pvmod_init, sizeof(oracle_init_copy));
	pr_info("%s: loaded, cr0 %lx\n", KBUILD_MODNAME, pvmod_sink[3]);
	return 0;
}

static void __exit pvmod_exit(void)
{
}

module_init(pvmod_init);
module_exit(pvmod_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("paravirt sites for pvpass's module oracle");
