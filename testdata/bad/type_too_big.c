/* issue 11: an op whose type number is over 255 (its offset / pointer size)
 * cannot be recorded in the table's one-byte type field: emit raised
 * ValueError; scan and verify exited 0, lint flagged the type. */
struct big_ops {
	void *pad[300];
	void (*late)(void);
};
extern struct big_ops pv_ops;
#define PVPASS_OPS pv_ops
#include <pvpass.h>

void f(void)
{
	PV_VCALL0(late);
}
