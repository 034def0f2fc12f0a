/* Paravirt call sites in the Linux 2.6.21 i386 form (include/asm-i386/
 * paravirt.h): one flat struct paravirt_ops with data members before the
 * ops, hand-written sites that push/pop %ecx/%edx around the call so they
 * clobber only %eax -- the 10-byte sites of the seed thread. */
#ifndef PV2621_H
#define PV2621_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned long long u64;
#define offsetof(TYPE, MEMBER) __builtin_offsetof(TYPE, MEMBER)
#define fastcall __attribute__((regparm(3)))

#define CLBR_NONE 0x0
#define CLBR_EAX 0x1
#define CLBR_ECX 0x2
#define CLBR_EDX 0x4
#define CLBR_ANY 0x7

struct thread_struct;
struct Xgt_desc_struct;
struct tss_struct;
struct mm_struct;
struct desc_struct;

struct paravirt_ops
{
	unsigned int kernel_rpl;
	int shared_kernel_pmd;
	int paravirt_enabled;
	const char *name;

	unsigned (*patch)(u8 type, u16 clobber, void *firstinsn, unsigned len);
	void (*arch_setup)(void);
	char *(*memory_setup)(void);
	void (*init_IRQ)(void);
	void (*banner)(void);
	unsigned long (*get_wallclock)(void);
	int (*set_wallclock)(unsigned long);
	void (*time_init)(void);
	void (*cpuid)(unsigned int *eax, unsigned int *ebx,
		      unsigned int *ecx, unsigned int *edx);
	unsigned long (*get_debugreg)(int regno);
	void (*set_debugreg)(int regno, unsigned long value);
	void (*clts)(void);
	unsigned long (*read_cr0)(void);
	void (*write_cr0)(unsigned long);
	unsigned long (*read_cr2)(void);
	void (*write_cr2)(unsigned long);
	unsigned long (*read_cr3)(void);
	void (*write_cr3)(unsigned long);
	unsigned long (*read_cr4_safe)(void);
	unsigned long (*read_cr4)(void);
	void (*write_cr4)(unsigned long);
	unsigned long (fastcall *save_fl)(void);
	void (fastcall *restore_fl)(unsigned long);
	void (fastcall *irq_disable)(void);
	void (fastcall *irq_enable)(void);
	void (*safe_halt)(void);
	void (*halt)(void);
	void (*wbinvd)(void);
	u64 (*read_msr)(unsigned int msr, int *err);
	int (*write_msr)(unsigned int msr, u64 val);
	u64 (*read_tsc)(void);
	u64 (*read_pmc)(void);
	void (*io_delay)(void);
	void (fastcall *flush_tlb_user)(void);
	void (fastcall *flush_tlb_kernel)(void);
	void (fastcall *flush_tlb_single)(unsigned long addr);
	void (fastcall *irq_enable_sysexit)(void);
	void (fastcall *iret)(void);
	void (fastcall *set_lazy_mode)(int mode);
};

extern struct paravirt_ops paravirt_ops;

#define paravirt_type(type)		[paravirt_typenum] "i" (type)
#define paravirt_clobber(clobber)	[paravirt_clobber] "i" (clobber)
#define PARAVIRT_PATCH(x)	(offsetof(struct paravirt_ops, x) / sizeof(void *))

#define _paravirt_alt(insn_string, type, clobber)	\
	"771:\n\t" insn_string "\n" "772:\n"		\
	".pushsection .parainstructions,\"a\"\n"	\
	"  .long 771b\n"				\
	"  .byte " type "\n"				\
	"  .byte 772b-771b\n"				\
	"  .short " clobber "\n"			\
	".popsection\n"

#define paravirt_alt(insn_string)				\
	_paravirt_alt(insn_string, "%c[paravirt_typenum]", "%c[paravirt_clobber]")

#define PARAVIRT_CALL	"call *(paravirt_ops+%c[paravirt_typenum]*4);"

static inline unsigned long __raw_local_save_flags(void)
{
	unsigned long f;

	__asm__ __volatile__(paravirt_alt( "pushl %%ecx; pushl %%edx;"
					   PARAVIRT_CALL
					   "popl %%edx; popl %%ecx")
			     : "=a"(f)
			     : paravirt_type(PARAVIRT_PATCH(save_fl)),
			       paravirt_clobber(CLBR_EAX)
			     : "memory", "cc");
	return f;
}

static inline void raw_local_irq_restore(unsigned long f)
{
	__asm__ __volatile__(paravirt_alt( "pushl %%ecx; pushl %%edx;"
					   PARAVIRT_CALL
					   "popl %%edx; popl %%ecx")
			     : "=a"(f)
			     : "0"(f),
			       paravirt_type(PARAVIRT_PATCH(restore_fl)),
			       paravirt_clobber(CLBR_EAX)
			     : "memory", "cc");
}

static inline void raw_local_irq_disable(void)
{
	__asm__ __volatile__(paravirt_alt( "pushl %%ecx; pushl %%edx;"
					   PARAVIRT_CALL
					   "popl %%edx; popl %%ecx")
			     :
			     : paravirt_type(PARAVIRT_PATCH(irq_disable)),
			       paravirt_clobber(CLBR_EAX)
			     : "memory", "eax", "cc");
}

static inline void raw_local_irq_enable(void)
{
	__asm__ __volatile__(paravirt_alt( "pushl %%ecx; pushl %%edx;"
					   PARAVIRT_CALL
					   "popl %%edx; popl %%ecx")
			     :
			     : paravirt_type(PARAVIRT_PATCH(irq_enable)),
			       paravirt_clobber(CLBR_EAX)
			     : "memory", "eax", "cc");
}

static inline unsigned long __raw_local_irq_save(void)
{
	unsigned long f;

	__asm__ __volatile__(paravirt_alt( "pushl %%ecx; pushl %%edx;"
					   PARAVIRT_CALL "; "
					   "pushl %%eax; popl %%eax;"
					   "popl %%edx; popl %%ecx")
			     : "=a"(f)
			     : paravirt_type(PARAVIRT_PATCH(save_fl)),
			       paravirt_clobber(CLBR_EAX)
			     : "memory", "cc");
	return f;
}

/* A plain C-convention site: the call clobbers eax, ecx, edx. */
static inline void io_delay(void)
{
	unsigned long __eax, __edx, __ecx;
	__asm__ __volatile__(paravirt_alt(PARAVIRT_CALL)
			     : "=a"(__eax), "=d"(__edx), "=c"(__ecx)
			     : paravirt_type(PARAVIRT_PATCH(io_delay)),
			       paravirt_clobber(CLBR_ANY)
			     : "memory", "cc");
}

static inline void write_cr3(unsigned long x)
{
	unsigned long __eax, __edx, __ecx;
	__asm__ __volatile__(paravirt_alt(PARAVIRT_CALL)
			     : "=a"(__eax), "=d"(__edx), "=c"(__ecx)
			     : paravirt_type(PARAVIRT_PATCH(write_cr3)),
			       paravirt_clobber(CLBR_ANY), "0"(x)
			     : "memory", "cc");
}

#endif
