/* The VMI ROM: position-dependent code for VMI_ROM_BASE, flattened to
 * vmi_rom.bin with objcopy -O binary. Entries at fixed offsets (vmi_rom.h),
 * each callee-save: only the return register changes. */
#include "vmi_rom.h"
	.text
#ifdef __x86_64__
#define ARG1 %rdi
#define ARG1L %edi
#define ARG2 %rsi
#define RET %rax
#else
	.code32
#define ARG1 %eax
#define ARG1L %eax
#define ARG2 %edx
#define RET %eax
#endif
	.org VMI_SAVE_FL
	movl VMI_STATE, %eax
	ret
	.org VMI_RESTORE_FL
	movl ARG1L, VMI_STATE
	ret
	.org VMI_IRQ_DISABLE
	movl $0, VMI_STATE
	ret
	.org VMI_IRQ_ENABLE
	movl $0x200, VMI_STATE
	ret
	.org VMI_PTE_VAL
	mov ARG1, RET
	ret
	.org VMI_IO_DELAY
	ret
	.org VMI_MIX			/* a * 31 + b * 7 */
	imul $31, ARG1, RET
	push ARG2
	imul $7, ARG2, ARG2
	add ARG2, RET
	pop ARG2
	ret
	.org VMI_ROM_SIZE - 1
	.byte 0xcc
