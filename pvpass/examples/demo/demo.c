/* pvpass demo: a userspace program whose ops-table calls are patched at
 * start-up for the backend named on the command line.
 *
 *   ./demo none        run through the ops table (indirect calls)
 *   ./demo native_ops  patch: inline replacements, NOPs, direct calls
 *   ./demo c_ops       patch: direct calls, trampolines for callee-save sites
 *
 * The printed result must be the same in all three runs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct cpu_ops {
	unsigned long (*read_tsc)(void);
	void (*io_delay)(void);
	unsigned long (*mix)(unsigned long, unsigned long, unsigned long, unsigned long);
};

struct irq_ops {
	unsigned long (*save_fl)(void);
};

struct mmu_ops {
	unsigned long (*pte_val)(unsigned long);
};

struct demo_ops {
	struct cpu_ops cpu;
	struct irq_ops irq;
	struct mmu_ops mmu;
};

struct demo_ops pv_ops;

#define PVPASS_OPS pv_ops
#include <pvpass.h>
#include <pvpass_rt.h>

/* --- call sites: what the rest of the program uses ------------------------ */

static inline unsigned long read_tsc(void) { return PV_CALL0(unsigned long, cpu.read_tsc); }
static inline void io_delay(void) { PV_VCALL0(cpu.io_delay); }
static inline unsigned long mix(unsigned long a, unsigned long b, unsigned long c, unsigned long d)
{
	return PV_CALL4(unsigned long, cpu.mix, a, b, c, d);
}
static inline unsigned long save_fl(void) { return PV_CALLEE0(unsigned long, irq.save_fl); }
static inline unsigned long pte_val(unsigned long p) { return PV_CALLEE1(unsigned long, mmu.pte_val, p); }

/* --- the native backend: callee-save asm, inline replacements, a no-op ---- */

unsigned long native_save_fl(void);
unsigned long native_pte_val(unsigned long);
__asm__(".text\n"
	".globl native_save_fl\n.type native_save_fl, @function\n"
	"native_save_fl: pushfq; popq %rax; ret\n"
	".size native_save_fl, . - native_save_fl\n"
	".globl native_pte_val\n.type native_pte_val, @function\n"
	"native_pte_val: movq %rdi, %rax; ret\n"
	".size native_pte_val, . - native_pte_val\n");
PV_CALLEE_SAVE(native_save_fl, "rax");
PV_CALLEE_SAVE(native_pte_val, "rax");

static unsigned long native_read_tsc(void)
{
	unsigned int lo, hi;
	__asm__ __volatile__("rdtsc" : "=a" (lo), "=d" (hi));
	return ((unsigned long)hi << 32) | lo;
}

static void native_io_delay(void) { }

static unsigned long native_mix(unsigned long a, unsigned long b, unsigned long c, unsigned long d)
{
	return (a * 31 + b * 7) ^ (c * 3 + d);
}

static const struct demo_ops native_ops = {
	.cpu = { .read_tsc = native_read_tsc, .io_delay = native_io_delay, .mix = native_mix },
	.irq.save_fl = native_save_fl,
	.mmu.pte_val = native_pte_val,
};
PV_INLINE(native_ops, irq.save_fl, "pushfq; popq %rax", "rax");
PV_INLINE(native_ops, mmu.pte_val, "mov %rdi, %rax", "rax");
PV_NOP(native_ops, cpu.io_delay);

/* --- the C backend: every op a plain C function ---------------------------- */

static volatile unsigned long io_count;

static unsigned long c_read_tsc(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long)ts.tv_sec * 1000000000ul + ts.tv_nsec;
}

static void c_io_delay(void) { io_count++; }

static unsigned long c_mix(unsigned long a, unsigned long b, unsigned long c, unsigned long d)
{
	return (a * 31 + b * 7) ^ (c * 3 + d);
}

static unsigned long c_save_fl(void) { return __builtin_ia32_readeflags_u64(); }

static unsigned long c_pte_val(unsigned long x) { return x; }

static const struct demo_ops c_ops = {
	.cpu = { .read_tsc = c_read_tsc, .io_delay = c_io_delay, .mix = c_mix },
	.irq = { .save_fl = c_save_fl },
	.mmu = { .pte_val = c_pte_val },
};

/* --- the work --------------------------------------------------------------- */

static unsigned long compute(unsigned long n)
{
	unsigned long acc = 0x9e3779b97f4a7c15ul, i;

	for (i = 0; i < n; i++) {
		acc = mix(acc, pte_val(i << 12), i, save_fl() & 0x200);	/* IF is always set */
		io_delay();
	}
	return acc;
}

int main(int argc, char **argv)
{
	const char *backend = argc > 1 ? argv[1] : "none";
	unsigned long n = argc > 2 ? strtoul(argv[2], 0, 0) : 1000000, t0, t1, r;

	pv_ops = strcmp(backend, "c_ops") == 0 ? c_ops : native_ops;
	if (strcmp(backend, "none") != 0) {
		unsigned kept = 0;
		int done = pvpass_apply(backend, &kept);

		if (done < 0) {
			perror("pvpass_apply");
			return 1;
		}
		printf("patched %d sites for %s (%u left as indirect calls)\n", done, backend, kept);
	}
	t0 = read_tsc();
	r = compute(n);
	t1 = read_tsc();
	printf("result %#lx\n", r);
	fprintf(stderr, "%s: %lu iterations in %lu ticks\n", backend, n, t1 - t0);
	return 0;
}
