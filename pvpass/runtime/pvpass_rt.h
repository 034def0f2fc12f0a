/* pvpass_rt.h -- the run-time patcher shipped with pvpass.
 *
 * Link your program with the linker-script fragment (`pvpass ldscript`)
 * so __parainstructions and __pvpass_patches bracket the tables the link
 * step wrote, then call pvpass_apply() early, before other threads run. */
#ifndef PVPASS_RT_H
#define PVPASS_RT_H

/* The kernel's struct paravirt_patch_site: one per site copy. */
struct paravirt_patch_site {
	unsigned char *instr;		/* original instructions */
	unsigned char type;		/* op type number */
	unsigned char len;		/* length of original instructions */
	unsigned short clobbers;	/* registers the site lets the callee clobber */
};

/* One per (backend, type, len, clobbers): the bytes for such a site. */
struct pvpass_patch {
	const char *backend;		/* the backend's name */
	const unsigned char *code;	/* len bytes; a call's rel32 is filled in here */
	void *target;			/* the call's target, if call_off != 0xff */
	unsigned char type, len;
	unsigned short clobbers;
	unsigned char call_off, kind;	/* kind: 1 inline, 2 call, 3 trampoline, 4 nop */
	unsigned char pcrel_off;	/* a RIP-relative disp32 in code, if not 0xff: */
	unsigned char pad2;		/* it is rebased from code to the site */
};

extern struct paravirt_patch_site __parainstructions[], __parainstructions_end[];
extern const struct pvpass_patch __pvpass_patches[], __pvpass_patches_end[];

/* Patch every site for `backend`. Returns the number of sites patched (and
 * the number left as indirect calls in *kept, if not NULL), or -1 with errno
 * set if the text could not be made writable or a call is out of range. */
int pvpass_apply(const char *backend, unsigned *kept);

/* The record pvpass_apply would use for one site, or NULL. */
const struct pvpass_patch *pvpass_find(const char *backend, const struct paravirt_patch_site *s);

#endif
