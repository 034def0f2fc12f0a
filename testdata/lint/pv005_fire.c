struct dup_ops {
	void (*first)(void);
	union {
		void (*a)(void);
		void (*b)(void);
	} u;
	void *pad[300];
	void (*late)(void);
};
extern struct dup_ops pv_ops;
#define PVPASS_OPS pv_ops
#include <pvpass.h>

void f(void)
{
	PV_VCALL0(first);
}
