/* pvpass.h -- call-site annotations for the pvpass pass.
 *
 * Find this directory with `pvpass --include-dir`. Define PVPASS_OPS to your
 * ops object before including, e.g.
 *
 *     #define PVPASS_OPS pv_ops
 *     #include <pvpass.h>
 *
 * Every macro expands to ordinary GNU C: the annotations are assembler
 * comments ("# pvpass: ..."), so code compiles and runs with plain gcc; the
 * pass reads them to build the patch-site table.
 *
 *   PV_CALLn(type, op, a1..an)    call op with n (0-4) arguments, C convention:
 *   PV_VCALLn(op, a1..an)         the site lets the callee clobber every
 *                                 caller-saved register
 *   PV_CALLEEn(type, op, a1..an)  callee-save convention: the site lets the
 *   PV_VCALLEEn(op, a1..an)       callee clobber only the return register
 *   PV_EAXCALLn(type, op, a1..an) i386 only, the 2007 site (0-3 arguments):
 *   PV_VEAXCALLn(op, a1..an)      pushl %ecx; pushl %edx; call; popl %edx;
 *                                 popl %ecx -- 10 bytes that let the callee
 *                                 clobber only %eax (a 10-byte inline
 *                                 replacement such as `movl $0, sym` fits)
 *   PVPASS_SITE(op, "regs")       the annotation itself, for hand-written
 *   PVPASS_END                    sites with their own clobber set
 *   PVPASS_RZ_SKIP ... PVPASS_RZ_END, PVPASS_RZ_FRAME
 *                                 x86-64: step %rsp over the red zone and
 *                                 align it, i386: align %esp, around a
 *                                 hand-written site; keep a frame pointer
 *                                 (after its first input; see below)
 *
 *   PV_CALLEE_SAVE(fn, "regs")    fn is callee-save: it changes only "regs"
 *   PV_INLINE(backend, op, "insns", "regs")
 *                                 backend's inline replacement for op
 *   PV_NOP(backend, op)           op does nothing for backend
 *   PV_ABSENT(backend, op)        backend leaves op unset on purpose
 *
 * On i386 the ops use the kernel's regparm(3) convention (arguments in
 * %eax, %edx, %ecx): declare them, and their targets, with PVPASS_REGPARM.
 */
#ifndef PVPASS_H
#define PVPASS_H

#ifndef PVPASS_OPS
#error "define PVPASS_OPS to your ops object before including pvpass.h"
#endif

#define PVPASS_STR_(x...) #x
#define PVPASS_STR(x...) PVPASS_STR_(x)

/* Names the ops object, so lint knows which calls to check. */
__asm__("# pvpass: ops " PVPASS_STR(PVPASS_OPS));

#define PVPASS_SITE(op, regs)	"# pvpass: site " #op " clobbers(" regs ")\n\t"
#define PVPASS_END		"\n\t# pvpass: end\n\t"
#define PVPASS_CALL		"call *%[pv_op]"

/* The macros' own call: PVPASS_OPCALL with the operand PVPASS_OP(op). An
 * "m" operand lets gcc pick the address form, and where it has the ops
 * object's address in a register already (a loop, several sites in one
 * function, -O1 keeping it in a callee-saved register) it prints
 * `call *0x8(%r12)`: 3-5 bytes, too short for any patch, with no
 * relocation that marks it. An "i" operand printed with %c is the bare
 * symbol+offset, so the call is always the 6-byte `call *disp32` (absolute
 * on i386, RIP-relative on x86-64), as the kernel writes PARAVIRT_CALL
 * (`"i" (&(pv_ops.op))`, `call *%c[paravirt_opptr]`). PIC code cannot have
 * an extern object's address as an immediate (gcc: impossible
 * constraint), so it keeps "m" and reaches the object through the GOT,
 * which pvpass names (see "Limits" in the docs). */
#if defined(__PIC__) && (!defined(__x86_64__) || !defined(__PIE__))
#define PVPASS_OP(op)		[pv_op] "m" (PVPASS_OPS.op)
#define PVPASS_OPCALL		PVPASS_CALL
#elif defined(__x86_64__)
#define PVPASS_OP(op)		[pv_op] "i" (&PVPASS_OPS.op)
#define PVPASS_OPCALL		"call *%c[pv_op](%%rip)"
#else
#define PVPASS_OP(op)		[pv_op] "i" (&PVPASS_OPS.op)
#define PVPASS_OPCALL		"call *%c[pv_op]"
#endif

/* The x86-64 red zone (psABI 3.2.2): gcc keeps data in the 128 bytes below
 * %rsp in a function it compiles as a leaf, and it takes an asm's `call` for
 * no call at all. The call pushes its return address there and the target
 * builds its frame there, as do a patched-in direct call and a trampoline.
 * So every site runs with %rsp 128 bytes lower, restored after `end`; the
 * site's own bytes (what is patched) stay as they were (lea, not sub, so
 * that with PVPASS_NO_STACK_ALIGN the step leaves the flags alone). The operands
 * are read with %rsp moved: a hand-written site takes no %rsp-relative one.
 * The kernel's ASM_CALL_CONSTRAINT ("+r" of an %rsp register variable) does
 * not do this: gcc's stack_ptr_mod pass compares the stored rtx with
 * stack_pointer_rtx by identity, the variable's rtx is another one, so the
 * function keeps its red zone (tests/test_redzone.py shows both).
 * The step has no CFI, so an unwinder would misplace the caller's frame if
 * its CFA were %rsp-based: PVPASS_RZ_FRAME, an input never printed, keeps a
 * frame pointer (__builtin_frame_address(0) sets gcc's
 * accesses_prior_frames), and the CFA is %rbp-based across the step.
 * The step also aligns %rsp to 16 bytes, as the psABI wants at a call
 * (3.2.2): in a function gcc compiles as a leaf nothing else does (an odd
 * number of saved registers leaves %rsp 8 off), and a C target that keeps
 * SSE data on its stack (printf with a double: movaps) would fault.
 * `push %rsp; push (%rsp)` stores the old %rsp twice, so after the `and`
 * it is at 8(%rsp) whichever of the two slots the `and` dropped; `mov`
 * brings it back after the site. The `and` writes the flags, which gcc
 * takes every x86 asm statement to clobber anyway.
 * i386 has no red zone: all three expand to nothing. Code built with
 * -mno-red-zone (as the kernel and most unikernels are) needs no step:
 * define PVPASS_NO_RED_ZONE with that flag, and only then (gcc has no macro
 * that says the flag is on); it drops the alignment too, as such code
 * (the kernel: -mpreferred-stack-boundary=3) keeps no SSE data on the stack.
 * PVPASS_NO_STACK_ALIGN drops only the alignment. */
#if defined(__x86_64__) && !defined(PVPASS_NO_RED_ZONE)
#ifdef PVPASS_NO_STACK_ALIGN
#define PVPASS_ALIGN_SKIP
#define PVPASS_ALIGN_END
#else
#define PVPASS_ALIGN_SKIP	"push %%rsp\n\tpush (%%rsp)\n\tand $-16, %%rsp\n\t"
#define PVPASS_ALIGN_END	"mov 8(%%rsp), %%rsp\n\t"
#endif
#define PVPASS_RZ_SKIP		"lea -128(%%rsp), %%rsp\n\t" PVPASS_ALIGN_SKIP
#define PVPASS_RZ_END		PVPASS_END PVPASS_ALIGN_END "lea 128(%%rsp), %%rsp"
#define PVPASS_RZ_FRAME		, [pv_frame] "X" (__builtin_frame_address(0))
#elif defined(__i386__) && !defined(PVPASS_NO_RED_ZONE) && !defined(PVPASS_NO_STACK_ALIGN)
/* i386 has no red zone, but gcc on Linux follows the i386 psABI's 16-byte
 * alignment at a call (-mpreferred-stack-boundary=4, its default) and, like
 * x86-64, does not align in a function it compiles as a leaf. The x86-64
 * step's two copies of the old stack pointer do not do on i386, where `and`
 * may drop 0-12 bytes: the old %esp goes through %eax (saved below it and
 * reloaded), and one copy lands at 4(%esp) as seen at the call, whence `mov`
 * restores it after the site. A site that pushes words before its call (the
 * fourth argument, the eax-clobber site's saves) pads so that the call is
 * aligned and copies the old %esp again to 4(%esp) as seen after its end
 * (all operands but the op are read after the step: the fourth argument is
 * taken in a register, as a memory operand may be %esp-relative). The step
 * moves %esp by an amount known only
 * at run time, which no CFA offset rule expresses: as on x86-64 the function
 * keeps a frame pointer and its CFA is %ebp-based across the step (the
 * unwind info gcc writes is then right at every instruction of it).
 * PVPASS_NO_RED_ZONE (kernel-style code, -mpreferred-stack-boundary=2) and
 * PVPASS_NO_STACK_ALIGN drop it. */
#define PVPASS_RZ_SKIP		"push %%eax\n\tlea 4(%%esp), %%eax\n\tand $-16, %%esp\n\tlea -8(%%esp), %%esp\n\t" \
				"push %%eax\n\tmov -4(%%eax), %%eax\n\tlea -4(%%esp), %%esp\n\t"
#define PVPASS_RZ_END		PVPASS_END "mov 4(%%esp), %%esp"
#define PVPASS_RZ_FRAME		, [pv_frame] "X" (__builtin_frame_address(0))
#define __PV_I386_ALIGNED
#else
#define PVPASS_RZ_SKIP
#define PVPASS_RZ_END
#define PVPASS_RZ_FRAME
#endif

/* gcc weighs an asm statement by its lines when it decides what to inline;
 * a site is one call (or less, once patched), whatever the steps around it
 * add: `asm inline` (gcc 9) makes it count as the smallest, as the kernel's
 * asm_inline does for its alternatives. */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 9
#define __PV_ASM	__asm__ __volatile__ __inline__
#else
#define __PV_ASM	__asm__ __volatile__
#endif

#define PV_CALLEE_SAVE(fn, regs) \
	__asm__("# pvpass: target " #fn " callee-save clobbers(" regs ")")
#define PV_INLINE(backend, op, insns, regs) \
	__asm__("# pvpass: inline " #backend " " #op " \"" insns "\" clobbers(" regs ")")
#define PV_NOP(backend, op)	__asm__("# pvpass: nop " #backend " " #op)
#define PV_ABSENT(backend, op)	__asm__("# pvpass: absent " #backend " " #op)

#ifdef __x86_64__
#define PVPASS_REGPARM
#define PVPASS_C_REGS	"rax, rcx, rdx, rsi, rdi, r8, r9, r10, r11"
#define PVPASS_RET_REGS	"rax"
#define __PV_DECL	unsigned long __pv_ax, __pv_di = 0, __pv_si = 0, __pv_dx = 0, __pv_cx = 0
#define __PV_C_OUT	"=D" (__pv_di), "=S" (__pv_si), "=d" (__pv_dx), "=c" (__pv_cx)
#define __PV_C_CLOB	"memory", "cc", "r8", "r9", "r10", "r11"
#define __PV_A1(x)	[pv_a1] "D" ((unsigned long)(x))
#define __PV_A2(x)	[pv_a2] "S" ((unsigned long)(x))
#define __PV_A3(x)	[pv_a3] "d" ((unsigned long)(x))
#define __PV_A4(x)	[pv_a4] "c" ((unsigned long)(x))
#define __PV_PRE4
#define __PV_POST4
#else
#define PVPASS_REGPARM	__attribute__((regparm(3)))
#define PVPASS_C_REGS	"eax, ecx, edx"
#define PVPASS_RET_REGS	"eax"
#define __PV_DECL	unsigned long __pv_ax, __pv_dx = 0, __pv_cx = 0
#define __PV_C_OUT	"=d" (__pv_dx), "=c" (__pv_cx)
#define __PV_C_CLOB	"memory", "cc"
#define __PV_A1(x)	[pv_a1] "a" ((unsigned long)(x))
#define __PV_A2(x)	[pv_a2] "d" ((unsigned long)(x))
#define __PV_A3(x)	[pv_a3] "c" ((unsigned long)(x))
/* The fourth argument goes on the stack, outside the site. */
#ifdef __PV_I386_ALIGNED
/* in a register: a memory operand may be %esp-relative, and %esp moved.
 * 8 bytes of pad, the old %esp again, the argument: the call is aligned. */
#define __PV_A4(x)	[pv_a4] "ri" ((unsigned long)(x))
#define __PV_PRE4	"lea -8(%%esp), %%esp\n\tpush 12(%%esp)\n\tpush %[pv_a4]\n\t"
#define __PV_POST4
#else
#define __PV_A4(x)	[pv_a4] "g" ((unsigned long)(x))
#define __PV_PRE4	"push %[pv_a4]\n\t"
#define __PV_POST4	PVPASS_END "lea 4(%%esp), %%esp"
#endif
#endif

/* C convention: everything caller-saved may change. */
#define __PV_C(type, ret, op, pre, post, ...)					\
	({ __PV_DECL;								\
	   __PV_ASM(PVPASS_RZ_SKIP pre PVPASS_SITE(op, PVPASS_C_REGS)	\
		PVPASS_OPCALL post PVPASS_RZ_END				\
		: ret (__pv_ax), __PV_C_OUT					\
		: PVPASS_OP(op) PVPASS_RZ_FRAME, ##__VA_ARGS__	\
		: __PV_C_CLOB);							\
	   (type)__pv_ax; })

/* Callee-save convention: only the return register may change. */
#define __PV_CS(type, ret, op, ...)						\
	({ unsigned long __pv_ax;						\
	   __PV_ASM(PVPASS_RZ_SKIP PVPASS_SITE(op, PVPASS_RET_REGS)	\
		PVPASS_OPCALL PVPASS_RZ_END					\
		: ret (__pv_ax)							\
		: PVPASS_OP(op) PVPASS_RZ_FRAME, ##__VA_ARGS__	\
		: "memory", "cc");						\
	   (type)__pv_ax; })

#ifndef __x86_64__
/* The eax-clobber site of 2.6.21 i386 (the seed thread's): the site saves
 * %ecx and %edx itself, so gcc only loses %eax, and the patcher has 10 bytes.
 * No x86-64 analogue: saving eight registers takes 24 bytes of push/pop
 * around the call, and the stack alignment at the call is unknown;
 * PV_CALLEEn with a callee-save target (or a generated trampoline) does
 * that work out of line instead. */
#ifdef __PV_I386_ALIGNED
/* its two pushes: the old %esp again and a pad word, so the call is aligned */
#define __PV_EAX_PRE	"push 4(%%esp)\n\tlea -4(%%esp), %%esp\n\t"
#else
#define __PV_EAX_PRE
#endif
#define __PV_EAX(type, ret, op, ...)						\
	({ unsigned long __pv_ax;						\
	   __PV_ASM(PVPASS_RZ_SKIP __PV_EAX_PRE PVPASS_SITE(op, "eax")		\
		"pushl %%ecx\n\tpushl %%edx\n\t" PVPASS_OPCALL "\n\tpopl %%edx\n\tpopl %%ecx"	\
		PVPASS_RZ_END							\
		: ret (__pv_ax)							\
		: PVPASS_OP(op) PVPASS_RZ_FRAME, ##__VA_ARGS__			\
		: "memory", "cc");						\
	   (type)__pv_ax; })

#define PV_EAXCALL0(t, op)		__PV_EAX(t, [pv_ret] "=a", op)
#define PV_EAXCALL1(t, op, a)		__PV_EAX(t, [pv_ret] "=a", op, __PV_A1(a))
#define PV_EAXCALL2(t, op, a, b)	__PV_EAX(t, [pv_ret] "=a", op, __PV_A1(a), __PV_A2(b))
#define PV_EAXCALL3(t, op, a, b, c)	__PV_EAX(t, [pv_ret] "=a", op, __PV_A1(a), __PV_A2(b), __PV_A3(c))
#define PV_VEAXCALL0(op)		((void)__PV_EAX(unsigned long, "=a", op))
#define PV_VEAXCALL1(op, a)		((void)__PV_EAX(unsigned long, "=a", op, __PV_A1(a)))
#define PV_VEAXCALL2(op, a, b)		((void)__PV_EAX(unsigned long, "=a", op, __PV_A1(a), __PV_A2(b)))
#define PV_VEAXCALL3(op, a, b, c)	((void)__PV_EAX(unsigned long, "=a", op, __PV_A1(a), __PV_A2(b), __PV_A3(c)))
#endif

#define PV_CALL0(t, op)			__PV_C(t, [pv_ret] "=a", op, , )
#define PV_CALL1(t, op, a)		__PV_C(t, [pv_ret] "=a", op, , , __PV_A1(a))
#define PV_CALL2(t, op, a, b)		__PV_C(t, [pv_ret] "=a", op, , , __PV_A1(a), __PV_A2(b))
#define PV_CALL3(t, op, a, b, c)	__PV_C(t, [pv_ret] "=a", op, , , __PV_A1(a), __PV_A2(b), __PV_A3(c))
#define PV_CALL4(t, op, a, b, c, d)	__PV_C(t, [pv_ret] "=a", op, __PV_PRE4, __PV_POST4, __PV_A1(a), __PV_A2(b), __PV_A3(c), __PV_A4(d))
#define PV_VCALL0(op)			((void)__PV_C(unsigned long, "=a", op, , ))
#define PV_VCALL1(op, a)		((void)__PV_C(unsigned long, "=a", op, , , __PV_A1(a)))
#define PV_VCALL2(op, a, b)		((void)__PV_C(unsigned long, "=a", op, , , __PV_A1(a), __PV_A2(b)))
#define PV_VCALL3(op, a, b, c)		((void)__PV_C(unsigned long, "=a", op, , , __PV_A1(a), __PV_A2(b), __PV_A3(c)))
#define PV_VCALL4(op, a, b, c, d)	((void)__PV_C(unsigned long, "=a", op, __PV_PRE4, __PV_POST4, __PV_A1(a), __PV_A2(b), __PV_A3(c), __PV_A4(d)))

#define PV_CALLEE0(t, op)		__PV_CS(t, [pv_ret] "=a", op)
#define PV_CALLEE1(t, op, a)		__PV_CS(t, [pv_ret] "=a", op, __PV_A1(a))
#define PV_CALLEE2(t, op, a, b)		__PV_CS(t, [pv_ret] "=a", op, __PV_A1(a), __PV_A2(b))
#define PV_VCALLEE0(op)			((void)__PV_CS(unsigned long, "=a", op))
#define PV_VCALLEE1(op, a)		((void)__PV_CS(unsigned long, "=a", op, __PV_A1(a)))
#define PV_VCALLEE2(op, a, b)		((void)__PV_CS(unsigned long, "=a", op, __PV_A1(a), __PV_A2(b)))

#endif /* PVPASS_H */
