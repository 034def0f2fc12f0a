/* pvpass bench harness: the cost of one op through each site convention and
 * each patch, in TSC ticks per call. `pvpass bench` builds it with the pass
 * in the compiler (`pvpass cc -- gcc -O2`; -m32 -fno-pie on i386, the
 * kernel's -mno-red-zone on x86-64), links it with the runtime and the
 * linker-script fragment, and runs it per mode, round-robin:
 *
 *   ./harness MODE RUNS CALLS
 *
 *   bare         the instructions themselves, no paravirt at all (the limit)
 *   indirect-c   unpatched: indirect calls through pv_ops to C functions
 *                (cc and eax-clobber sites; a callee-save site cannot)
 *   indirect-cs  unpatched: indirect calls to callee-save functions
 *   c_ops        pvpass_apply: every op a C function (direct call at a cc
 *                site, a trampoline at the others)
 *   cs_ops       pvpass_apply: every op a callee-save function (direct call)
 *   native_ops   pvpass_apply: save_fl inline, io_delay NOPs, the irq ops
 *                direct calls to their callee-save functions
 *
 * Conventions (one ops sub-struct each, so each op path has its own sites):
 *   cc    C convention: every caller-saved register may change (PV_CALLn)
 *   cs    callee-save: only the return register (PV_CALLEEn)
 *   eax   i386 only, the 2007 site: push %ecx; push %edx; call; pop; pop,
 *         clobbers %eax only, 10 bytes (hand-written here)
 *
 * Ops: save_fl (pushf; pop), io_delay (nothing), and a caller: an irq
 * save/disable/critical section/restore path with several values live across
 * the calls. cli/sti fault in user mode, so the interrupt flag lives in
 * memory as lguest's does (irq_enabled): irq_disable stores 0 there and
 * irq_restore stores the saved IF bit.
 *
 * Output, one line each: "op CONV OP TYPE" (type number of the op path),
 * "site TYPE LEN KIND" per table entry after patching (kind of the patch
 * record: 1 inline, 2 call, 3 trampoline, 4 nop), "row CONV OP DISCARDED
 * DIRTY t1 t2 ..." (runs repeated because the harness was preempted, runs
 * kept although preempted, then ticks per call of each run; for the caller,
 * per iteration; "row bare cycle" is TSC ticks per core cycle), and
 * "result CONV VALUE IRQ_ENABLED" per caller: what it computed and the
 * interrupt flag it left, equal in every mode and convention. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define PVPASS_OPS pv_ops
#include <pvpass.h>
#include <pvpass_rt.h>

struct conv_ops {
	unsigned long PVPASS_REGPARM (*save_fl)(void);
	void PVPASS_REGPARM (*io_delay)(void);
	void PVPASS_REGPARM (*irq_disable)(void);
	void PVPASS_REGPARM (*irq_restore)(unsigned long);
};

struct bench_ops {
	struct conv_ops cc, cs, eax;
};

struct bench_ops pv_ops;
volatile unsigned int irq_enabled = 1;

#define IF_BIT(f)	(((f) >> 9) & 1)

/* --- targets: C functions ------------------------------------------------- */

static unsigned long PVPASS_REGPARM c_save_fl(void)
{
#ifdef __x86_64__
	return __builtin_ia32_readeflags_u64();
#else
	return __builtin_ia32_readeflags_u32();
#endif
}
static void PVPASS_REGPARM c_io_delay(void) { __asm__ __volatile__(""); }
static void PVPASS_REGPARM c_irq_disable(void) { irq_enabled = 0; }
static void PVPASS_REGPARM c_irq_restore(unsigned long f) { irq_enabled = IF_BIT(f); }

/* --- targets: callee-save functions (only the return register changes) -- */

unsigned long PVPASS_REGPARM cs_save_fl(void);
void PVPASS_REGPARM cs_io_delay(void);
void PVPASS_REGPARM cs_irq_disable(void);
void PVPASS_REGPARM cs_irq_restore(unsigned long);
#define FN(name, body) ".globl " #name "\n.type " #name ", @function\n" #name ": " body "\n" \
	".size " #name ", . - " #name "\n"
#ifdef __x86_64__
__asm__(".text\n"
	FN(cs_save_fl, "pushfq; popq %rax; ret")
	FN(cs_io_delay, "ret")
	FN(cs_irq_disable, "movl $0, irq_enabled(%rip); ret")
	FN(cs_irq_restore, "movq %rdi, %rax; shrq $9, %rax; andl $1, %eax; movl %eax, irq_enabled(%rip); ret"));
PV_CALLEE_SAVE(cs_save_fl, "rax");
PV_CALLEE_SAVE(cs_io_delay, "rax");
PV_CALLEE_SAVE(cs_irq_disable, "rax");
PV_CALLEE_SAVE(cs_irq_restore, "rax");
#define SAVE_FL_INSNS "pushfq; popq %rax"
#define SAVE_FL_REGS "rax"
#else
__asm__(".text\n"
	FN(cs_save_fl, "pushfl; popl %eax; ret")
	FN(cs_io_delay, "ret")
	FN(cs_irq_disable, "movl $0, irq_enabled; ret")
	FN(cs_irq_restore, "shrl $9, %eax; andl $1, %eax; movl %eax, irq_enabled; ret"));
PV_CALLEE_SAVE(cs_save_fl, "eax");
PV_CALLEE_SAVE(cs_io_delay, "eax");
PV_CALLEE_SAVE(cs_irq_disable, "eax");
PV_CALLEE_SAVE(cs_irq_restore, "eax");
#define SAVE_FL_INSNS "pushfl; popl %eax"
#define SAVE_FL_REGS "eax"
#endif

/* --- backends --------------------------------------------------------------- */

#define C_FNS	{ .save_fl = c_save_fl, .io_delay = c_io_delay, \
		  .irq_disable = c_irq_disable, .irq_restore = c_irq_restore }
#define CS_FNS	{ .save_fl = cs_save_fl, .io_delay = cs_io_delay, \
		  .irq_disable = cs_irq_disable, .irq_restore = cs_irq_restore }

static const struct bench_ops c_ops = { .cc = C_FNS, .cs = C_FNS, .eax = C_FNS };
static const struct bench_ops cs_ops = { .cc = CS_FNS, .cs = CS_FNS, .eax = CS_FNS };
static const struct bench_ops native_ops = { .cc = CS_FNS, .cs = CS_FNS, .eax = CS_FNS };
PV_INLINE(native_ops, cc.save_fl, SAVE_FL_INSNS, SAVE_FL_REGS);
PV_INLINE(native_ops, cs.save_fl, SAVE_FL_INSNS, SAVE_FL_REGS);
PV_NOP(native_ops, cc.io_delay);
PV_NOP(native_ops, cs.io_delay);
#ifndef __x86_64__
PV_INLINE(native_ops, eax.save_fl, SAVE_FL_INSNS, SAVE_FL_REGS);
PV_NOP(native_ops, eax.io_delay);
#endif
/* Unpatched with C functions wherever the site allows one. */
static const struct bench_ops indirect_c = { .cc = C_FNS, .cs = CS_FNS, .eax = C_FNS };

/* --- sites ------------------------------------------------------------------ */

static inline unsigned long cc_save_fl(void) { return PV_CALL0(unsigned long, cc.save_fl); }
static inline void cc_io_delay(void) { PV_VCALL0(cc.io_delay); }
static inline void cc_irq_disable(void) { PV_VCALL0(cc.irq_disable); }
static inline void cc_irq_restore(unsigned long f) { PV_VCALL1(cc.irq_restore, f); }

static inline unsigned long cs_save_fl_(void) { return PV_CALLEE0(unsigned long, cs.save_fl); }
static inline void cs_io_delay_(void) { PV_VCALLEE0(cs.io_delay); }
static inline void cs_irq_disable_(void) { PV_VCALLEE0(cs.irq_disable); }
static inline void cs_irq_restore_(unsigned long f) { PV_VCALLEE1(cs.irq_restore, f); }

#ifndef __x86_64__
/* The 2.6.21 i386 site: the site itself saves %ecx and %edx around the call,
 * so a C function (regparm(3), argument in %eax) may be called unpatched and
 * the caller loses only %eax. */
#define EAX_SITE(op)	PVPASS_SITE(op, "eax") "push %%ecx\n\tpush %%edx\n\t" \
			PVPASS_CALL "\n\tpop %%edx\n\tpop %%ecx"
static inline unsigned long eax_save_fl(void)
{
	unsigned long r;
	__asm__ __volatile__(EAX_SITE(eax.save_fl) : "=a" (r)
			     : [pv_op] "m" (pv_ops.eax.save_fl) : "memory", "cc");
	return r;
}
static inline void eax_io_delay(void)
{
	unsigned long r;
	__asm__ __volatile__(EAX_SITE(eax.io_delay) : "=a" (r)
			     : [pv_op] "m" (pv_ops.eax.io_delay) : "memory", "cc");
}
static inline void eax_irq_disable(void)
{
	unsigned long r;
	__asm__ __volatile__(EAX_SITE(eax.irq_disable) : "=a" (r)
			     : [pv_op] "m" (pv_ops.eax.irq_disable) : "memory", "cc");
}
static inline void eax_irq_restore(unsigned long f)
{
	unsigned long r;
	__asm__ __volatile__(EAX_SITE(eax.irq_restore) : "=a" (r)
			     : [pv_op] "m" (pv_ops.eax.irq_restore), [pv_a1] "a" (f)
			     : "memory", "cc");
}
#endif

/* No paravirt: the instructions the native backend stands for. */
static inline unsigned long bare_save_fl(void)
{
	unsigned long f;
	__asm__ __volatile__("pushf\n\tpop %0" : "=r" (f) : : "memory");
	return f;
}
static inline void bare_io_delay(void) { __asm__ __volatile__("" : : : "memory"); }
static inline void bare_irq_disable(void) { irq_enabled = 0; __asm__ __volatile__("" : : : "memory"); }
static inline void bare_irq_restore(unsigned long f) { irq_enabled = IF_BIT(f); __asm__ __volatile__("" : : : "memory"); }

/* --- timed loops -------------------------------------------------------------- */

static inline unsigned long long tsc_start(void)
{
	unsigned int lo, hi;
	__asm__ __volatile__("lfence\n\trdtsc\n\tlfence" : "=a" (lo), "=d" (hi) : : "memory");
	return ((unsigned long long)hi << 32) | lo;
}

static inline unsigned long long tsc_stop(void)
{
	unsigned int lo, hi, aux;
	__asm__ __volatile__("rdtscp\n\tlfence" : "=a" (lo), "=d" (hi), "=c" (aux) : : "memory");
	return ((unsigned long long)hi << 32) | lo;
}

#define UNROLL 4	/* sites per loop iteration: loop overhead is shared */
#define X4(s)	s; s; s; s

/* The caller of the thread's argument: values live in registers across the
 * calls (five accumulators, the index, the bound, the array, the flags). */
#define CALLER(conv, save_fl, irq_disable, irq_restore)				\
__attribute__((noinline)) unsigned long caller_##conv(const unsigned long *v, unsigned long n) \
{										\
	unsigned long s0 = v[0], s1 = v[1], s2 = v[2], s3 = v[3], s4 = v[4], i;	\
	for (i = 0; i < n; i++) {						\
		unsigned long x = v[i & 15], f = save_fl();			\
		irq_disable();							\
		s0 += x; s1 ^= s0 + i; s2 = s2 * 31 + x; s3 += s1 >> 3; s4 ^= s2 + s3; \
		irq_restore(f);							\
	}									\
	return s0 ^ s1 ^ s2 ^ s3 ^ s4;						\
}

#define LOOPS(conv, save_fl, io_delay)						\
__attribute__((noinline)) static unsigned long loop_##conv##_save_fl(unsigned long n) \
{										\
	unsigned long acc = 0, i;						\
	for (i = 0; i < n; i += UNROLL) { X4(acc += save_fl()); }		\
	return acc;								\
}										\
__attribute__((noinline)) static unsigned long loop_##conv##_io_delay(unsigned long n) \
{										\
	unsigned long i;							\
	for (i = 0; i < n; i += UNROLL) { X4(io_delay()); }			\
	return i;								\
}

CALLER(bare, bare_save_fl, bare_irq_disable, bare_irq_restore)
CALLER(cc, cc_save_fl, cc_irq_disable, cc_irq_restore)
CALLER(cs, cs_save_fl_, cs_irq_disable_, cs_irq_restore_)
LOOPS(bare, bare_save_fl, bare_io_delay)
LOOPS(cc, cc_save_fl, cc_io_delay)
LOOPS(cs, cs_save_fl_, cs_io_delay_)
#ifndef __x86_64__
CALLER(eax, eax_save_fl, eax_irq_disable, eax_irq_restore)
LOOPS(eax, eax_save_fl, eax_io_delay)
#endif

/* The clock: four dependent adds per iteration take four core cycles (the
 * loop's own instructions run beside them), so this gives TSC ticks per
 * core cycle. */
__attribute__((noinline)) static unsigned long loop_bare_cycle(unsigned long n)
{
	unsigned long x = n, i;

	for (i = 0; i < n; i += UNROLL)
		__asm__("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0" : "+r" (x));
	return x;
}

static unsigned long data[16];
volatile unsigned long sink;

typedef unsigned long (*loop_fn)(unsigned long);

static unsigned long run_caller(unsigned long (*fn)(const unsigned long *, unsigned long), unsigned long n)
{
	return fn(data, n);
}

struct bench {
	const char *conv, *op;
	loop_fn loop;
	unsigned long (*caller)(const unsigned long *, unsigned long);
};

static const struct bench benches[] = {
	{ "bare", "cycle", loop_bare_cycle, 0 },
	{ "bare", "save_fl", loop_bare_save_fl, 0 },
	{ "bare", "io_delay", loop_bare_io_delay, 0 },
	{ "bare", "caller", 0, caller_bare },
	{ "cc", "save_fl", loop_cc_save_fl, 0 },
	{ "cc", "io_delay", loop_cc_io_delay, 0 },
	{ "cc", "caller", 0, caller_cc },
	{ "cs", "save_fl", loop_cs_save_fl, 0 },
	{ "cs", "io_delay", loop_cs_io_delay, 0 },
	{ "cs", "caller", 0, caller_cs },
#ifndef __x86_64__
	{ "eax", "save_fl", loop_eax_save_fl, 0 },
	{ "eax", "io_delay", loop_eax_io_delay, 0 },
	{ "eax", "caller", 0, caller_eax },
#endif
};

#define NBENCH (sizeof(benches) / sizeof(benches[0]))

/* Which benches a mode runs: bare only the bare ones, the others every
 * convention whose sites the mode's ops table can serve. */
static int wanted(const char *mode, const struct bench *b)
{
	if ((strcmp(mode, "bare") == 0) != (strcmp(b->conv, "bare") == 0))
		return 0;
	/* a callee-save site cannot call a C function */
	return !(strcmp(mode, "indirect-c") == 0 && strcmp(b->conv, "cs") == 0);
}

static long preemptions(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_nivcsw;
}

/* Counts per bench: runs discarded because the kernel preempted the
 * harness during them, and runs kept although every try was preempted. */
static unsigned long discarded[NBENCH], dirty[NBENCH];
#define TRIES 100

/* One run: calls calls, in ticks per call. On a shared machine a run that
 * another process interrupts measures that process too (a time slice is
 * about as long as a run), so such a run is repeated, up to TRIES times. */
static double measure(const struct bench *b, unsigned long calls, size_t k)
{
	/* a caller iteration makes three calls: a run is still `calls` calls */
	unsigned long n = b->loop ? calls : calls / 3;
	unsigned long long t0, t1;
	int try;

	for (try = 0; ; try++) {
		long p = preemptions();

		t0 = tsc_start();
		sink = b->loop ? b->loop(n) : run_caller(b->caller, n);
		t1 = tsc_stop();
		if (preemptions() == p)
			break;
		if (try == TRIES - 1) {
			dirty[k]++;
			break;
		}
		discarded[k]++;
	}
	return (double)(t1 - t0) / (double)n;
}

static void print_types(void)
{
	static const struct { const char *conv, *op; size_t off; } t[] = {
#define T(c, o) { #c, #o, offsetof(struct bench_ops, c.o) }
		T(cc, save_fl), T(cc, io_delay), T(cc, irq_disable), T(cc, irq_restore),
		T(cs, save_fl), T(cs, io_delay), T(cs, irq_disable), T(cs, irq_restore),
		T(eax, save_fl), T(eax, io_delay), T(eax, irq_disable), T(eax, irq_restore),
#undef T
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		printf("op %s %s %zu\n", t[i].conv, t[i].op, t[i].off / sizeof(void *));
}

int main(int argc, char **argv)
{
	const char *mode;
	unsigned long runs, calls, i;
	size_t b;
	double *t;
	int r;

	if (argc != 4) {
		fprintf(stderr, "usage: %s MODE RUNS CALLS\n", argv[0]);
		return 2;
	}
	mode = argv[1];
	runs = strtoul(argv[2], 0, 0);
	calls = strtoul(argv[3], 0, 0) / UNROLL * UNROLL;
	if (runs < 1 || calls < 3 * UNROLL) {
		fprintf(stderr, "RUNS must be >= 1 and CALLS >= %d\n", 3 * UNROLL);
		return 2;
	}
	for (i = 0; i < 16; i++)
		data[i] = i * 0x9e3779b9ul + 1;

	if (strcmp(mode, "indirect-c") == 0) {
		pv_ops = indirect_c;
	} else if (strcmp(mode, "indirect-cs") == 0 || strcmp(mode, "bare") == 0) {
		pv_ops = cs_ops;
	} else {
		unsigned kept = 0;
		struct paravirt_patch_site *s;

		if (strcmp(mode, "c_ops") == 0)
			pv_ops = c_ops;
		else if (strcmp(mode, "cs_ops") == 0)
			pv_ops = cs_ops;
		else if (strcmp(mode, "native_ops") == 0)
			pv_ops = native_ops;
		else {
			fprintf(stderr, "unknown mode %s\n", mode);
			return 2;
		}
		r = pvpass_apply(mode, &kept);
		if (r < 0) {
			perror("pvpass_apply");
			return 1;
		}
		for (s = __parainstructions; s < __parainstructions_end; s++) {
			const struct pvpass_patch *p = pvpass_find(mode, s);
			printf("site %u %u %u\n", s->type, s->len, p ? p->kind : 0);
		}
	}
	print_types();
	for (b = 0; b < NBENCH; b++)
		if (wanted(mode, &benches[b]))
			measure(&benches[b], calls, b);	/* warm up: caches, predictors */
	memset(discarded, 0, sizeof(discarded));
	memset(dirty, 0, sizeof(dirty));
	/* Round-robin over the benches, so a burst of load on the (shared)
	 * machine spreads over all of them instead of spoiling one. */
	t = calloc(runs * NBENCH, sizeof(*t));
	if (!t) {
		perror("calloc");
		return 1;
	}
	for (i = 0; i < runs; i++)
		for (b = 0; b < NBENCH; b++)
			if (wanted(mode, &benches[b]))
				t[i * NBENCH + b] = measure(&benches[b], calls, b);
	for (b = 0; b < NBENCH; b++) {
		if (!wanted(mode, &benches[b]))
			continue;
		printf("row %s %s %lu %lu", benches[b].conv, benches[b].op, discarded[b], dirty[b]);
		for (i = 0; i < runs; i++)
			printf(" %.4f", t[i * NBENCH + b]);
		printf("\n");
	}
	free(t);
	for (b = 0; b < NBENCH; b++)
		if (wanted(mode, &benches[b]) && benches[b].caller) {
			unsigned long v = benches[b].caller(data, 1000);

			printf("result %s %lu %u\n", benches[b].conv, v, irq_enabled);
		}
	return 0;
}
