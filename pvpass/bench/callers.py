"""The caller-side cost of a clobber convention, read from the object: the
harness's caller_<conv> functions (the same C, one per convention) are
disassembled with capstone and their stack traffic counted, in the whole
function and in its loop (one iteration = save_fl, irq_disable, the
critical section, irq_restore)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import capstone
from capstone import x86

from ..emit.stubs import _cs
from ..link.elfobj import ElfObject

_SP = {x86.X86_REG_RSP, x86.X86_REG_ESP}
_BRANCH = {capstone.CS_GRP_JUMP}


@dataclass(frozen=True)
class CallerCode:
    arch: str
    conv: str
    bytes: int
    insns: int
    saved_regs: int       # pushes outside the loop: callee-saved registers the function uses
    loop_insns: int
    loop_stack_loads: int     # reads of [sp + disp]: reloads (and stack arguments on i386)
    loop_stack_stores: int    # writes to [sp + disp]: spills
    loop_push: int
    loop_pop: int


def _stack_access(insn) -> tuple[int, int]:
    """(loads, stores) of [sp + disp] memory operands; push, pop, call and
    lea do not count (their stack use is not a spill or a reload)."""
    if insn.mnemonic.startswith(("push", "pop", "call", "ret", "lea")):
        return 0, 0
    loads = stores = 0
    for op in insn.operands:
        if op.type == x86.X86_OP_MEM and op.mem.base in _SP:
            loads += bool(op.access & capstone.CS_AC_READ)
            stores += bool(op.access & capstone.CS_AC_WRITE)
    return loads, stores


def _loop(insns) -> tuple[int, int]:
    """[start, end) of the function's widest loop: a backward branch's
    target up to the branch."""
    lo = insns[0].address
    best = (0, 0)
    for i in insns:
        if not _BRANCH & set(i.groups) or i.operands[0].type != x86.X86_OP_IMM:
            continue
        target = i.operands[0].imm
        end = i.address + i.size
        if lo <= target < i.address and end - target > best[1] - best[0]:
            best = (target, end)
    return best


def caller_code(obj_path: Path, arch: str, conv: str) -> CallerCode:
    obj = ElfObject.read(str(obj_path))
    sym = next(s for s in obj.symbols if s.name == f"caller_{conv}" and s.kind == "STT_FUNC")
    code = obj.section_data(obj.sections[sym.shndx])[sym.value:sym.value + sym.size]
    insns = list(_cs(obj.arch.bits).disasm(code, sym.value))
    lo, hi = _loop(insns)
    inside = [i for i in insns if lo <= i.address < hi]
    outside = [i for i in insns if not lo <= i.address < hi]
    acc = [_stack_access(i) for i in inside]
    return CallerCode(
        arch, conv, sym.size, len(insns),
        sum(i.mnemonic.startswith("push") for i in outside),
        len(inside), sum(a[0] for a in acc), sum(a[1] for a in acc),
        sum(i.mnemonic.startswith("push") for i in inside),
        sum(i.mnemonic.startswith("pop") for i in inside))
