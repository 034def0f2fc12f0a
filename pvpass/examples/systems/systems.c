/* pvpass systems example: the four systems of the seed thread as backends a
 * user can copy, on x86-64 and i386. One program, one ops table:
 *
 *   native  inline instructions (pushf/pop, push/popf, mov); cli/sti would
 *           fault in user space, so its irq_disable/enable are no-ops
 *   lguest  inline memory writes to a shared page, lguest_irq_enabled:
 *           `movl $0, lguest_irq_enabled` is the 10-byte i386 cli that fits
 *           the 10-byte eax-clobber site exactly; on x86-64 the stores are
 *           RIP-relative and the patcher rebases them to the site
 *   vmi     callee-save entry points at fixed addresses in a "ROM" mapped at
 *           start-up (vmi_rom.bin): patched into direct calls
 *   xen     plain C functions with per-CPU state (xen_vcpu[this cpu]):
 *           callee-save sites reach them through generated trampolines
 *
 *   ./systems BACKEND indirect N   calls through the ops table
 *   ./systems BACKEND patched N    pvpass_apply(BACKEND) first
 *
 * Every run prints the same result; "bad 0" says each backend's own
 * interrupt state (its shared page, ROM RAM or per-CPU slot) followed
 * irq_disable/restore_fl at every step. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmi_rom.h"

#define PVPASS_OPS pv_ops
#include <pvpass.h>
#include <pvpass_rt.h>

#define R PVPASS_REGPARM
struct sys_ops {
	struct {
		unsigned long (R *save_fl)(void);
		void (R *restore_fl)(unsigned long);
		void (R *irq_disable)(void);
		void (R *irq_enable)(void);
	} irq;
	struct {
		unsigned long (R *pte_val)(unsigned long);
	} mmu;
	struct {
		void (R *io_delay)(void);
		unsigned long (R *mix)(unsigned long, unsigned long);
	} cpu;
};
struct sys_ops pv_ops;

/* A callee-save function written in asm: BODY; ret */
#define ASM_FN(name, body)	__asm__(".text\n.globl " #name "\n.type " #name ", @function\n" \
					#name ": " body "\n\tret\n.size " #name ", . - " #name)
#ifdef __x86_64__
#define ARG1L		"%edi"
#define SYM(s)		#s "(%rip)"		/* RIP-relative: R_X86_64_PC32 */
/* The kernel's PV_CALLEE_SAVE_REGS_THUNK: a C function behind a callee-save
 * entry, for the ops table's indirect calls (patched sites get pvpass's
 * own trampolines instead). 8 pushes + 8 bytes keep the call aligned. */
#define CALLEE_SAVE_THUNK(fn)	ASM_FN(fn##_thunk, "push %rcx; push %rdx; push %rsi; push %rdi; " \
	"push %r8; push %r9; push %r10; push %r11; sub $8, %rsp; call " #fn "; add $8, %rsp; " \
	"pop %r11; pop %r10; pop %r9; pop %r8; pop %rdi; pop %rsi; pop %rdx; pop %rcx")
#else
#define ARG1L		"%eax"
#define SYM(s)		#s			/* absolute: R_386_32 */
#define CALLEE_SAVE_THUNK(fn)	ASM_FN(fn##_thunk, "push %ecx; push %edx; call " #fn "; pop %edx; pop %ecx")
#endif

/* --- call sites ------------------------------------------------------------ */

static inline unsigned long save_fl(void) { return PV_CALLEE0(unsigned long, irq.save_fl); }
static inline void restore_fl(unsigned long f) { PV_VCALLEE1(irq.restore_fl, f); }
#ifdef __x86_64__
static inline void irq_disable(void) { PV_VCALLEE0(irq.irq_disable); }
static inline void irq_enable(void) { PV_VCALLEE0(irq.irq_enable); }
#else
/* the 2007 site: pushl %ecx; pushl %edx; call *; popl %edx; popl %ecx */
static inline void irq_disable(void) { PV_VEAXCALL0(irq.irq_disable); }
static inline void irq_enable(void) { PV_VEAXCALL0(irq.irq_enable); }
#endif
static inline unsigned long pte_val(unsigned long p) { return PV_CALLEE1(unsigned long, mmu.pte_val, p); }
static inline void io_delay(void) { PV_VCALL0(cpu.io_delay); }
static inline unsigned long mix(unsigned long a, unsigned long b) { return PV_CALL2(unsigned long, cpu.mix, a, b); }

static unsigned long R c_mix(unsigned long a, unsigned long b) { return a * 31 + b * 7; }
static void R c_nothing(void) { }
void R nothing(void);
ASM_FN(nothing, "");
PV_CALLEE_SAVE(nothing, "");

/* --- native: inline instructions ------------------------------------------- */

unsigned long R native_save_fl(void);
void R native_restore_fl(unsigned long);
unsigned long R native_pte_val(unsigned long);
#ifdef __x86_64__
ASM_FN(native_save_fl, "pushfq; popq %rax");
ASM_FN(native_restore_fl, "pushq %rdi; popfq");
ASM_FN(native_pte_val, "movq %rdi, %rax");
PV_INLINE(native_ops, irq.save_fl, "pushfq; popq %rax", "rax");
PV_INLINE(native_ops, irq.restore_fl, "pushq %rdi; popfq", "");
PV_INLINE(native_ops, mmu.pte_val, "movq %rdi, %rax", "rax");
PV_CALLEE_SAVE(native_save_fl, "rax");
PV_CALLEE_SAVE(native_restore_fl, "");
PV_CALLEE_SAVE(native_pte_val, "rax");
#else
ASM_FN(native_save_fl, "pushfl; popl %eax");
ASM_FN(native_restore_fl, "pushl %eax; popfl");
ASM_FN(native_pte_val, "");		/* regparm: the argument is in %eax already */
PV_INLINE(native_ops, irq.save_fl, "pushfl; popl %eax", "eax");
PV_INLINE(native_ops, irq.restore_fl, "pushl %eax; popfl", "");
PV_CALLEE_SAVE(native_save_fl, "eax");
PV_CALLEE_SAVE(native_restore_fl, "");
PV_CALLEE_SAVE(native_pte_val, "eax");
#endif

static const struct sys_ops native_ops = {
	.irq = { .save_fl = native_save_fl, .restore_fl = native_restore_fl,
		 .irq_disable = nothing, .irq_enable = nothing },
	.mmu = { .pte_val = native_pte_val },
	.cpu = { .io_delay = c_nothing, .mix = c_mix },
};
PV_NOP(native_ops, irq.irq_disable);
PV_NOP(native_ops, irq.irq_enable);
PV_NOP(native_ops, cpu.io_delay);

/* --- lguest: inline stores to a shared page, relocated --------------------- */

unsigned long lguest_irq_enabled __attribute__((aligned(4096)));	/* the page the host reads */

unsigned long R lguest_save_fl(void);
void R lguest_restore_fl(unsigned long);
void R lguest_irq_disable(void);
void R lguest_irq_enable(void);
ASM_FN(lguest_save_fl, "movl " SYM(lguest_irq_enabled) ", %eax");
ASM_FN(lguest_restore_fl, "movl " ARG1L ", " SYM(lguest_irq_enabled));
ASM_FN(lguest_irq_disable, "movl $0, " SYM(lguest_irq_enabled));
ASM_FN(lguest_irq_enable, "movl $0x200, " SYM(lguest_irq_enabled));
PV_CALLEE_SAVE(lguest_save_fl, PVPASS_RET_REGS);
PV_CALLEE_SAVE(lguest_restore_fl, "");
PV_CALLEE_SAVE(lguest_irq_disable, "");
PV_CALLEE_SAVE(lguest_irq_enable, "");
/* the same instructions inline: 6 bytes on x86-64, 5 on i386 */
PV_INLINE(lguest_ops, irq.save_fl, "movl " SYM(lguest_irq_enabled) ", %eax", PVPASS_RET_REGS);
PV_INLINE(lguest_ops, irq.restore_fl, "movl " ARG1L ", " SYM(lguest_irq_enabled), "");
#ifndef __x86_64__
/* c7 05 <addr32> <imm32>: 10 bytes, the eax-clobber site's exact size (on
 * x86-64 the 10-byte store does not fit a 6-byte site: the call stays) */
PV_INLINE(lguest_ops, irq.irq_disable, "movl $0, lguest_irq_enabled", "");
PV_INLINE(lguest_ops, irq.irq_enable, "movl $0x200, lguest_irq_enabled", "");
#endif

unsigned long R lguest_pte_val(unsigned long);
#ifdef __x86_64__
ASM_FN(lguest_pte_val, "movq %rdi, %rax");
#else
ASM_FN(lguest_pte_val, "");
#endif
PV_CALLEE_SAVE(lguest_pte_val, PVPASS_RET_REGS);

static const struct sys_ops lguest_ops = {
	.irq = { .save_fl = lguest_save_fl, .restore_fl = lguest_restore_fl,
		 .irq_disable = lguest_irq_disable, .irq_enable = lguest_irq_enable },
	.mmu = { .pte_val = lguest_pte_val },
	.cpu = { .io_delay = c_nothing, .mix = c_mix },
};

static int lguest_irq_state(void) { return lguest_irq_enabled != 0; }

/* --- vmi: callee-save entries at fixed addresses in a mapped ROM ----------- */

unsigned long R vmi_save_fl(void);
void R vmi_restore_fl(unsigned long);
void R vmi_irq_disable(void);
void R vmi_irq_enable(void);
unsigned long R vmi_pte_val(unsigned long);
void R vmi_io_delay(void);
unsigned long R vmi_mix(unsigned long, unsigned long);
/* absolute symbols at the ROM's entry points: a direct call's rel32 is
 * resolved when the site is patched (by the linker ahead of time, by
 * pvpass_apply at run time) */
#define VMI_ENTRY(name, off)	".globl " #name "\n.set " #name ", " PVPASS_STR(VMI_ROM_BASE + off) "\n"
__asm__(VMI_ENTRY(vmi_save_fl, VMI_SAVE_FL) VMI_ENTRY(vmi_restore_fl, VMI_RESTORE_FL)
	VMI_ENTRY(vmi_irq_disable, VMI_IRQ_DISABLE) VMI_ENTRY(vmi_irq_enable, VMI_IRQ_ENABLE)
	VMI_ENTRY(vmi_pte_val, VMI_PTE_VAL) VMI_ENTRY(vmi_io_delay, VMI_IO_DELAY)
	VMI_ENTRY(vmi_mix, VMI_MIX));
PV_CALLEE_SAVE(vmi_save_fl, PVPASS_RET_REGS);
PV_CALLEE_SAVE(vmi_restore_fl, "");
PV_CALLEE_SAVE(vmi_irq_disable, "");
PV_CALLEE_SAVE(vmi_irq_enable, "");
PV_CALLEE_SAVE(vmi_pte_val, PVPASS_RET_REGS);
PV_CALLEE_SAVE(vmi_io_delay, "");
PV_CALLEE_SAVE(vmi_mix, PVPASS_RET_REGS);

static const struct sys_ops vmi_ops = {
	.irq = { .save_fl = vmi_save_fl, .restore_fl = vmi_restore_fl,
		 .irq_disable = vmi_irq_disable, .irq_enable = vmi_irq_enable },
	.mmu = { .pte_val = vmi_pte_val },
	.cpu = { .io_delay = vmi_io_delay, .mix = vmi_mix },
};

static int vmi_irq_state(void) { return *(volatile unsigned int *)VMI_STATE != 0; }

/* Map the ROM at its fixed address, and its RAM page after it. */
static int vmi_map_rom(const char *path)
{
	int fd = open(path, O_RDONLY);
	void *rom, *ram;

	if (fd < 0)
		return -1;
	rom = mmap((void *)VMI_ROM_BASE, VMI_ROM_SIZE, PROT_READ | PROT_EXEC,
		   MAP_PRIVATE | MAP_FIXED_NOREPLACE, fd, 0);
	close(fd);
	ram = mmap((void *)VMI_STATE, 4096, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	return rom == (void *)VMI_ROM_BASE && ram == (void *)VMI_STATE ? 0 : -1;
}

/* --- xen: C functions, per-CPU state --------------------------------------- */

#define NR_CPUS 4
struct vcpu_info { unsigned char evtchn_upcall_mask; } xen_vcpu[NR_CPUS];
static __thread int xen_cpu;		/* the CPU this thread runs on */

unsigned long R xen_save_fl(void) { return xen_vcpu[xen_cpu].evtchn_upcall_mask ? 0 : 0x200; }
void R xen_restore_fl(unsigned long f) { xen_vcpu[xen_cpu].evtchn_upcall_mask = !(f & 0x200); }
void R xen_irq_disable(void) { xen_vcpu[xen_cpu].evtchn_upcall_mask = 1; }
void R xen_irq_enable(void) { xen_vcpu[xen_cpu].evtchn_upcall_mask = 0; }
unsigned long R xen_pte_val(unsigned long p) { return p; }
unsigned long R xen_mix(unsigned long a, unsigned long b) { return a * 31 + b * 7; }

/* the backend: plain C functions; pvpass makes the trampolines (the
 * program itself never calls through this table) */
static const struct sys_ops xen_ops __attribute__((unused)) = {
	.irq = { .save_fl = xen_save_fl, .restore_fl = xen_restore_fl,
		 .irq_disable = xen_irq_disable, .irq_enable = xen_irq_enable },
	.mmu = { .pte_val = xen_pte_val },
	.cpu = { .io_delay = c_nothing, .mix = xen_mix },
};

/* what the ops table holds before patching: callee-save thunks, as Xen's
 * PV_CALLEE_SAVE entries in the kernel */
unsigned long R xen_save_fl_thunk(void);
void R xen_restore_fl_thunk(unsigned long);
void R xen_irq_disable_thunk(void);
void R xen_irq_enable_thunk(void);
unsigned long R xen_pte_val_thunk(unsigned long);
CALLEE_SAVE_THUNK(xen_save_fl);
CALLEE_SAVE_THUNK(xen_restore_fl);
CALLEE_SAVE_THUNK(xen_irq_disable);
CALLEE_SAVE_THUNK(xen_irq_enable);
CALLEE_SAVE_THUNK(xen_pte_val);
PV_CALLEE_SAVE(xen_save_fl_thunk, PVPASS_RET_REGS);
PV_CALLEE_SAVE(xen_restore_fl_thunk, "");
PV_CALLEE_SAVE(xen_irq_disable_thunk, "");
PV_CALLEE_SAVE(xen_irq_enable_thunk, "");
PV_CALLEE_SAVE(xen_pte_val_thunk, PVPASS_RET_REGS);

static const struct sys_ops xen_thunk_ops = {
	.irq = { .save_fl = xen_save_fl_thunk, .restore_fl = xen_restore_fl_thunk,
		 .irq_disable = xen_irq_disable_thunk, .irq_enable = xen_irq_enable_thunk },
	.mmu = { .pte_val = xen_pte_val_thunk },
	.cpu = { .io_delay = c_nothing, .mix = xen_mix },
};

static int xen_irq_state(void) { return !xen_vcpu[xen_cpu].evtchn_upcall_mask; }

/* --- the work --------------------------------------------------------------- */

static const struct {
	const char *name;
	const char *backend;		/* the initializer pvpass patches with */
	const struct sys_ops *table;	/* what the ops table holds: safe at every
					 * site, for calls not (yet) patched */
	int (*irq_state)(void);		/* the backend's own view; NULL: not tracked */
} systems[] = {
	{ "native", "native_ops", &native_ops, 0 },
	{ "lguest", "lguest_ops", &lguest_ops, lguest_irq_state },
	{ "vmi", "vmi_ops", &vmi_ops, vmi_irq_state },
	{ "xen", "xen_ops", &xen_thunk_ops, xen_irq_state },
};

int main(int argc, char **argv)
{
	const char *name = argc > 1 ? argv[1] : "native";
	const char *mode = argc > 2 ? argv[2] : "indirect";
	unsigned long n = argc > 3 ? strtoul(argv[3], 0, 0) : 100000, acc = 0x9e3779b9, i;
	unsigned bad = 0, s;
	char rom[4096];

	for (s = 0; s < sizeof(systems) / sizeof(systems[0]) && strcmp(systems[s].name, name); s++)
		;
	if (s == sizeof(systems) / sizeof(systems[0])) {
		fprintf(stderr, "usage: %s native|lguest|vmi|xen indirect|patched [N]\n", argv[0]);
		return 2;
	}
	snprintf(rom, sizeof(rom), "%s", argv[0]);
	strcpy(strrchr(rom, '/') ? strrchr(rom, '/') + 1 : rom, "vmi_rom.bin");
	if (vmi_map_rom(rom)) {
		perror(rom);
		return 1;
	}
	xen_cpu = 1;				/* this thread runs on vCPU 1 */
	pv_ops = *systems[s].table;
	if (strcmp(mode, "patched") == 0) {
		unsigned kept = 0;
		int done = pvpass_apply(systems[s].backend, &kept);

		if (done < 0) {
			perror("pvpass_apply");
			return 1;
		}
		printf("patched %d sites for %s (%u left as indirect calls)\n", done, systems[s].backend, kept);
	}
	irq_enable();
	for (i = 0; i < n; i++) {
		unsigned long f = save_fl();

		irq_disable();
		if (systems[s].irq_state && systems[s].irq_state() != 0)
			bad++;
		acc = mix(acc, pte_val(i << 12));	/* the critical section */
		io_delay();
		restore_fl(f);
		if (systems[s].irq_state && systems[s].irq_state() != 1)
			bad++;
		acc ^= save_fl() & 0x200;		/* interrupts are on again */
	}
	printf("result %#lx bad %u\n", acc, bad);
	return bad != 0;
}
