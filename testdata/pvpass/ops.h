/* A small pvpass-dialect ops table: nested ops structs, a data member
 * before the ops (so type numbers depend on the layout), callee-save
 * slots, and ops of 0-4 arguments. */
#ifndef OPS_H
#define OPS_H

#define PVPASS_OPS pv_ops
#include <pvpass.h>

struct cpu_ops {
	unsigned long (*read_tsc)(void);
	void PVPASS_REGPARM (*io_delay)(void);
	unsigned long PVPASS_REGPARM (*sum4)(unsigned long, unsigned long,
					     unsigned long, unsigned long);
};

struct irq_ops {
	unsigned long PVPASS_REGPARM (*save_fl)(void);
	void PVPASS_REGPARM (*restore_fl)(unsigned long);
	void PVPASS_REGPARM (*irq_disable)(void);
};

struct mmu_ops {
	unsigned long PVPASS_REGPARM (*pte_val)(unsigned long);
	unsigned long PVPASS_REGPARM (*read_cr2)(void);
	void PVPASS_REGPARM (*set_pte)(unsigned long *, unsigned long);
};

struct pv_ops_template {
	const char *name;
	unsigned char flags[3];
	struct cpu_ops cpu;
	struct irq_ops irq;
	struct mmu_ops mmu;
};

extern struct pv_ops_template pv_ops;

#endif
