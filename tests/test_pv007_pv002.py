"""PV007 counts arguments carried by in-out ("+a", "+D") and matching ("0")
operands; PV002 reads the i386 kernel's CLBR_ANY (with the %edi bit) as the
kernel means it. Both kernel forms, both arches, and the near-identical
sources that must still fire."""
from __future__ import annotations

import json
import shutil

import pytest

from pvpass.arch import get_arch
from pvpass.emit.patches import site_clobbers
from pvpass.frontend.scan import scan
from pvpass.link.elfobj import ElfObject
from pvpass.link.tableread import read_entries

from conftest import TESTDATA, gcc_c, run_pvpass

KERNEL = [("k61.c", "x86_64"), ("k61.c", "i386"), ("k2621.c", "i386"),
          ("k61_inout.c", "x86_64"), ("k61_inout.c", "i386"), ("k2621_inout.c", "i386")]


def lint(arch, path):
    # i386 code is built without PIE (else gcc reaches the ops through the GOT: PV010)
    pie = ("--", "-fno-pie") if arch == "i386" else ()
    r = run_pvpass("lint", "--arch", arch, "--format", "json", str(path), *pie)
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, json.loads(r.stdout)["diagnostics"]


@pytest.mark.parametrize("src,arch", KERNEL)
def test_kernel_forms_lint_clean(src, arch):
    rc, diags = lint(arch, TESTDATA / "kernel" / src)
    assert (rc, [d for d in diags if d["level"] == "error"]) == (0, [])


@pytest.mark.parametrize("src,arch,op", [("k61_inout.c", "x86_64", "cpu.write_cr4"),
                                         ("k61_inout.c", "i386", "cpu.write_cr4"),
                                         ("k2621_inout.c", "i386", "write_cr0"),
                                         ("k2621_inout.c", "i386", "write_cr3"),
                                         ("k2621_inout.c", "i386", "restore_fl")])
def test_inout_and_matching_operands_carry_argument_1(tmp, src, arch, op):
    inv = scan(str(TESTDATA / "kernel" / src), get_arch(arch), ["-O2", "-fno-pie"]).inventory
    site = next(s for s in inv.sites if s.op == op)
    assert site.nargs == 1 == inv.ops[0].op(op).nargs
    # gcc's table for the same source has the site as pvpass sees it
    obj = gcc_c(TESTDATA / "kernel" / src, tmp / "k.o", arch, ["-O2", "-fno-pie"])
    gcc = {(e.type, e.length, e.clobbers) for e in read_entries(ElfObject.read(str(obj)))}
    if op != "restore_fl":               # not used in the source: gcc drops it
        assert (site.type_number, site.length, site.mask) in gcc


@pytest.mark.parametrize("src,arch,inout,plain", [
    ("k2621_inout.c", "i386", '"+a"(x), "=d"(__edx)', '"=a"(x), "=d"(__edx)'),
    ("k61_inout.c", "x86_64", '"+D" (x), "=S"', '"=D" (x), "=S"'),
    ("k61_inout.c", "i386", '"+a" (x), "=d"', '"=a" (x), "=d"'),
])
def test_an_output_only_operand_still_fires(tmp, src, arch, inout, plain):
    kdir = tmp / "kernel"
    shutil.copytree(TESTDATA / "kernel", kdir)
    f = kdir / src
    assert inout in f.read_text()
    f.write_text(f.read_text().replace(inout, plain))
    rc, diags = lint(arch, f)
    errs = [d for d in diags if d["rule"] == "PV007"]
    assert rc == 1 and len(errs) == 1 and "passes 0 arguments" in errs[0]["message"]


@pytest.mark.parametrize("arch", ["i386", "x86_64"])
@pytest.mark.parametrize("name", ["pv007_inout_ok.c", "pv002_clbr_any_ok.c"])
def test_lint_fixtures_quiet_on_both_arches(arch, name):
    assert lint(arch, TESTDATA / "lint" / name) == (0, [])


def test_i386_clbr_any_has_the_edi_bit_but_edi_is_no_clobber(tmp):
    # gcc is the oracle for the mask: the table it wrote has 0xf for CLBR_ANY
    obj = gcc_c(TESTDATA / "kernel/k61.c", tmp / "k.o", "i386", ["-O2", "-fno-pie"])
    masks = {e.clobbers for e in read_entries(ElfObject.read(str(obj)))}
    assert 0xF in masks
    arch = get_arch("i386")
    inv = scan(str(TESTDATA / "kernel/k61.c"), arch, ["-O2", "-fno-pie"]).inventory
    io = next(s for s in inv.sites if s.op == "cpu.io_delay")
    assert io.mask == 0xF and "edi" in io.clobbers
    assert site_clobbers(arch, io) == {"eax", "ecx", "edx"}


def test_i386_dropped_register_still_caught(tmp):
    kdir = tmp / "kernel"
    shutil.copytree(TESTDATA / "kernel", kdir)
    h = kdir / "pv61.h"
    old = '#define PVOP_VCALL_CLOBBERS\t\t"=a" (__eax), "=d" (__edx),\t\\\n\t\t\t\t\t"=c" (__ecx)'
    assert old in h.read_text()
    h.write_text(h.read_text().replace(old, '#define PVOP_VCALL_CLOBBERS\t\t"=a" (__eax), "=d" (__edx)'))
    rc, diags = lint("i386", kdir / "k61.c")
    errs = [d for d in diags if d["rule"] == "PV002" and d["level"] == "error"]
    assert rc == 1 and errs and all("%ecx" in d["message"] and "%edi" not in d["message"] for d in errs)
