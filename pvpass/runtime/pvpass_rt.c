/* pvpass_rt.c -- apply pvpass patch records to the running program.
 * Walks __parainstructions (the kernel's table layout) and, for each site,
 * copies the chosen backend's bytes over it, computing a call's rel32 for
 * the site's own address. All or nothing: every site's patch is prepared
 * and checked before the first byte is written. Each page written keeps
 * the protection it had (read from /proc/self/maps), plus write access
 * only while the bytes are copied. */
#include "pvpass_rt.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
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

/* The bytes record p puts over site s, in buf (s->len bytes); -1 with errno
 * set when they cannot be made for the site's address. */
static int prepare(const struct paravirt_patch_site *s, const struct pvpass_patch *p,
		   unsigned char *buf)
{
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
	return 0;
}

/* The mapping page_prot found last: sites mostly share one text mapping,
 * and write_text gives every page back the protection it read, so it stays
 * true during one apply (reset at its start). */
static unsigned long seen_lo, seen_hi;
static int seen_prot = -1;

/* The protection of the mapping holding addr, from /proc/self/maps; -1 if
 * no mapping holds it. */
static int page_prot(uintptr_t addr)
{
	FILE *f;
	unsigned long lo, hi;
	char perms[5];
	int prot = -1;

	if (seen_prot >= 0 && seen_lo <= addr && addr < seen_hi)
		return seen_prot;
	f = fopen("/proc/self/maps", "r");
	if (!f)
		return -1;
	while (fscanf(f, "%lx-%lx %4s%*[^\n]", &lo, &hi, perms) == 3) {
		if (lo <= addr && addr < hi) {
			prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
			       (perms[2] == 'x' ? PROT_EXEC : 0);
			seen_lo = lo, seen_hi = hi, seen_prot = prot;
			break;
		}
	}
	fclose(f);
	if (prot < 0)
		errno = EFAULT;
	return prot;
}

/* Copy len bytes to dst, page by page: each page made writable, written,
 * and given back the protection it had. */
static int write_text(unsigned char *dst, const unsigned char *src, size_t len)
{
	uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t a = (uintptr_t)dst, end = a + len;

	while (a < end) {
		uintptr_t page = a & ~(pg - 1), stop = page + pg < end ? page + pg : end;
		int prot = page_prot(page);

		if (prot < 0)
			return -1;
		if (!(prot & PROT_WRITE) && mprotect((void *)page, pg, prot | PROT_WRITE))
			return -1;
		memcpy((void *)a, src + (a - (uintptr_t)dst), stop - a);
		if (!(prot & PROT_WRITE) && mprotect((void *)page, pg, prot))
			return -1;
		a = stop;
	}
	__builtin___clear_cache((char *)dst, (char *)dst + len);
	return 0;
}

int pvpass_apply_report(const char *backend, struct pvpass_report *r)
{
	struct paravirt_patch_site *s;
	unsigned char buf[256];

	memset(r, 0, sizeof(*r));
	seen_prot = -1;		/* mappings may have changed since the last apply */
	/* check every site first: nothing is written unless all can be (the
	 * count of kept sites is complete even when one fails) */
	for (s = __parainstructions; s < __parainstructions_end; s++) {
		const struct pvpass_patch *p = pvpass_find(backend, s);

		if (!p)
			r->kept++;
		else if (!r->failed && (prepare(s, p, buf) || page_prot((uintptr_t)s->instr) < 0 ||
					page_prot((uintptr_t)s->instr + s->len - 1) < 0)) {
			r->failed = s;
			r->error = errno;
		}
	}
	if (r->failed)
		return -1;
	for (s = __parainstructions; s < __parainstructions_end; s++) {
		const struct pvpass_patch *p = pvpass_find(backend, s);

		if (!p)
			continue;
		if (prepare(s, p, buf) || write_text(s->instr, buf, s->len)) {
			r->failed = s;
			r->error = errno;
			return -1;
		}
		r->patched++;
	}
	return (int)r->patched;
}

int pvpass_apply(const char *backend, unsigned *kept)
{
	struct pvpass_report r;
	int n = pvpass_apply_report(backend, &r);

	if (kept)
		*kept = r.kept;
	if (n < 0)
		errno = r.error;
	return n;
}
