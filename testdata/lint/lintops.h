/* Ops for the lint tests (x86-64). */
struct lint_ops {
	unsigned long (*save_fl)(void);
	void (*io_delay)(void);
	void (*set_pte)(unsigned long *, unsigned long);
	unsigned long (*read_cr2)(void);
};
extern struct lint_ops pv_ops;
#define PVPASS_OPS pv_ops
#include <pvpass.h>
