"""Valid C that gcc compiles must go through the pass: one op used in many
functions, inlined and cloned copies, folded functions, expressions the
front end cannot follow, deep nesting."""
from __future__ import annotations

import re
import subprocess

import pytest

from pvpass.link.elfobj import ElfObject
from pvpass.link.tableread import read_entries

from conftest import ARCH_FLAG, INCLUDE, TESTDATA, elflint, run_pvpass

OPS_H = TESTDATA / "pvpass/ops.h"

# The same op used directly in several functions, through a static inline
# helper, in a noinline function called with constants (.constprop clones),
# in one that takes a struct for one field (.isra), in functions gcc splits
# (.part, .cold), in two identical functions (-fipa-icf folds them), and two
# sites of one op that differ only in their clobber set, in one function.
MANY = r'''#include "%s"
void a(void) { PV_VCALL0(cpu.io_delay); }
void b(void) { PV_VCALL0(cpu.io_delay); }
static inline void helper(void) { PV_VCALL0(cpu.io_delay); }
void c1(void) { helper(); }
void c2(int n) { while (n--) helper(); }
static __attribute__((noinline)) unsigned long scaled(unsigned long k, int twice)
{ unsigned long r = PV_CALL0(unsigned long, cpu.read_tsc) * k; return twice ? r * 2 : r; }
unsigned long d1(void) { return scaled(3, 1); }
unsigned long d2(void) { return scaled(5, 1) + scaled(7, 1); }
extern void slow_path(int) __attribute__((cold));
int big[64];
void e(int x) { if (__builtin_expect(x > 100, 0)) { slow_path(x); PV_VCALL0(cpu.io_delay); } big[x & 63]++; }
struct big4 { long a, b, c, d; };
static __attribute__((noinline)) unsigned long by_field(struct big4 *p)
{ return p->a + PV_CALL0(unsigned long, cpu.read_tsc); }
unsigned long h1(struct big4 *p) { return by_field(p); }
unsigned long h2(struct big4 *p) { return by_field(p) + 1; }
int arr[100];
static void split(int x)
{
	if (__builtin_expect(x == 0, 1))
		return;
	PV_VCALL0(cpu.io_delay);
	for (int i = 0; i < 100; i++) arr[i] += x * i;
	for (int i = 0; i < 100; i++) arr[i] ^= arr[(i * 7) %% 100];
}
void s1(int x) { split(x); }
void s2(int x) { split(x + 1); }
void s3(int x) { split(x + 2); }
unsigned long f1(void) { return PV_CALLEE0(unsigned long, irq.save_fl); }
unsigned long f2(void) { return PV_CALLEE0(unsigned long, irq.save_fl); }
#ifdef __x86_64__
#define AX "rax"
#else
#define AX "eax"
#endif
void g(void)
{
	PV_VCALL0(cpu.io_delay);
	asm volatile(PVPASS_SITE(cpu.io_delay, AX) PVPASS_CALL
		     : : [pv_op] "m" (pv_ops.cpu.io_delay) : AX, "memory", "cc");
}
'''

FLAGS = [["-O0"], ["-O1"], ["-O2"], ["-Os"], ["-O2", "-ffunction-sections"],
         ["-O2", "-fipa-icf"], ["-O3"]]


def pv_calls(obj) -> int:
    """`call *` instructions relocated against pv_ops, counted by objdump."""
    out = subprocess.run(["objdump", "-dr", str(obj)], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    n = 0
    for i, line in enumerate(out):
        if re.search(r"\scall[lq]?\s+\*", line) and i + 1 < len(out) and re.search(r"R_\w+\s+pv_ops", out[i + 1]):
            n += 1
    return n


def compile_(src, obj, arch, flags):
    subprocess.run(["gcc", ARCH_FLAG[arch], "-fno-pie", "-I", str(INCLUDE), *flags, "-c", str(src),
                    "-o", str(obj)], check=True, capture_output=True)
    return obj


@pytest.mark.parametrize("arch", ["x86_64", "i386"])
@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: " ".join(f))
def test_one_op_in_many_functions(tmp, arch, flags):
    src = tmp / "many.c"
    src.write_text(MANY % OPS_H)
    obj = compile_(src, tmp / "many.o", arch, flags)
    out = tmp / "out.o"
    r = run_pvpass("link", str(obj), "--source", str(src), "-o", str(out), "--builtin", "--",
                   "-fno-pie", *flags)
    assert r.returncode == 0, r.stderr
    entries = read_entries(ElfObject.read(str(out)))
    assert len(entries) == pv_calls(obj) > 0
    assert len({(e.section, e.offset) for e in entries}) == len(entries)
    assert elflint(out) == elflint(obj)
    # and through the compiler wrapper
    cc = tmp / "cc.o"
    r = run_pvpass("cc", "--", "gcc", ARCH_FLAG[arch], "-fno-pie", "-I", str(INCLUDE), *flags,
                   "-c", str(src), "-o", str(cc))
    assert r.returncode == 0, r.stderr
    assert read_entries(ElfObject.read(str(cc))) == entries


def test_clones_are_exercised(tmp):
    """The source above really makes gcc clone, split and fold."""
    src = tmp / "many.c"
    src.write_text(MANY % OPS_H)
    names = set()
    for flags in (["-O2"], ["-O2", "-fipa-icf"]):
        obj = compile_(src, tmp / "m.o", "x86_64", flags)
        names |= {s.name for s in ElfObject.read(str(obj)).symbols if s.kind == "STT_FUNC"}
    for clone in (".constprop.", ".isra.", ".part."):
        assert any(clone in n for n in names), (clone, names)
    assert any(n.endswith(".cold") for n in names), names
    assert "helper" not in names          # only inlined copies


def test_clobber_masks_by_function(tmp):
    """Copies of sites of one op with the same instructions cannot be told
    apart, so each gets what every such site allows (docs/bad-input.md, Limits)."""
    src = tmp / "many.c"
    src.write_text(MANY % OPS_H)
    obj = compile_(src, tmp / "many.o", "i386", ["-O2"])
    out = tmp / "out.o"
    r = run_pvpass("link", str(obj), "--source", str(src), "-o", str(out), "--", "-fno-pie", "-O2")
    assert r.returncode == 0, r.stderr
    lo = ElfObject.read(str(out))
    funcs = sorted((s.value, s.value + s.size, s.name) for s in lo.symbols
                   if s.kind == "STT_FUNC" and s.size and lo.section_name_of(s) == ".text")
    by_func: dict[str, set[int]] = {}
    for e in read_entries(lo):
        if e.section == ".text":
            name = next(n for lo_, hi, n in funcs if lo_ <= e.offset < hi)
            by_func.setdefault(name, set()).add(e.clobbers)
    assert by_func["g"] == by_func["a"] == {1}      # eax only: the intersection
    assert by_func["f1"] == {1}                       # save_fl: callee-save, eax


# GNU C and C11 expressions around sites, each in a function of its own.
EXPRESSIONS = {
    "binop": "n = PV_CALL0(unsigned long, cpu.read_tsc) + PV_CALLEE0(unsigned long, irq.save_fl);",
    "mul": "n = PV_CALL0(unsigned long, cpu.read_tsc) * n - ({ n; }) * ({ n + 1; });",
    "ternary": "n = n ? PV_CALL0(unsigned long, cpu.read_tsc) : PV_CALLEE0(unsigned long, irq.save_fl);",
    "cast_shift": "n = (int)PV_CALL0(unsigned long, cpu.read_tsc) << 2;",
    "condition": "if (PV_CALL0(unsigned long, cpu.read_tsc) > 3 && n) n++;",
    "argument": "PV_VCALL1(irq.restore_fl, PV_CALLEE0(unsigned long, irq.save_fl) | 0x200);",
    "comma": "n = (PV_VCALL0(cpu.io_delay), 3);",
    "index": "int arr[2] = {0}; n = arr[PV_CALL0(unsigned long, cpu.read_tsc) & 1];",
    "elvis": "n = PV_CALL0(unsigned long, cpu.read_tsc) ?: 3;",
    "computed_goto": "static void *t[] = { &&l1 }; PV_VCALL0(cpu.io_delay); goto *t[0]; l1: ;",
    "generic": "n = _Generic(n, int: 1, default: 2) + PV_CALL0(unsigned long, cpu.read_tsc);",
    "extension": "n = __extension__ ({ PV_CALL0(unsigned long, cpu.read_tsc); }) + 1;",
    "complex": "_Complex double c = n; n = (int)__real__ c + (int)__imag__ c + (1i ? 1 : 0); PV_VCALL0(cpu.io_delay);",
    "thread": "static __thread int tl; n = tl + PV_CALL0(unsigned long, cpu.read_tsc);",
    "case_range": "switch (PV_CALL0(unsigned long, cpu.read_tsc)) { case 1 ... 3: n++; break; }",
}


def expressions_source(bodies: dict[str, str]) -> str:
    out = [f'#include "{OPS_H}"']
    for name, body in bodies.items():
        out.append(f"unsigned long f_{name}(int n)\n{{\n\t{body}\n\treturn n;\n}}")
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("arch", ["x86_64", "i386"])
def test_expressions_gcc_accepts_parse(tmp, arch):
    src = tmp / "expr.c"
    src.write_text(expressions_source(EXPRESSIONS))
    r = run_pvpass("scan", str(src), "--arch", arch, "--", "-fno-pie")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    import json
    funcs = {s["function"] for s in json.loads(r.stdout)["sites"]}
    assert funcs == {f"f_{n}" for n in EXPRESSIONS}
    obj = tmp / "expr.o"
    r = run_pvpass("cc", "--", "gcc", ARCH_FLAG[arch], "-fno-pie", "-O2", "-I", str(INCLUDE), "-c", str(src),
                   "-o", str(obj))
    assert r.returncode == 0, r.stderr
    assert len(read_entries(ElfObject.read(str(obj)))) == pv_calls(obj) > 0


# gcc takes these; pvpass's C parser does not: a nested function and an
# old-style designator.
UNFOLLOWED = {
    "nested": "int inner(int x) { return x + 1; } n = inner(n) + PV_CALL0(unsigned long, cpu.read_tsc);",
    "old_designator": "struct { int a; } z = { a: 1 }; n = z.a; PV_VCALL0(cpu.io_delay);",
}


@pytest.mark.parametrize("arch", ["x86_64", "i386"])
def test_c_pvpass_cannot_follow_is_a_warning(tmp, arch):
    src = tmp / "gnu.c"
    src.write_text(expressions_source({**UNFOLLOWED, "plain": "PV_VCALL0(cpu.io_delay);"}))
    r = run_pvpass("scan", str(src), "--arch", arch, "--format", "text", "--", "-fno-pie")
    assert r.returncode == 0, r.stderr
    warnings = [l for l in r.stderr.splitlines() if ": warning: " in l]
    assert len(warnings) == 2 and "Traceback" not in r.stderr, r.stderr
    assert all("gcc accepts" in w and "read from their asm statements alone" in w for w in warnings)
    assert re.match(rf"{re.escape(str(src))}:4:\d+: warning: ", warnings[0])
    # the build goes on, and the sites of those functions are still linked:
    # the build path reads every site from its asm statement alone
    # (pvpass/frontend/stmtsites.py), so there is nothing it does not follow
    obj = tmp / "gnu.o"
    r = run_pvpass("cc", "--", "gcc", ARCH_FLAG[arch], "-fno-pie", "-O2", "-I", str(INCLUDE), "-c", str(src),
                   "-o", str(obj))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    entries = read_entries(ElfObject.read(str(obj)))
    assert len(entries) == pv_calls(obj) == 3


def test_broken_c_is_still_an_error(tmp):
    src = tmp / "broken.c"
    src.write_text(expressions_source({"bad": "n = PV_CALL0(unsigned long, cpu.read_tsc) +;"}))
    r = run_pvpass("scan", str(src))
    assert r.returncode == 2 and f"{src}:4:" in r.stderr and "Traceback" not in r.stderr, r.stderr


def deep_source(n: int) -> str:
    return expressions_source({"deep": "n = " + "(" * n + "n + PV_CALL0(unsigned long, cpu.read_tsc)"
                                       + ")" * n + ";"})


@pytest.mark.parametrize("depth", [90, 1000, 10000])
def test_deep_nesting(tmp, depth):
    src = tmp / "deep.c"
    src.write_text(deep_source(depth))
    obj = tmp / "deep.o"
    r = run_pvpass("cc", "--", "gcc", "-O2", "-I", str(INCLUDE), "-c", str(src), "-o", str(obj))
    assert r.returncode == 0, r.stderr
    assert len(read_entries(ElfObject.read(str(obj)))) == 1


def test_too_deep_is_one_error(tmp):
    src = tmp / "deep.c"
    src.write_text(deep_source(60000))
    r = run_pvpass("scan", str(src), env={"PVPASS_CACHE": "0"})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    first = r.stderr.splitlines()[0]
    assert re.match(rf"{re.escape(str(src))}:4:\d+: error: nesting too deep", first), first
    assert len(r.stderr.splitlines()) == 3 and max(map(len, r.stderr.splitlines())) < 300


@pytest.mark.parametrize("flags", [["-O0"], ["-O2"]], ids=lambda f: " ".join(f))
def test_site_gcc_removed_as_unreachable(tmp, flags):
    """`if (0)`-style code is valid C: a warning, the build goes on, and the
    live sites are linked."""
    src = tmp / "dead.c"
    src.write_text(expressions_source({"dead": "if (n && 0) PV_VCALL0(cpu.io_delay);",
                                       "live": "PV_VCALL0(irq.irq_disable);"}))
    obj = tmp / "dead.o"
    r = run_pvpass("cc", "--", "gcc", "-fno-pie", *flags, "-I", str(INCLUDE), "-c", str(src), "-o", str(obj))
    assert r.returncode == 0, r.stderr
    assert f"{src}:4:" in r.stderr and "holds no copy of this site" in r.stderr and "warning" in r.stderr
    entries = read_entries(ElfObject.read(str(obj)))
    assert len(entries) == pv_calls(obj) == 1
    # a result-cache hit says the same warnings again, as ccache replays gcc's
    first = r.stderr
    r = run_pvpass("cc", "--", "gcc", "-fno-pie", *flags, "-I", str(INCLUDE), "-c", str(src), "-o", str(obj))
    assert r.returncode == 0 and r.stderr == first, r.stderr
    assert len(read_entries(ElfObject.read(str(obj)))) == 1
