/* The VMI "ROM": code at a fixed address, mapped by the program at start-up
 * (vmi_rom.bin, built from vmi_rom.S), with its state in the page after it.
 * Every entry is callee-save: it changes only the return register. */
#ifndef VMI_ROM_H
#define VMI_ROM_H
#define VMI_ROM_BASE	0x50000000
#define VMI_ROM_SIZE	0x1000
#define VMI_STATE	(VMI_ROM_BASE + VMI_ROM_SIZE)	/* the ROM's RAM page */
/* entry points: offsets into the ROM */
#define VMI_SAVE_FL	0x00
#define VMI_RESTORE_FL	0x20
#define VMI_IRQ_DISABLE	0x40
#define VMI_IRQ_ENABLE	0x60
#define VMI_PTE_VAL	0x80
#define VMI_IO_DELAY	0xa0
#define VMI_MIX		0xc0
#endif
