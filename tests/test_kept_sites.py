"""Nothing lost without a word: every copy of an annotated site that gcc
keeps is in the object's table or named at its source line (issue 16),
and C that gcc rejects is an error. The copies gcc kept are counted by
tests/opscalls.py (pyelftools + capstone), apart from pvpass's finders."""
from __future__ import annotations

import random
import re

import pytest

from pvpass.link.elfobj import ElfObject
from pvpass.link.tableread import read_entries

from conftest import ARCH_FLAG, INCLUDE, gcc_c, run_pvpass
from gensites import source
from opscalls import ops_calls

NOCACHE = {"PVPASS_CACHE": "0"}

# The site: the 2007 eax-clobber site written by hand, its call an
# "m" operand; in a loop gcc holds &pv_ops in a register (i386 -O1:
# `call *0x8(%ecx)`, 3 bytes of a 7-byte copy).
HAND = r'''
struct irq_ops { void (*irq_disable)(void); void (*irq_enable)(void); };
struct ops { void *pad; struct irq_ops irq; };
struct ops pv_ops;
#define PVPASS_OPS pv_ops
#include <pvpass.h>
#define SITE(op) asm volatile(PVPASS_SITE(op, "eax") "pushl %%ecx; pushl %%edx; " PVPASS_CALL \
	"; popl %%edx; popl %%ecx" : : [pv_op] "m" (pv_ops.op) : "eax", "memory", "cc")
void loop(int n, int *p)
{
	for (int i = 0; i < n; i++) {
		SITE(irq.irq_disable);
		p[i] = i * 3;
		SITE(irq.irq_enable);
	}
}
'''


def _warnings(stderr: str) -> list[str]:
    return [l for l in stderr.splitlines() if "this copy of the site" in l]


@pytest.fixture(scope="module")
def hand(tmp_path_factory):
    d = tmp_path_factory.mktemp("hand")
    src = d / "hand.c"
    src.write_text(HAND)
    obj = gcc_c(src, d / "hand.o", "i386", ["-O1", "-fno-pie", "-I", str(INCLUDE)])
    return d, src, obj


def test_register_reached_copy_is_named_by_link_cc_lint(hand):
    d, src, obj = hand
    assert len(ops_calls(obj)) == 2 and not read_entries(ElfObject.read(str(obj)))
    r = run_pvpass("link", str(obj), "--source", str(src), "-o", str(d / "l.o"), "--", "-O1")
    assert r.returncode == 2 and not (d / "l.o").exists(), r.stderr
    assert re.match(r"\S*hand.c:12:3: error: .*calll \*4\(%ecx\).*7-byte copy is not tabled.*"
                    r'"i" \(&pv_ops.irq.irq_disable\).* \(and 1 more\)', r.stderr), r.stderr
    cc = ["gcc", "-m32", "-O1", "-fno-pie", "-I", str(INCLUDE), "-c", str(src)]
    r = run_pvpass("cc", "--", *cc, "-o", str(d / "c.o"), env=NOCACHE)
    w = _warnings(r.stderr)
    assert r.returncode == 0 and len(w) == 2 and all(": warning: " in l for l in w), r.stderr
    assert ":12:3: " in w[0] and ":14:3: " in w[1]
    r = run_pvpass("cc", "--", *cc, "-Werror", "-o", str(d / "e.o"), env=NOCACHE)
    assert r.returncode == 2 and ": error: " in r.stderr and not (d / "e.o").exists(), r.stderr
    r = run_pvpass("lint", "--arch", "i386", str(src), "--", "-O1", "-fno-pie")
    assert r.returncode == 1 and r.stderr.count("[PV010]") == 2, r.stderr
    r = run_pvpass("lint", "--arch", "i386", str(src), "--", "-O2", "-fno-pie")   # gcc: call *disp32
    assert r.returncode == 0 and "PV010" not in r.stderr, r.stderr


SMALL = r'''
struct cpu_ops { unsigned long (*read)(void); void (*io_delay)(void); };
struct irq_ops { void (*irq_disable)(void); void (*irq_enable)(void); };
struct ops { struct cpu_ops cpu; struct irq_ops irq; };
struct ops pv_ops;
#define PVPASS_OPS pv_ops
#include <pvpass.h>
void loop(int n, int *p)
{
	for (int i = 0; i < n; i++) {
		PV_VCALL0(irq.irq_disable);
		p[i] = PV_CALL0(int, cpu.read);
		PV_VCALLEE0(irq.irq_enable);
	}
}
'''


@pytest.mark.parametrize("arch", ["i386", "x86_64"])
def test_pvpass_h_sites_are_tabled_at_O1(tmp, arch):
    """pvpass.h's macros call through "i" (&op) printed bare: gcc cannot
    put the ops object in a register (before, -O1 gave 0 of 3 tabled)."""
    src = tmp / "small.c"
    src.write_text(SMALL)
    cc = ["gcc", ARCH_FLAG[arch], "-O1", "-fno-pie", "-I", str(INCLUDE), "-c", str(src)]
    r = run_pvpass("cc", "--", *cc, "-o", str(tmp / "s.o"), env=NOCACHE)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    entries = read_entries(ElfObject.read(str(tmp / "s.o")))
    assert len(entries) == len(ops_calls(tmp / "s.o")) == 3


def test_pic_demo_is_named_per_copy(tmp):
    """-fPIC on the bundled demo: the GOT load sits 102 bytes before the
    call, which a 64-byte window missed (0 sites, no word)."""
    from pvpass.link.regcalls import reg_calls
    demo = INCLUDE.parent / "examples" / "demo" / "demo.c"
    rt = INCLUDE.parent / "runtime"
    cc = ["gcc", "-m64", "-O2", "-fPIC", "-I", str(INCLUDE), "-I", str(rt), "-c", str(demo)]
    r = run_pvpass("cc", "--", *cc, "-o", str(tmp / "d.o"), env=NOCACHE)
    kept = ops_calls(tmp / "d.o")
    assert r.returncode == 0 and len(_warnings(r.stderr)) == len(kept) == 7, r.stderr
    assert all("from the GOT (PIC code)" in l for l in _warnings(r.stderr))
    far = max(c.offset - c.load for c in reg_calls(ElfObject.read(str(tmp / "d.o"))))
    assert far > 64


BAD = {"missing_semicolon.c": "int f(void)\n{\n\tint x = 1\n\treturn x;\n}\n",
       "open_paren.c": "int f( {\n",
       "hello.c": "hello\n"}


@pytest.mark.parametrize("name", sorted(BAD))
@pytest.mark.parametrize("cmd", ["scan", "lint", "emit"])
def test_c_that_gcc_rejects_is_an_error(tmp, name, cmd):
    src = tmp / name
    src.write_text(BAD[name])
    import subprocess
    gcc = subprocess.run(["gcc", "-fsyntax-only", str(src)], capture_output=True, text=True)
    first = next(l for l in gcc.stderr.splitlines() if ": error: " in l)
    r = run_pvpass(cmd, str(src))
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stderr)
    assert r.stderr.splitlines()[0] == first, r.stderr


def test_valid_c_asks_no_compiler(tmp):
    """The compiler is asked (-fsyntax-only) only when pvpass's parse fails."""
    log = tmp / "log"
    cc = tmp / "cc"
    cc.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec gcc "$@"\n')
    cc.chmod(0o755)
    demo = INCLUDE.parent / "examples" / "demo" / "demo.c"
    r = run_pvpass("scan", str(demo), "--", "-I", str(INCLUDE.parent / "runtime"),
                   env={"PVPASS_CPP_CC": str(cc), **NOCACHE})
    assert r.returncode == 0, r.stderr
    assert "-fsyntax-only" not in log.read_text()
    (tmp / "bad.c").write_text(demo.read_text().replace("return (a * 31 + b * 7)", "return (a * 31 + b * 7"))
    r = run_pvpass("scan", str(tmp / "bad.c"), "--", "-I", str(INCLUDE.parent / "runtime"),
                   env={"PVPASS_CPP_CC": str(cc), **NOCACHE})
    assert r.returncode == 2 and "bad.c:" in r.stderr and "-fsyntax-only" in log.read_text(), r.stderr


# The matrix of the property test: a fixed-seed sample, one build per config.
MATRIX = [(o, pic, arch) for o in ("-O0", "-O1", "-O2", "-Os") for pic in ("-fPIC", "-fno-pic")
          for arch in ("i386", "x86_64")]
SAMPLE = sorted(random.Random(16).sample(range(len(MATRIX)), 8))


@pytest.mark.parametrize("cfg", SAMPLE)
def test_every_kept_copy_is_tabled_or_named(tmp, cfg):
    """Property: tabled copies + named losses == the copies gcc kept."""
    opt, pic, arch = MATRIX[cfg]
    src = tmp / "gen.c"
    src.write_text(source(cfg, 12))
    out = tmp / "g.o"
    r = run_pvpass("cc", "--", "gcc", ARCH_FLAG[arch], opt, pic, "-I", str(INCLUDE), "-c", str(src),
                   "-o", str(out), env=NOCACHE)
    assert r.returncode == 0, r.stderr
    kept = ops_calls(out)
    tabled = read_entries(ElfObject.read(str(out)))
    named = _warnings(r.stderr)
    assert kept and len(tabled) + len(named) == len(kept), (MATRIX[cfg], len(tabled), r.stderr)


def test_patch_names_the_copies_the_table_lacks(hand):
    """`pvpass cc` warned and tabled the rest; `patch` says it again for
    the copies it cannot reach."""
    d, src, _ = hand
    mixed = d / "mixed.c"
    mixed.write_text(HAND + "void once(void) { PV_VCALL0(irq.irq_enable); }\n")
    obj = d / "m.o"
    cc = ["gcc", "-m32", "-O1", "-fno-pie", "-I", str(INCLUDE), "-c", str(mixed), "-o", str(obj)]
    r = run_pvpass("cc", "--", *cc, env=NOCACHE)
    assert r.returncode == 0 and len(_warnings(r.stderr)) == 2, r.stderr
    assert len(read_entries(ElfObject.read(str(obj)))) == 1
    r = run_pvpass("patch", str(obj), "--source", str(mixed), "--backend", "native", "-o", str(d / "p.o"),
                   "--", "-O1", "-fno-pie")
    assert r.returncode == 0 and len(_warnings(r.stderr)) == 2, r.stderr
