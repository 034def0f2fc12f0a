/* Struct layout torture test: the ops sit behind members whose layout
 * differs between i386 and x86-64 (long long and double align to 4 in i386
 * structs), packed and aligned attributes, unions, bitfields, arrays with
 * constant-expression bounds, and GNU C the front end must read. */
enum { NSLOTS = 3, EXTRA = NSLOTS * 2 + 1 };

typedef unsigned long long u64;
typedef __signed__ char s8;

struct inner {
	char tag;
	u64 stamp;
	double ratio;
};

struct __attribute__((packed)) wire {
	char kind;
struct bits {
	short id;
};

union mixed {
	char bytes[EXTRA];
	long word;
	struct wire w;
};

	unsigned int len;
	unsigned int a : 3, b : 7;
	unsigned int : 0;
	unsigned char c : 4;
	long long d : 33;
};

struct tricky_ops {
	s8 flag;
	struct inner in;
	struct wire w[2];
	union mixed mx;
	struct bits bf;
	long double ld;
	char after_ld;
	int aligned_int __attribute__((aligned(32)));
	void *slots[NSLOTS + sizeof(struct wire)];
	struct {
		void (*op_a)(void);
		struct {
			unsigned long (*op_b)(unsigned long);
		} deep;
	} grp;
	char pad[1] __attribute__((aligned(64)));
	void (*op_c)(int, int);
} __attribute__((aligned(128)));

_Static_assert(sizeof(struct wire) == 7, "packed");

extern struct tricky_ops pv_ops;
#define PVPASS_OPS pv_ops
#include <pvpass.h>

static inline void op_a(void) { PV_VCALL0(grp.op_a); }
static inline unsigned long op_b(unsigned long x) { return PV_CALL1(unsigned long, grp.deep.op_b, x); }
static inline void op_c(int x, int y) { PV_VCALL2(op_c, x, y); }

/* GNU C around the sites: asm goto with named operands, typeof, statement
 * expressions, __builtin_offsetof, __int128 where the target has it,
 * designated initializers of nested structs, __extension__, case ranges. */
#ifdef __x86_64__
typedef unsigned __int128 u128;
#else
typedef unsigned long long u128;
#endif

static const struct { int a; struct { int b, c; } in; } table_init = { .a = 1, .in = { .c = 3, .b = 2 } };

int gnu_c(int x)
{
	__typeof__(x) y = ({ int t = x * 2; t + 1; });
	u128 wide = (u128)y << 3;
	__extension__ long long ll = 1LL << 40;
	switch (x) {
	case 1 ... 5:
		op_a();
		break;
	default:
		op_c(x, (int)__builtin_offsetof(struct tricky_ops, grp.deep));
	}
	asm goto("test %[v], %[v]\n\tjz %l[out]" : : [v] "r" (y) : "cc" : out);
	PV_VCALL0(grp.op_a);
	y += (int)op_b((unsigned long)wide) + table_init.in.b + (int)ll;
out:
	return y;
}
