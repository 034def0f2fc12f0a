struct dup_ops {
	void (*first)(void);
	struct {
		void (*a)(void);
		void (*b)(void);
	} u;
	void *pad[30];
	void (*late)(void);
};
extern struct dup_ops pv_ops;
#define PVPASS_OPS pv_ops
#include <pvpass.h>

void f(void)
{
	PV_VCALL0(first);
}
