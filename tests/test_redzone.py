"""The x86-64 red zone (psABI 3.2.2: the 128 bytes below %rsp) and pvpass.h.

gcc takes an asm's `call` for no call, so in a function it compiles as a leaf
it keeps data below %rsp across a site, where the return address, the
target's frame, a patched-in direct call or a trampoline land. pvpass.h steps
%rsp over the red zone around every x86-64 site, and keeps a frame pointer
there so that the unwind info stays right. One leaf function per site kind,
built with real gcc at -O1/-O2/-O3/-Os: as shipped, with the step but no
frame pointer, without the step, and with the kernel's ASM_CALL_CONSTRAINT
(an %rsp register variable as an in-out operand) instead of it; gcc's code
is read with capstone, its .eh_frame with pyelftools, and the programs run
unpatched and patched (direct call, trampoline)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from capstone import CS_ARCH_X86, CS_MODE_64, Cs
from capstone.x86 import X86_OP_MEM, X86_REG_RBP, X86_REG_RSP
from elftools.dwarf.callframe import FDE
from elftools.elf.elffile import ELFFile

from conftest import INCLUDE, run_pvpass, shared_build

SRC = r"""
#include <stdio.h>
#include <string.h>

struct rz_ops { unsigned long (*f)(unsigned long); unsigned long (*g)(unsigned long); };
struct rz_ops pv_ops;
#define PVPASS_OPS pv_ops
#include <pvpass.h>
#include <pvpass_rt.h>

#if defined(RZ_BARE) || defined(RZ_KERNEL) || defined(RZ_KERNEL_LOCAL) || defined(RZ_NOFRAME)
#undef PVPASS_RZ_FRAME
#define PVPASS_RZ_FRAME
#endif
#if defined(RZ_BARE) || defined(RZ_KERNEL) || defined(RZ_KERNEL_LOCAL)
#undef PVPASS_RZ_SKIP
#undef PVPASS_RZ_END
#define PVPASS_RZ_SKIP
#define PVPASS_RZ_END
#endif
#ifdef RZ_KERNEL		/* arch/x86/include/asm/asm.h: ASM_CALL_CONSTRAINT */
register unsigned long current_stack_pointer __asm__("rsp");
#undef __PV_C_OUT
#define __PV_C_OUT "=D" (__pv_di), "=S" (__pv_si), "=d" (__pv_dx), "=c" (__pv_cx), \
	"+r" (current_stack_pointer)
#endif
#ifdef RZ_KERNEL_LOCAL		/* the same with a local register variable */
#undef __PV_DECL
#define __PV_DECL register unsigned long __pv_sp __asm__("rsp"); \
	unsigned long __pv_ax, __pv_di = 0, __pv_si = 0, __pv_dx = 0, __pv_cx = 0
#undef __PV_C_OUT
#define __PV_C_OUT "=D" (__pv_di), "=S" (__pv_si), "=d" (__pv_dx), "=c" (__pv_cx), "+r" (__pv_sp)
#endif

/* Live data in memory across the site, and no call gcc can see. */
#define LEAF(name, call)						\
unsigned long __attribute__((noinline)) name(const unsigned long *p, unsigned long n) \
{									\
	volatile unsigned long a[8];					\
	unsigned long s = 0, i;						\
	for (i = 0; i < 8; i++)						\
		a[i] = p[i] * n + i;					\
	s += call;							\
	for (i = 0; i < 8; i++)						\
		s += a[i];						\
	return s;							\
}
LEAF(leaf_f, PV_CALL1(unsigned long, f, n))
#ifndef RZ_C_ONLY
LEAF(leaf_g, PV_CALLEE1(unsigned long, g, n))
#endif

/* Targets with frames of their own, below the caller's %rsp. */
static unsigned long __attribute__((noinline)) c_f(unsigned long n)
{
	volatile unsigned long junk[16];
	int i;
	for (i = 0; i < 16; i++)
		junk[i] = 0xdead0000 + i;
	return n + junk[3] - junk[3];
}
static unsigned long __attribute__((noinline)) c_g(unsigned long n) { return c_f(n) + 1; }
static const struct rz_ops c_ops = { c_f, c_g };

int main(int argc, char **argv)
{
	const unsigned long p[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	unsigned long want = 3, i;

	pv_ops = c_ops;
	if (argc > 1 && strcmp(argv[1], "patched") == 0 && pvpass_apply("c_ops", 0) < 0)
		return 2;
	for (i = 0; i < 8; i++)
		want += p[i] * 3 + i;
	printf("f=%s", leaf_f(p, 3) == want ? "right" : "wrong");
#ifndef RZ_C_ONLY
	printf(" g=%s", leaf_g(p, 3) == want + 1 ? "right" : "wrong");
#endif
	printf("\n");
	return 0;
}
"""

OPTS = ("-O1", "-O2", "-O3", "-Os")
# variant -> (defines, leaf functions)
VARIANTS = {
    "pvpass.h": ([], ("leaf_f", "leaf_g")),
    "step without frame": (["-DRZ_NOFRAME"], ("leaf_f", "leaf_g")),
    "no step": (["-DRZ_BARE"], ("leaf_f", "leaf_g")),
    "kernel": (["-DRZ_KERNEL", "-DRZ_C_ONLY"], ("leaf_f",)),
    "kernel, local": (["-DRZ_KERNEL_LOCAL", "-DRZ_C_ONLY"], ("leaf_f",)),
}


def _pvpass_out(*args: str) -> str:
    r = run_pvpass(*args)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def _tree(d: Path) -> tuple[Path, str, str]:
    (d / "rz.c").write_text(SRC)
    rt = _pvpass_out("--runtime-dir")
    subprocess.run(["gcc", "-O2", "-fno-pie", "-c", f"{rt}/pvpass_rt.c", "-I", rt, "-o", str(d / "rt.o")],
                   check=True, capture_output=True)
    return d, rt, _pvpass_out("ldscript", "--path")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return _tree(tmp_path_factory.mktemp("redzone"))


def _build(tree, src: str, name: str, flags: list[str]) -> tuple[Path, Path]:
    """(object, program): `src` compiled with `pvpass cc`, linked with the runtime."""
    d, rt, ldscript = tree
    obj, exe = d / f"{name}.o", d / name
    subprocess.run([sys.executable, "-m", "pvpass", "cc", "--", "gcc", *flags, "-fno-pie",
                    "-I", str(INCLUDE), "-I", rt, "-c", str(d / src), "-o", str(obj)],
                   check=True, capture_output=True)
    subprocess.run(["gcc", "-no-pie", str(obj), str(d / "rt.o"), "-o", str(exe), f"-Wl,-T,{ldscript}"],
                   check=True, capture_output=True)
    return obj, exe


def _names():
    return {(opt, variant): f"rz{opt}_{i}" for opt in OPTS for i, variant in enumerate(VARIANTS)}


@pytest.fixture(scope="module")
def builds():
    """(opt, variant) -> (object, program), each built with `pvpass cc`, once
    per test run (the xdist workers share them)."""
    def build(d: Path) -> None:
        t = _tree(d)
        for (opt, variant), name in _names().items():
            _build(t, "rz.c", name, [opt, *VARIANTS[variant][0]])
    d = shared_build("redzone", build)
    return {k: (d / f"{name}.o", d / name) for k, name in _names().items()}


def _run(exe: Path, *args: str) -> str:
    r = subprocess.run([str(exe), *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.strip()


@pytest.mark.parametrize("opt", OPTS)
def test_only_the_step_keeps_a_leaf_callers_red_zone(builds, opt):
    """Wrong results without the step, unpatched and patched alike; the
    kernel's constraint does not help; right with pvpass.h."""
    got = {v: (_run(exe), _run(exe, "patched")) for (o, v), (_, exe) in builds.items() if o == opt}
    assert got == {
        "pvpass.h": ("f=right g=right",) * 2,
        "step without frame": ("f=right g=right",) * 2,
        "no step": ("f=wrong g=wrong",) * 2,
        "kernel": ("f=wrong",) * 2,
        "kernel, local": ("f=wrong",) * 2,
    }


def test_patched_sites_are_a_direct_call_and_a_trampoline(builds, tree):
    d, rt, _ = tree
    obj, _ = builds["-O2", "pvpass.h"]
    out = _pvpass_out("show", str(obj), "--source", str(d / "rz.c"), "--backend", "c_ops",
                      "--", "-I", str(INCLUDE), "-I", rt)
    assert "after:  call c_f;" in out
    assert "around c_g" in out and "after:  call __pvpass_tramp_c_g" in out


def _function(obj: Path, name: str):
    """Capstone's instructions of one function of an object or program."""
    with open(obj, "rb") as f:
        elf = ELFFile(f)
        sym = elf.get_section_by_name(".symtab").get_symbol_by_name(name)[0]
        sec = elf.get_section(sym["st_shndx"])
        off = sym["st_value"] - sec["sh_addr"]
        code = sec.data()[off:off + sym["st_size"]]
    md = Cs(CS_ARCH_X86, CS_MODE_64)
    md.detail = True
    return list(md.disasm(code, sym["st_value"]))


def _below_rsp(insns) -> list[int]:
    """Displacements of memory operands below %rsp: %rsp-based, or %rbp-based
    after `mov rbp, rsp` (the callers here allocate no frame: _moves_rsp)."""
    bases = {X86_REG_RSP}
    if any(i.mnemonic == "mov" and i.op_str == "rbp, rsp" for i in insns):
        bases.add(X86_REG_RBP)
    return [op.mem.disp for i in insns for op in i.operands
            if op.type == X86_OP_MEM and op.mem.base in bases and op.mem.disp < 0]


def _moves_rsp(i) -> bool:
    """Writes %rsp other than by push/pop/call/ret/leave: a frame, or the step."""
    return X86_REG_RSP in i.regs_access()[1] and i.mnemonic not in ("push", "pop", "call", "ret", "leave")


def _table(obj: Path) -> list[dict]:
    return json.loads(_pvpass_out("table", str(obj), "--format", "json"))["entries"]


@pytest.mark.parametrize("opt", OPTS)
def test_gcc_keeps_the_red_zone_and_the_step_brackets_the_site(builds, opt):
    for variant, (_, leaves) in VARIANTS.items():
        obj, _ = builds[opt, variant]
        for fn in leaves:
            insns = _function(obj, fn)
            calls = [k for k, i in enumerate(insns) if i.mnemonic == "call"]
            assert len(calls) == 1, (variant, fn)
            # gcc stores below %rsp and allocates no frame, whichever variant
            # (pvpass.h's callers keep a frame pointer equal to %rsp)
            assert _below_rsp(insns), (variant, fn)
            assert min(_below_rsp(insns)) >= -128
            moves = [(i.mnemonic, i.op_str) for i in insns if _moves_rsp(i)]
            k = calls[0]
            if variant in ("pvpass.h", "step without frame"):
                assert moves == [("lea", "rsp, [rsp - 0x80]"), ("and", "rsp, 0xfffffffffffffff0"),
                                 ("mov", "rsp, qword ptr [rsp + 8]"), ("lea", "rsp, [rsp + 0x80]")], fn
                assert [(i.mnemonic, i.op_str) for i in insns[k - 4:k]] == [
                    ("lea", "rsp, [rsp - 0x80]"), ("push", "rsp"), ("push", "qword ptr [rsp]"),
                    ("and", "rsp, 0xfffffffffffffff0")], fn
                assert [(i.mnemonic, i.op_str) for i in insns[k + 1:k + 3]] == [
                    ("mov", "rsp, qword ptr [rsp + 8]"), ("lea", "rsp, [rsp + 0x80]")], fn
            else:
                assert moves == [], (variant, fn)
    # The step lies outside the site: the table's sites are the same bytes
    # with and without it, and each starts at the call.
    fixed, bare = (_table(builds[opt, v][0]) for v in ("pvpass.h", "no step"))
    assert [(e["function"], e["len"], e["bytes"]) for e in fixed] == \
        [(e["function"], e["len"], e["bytes"]) for e in bare]
    obj = builds[opt, "pvpass.h"][0]
    for e in fixed:
        call = next(i for i in _function(obj, e["function"]) if i.mnemonic == "call")
        assert (call.address, call.size) == (e["offset"], e["len"])


def _cfa_reg(exe: Path, pc: int) -> int:
    """The CFA register (DWARF number) of .eh_frame's row for pc."""
    with open(exe, "rb") as f:
        for e in ELFFile(f).get_dwarf_info().EH_CFI_entries():
            if isinstance(e, FDE) and e["initial_location"] <= pc < e["initial_location"] + e["address_range"]:
                return [r for r in e.get_decoded().table if r["pc"] <= pc][-1]["cfa"].reg
    raise AssertionError(f"no FDE for {pc:#x}")


@pytest.mark.parametrize("opt", OPTS)
def test_unwind_info_at_the_site_is_frame_pointer_based(builds, opt):
    """The step has no CFI: with a %rsp-based CFA an unwinder stopped in the
    target would misplace the caller's frame. PVPASS_RZ_FRAME keeps a frame
    pointer in every function holding a site, so the rule there is %rbp-based
    (DWARF 6); without it gcc's rule is %rsp-based (DWARF 7)."""
    for variant, want in (("pvpass.h", 6), ("step without frame", 7)):
        exe = builds[opt, variant][1]
        for fn in VARIANTS[variant][1]:
            call = next(i for i in _function(exe, fn) if i.mnemonic == "call")
            # an unwinder looks up the return address - 1
            assert _cfa_reg(exe, call.address + call.size - 1) == want, (variant, fn)


def test_the_kernel_variants_really_pass_rsp(tree):
    """The constraint reaches the asm statement (so the failures above are
    the constraint's, not the test's)."""
    d, rt, _ = tree
    for defs, var in ((["-DRZ_KERNEL"], "current_stack_pointer"), (["-DRZ_KERNEL_LOCAL"], "__pv_sp")):
        r = subprocess.run(["gcc", "-E", "-DRZ_C_ONLY", *defs, "-I", str(INCLUDE), "-I", rt, str(d / "rz.c")],
                           check=True, capture_output=True, text=True)
        assert f'"+r" ({var})' in r.stdout


def test_i386_step_only_aligns(tree):
    """i386 has no red zone: its step only aligns %esp (tests/test_unwind.py
    runs it), and PVPASS_NO_STACK_ALIGN drops it, frame pointer and all."""
    d, rt, _ = tree
    for defs, want in (([], "and $-16, %%esp"), (["-DPVPASS_NO_STACK_ALIGN"], None)):
        r = subprocess.run(["gcc", "-m32", *defs, "-E", "-P", "-I", str(INCLUDE), "-x", "c", "-"],
                           input="#define PVPASS_OPS x\n#include <pvpass.h>\n[PVPASS_RZ_SKIP|PVPASS_RZ_END]\n",
                           check=True, capture_output=True, text=True)
        last = r.stdout.strip().splitlines()[-1]
        assert (want in last and "lea 128" not in last) if want else last == "[|]", last
    texts = []
    for defs in (["-DPVPASS_NO_STACK_ALIGN"], ["-DRZ_BARE"]):
        obj = d / f"i386{len(defs)}.o"
        subprocess.run(["gcc", "-m32", "-O2", "-fno-pie", *defs, "-I", str(INCLUDE), "-I", rt, "-c",
                        str(d / "rz.c"), "-o", str(obj)], check=True, capture_output=True)
        with open(obj, "rb") as f:
            texts.append(ELFFile(f).get_section_by_name(".text").data())
    assert texts[0] == texts[1]


@pytest.mark.parametrize("std", ["-std=c99", "-std=gnu11"])
@pytest.mark.parametrize("arch", ["-m64", "-m32"])
def test_header_compiles_in_strict_modes(tree, std, arch):
    d, rt, _ = tree
    r = subprocess.run(["gcc", arch, std, "-O2", "-fno-pie", "-Wall", "-Wextra", "-Werror", "-I", str(INCLUDE),
                        "-I", rt, "-c", str(d / "rz.c"), "-o", str(d / "std.o")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.skipif(shutil.which("clang") is None, reason="clang is not installed")
def test_clang_leaf_runs_right(tree):
    d, rt, ldscript = tree
    exe = d / "rz_clang"
    subprocess.run(["clang", "-O2", "-fno-pie", "-no-pie", "-I", str(INCLUDE), "-I", rt, str(d / "rz.c"),
                    str(d / "rt.o"), "-o", str(exe), f"-Wl,-T,{ldscript}"], check=True, capture_output=True)
    assert _run(exe) == "f=right g=right"


def test_no_red_zone_builds_drop_the_step(tree):
    """-mno-red-zone with PVPASS_NO_RED_ZONE: the sites as the kernel has
    them (no lea pair, no forced frame pointer), and the leaf caller right."""
    texts = {}
    for name, defs in (("bare", ["-DRZ_BARE"]), ("opt-out", ["-DPVPASS_NO_RED_ZONE"])):
        obj, exe = _build(tree, "rz.c", f"norz_{name}", ["-O2", "-mno-red-zone", *defs])
        assert (_run(exe), _run(exe, "patched")) == ("f=right g=right",) * 2
        with open(obj, "rb") as f:
            texts[name] = ELFFile(f).get_section_by_name(".text").data()
    assert texts["bare"] == texts["opt-out"]
    insns = list(Cs(CS_ARCH_X86, CS_MODE_64).disasm(texts["opt-out"], 0))
    assert not any(i.mnemonic == "lea" and i.op_str.startswith("rsp") for i in insns)


ALIGN_SRC = r"""
#include <stdio.h>
#include <string.h>

struct al_ops { unsigned long (*entry_sp)(unsigned long); };
struct al_ops pv_ops;
#define PVPASS_OPS pv_ops
#include <pvpass.h>
#include <pvpass_rt.h>

/* %rsp mod 16 at entry: 8 when the call was made with %rsp 16-aligned. */
__asm__(".text\n.globl rsp_at_entry\n.type rsp_at_entry, @function\nrsp_at_entry:\n"
	"\tmov %rsp, %rax\n\tand $15, %rax\n\tret\n.size rsp_at_entry, .-rsp_at_entry\n");
unsigned long rsp_at_entry(unsigned long);
static const struct al_ops c_ops = { rsp_at_entry };

/* Leaves holding 1-4 values across the site: gcc keeps them in pushed
 * callee-saved registers, so %rsp is 8 off after an odd number. */
volatile unsigned long in[4] = {1, 2, 3, 4}, out;
#define LIVE(k, ...) unsigned long __attribute__((noinline)) live##k(void)	\
{									\
	unsigned long v[4] = {in[0], in[1], in[2], in[3]};		\
	unsigned long r = PV_CALL1(unsigned long, entry_sp, v[0]);	\
	out = __VA_ARGS__;						\
	return r;							\
}
LIVE(1, v[0])
LIVE(2, v[0] * v[1])
LIVE(3, v[0] * v[1] + v[2])
LIVE(4, v[0] * v[1] + v[2] * v[3])

int main(int argc, char **argv)
{
	pv_ops = c_ops;
	if (argc > 1 && strcmp(argv[1], "patched") == 0 && pvpass_apply("c_ops", 0) < 0)
		return 2;
	printf("%lu %lu %lu %lu\n", live1(), live2(), live3(), live4());
	return 0;
}
"""


@pytest.mark.parametrize("opt", OPTS)
def test_sites_call_with_the_stack_aligned(tree, opt):
    """psABI 3.2.2: %rsp is 16-aligned at a call. gcc does not align it in
    a function it compiles as a leaf; pvpass.h's step does, so the target
    (read by an asm function: %rsp mod 16 at its entry) sees 8 at every
    site, unpatched and patched to a direct call. PVPASS_NO_STACK_ALIGN
    shows gcc's own misalignment, so the test can fail."""
    (tree[0] / "al.c").write_text(ALIGN_SRC)
    got = {}
    for name, defs in (("aligned", []), ("not aligned", ["-DPVPASS_NO_STACK_ALIGN"])):
        _, exe = _build(tree, "al.c", f"al{opt}{len(defs)}", [opt, *defs])
        got[name] = (_run(exe), _run(exe, "patched"))
    assert got["aligned"] == ("8 8 8 8",) * 2
    assert "0" in got["not aligned"][0] and got["not aligned"][0] == got["not aligned"][1], got
