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

/* What pvpass_apply_report did: sites patched, sites left as indirect calls
 * (no record for the backend), and on failure the site it failed on and
 * the errno value. */
struct pvpass_report {
	unsigned patched, kept;
	const struct paravirt_patch_site *failed;
	int error;
};

/* Patch every site for `backend`, all or nothing: every site's patch is
 * checked before any is written. Returns the number of sites patched, or
 * -1 (errno set: ERANGE for a call out of rel32 range, EFAULT for a site
 * outside any mapping, or mprotect's) with r->failed naming the site and
 * r->patched the sites written before a failure while writing (0 when the
 * check failed). Each page written keeps the protection it had. */
int pvpass_apply_report(const char *backend, struct pvpass_report *r);

/* pvpass_apply_report's count, with the number of sites left as indirect
 * calls in *kept (if not NULL; set on failure too). */
int pvpass_apply(const char *backend, unsigned *kept);

/* The record pvpass_apply would use for one site, or NULL. */
const struct pvpass_patch *pvpass_find(const char *backend, const struct paravirt_patch_site *s);

#endif
