"""The struct-layout engine against gcc: offsets and sizes of members
behind attributes, unions, bitfields, arrays and ABI differences, on both
arches; and the GNU C around the sites parses."""
from __future__ import annotations

import re
import struct

import pytest

from pvpass.arch import get_arch
from pvpass.frontend.scan import scan
from pvpass.link.elfobj import ElfObject

from conftest import TESTDATA, gcc_c

SRC = TESTDATA / "layout/layout.c"
PATHS = ["flag", "in", "in.stamp", "in.ratio", "w", "w[1]", "w[1].len", "w[1].id", "mx", "bf",
         "ld", "after_ld", "aligned_int", "slots", "slots[3]", "grp", "grp.op_a", "grp.deep",
         "grp.deep.op_b", "pad", "op_c"]
SIZES = ["struct tricky_ops", "struct inner", "struct wire", "union mixed", "struct bits"]


def walk(t, path: str) -> tuple[int, object]:
    off = 0
    for name, idx in re.findall(r'(\w+)(?:\[(\d+)\])?', path):
        m = t.member(name)
        off += m.offset
        t = m.ctype
        if idx:
            off += int(idx) * t.elem.size
            t = t.elem
    return off, t


@pytest.mark.parametrize("arch", ["i386", "x86_64"])
def test_layout_agrees_with_gcc(tmp, arch):
    a = get_arch(arch)
    res = scan(str(SRC), a, ["-O2"])
    env = res.env
    ours = [walk(env.tag("struct", "tricky_ops", None), p)[0] for p in PATHS]
    ours += [env.tag(*s.split(), None).size for s in SIZES]
    probe = tmp / "probe.c"
    exprs = [f"__builtin_offsetof(struct tricky_ops, {p})" for p in PATHS] + [f"sizeof({s})" for s in SIZES]
    probe.write_text(f'#include "{SRC}"\nconst unsigned long probe[] = {{ {", ".join(exprs)} }};\n')
    obj = ElfObject.read(str(gcc_c(probe, tmp / "p.o", arch, ["-O2"])))
    sym = next(s for s in obj.symbols if s.name == "probe")
    data = obj.section_data(obj.sections[sym.shndx])[sym.value:sym.value + sym.size]
    theirs = list(struct.unpack("<%d%s" % (len(exprs), "I" if arch == "i386" else "Q"), data))
    assert dict(zip(PATHS + SIZES, ours)) == dict(zip(PATHS + SIZES, theirs))
    ops = res.inventory.ops[0]
    assert [o.type_number for o in ops.ops] == [theirs[PATHS.index(p)] // a.ptr_size
                                              for p in ("grp.op_a", "grp.deep.op_b", "op_c")]


def test_gnu_c_function_parses():
    res = scan(str(SRC), get_arch("x86_64"), ["-O2"])
    fns = {s.function for s in res.inventory.sites}
    assert "gnu_c" in fns
