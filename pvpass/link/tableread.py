"""Read the patch-site table of any object: entries resolved to section+offset
through the relocations of their `instr` fields."""
from __future__ import annotations

from .. import table
from ..diag import PvError
from .elfobj import ElfObject


def read_entries(obj: ElfObject) -> list[table.Entry]:
    sec = obj.section(table.SECTION)
    if sec is None:
        return []
    data = obj.section_data(sec)
    try:
        raw = table.unpack(obj.arch, data)
    except ValueError as e:
        raise PvError(f"{obj.path}: {table.SECTION}: {e}") from None
    relocs = {r.offset: r for r in obj.relocations_for(table.SECTION)}
    out = []
    size = obj.arch.entry_size
    for i, (instr, typ, length, clob) in enumerate(raw):
        r = relocs.get(i * size)
        if obj.is_relocatable:
            if r is None:
                raise PvError(f"{obj.path}: {table.SECTION} entry {i} (offset {i * size:#x}) "
                              f"has no relocation for its instr field")
            secname = obj.section_name_of(r.symbol)
            if secname is None:
                raise PvError(f"{obj.path}: {table.SECTION} entry {i} points at symbol "
                              f"'{r.symbol.name}' outside any section")
            base = 0 if r.symbol.kind == "STT_SECTION" else r.symbol.value
            # REL (i386): the addend is the field itself
            out.append(table.Entry(secname, base + r.addend, typ, length, clob))
        else:
            out.append(table.Entry(_section_at(obj, instr), instr, typ, length, clob))
    return out


def _section_at(obj: ElfObject, addr: int) -> str:
    for s in obj.sections:
        if s["sh_flags"] & 2 and s["sh_addr"] <= addr < s["sh_addr"] + s["sh_size"]:
            return s.name
    return ""
