"""Which registers an asm statement tells gcc it changes: outputs with
register constraints (including "+" and matched inputs), and the clobber
list. "r"-class outputs name no particular register and count for none."""
from __future__ import annotations

from dataclasses import dataclass

from ..arch import Arch
from ..frontend.asmstmt import AsmStmt


@dataclass(frozen=True)
class Effects:
    written: frozenset[str]          # full-width register names
    inputs: frozenset[str]
    sources: dict                    # register -> ("output"|"clobber", operand/offset)


def _regs_of(arch: Arch, constraint: str) -> set[str]:
    out: set[str] = set()
    for ch in constraint:
        if ch == "A":                 # the edx:eax / rdx:rax pair
            out |= {arch.constraint_reg("a"), arch.constraint_reg("d")}
        else:
            r = arch.constraint_reg(ch)
            if r:
                out.add(r)
    # a single letter class is one register; several letters let gcc choose
    return out if len(out) <= 1 or "A" in constraint else set()


def effects(arch: Arch, a: AsmStmt) -> Effects:
    written: set[str] = set()
    inputs: set[str] = set()
    sources: dict = {}
    for o in a.outputs:
        for r in _regs_of(arch, o.constraint):
            written.add(r)
            sources.setdefault(r, ("output", o))
            if "+" in o.constraint:
                inputs.add(r)
    for o in a.inputs:
        c = o.constraint
        if c.isdigit() and int(c) < len(a.outputs):
            inputs |= _regs_of(arch, a.outputs[int(c)].constraint)
        else:
            inputs |= _regs_of(arch, c)
    for name, off in a.clobbers:
        r = arch.canon_reg(name)
        if r:
            written.add(r)
            sources.setdefault(r, ("clobber", off))
    return Effects(frozenset(written), frozenset(inputs), sources)
