/* x86-64 inline replacements that name symbols, one per relocation kind:
 *   R_X86_64_PC32  movl $5, reloc_arr+8(%rip)     (rebased by the runtime)
 *   R_X86_64_32S   movl $7, reloc_abs             (absolute address)
 *   R_X86_64_32S   movl $9, %gs:reloc_pcpu        (per-CPU: %gs base + symbol)
 *   R_X86_64_32    movl $reloc_abs, %eax          (zero-extended immediate)
 * The long ones get hand-written sites padded with NOPs to 12 bytes. Each op
 * also has an asm function doing the same, for the unpatched run.
 *
 *   ./reloc indirect   through the ops table
 *   ./reloc patched    pvpass_apply, then the ops table emptied (ret only):
 *                      only patched sites can write anything
 *   ./reloc aot        (patched ahead of time) the ops table emptied
 * Each prints what landed where. */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PVPASS_OPS rops
#include <pvpass.h>
#include <pvpass_rt.h>

struct reloc_ops {
	void (*set_arr)(void);
	void (*set_abs)(void);
	void (*set_pcpu)(void);
	unsigned long (*addr_abs)(void);
};
struct reloc_ops rops;

unsigned int reloc_arr[4];
unsigned int reloc_abs;
unsigned int reloc_pcpu[4];		/* per-CPU copies; %gs base picks one */

/* a callee-save site (only %rax may change), padded to 12 bytes */
#define PADDED(op)								\
	({ unsigned long __ax;							\
	   __asm__ __volatile__(PVPASS_SITE(op, "rax") PVPASS_CALL		\
		"\n\tnop; nop; nop; nop; nop; nop"				\
		: "=a" (__ax) : [pv_op] "m" (rops.op) : "memory", "cc");	\
	   __ax; })

static void set_arr(void) { PADDED(set_arr); }
static void set_abs(void) { PADDED(set_abs); }
static void set_pcpu(void) { PADDED(set_pcpu); }
static unsigned long addr_abs(void) { return PV_CALLEE0(unsigned long, addr_abs); }

#define ASM_FN(name, body)	__asm__(".text\n.globl " #name "\n.type " #name ", @function\n" \
					#name ": " body "\n\tret\n.size " #name ", . - " #name)
#define INSN_SET_ARR	"movl $5, reloc_arr+8(%rip)"
#define INSN_SET_ABS	"movl $7, reloc_abs"
#define INSN_SET_PCPU	"movl $9, %gs:reloc_pcpu"
#define INSN_ADDR_ABS	"movl $reloc_abs, %eax"
void f_set_arr(void), f_set_abs(void), f_set_pcpu(void);
unsigned long f_addr_abs(void);
ASM_FN(f_set_arr, INSN_SET_ARR);
ASM_FN(f_set_abs, INSN_SET_ABS);
ASM_FN(f_set_pcpu, INSN_SET_PCPU);
ASM_FN(f_addr_abs, INSN_ADDR_ABS);
PV_CALLEE_SAVE(f_set_arr, "");
PV_CALLEE_SAVE(f_set_abs, "");
PV_CALLEE_SAVE(f_set_pcpu, "");
PV_CALLEE_SAVE(f_addr_abs, "rax");

void f_ret(void);
ASM_FN(f_ret, "");
static const struct reloc_ops ret_ops = {
	.set_arr = f_ret, .set_abs = f_ret, .set_pcpu = f_ret, .addr_abs = (unsigned long (*)(void))f_ret,
};
PV_CALLEE_SAVE(f_ret, "");

static const struct reloc_ops sym_ops = {
	.set_arr = f_set_arr, .set_abs = f_set_abs, .set_pcpu = f_set_pcpu, .addr_abs = f_addr_abs,
};
PV_INLINE(sym_ops, set_arr, INSN_SET_ARR, "");
PV_INLINE(sym_ops, set_abs, INSN_SET_ABS, "");
PV_INLINE(sym_ops, set_pcpu, INSN_SET_PCPU, "");
PV_INLINE(sym_ops, addr_abs, INSN_ADDR_ABS, "rax");

int main(int argc, char **argv)
{
	unsigned long a;
	int i;

	rops = sym_ops;
	/* this thread runs on "CPU 2": %gs:reloc_pcpu is reloc_pcpu[2] */
	if (syscall(SYS_arch_prctl, ARCH_SET_GS, 2 * sizeof(reloc_pcpu[0]))) {
		perror("arch_prctl");
		return 1;
	}
	if (argc > 1 && strcmp(argv[1], "patched") == 0)
		printf("patched %d sites\n", pvpass_apply("sym_ops", 0));
	if (argc > 1 && strcmp(argv[1], "indirect") != 0)
		rops = ret_ops;
	set_arr();
	set_abs();
	set_pcpu();
	a = addr_abs();
	printf("arr");
	for (i = 0; i < 4; i++)
		printf(" %u", reloc_arr[i]);
	printf("\nabs %u\npcpu", reloc_abs);
	for (i = 0; i < 4; i++)
		printf(" %u", reloc_pcpu[i]);
	printf("\naddr_abs %s\n", a == (unsigned long)&reloc_abs ? "ok" : "wrong");
	return 0;
}
