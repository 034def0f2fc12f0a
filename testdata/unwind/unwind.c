/* Each kind of target a site reaches, for the unwind tests
 * (tests/test_unwind.py): gdb's backtrace from each must reach main,
 * unpatched (indirect calls), patched at run time by pvpass_apply and
 * patched ahead of time, for the backend c_ops:
 *   op inl     an inline replacement (a breakpoint at the line of its site)
 *   op dir     a C function at a cc site: a direct call
 *   op tramp   a C function at a callee-save site: a trampoline
 *   op eax     (i386) a C function at the eax-clobber site: saves-c
 * Unpatched, the callee-save site must call a callee-save function: the
 * ops installed hold cs_tramp (asm, with its CFI) there.
 * Every target also checks that it is entered with the stack 16-byte
 * aligned, and t_tramp prints glibc's backtrace() when asked to. */
#include <execinfo.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef __x86_64__
#define R
#else
#define R __attribute__((regparm(3)))
#endif
struct uw_ops {
	unsigned long R (*inl)(unsigned long);
	unsigned long R (*dir)(unsigned long);
	unsigned long R (*tramp)(unsigned long);
	unsigned long R (*eax)(unsigned long);
};
struct uw_ops pv_ops;
#define PVPASS_OPS pv_ops
#include <pvpass.h>
#include <pvpass_rt.h>

PVPASS_REGPARM unsigned long t_inl(unsigned long), t_dir(unsigned long), t_tramp(unsigned long), t_eax(unsigned long);

static volatile unsigned long misaligned, traced;

/* the return address sits at frame + word, the caller's %sp at frame + 2 words */
#define CHECK_ALIGN() (misaligned |= ((unsigned long)__builtin_frame_address(0) + 2 * sizeof(void *)) & 15)

PVPASS_REGPARM __attribute__((noinline)) unsigned long t_inl(unsigned long x) { CHECK_ALIGN(); return x; }
PVPASS_REGPARM __attribute__((noinline)) unsigned long t_dir(unsigned long x) { CHECK_ALIGN(); return x + 1; }
PVPASS_REGPARM __attribute__((noinline)) unsigned long t_tramp(unsigned long x)
{
	CHECK_ALIGN();
	if (getenv("UW_BACKTRACE") && !traced++) {
		void *pcs[32];
		backtrace_symbols_fd(pcs, backtrace(pcs, 32), 1);
	}
	return x + 2;
}
PVPASS_REGPARM __attribute__((noinline)) unsigned long t_eax(unsigned long x) { CHECK_ALIGN(); return x + 3; }

static const struct uw_ops c_ops = { .inl = t_inl, .dir = t_dir, .tramp = t_tramp, .eax = t_eax };
/* UW_NO_CFI: an object with no unwind info at all (with -fno-asynchronous-unwind-tables) */
#ifdef UW_NO_CFI
#define CFI(x)
#else
#define CFI(x) x
#endif
#ifdef __x86_64__
PV_INLINE(c_ops, inl, "mov %rdi, %rax", "rax");
__asm__(".text\n.globl cs_tramp\n.type cs_tramp, @function\ncs_tramp:\n" CFI(".cfi_startproc\n")
	"lea 2(%rdi), %rax\nret\n" CFI(".cfi_endproc\n") ".size cs_tramp, . - cs_tramp\n");
#else
PV_INLINE(c_ops, inl, "mov %eax, %eax", "eax");
__asm__(".text\n.globl cs_tramp\n.type cs_tramp, @function\ncs_tramp:\n" CFI(".cfi_startproc\n")
	"lea 2(%eax), %eax\nret\n" CFI(".cfi_endproc\n") ".size cs_tramp, . - cs_tramp\n");
#endif
unsigned long R cs_tramp(unsigned long);
PV_CALLEE_SAVE(cs_tramp, PVPASS_RET_REGS);

__attribute__((noinline)) unsigned long work(unsigned long n)
{
	unsigned long r = 0, i;

	for (i = 0; i < n; i++) {
		r += PV_CALL1(unsigned long, inl, i);		/* UW_INLINE_SITE */
		r += PV_CALL1(unsigned long, dir, r);
		r += PV_CALLEE1(unsigned long, tramp, r);
#ifndef __x86_64__
		r += PV_EAXCALL1(unsigned long, eax, r);
#endif
	}
	return r;
}

int main(int argc, char **argv)
{
	unsigned long r;

	pv_ops = c_ops;
	pv_ops.tramp = cs_tramp;
	if (argc > 1 && strcmp(argv[1], "none") != 0) {
		unsigned kept = 0;
		if (pvpass_apply(argv[1], &kept) < 0) {
			perror("pvpass_apply");
			return 1;
		}
	}
	r = work(2);
	printf("result %lu misaligned %lu\n", r, misaligned);
	return 0;
}
