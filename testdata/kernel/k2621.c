/* A kernel-dialect translation unit in the 2.6.21 i386 form. */
#include "pv2621.h"

int preempt_count;

unsigned long local_irq_save_twice(void)
{
	unsigned long a = __raw_local_irq_save();
	raw_local_irq_enable();
	unsigned long b = __raw_local_save_flags();
	raw_local_irq_restore(a);
	return a ^ b;
}

void spin_unlock_irqrestore(unsigned long *flags)
{
	preempt_count--;
	raw_local_irq_restore(*flags);
}

void critical(void (*fn)(void))
{
	unsigned long f = __raw_local_irq_save();
	fn();
	raw_local_irq_restore(f);
}

void slow_io(int n)
{
	while (n--)
		io_delay();
	raw_local_irq_disable();
}

void switch_mm(unsigned long pgd)
{
	write_cr3(pgd);
}
