"""Read the patch-site table of any object: entries resolved to section+offset
through the relocations of their `instr` fields."""
from __future__ import annotations

from bisect import bisect_right
from itertools import accumulate

from .. import table
from ..errors import PvError
from .elfobj import ElfObject


def read_entries(obj: ElfObject) -> list[table.Entry]:
    sec = obj.section(table.SECTION)
    if sec is None:
        return []
    if sec["sh_type"] == "SHT_NOBITS" and sec["sh_size"]:
        raise obj.bad(sec.header_offset, f"{table.SECTION} is SHT_NOBITS: a table without contents")
    data = obj.section_data(sec)
    try:
        raw = table.unpack(obj.arch, data)
    except ValueError as e:
        raise PvError(f"{obj.path}: {table.SECTION}: {e}") from None
    relocs = {r.offset: r for r in obj.relocations_for(table.SECTION)}
    out = []
    size = obj.arch.entry_size
    section_at = _section_finder(obj)
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
            out.append(table.Entry(section_at(instr), instr, typ, length, clob))
    return out


def _section_finder(obj: ElfObject):
    """addr -> the name of the allocated section holding it ("" if none), by
    bisection: a table can have as many entries as the file has bytes / 8."""
    secs = sorted((s["sh_addr"], -s["sh_size"], s.index, s.name) for s in obj.sections
                  if s["sh_flags"] & 2 and s["sh_size"])
    starts = [a for a, *_ in secs]
    ends = list(accumulate((a - neg for a, neg, *_ in secs), max))

    def find(addr: int) -> str:
        k = bisect_right(starts, addr) - 1
        best = None
        while k >= 0 and ends[k] > addr:        # earlier sections cannot reach addr otherwise
            a, neg, i, name = secs[k]
            if addr < a - neg and (best is None or i < best[0]):
                best = (i, name)
            k -= 1
        return best[1] if best else ""
    return find
