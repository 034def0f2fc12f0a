"""Object-only checks for the build path (`pvpass cc`): no source needed.

A kernel-dialect object carries the compiler-made table: each entry gives the
site's place, type number and length. `check_table` disassembles each entry's
bytes (capstone) and checks what the runtime relies on: the entry lies inside
its section on instruction boundaries, holds a `call *` through an ops object,
and its type number is that op's slot (offset / pointer size), as the kernel's
PARAVIRT_PATCH() computes it.

`may_hold_sites` says whether an object without a table could hold a
pvpass-dialect site at all: a site is a `call *`/`jmp *` whose memory operand
is relocated, and such an instruction ends in its relocated disp32 right after
an FF opcode with ModRM (and SIB). Objects with none need no front-end run.
"""
from __future__ import annotations

import bisect

from dataclasses import dataclass

from .. import table
from ..diag import PvError
from .elfobj import ElfObject
from .tableread import read_entries

SHF_EXECINSTR = 4


@dataclass(frozen=True)
class CheckedEntry:
    entry: table.Entry
    ops_object: str
    offset: int           # the op's offset in the ops object


def check_table(obj: ElfObject) -> list[CheckedEntry]:
    """Check every entry of the object's compiler-made table (PvError on the
    first bad one, naming the object and the entry's place)."""
    from .copies import _ABS, _PCREL, _disasm, _norm      # capstone: only here
    out = []
    bits = obj.arch.bits
    ptr = obj.arch.ptr_size
    datas: dict[str, bytes] = {}
    starts: dict[str, list[int]] = {}     # relocation offsets per section (sorted)
    for i, e in enumerate(read_entries(obj)):
        where = f"{obj.path}: {table.SECTION} entry {i} ({e.section}+{e.offset:#x})"
        sec = obj.section(e.section)
        if sec is None or not sec["sh_flags"] & SHF_EXECINSTR:
            raise PvError(f"{where}: not in an executable section")
        data = datas.get(e.section)
        if data is None:
            data = datas[e.section] = obj.section_data(sec)
            starts[e.section] = [r.offset for r in obj.relocations_for(e.section)]
        if e.length == 0 or e.offset + e.length > len(data):
            raise PvError(f"{where}: length {e.length} runs past the section's end")
        ins = _disasm(bits, data, e.offset, e.offset + e.length)
        if not ins or ins[-1][0] + ins[-1][1] != e.offset + e.length:
            raise PvError(f"{where}: length {e.length} does not end on an instruction boundary")
        calls = [x for x in ins if _norm(x[2]) in ("call", "jmp") and x[3].startswith("*")]
        found = None
        rels, offs = obj.relocations_for(e.section), starts[e.section]
        for addr, size, _, _ in calls:
            for r in rels[bisect.bisect_left(offs, addr):bisect.bisect_left(offs, addr + size)]:
                if r.symbol.kind not in ("STT_FUNC", "STT_SECTION"):
                    if r.type_name in _PCREL:
                        found = (r.symbol.name, r.addend + (addr + size - r.offset))
                    elif r.type_name in _ABS:
                        found = (r.symbol.name, r.addend)
        if found is None:
            raise PvError(f"{where}: no call through an ops object in the site's {e.length} bytes")
        name, off = found
        if off % ptr or off // ptr != e.type:
            raise PvError(f"{where}: type {e.type}, but the call goes through {name}+{off:#x} "
                          f"(type {off / ptr:g})")
        out.append(CheckedEntry(e, name, off))
    return out


def may_hold_sites(obj: ElfObject) -> bool:
    """True when some executable section has a relocated disp32 that ends a
    `call *`/`jmp *` memory operand (FF /2../5 with ModRM, maybe SIB)."""
    for sec in obj.sections:
        if not sec["sh_flags"] & SHF_EXECINSTR or sec["sh_type"] == "SHT_NOBITS":
            continue
        rels = obj.relocations_for(sec.name)
        if not rels:
            continue
        data = obj.section_data(sec)
        for r in rels:
            o = r.offset
            if o >= 2 and data[o - 2] == 0xFF and _mem_call_modrm(data[o - 1], sib=None):
                return True
            if o >= 3 and data[o - 3] == 0xFF and _mem_call_modrm(data[o - 2], sib=data[o - 1]):
                return True
    return False


def _mem_call_modrm(modrm: int, sib: int | None) -> bool:
    mod, reg, rm = modrm >> 6, (modrm >> 3) & 7, modrm & 7
    if reg not in (2, 3, 4, 5):          # call, lcall, jmp, ljmp
        return False
    if sib is None:
        return (mod == 0 and rm == 5) or (mod == 2 and rm != 4)
    return rm == 4 and (mod == 2 or (mod == 0 and sib & 7 == 5))
