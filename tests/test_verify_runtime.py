"""The run-time patcher (pvpass_rt.c) on hand-made tables: it is all or
nothing (a call out of rel32 range leaves every site untouched), reports
what it patched and kept even on failure, and gives every page it wrote
the protection it had (R-X stays R-X, RWX stays RWX)."""
from __future__ import annotations

import subprocess

import pytest

from conftest import ROOT

RT = ROOT / "pvpass/runtime"

PROGRAM = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include "pvpass_rt.h"

static const unsigned char nops6[6] = {0x90, 0x90, 0x90, 0x90, 0x90, 0x90};
static const unsigned char call6[6] = {0xe8, 0, 0, 0, 0, 0x90};

/* four sites: 0 and 1 patched by "good", 2 by no backend, 3 (outside any
 * mapping) only by "bad", which must then patch nothing */
struct paravirt_patch_site sites[4];
struct pvpass_patch recs[4] = {	/* ..., call_off, kind, pcrel_off (0xff: none) */
	{ "good", nops6, 0, 1, 6, 1, 0xff, 4, 0xff },
	{ "good", call6, 0, 2, 6, 1, 0, 2, 0xff },	/* target: set below */
	{ "bad", nops6, 0, 1, 6, 1, 0xff, 4, 0xff },
	{ "bad", nops6, 0, 3, 6, 1, 0xff, 4, 0xff },
};
asm(".globl __parainstructions, __parainstructions_end, __pvpass_patches, __pvpass_patches_end\n"
    ".set __parainstructions, sites\n.set __parainstructions_end, sites + 4 * SITE_SIZE\n"
    ".set __pvpass_patches, recs\n.set __pvpass_patches_end, recs + 4 * REC_SIZE\n");

static const char *perms(void *addr)
{
	static char out[5];
	unsigned long lo, hi, a = (unsigned long)addr;
	FILE *f = fopen("/proc/self/maps", "r");
	while (fscanf(f, "%lx-%lx %4s%*[^\n]", &lo, &hi, out) == 3)
		if (lo <= a && a < hi)
			break;
	fclose(f);
	return out;
}

int main(void)
{
	unsigned char *rx = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned char *rwx = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct pvpass_report r;
	unsigned kept = 99;
	int rel;
	int n;

	memset(rx, 0xcc, 4096);
	memset(rwx, 0xcc, 4096);
	mprotect(rx, 4096, PROT_READ | PROT_EXEC);
	sites[0] = (struct paravirt_patch_site){ rx + 100, 1, 6, 1 };
	sites[1] = (struct paravirt_patch_site){ rwx + 200, 2, 6, 1 };
	sites[2] = (struct paravirt_patch_site){ rx + 300, 9, 6, 1 };
	sites[3] = (struct paravirt_patch_site){ (unsigned char *)64, 3, 6, 1 };
	recs[1].target = rwx + 1000;

	n = pvpass_apply_report("bad", &r);
	printf("bad %d patched %u kept %u failed %d efault %d untouched %d\n", n, r.patched, r.kept,
	       (int)(r.failed - sites), r.error == EFAULT, rx[100] == 0xcc && rwx[200] == 0xcc);
	n = pvpass_apply("bad", &kept);
	printf("bad-compat %d kept %u efault %d\n", n, kept, errno == EFAULT);
	n = pvpass_apply("good", &kept);
	memcpy(&rel, rwx + 201, 4);
	printf("good %d kept %u patched %d %d %d\n", n, kept, rx[100] == 0x90 && rx[105] == 0x90,
	       rwx[200] == 0xe8 && rel == 1000 - 205, rx[300] == 0xcc);
	printf("perms %s", perms(rx));
	printf(" %s\n", perms(rwx));
	return 0;
}
"""


@pytest.mark.parametrize("arch,site,rec", [("-m64", 16, 32), ("-m32", 8, 20)])
def test_runtime_is_all_or_nothing_and_keeps_protections(tmp, arch, site, rec):
    src = tmp / "rt_test.c"
    src.write_text(PROGRAM.replace("SITE_SIZE", str(site)).replace("REC_SIZE", str(rec)))
    exe = tmp / "rt_test"
    subprocess.run(["gcc", arch, "-O2", "-Wall", "-Werror", "-no-pie", f"-I{RT}", str(src),
                    str(RT / "pvpass_rt.c"), "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["bad -1 patched 0 kept 2 failed 3 efault 1 untouched 1",
                   "bad-compat -1 kept 2 efault 1",
                   "good 2 kept 2 patched 1 1 1",
                   "perms r-xp rwxp"], out
