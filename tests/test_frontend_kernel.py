"""Kernel dialect: every site pvpass reports must be what gcc put in
.parainstructions for the same source (type number, length, clobber mask)."""
from __future__ import annotations

import pytest

from pvpass.arch import get_arch
from pvpass.frontend.scan import scan
from pvpass.link.elfobj import ElfObject
from pvpass.link.tableread import read_entries

from conftest import TESTDATA, gcc_c

CASES = [
    ("kernel/k61.c", "x86_64"),
    ("kernel/k61.c", "i386"),
    ("kernel/k2621.c", "i386"),
]
OPTS = ["-O0", "-O2", "-Os"]


@pytest.mark.parametrize("src,arch", CASES)
@pytest.mark.parametrize("opt", OPTS)
def test_scan_matches_gcc_table(tmp, src, arch, opt):
    flags = [opt, "-fno-pie"]
    obj = gcc_c(TESTDATA / src, tmp / "k.o", arch, flags)
    gcc = read_entries(ElfObject.read(str(obj)))
    inv = scan(str(TESTDATA / src), get_arch(arch), flags).inventory
    ours = {(s.type_number, s.length, s.mask) for s in inv.sites}
    theirs = {(e.type, e.length, e.clobbers) for e in gcc}
    assert theirs, "gcc emitted no table: the test source is broken"
    # Every copy gcc made is one of the source-level sites pvpass found...
    assert theirs <= ours
    # ...and every source-level site that gcc kept appears in the table.
    used_types = {e.type for e in gcc}
    assert {s.type_number for s in inv.sites} >= used_types


def test_kernel_61_inventory_details():
    inv = scan(str(TESTDATA / "kernel/k61.c"), get_arch("x86_64"), ["-O2", "-fno-pie"]).inventory
    by_op = {s.op: s for s in inv.sites}
    s = by_op["irq.save_fl"]
    assert (s.function, s.type_number, s.clobbers, s.length) == ("arch_local_save_flags", 15, ("rax",), 6)
    assert s.loc.file.endswith("k61.c") and s.loc.line == 23 and s.loc.col == 9
    assert by_op["mmu.lazy_mode.enter"].type_number == 30
    assert by_op["cpu.write_msr"].nargs == 3
    ops = inv.ops[0]
    assert (ops.tag, ops.obj) == ("paravirt_patch_template", "pv_ops")
    # callee-save slots are ops, numbered by their offset
    assert ops.op("irq.save_fl").callee_save_slot


def test_2621_ten_byte_sites():
    inv = scan(str(TESTDATA / "kernel/k2621.c"), get_arch("i386"), ["-O2", "-fno-pie"]).inventory
    s = next(x for x in inv.sites if x.function == "__raw_local_save_flags")
    assert s.length == 10 and s.clobbers == ("eax",) and s.op == "save_fl"
    assert s.instructions[0] == "pushl %ecx" and s.instructions[-1] == "popl %ecx"
    assert inv.ops[0].op("save_fl").type_number == 25    # after 4 data members
