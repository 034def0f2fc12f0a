/* The rest of a kernel-form image around k61.c, in Linux 6.1's x86-64 form
 * (arch/x86/kernel/paravirt.c, alternative.c, nops.h, paravirt.h): pv_ops
 * with native targets, _paravirt_nop, a NULL op, callee-save thunks, the
 * kernel's NOP table, and sites whose alternatives hold a CALL and JMPs
 * (relocated by apply_alternatives) or test the lock features
 * (paravirt_set_cap). Linked with k61.c into a small "vmlinux":
 *
 *   gcc [-m32 -mregparm=3] -O2 -fno-pie -no-pie -nostdlib -static -Wl,-e,flags_twice \
 *       -I testdata/kernel -o k61.img testdata/kernel/k61.c testdata/kernel/k61_image.c
 */
#include "pv61.h"

#define X86_FEATURE_PVUNLOCK	( 8*32+20)
#define X86_FEATURE_VCPUPREEMPT	( 8*32+21)

/* nops.h, x86-64 */
#define BYTES_NOP1	0x90
#define BYTES_NOP2	0x66,BYTES_NOP1
#define BYTES_NOP3	0x0f,0x1f,0x00
#define BYTES_NOP4	0x0f,0x1f,0x40,0x00
#define BYTES_NOP5	0x0f,0x1f,0x44,0x00,0x00
#define BYTES_NOP6	0x66,BYTES_NOP5
#define BYTES_NOP7	0x0f,0x1f,0x80,0x00,0x00,0x00,0x00
#define BYTES_NOP8	0x0f,0x1f,0x84,0x00,0x00,0x00,0x00,0x00
#define ASM_NOP_MAX 8

static const unsigned char x86nops[] =
{
	BYTES_NOP1, BYTES_NOP2, BYTES_NOP3, BYTES_NOP4,
	BYTES_NOP5, BYTES_NOP6, BYTES_NOP7, BYTES_NOP8,
};

const unsigned char * const x86_nops[ASM_NOP_MAX+1] =
{
	0,
	x86nops,
	x86nops + 1,
	x86nops + 1 + 2,
	x86nops + 1 + 2 + 3,
	x86nops + 1 + 2 + 3 + 4,
	x86nops + 1 + 2 + 3 + 4 + 5,
	x86nops + 1 + 2 + 3 + 4 + 5 + 6,
	x86nops + 1 + 2 + 3 + 4 + 5 + 6 + 7,
};

extern void _paravirt_nop(void);
asm (".pushsection .entry.text, \"ax\"\n"
     ".global _paravirt_nop\n"
     "_paravirt_nop:\n\t"
     "ret\n\t"
     ".size _paravirt_nop, . - _paravirt_nop\n\t"
     ".type _paravirt_nop, @function\n\t"
     ".popsection");
#define paravirt_nop	((void *)_paravirt_nop)

void paravirt_BUG(void)
{
	__builtin_trap();
}

/* PV_CALLEE_SAVE_REGS_THUNK (frame pointers off) */
#ifdef __x86_64__
#define PV_SAVE_ALL_CALLER_REGS						\
	"push %rcx;" "push %rdx;" "push %rsi;" "push %rdi;"		\
	"push %r8;" "push %r9;" "push %r10;" "push %r11;"
#define PV_RESTORE_ALL_CALLER_REGS					\
	"pop %r11;" "pop %r10;" "pop %r9;" "pop %r8;"			\
	"pop %rdi;" "pop %rsi;" "pop %rdx;" "pop %rcx;"
#define UNLOCK_ARG	"(%%rdi)"
#else
#define PV_SAVE_ALL_CALLER_REGS		"pushl %ecx;"
#define PV_RESTORE_ALL_CALLER_REGS	"popl  %ecx;"
#define UNLOCK_ARG	"(%%eax)"
#endif
#define PV_CALLEE_SAVE_REGS_THUNK(func)					\
	extern typeof(func) __raw_callee_save_##func;			\
	asm(".pushsection .text, \"ax\";"				\
	    ".globl __raw_callee_save_" #func ";"			\
	    ".type __raw_callee_save_" #func ", @function;"		\
	    "__raw_callee_save_" #func ":"				\
	    PV_SAVE_ALL_CALLER_REGS					\
	    "call " #func ";"						\
	    PV_RESTORE_ALL_CALLER_REGS					\
	    "ret;"							\
	    ".size __raw_callee_save_" #func ", .-__raw_callee_save_" #func ";" \
	    ".popsection")
#define PV_CALLEE_SAVE(func)						\
	((struct paravirt_callee_save) { __raw_callee_save_##func })

unsigned long saved_flags;
unsigned long native_save_fl(void) { return saved_flags; }
PV_CALLEE_SAVE_REGS_THUNK(native_save_fl);
void native_irq_disable(void) { saved_flags &= ~0x200UL; }
PV_CALLEE_SAVE_REGS_THUNK(native_irq_disable);
void native_irq_enable(void) { saved_flags |= 0x200UL; }
PV_CALLEE_SAVE_REGS_THUNK(native_irq_enable);
unsigned long cr2, cr3;
unsigned long native_read_cr2(void) { return cr2; }
PV_CALLEE_SAVE_REGS_THUNK(native_read_cr2);
void native_write_cr3(unsigned long x) { cr3 = x; }
unsigned long _paravirt_ident_64(unsigned long x) { return x; }
PV_CALLEE_SAVE_REGS_THUNK(_paravirt_ident_64);
void native_io_delay(void) { asm volatile("outb %al, $0x80"); }
void native_write_msr(unsigned msr, unsigned low, unsigned high)
{
	asm volatile("wrmsr" : : "c" (msr), "a" (low), "d" (high) : "memory");
}
void native_wbinvd(void) { asm volatile("wbinvd" : : : "memory"); }
void __native_queued_spin_unlock(u8 *lock) { *(volatile u8 *)lock = 0; }
PV_CALLEE_SAVE_REGS_THUNK(__native_queued_spin_unlock);
void xen_spin_unlock(u8 *lock) { *(volatile u8 *)lock = 0; }
PV_CALLEE_SAVE_REGS_THUNK(xen_spin_unlock);
void native_kick(int cpu) { (void)cpu; }
void xen_irq_disable(void) { saved_flags &= ~0x200UL; }
PV_CALLEE_SAVE_REGS_THUNK(xen_irq_disable);

/* cpu.get_debugreg stays NULL: its sites call paravirt_BUG. */
struct paravirt_patch_template pv_ops = {
	.cpu.io_delay		= native_io_delay,
	.cpu.write_msr		= native_write_msr,
	.cpu.wbinvd		= native_wbinvd,
	.irq.save_fl		= PV_CALLEE_SAVE(native_save_fl),
	.irq.irq_disable	= PV_CALLEE_SAVE(native_irq_disable),
	.irq.irq_enable		= PV_CALLEE_SAVE(native_irq_enable),
	.mmu.read_cr2		= PV_CALLEE_SAVE(native_read_cr2),
	.mmu.write_cr3		= native_write_cr3,
	.mmu.pte_val		= PV_CALLEE_SAVE(_paravirt_ident_64),
	.mmu.lazy_mode.enter	= paravirt_nop,
	.lock.queued_spin_unlock = PV_CALLEE_SAVE(__native_queued_spin_unlock),
	.lock.kick		= native_kick,
};

/* A second backend as 6.1's Xen has them: a whole typeof(pv_ops) that sets
 * a few ops (the rest stay pv_ops'). */
const typeof(pv_ops) xen_test_ops = {
	.irq.irq_disable	= PV_CALLEE_SAVE(xen_irq_disable),
	.lock.queued_spin_unlock = PV_CALLEE_SAVE(xen_spin_unlock),
};

/* queued_spin_unlock's site: native code unless paravirt_set_cap() forced
 * X86_FEATURE_PVUNLOCK (pv_ops does not hold the native thunk). */
void spin_unlock(u8 *lock)
{
	(void)____PVOP_ALT_CALL(, lock.queued_spin_unlock.func, "movb $0, " UNLOCK_ARG ";",
				ALT_NOT(X86_FEATURE_PVUNLOCK), CLBR_RET_REG,
				PVOP_VCALLEE_CLOBBERS, , PVOP_CALL_ARG1(lock));
}

/* Alternatives whose replacement is relative code: a CALL (its rel32 fixed
 * for the site) and JMPs (recompute_jump(): 2 bytes near, 5 bytes far). */
void wbinvd_call(void)
{
	__PVOP_ALT_VCALL(cpu.wbinvd, "call native_wbinvd", ALT_NOT(X86_FEATURE_XENPV));
}

void wbinvd_jmp_near(void)
{
	__PVOP_ALT_VCALL(cpu.wbinvd, "jmp near_label", ALT_NOT(X86_FEATURE_XENPV));
	asm volatile(".globl near_label\nnear_label:");
}

void wbinvd_jmp_far(void)
{
	__PVOP_ALT_VCALL(cpu.wbinvd, "jmp far_label", ALT_NOT(X86_FEATURE_XENPV));
}

asm(".pushsection .text, \"ax\"\n"
    ".skip 300, 0xcc\n"
    ".globl far_label\n"
    "far_label:\n\t"
    "ret\n"
    ".popsection");

/* init/version.c: what a module's vermagic is held against */
const char linux_banner[] = "Linux version 6.1.0-pvpass (test image) #1\n";
