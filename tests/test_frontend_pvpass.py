"""pvpass dialect: type numbers must equal gcc's offsetof()/sizeof(void *),
and annotated code must compile with plain gcc."""
from __future__ import annotations

import struct

import pytest

from pvpass.arch import get_arch
from pvpass.frontend.scan import scan
from pvpass.link.elfobj import ElfObject

from conftest import TESTDATA, gcc_c

ARCHES = ["x86_64", "i386"]


def gcc_type_numbers(tmp, arch: str, header: str, tag: str, paths: list[str]) -> list[int]:
    """Ask gcc for offsetof(tag, path)/sizeof(void *) of each op."""
    probe = tmp / "probe.c"
    vals = ",\n".join(f"__builtin_offsetof(struct {tag}, {p}) / sizeof(void *)" for p in paths)
    probe.write_text(f'#include "{header}"\nconst unsigned long probe[] = {{\n{vals}\n}};\n')
    obj = ElfObject.read(str(gcc_c(probe, tmp / "probe.o", arch, ["-O2"])))
    sym = next(s for s in obj.symbols if s.name == "probe")
    data = obj.section_data(obj.sections[sym.shndx])[sym.value:sym.value + sym.size]
    fmt = "<%d%s" % (len(paths), "I" if arch == "i386" else "Q")
    return list(struct.unpack(fmt, data))


@pytest.mark.parametrize("arch", ARCHES)
def test_type_numbers_agree_with_gcc(tmp, arch):
    src = TESTDATA / "pvpass/sites.c"
    inv = scan(str(src), get_arch(arch), ["-O2"]).inventory
    ops = inv.ops[0]
    paths = [o.path for o in ops.ops]
    assert len(paths) == 9
    want = gcc_type_numbers(tmp, arch, str(TESTDATA / "pvpass/ops.h"), ops.tag, paths)
    assert [o.type_number for o in ops.ops] == want


@pytest.mark.parametrize("arch", ARCHES)
def test_sites(tmp, arch):
    src = TESTDATA / "pvpass/sites.c"
    gcc_c(src, tmp / "s.o", arch, ["-O2", "-Wall", "-Werror"])     # plain gcc is happy
    inv = scan(str(src), get_arch(arch), ["-O2"]).inventory
    by_op = {s.op: s for s in inv.sites}
    assert set(by_op) == {"cpu.read_tsc", "cpu.io_delay", "irq.save_fl", "irq.restore_fl",
                          "irq.irq_disable", "mmu.pte_val", "mmu.set_pte", "cpu.sum4",
                          "mmu.read_cr2"}
    a = get_arch(arch)
    assert by_op["cpu.io_delay"].clobbers == a.caller_saved_in_mask_order
    assert by_op["irq.save_fl"].clobbers == (a.ret_reg,)
    assert by_op["mmu.read_cr2"].clobbers == ((a.ret_reg, "rdx") if arch == "x86_64" else ("eax", "edx"))
    assert by_op["cpu.sum4"].nargs == 4 and by_op["cpu.sum4"].returns
    assert by_op["mmu.set_pte"].nargs == 2 and by_op["mmu.set_pte"].returns is False
    # the site is the call alone; the 4th argument's push stays outside on i386
    # (pvpass.h's macros call through "i" (&op) printed bare: *%c[pv_op], RIP-relative on x86-64)
    calls = {("call *%[pv_op]",), ("call *%c[pv_op](%rip)",)}
    assert all(s.length == 6 and s.instructions in calls for s in inv.sites)
    assert by_op["cpu.read_tsc"].function == "read_tsc"


def test_scan_is_deterministic():
    from pvpass.jsonout import dumps, inventory_json
    src = str(TESTDATA / "pvpass/sites.c")
    outs = {dumps(inventory_json(scan(src, get_arch("x86_64"), ["-O2"]).inventory)) for _ in range(2)}
    assert len(outs) == 1
