/* pvpass_rt.c -- apply pvpass patch records to the running program.
 * Walks __parainstructions (the kernel's table layout) and, for each site,
 * copies the chosen backend's bytes over it, computing a call's rel32 for
 * the site's own address, with the text made writable for the copy. */
#include "pvpass_rt.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

const struct pvpass_patch *pvpass_find(const char *backend, const struct paravirt_patch_site *s)
{
	const struct pvpass_patch *p;

	for (p = __pvpass_patches; p < __pvpass_patches_end; p++)
		if (p->type == s->type && p->len == s->len &&
		    p->clobbers == s->clobbers && strcmp(p->backend, backend) == 0)
			return p;
	return 0;
}

static int protect(void *addr, size_t len, int prot)
{
	uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t start = (uintptr_t)addr & ~(pg - 1);
	uintptr_t end = ((uintptr_t)addr + len + pg - 1) & ~(pg - 1);

	return mprotect((void *)start, end - start, prot);
}

int pvpass_apply(const char *backend, unsigned *kept)
{
	struct paravirt_patch_site *s;
	unsigned char buf[256];
	unsigned left = 0;
	int done = 0;

	for (s = __parainstructions; s < __parainstructions_end; s++) {
		const struct pvpass_patch *p = pvpass_find(backend, s);

		if (!p) {
			left++;
			continue;
		}
		memcpy(buf, p->code, s->len);
		if (p->call_off != 0xff) {
			intptr_t next = (intptr_t)(s->instr + p->call_off + 5);
			intptr_t delta = (intptr_t)p->target - next;
			int32_t rel = (int32_t)delta;

			if ((intptr_t)rel != delta || p->call_off + 5 > s->len) {
				errno = ERANGE;
				return -1;
			}
			memcpy(buf + p->call_off + 1, &rel, 4);
		}
		if (p->pcrel_off != 0xff) {
			/* The linker resolved the disp32 for the copy in .pvpass.code;
			 * the same target seen from the site (the kernel's alternatives
			 * code does this too). */
			int32_t disp;
			intptr_t delta;

			memcpy(&disp, buf + p->pcrel_off, 4);
			delta = (intptr_t)disp + (intptr_t)(p->code - s->instr);
			disp = (int32_t)delta;
			if ((intptr_t)disp != delta || p->pcrel_off + 4 > s->len) {
				errno = ERANGE;
				return -1;
			}
			memcpy(buf + p->pcrel_off, &disp, 4);
		}
		if (protect(s->instr, s->len, PROT_READ | PROT_WRITE | PROT_EXEC))
			return -1;
		memcpy(s->instr, buf, s->len);
		if (protect(s->instr, s->len, PROT_READ | PROT_EXEC))
			return -1;
		__builtin___clear_cache((char *)s->instr, (char *)s->instr + s->len);
		done++;
	}
	if (kept)
		*kept = left;
	return done;
}
