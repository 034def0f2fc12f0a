/* i386 inline replacements that name symbols (verify's mutation test),
 * each an R_386_32 field:
 *   movl $7, reloc_abs             (absolute address)
 *   movl $9, %fs:reloc_pcpu        (per-CPU: %fs base + symbol, as the kernel's i386 per-CPU data)
 *   movl $reloc_abs, %eax          (immediate)
 * Each op also has an asm function doing the same: what the patch stands for. */
#define PVPASS_OPS rops
#include <pvpass.h>

struct reloc_ops {
	void (*set_abs)(void);
	void (*set_pcpu)(void);
	unsigned long (*addr_abs)(void);
};
struct reloc_ops rops;

unsigned int reloc_abs;
unsigned int reloc_pcpu[4];

/* a callee-save site (only %eax may change), padded to 12 bytes */
#define PADDED(op)								\
	({ unsigned long __ax;							\
	   __asm__ __volatile__(PVPASS_SITE(op, "eax") PVPASS_CALL		\
		"\n\tnop; nop; nop; nop; nop; nop"				\
		: "=a" (__ax) : [pv_op] "m" (rops.op) : "memory", "cc");	\
	   __ax; })

void set_abs(void) { PADDED(set_abs); }
void set_pcpu(void) { PADDED(set_pcpu); }
unsigned long addr_abs(void) { return PADDED(addr_abs); }

#define ASM_FN(name, body)	__asm__(".text\n.globl " #name "\n.type " #name ", @function\n" \
					#name ": " body "\n\tret\n.size " #name ", . - " #name)
#define INSN_SET_ABS	"movl $7, reloc_abs"
#define INSN_SET_PCPU	"movl $9, %fs:reloc_pcpu"
#define INSN_ADDR_ABS	"movl $reloc_abs, %eax"
void f_set_abs(void), f_set_pcpu(void);
unsigned long f_addr_abs(void);
ASM_FN(f_set_abs, INSN_SET_ABS);
ASM_FN(f_set_pcpu, INSN_SET_PCPU);
ASM_FN(f_addr_abs, INSN_ADDR_ABS);
PV_CALLEE_SAVE(f_set_abs, "");
PV_CALLEE_SAVE(f_set_pcpu, "");
PV_CALLEE_SAVE(f_addr_abs, "eax");

const struct reloc_ops sym_ops = {
	.set_abs = f_set_abs, .set_pcpu = f_set_pcpu, .addr_abs = f_addr_abs,
};
PV_INLINE(sym_ops, set_abs, INSN_SET_ABS, "");
PV_INLINE(sym_ops, set_pcpu, INSN_SET_PCPU, "");
PV_INLINE(sym_ops, addr_abs, INSN_ADDR_ABS, "eax");
