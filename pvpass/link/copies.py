"""Find every copy of every site in a compiled object.

gcc copies an asm statement as often as it inlines or unrolls it, so the
object, not the source, says where the sites are. Each copy contains a
`call *` whose memory operand is relocated against the ops object at the
op's offset; that relocation anchors the search, and the site's instruction
sequence (from its template) is matched around it in the disassembly. This
needs no help from the compiler, so it also regenerates a stripped table.
"""
from __future__ import annotations

from dataclasses import dataclass

import capstone

from ..frontend.sites import SiteSource
from ..model import Inventory, Op
from .elfobj import ElfObject, Reloc

SHF_EXECINSTR = 4
_PCREL = {"R_X86_64_PC32", "R_X86_64_PLT32", "R_386_PC32"}
_ABS = {"R_386_32", "R_X86_64_32S", "R_X86_64_32"}


@dataclass(frozen=True, order=True)
class Copy:
    section: str
    offset: int
    length: int
    type: int
    clobbers: int
    site: int             # index into the inventory's sites


@dataclass(frozen=True)
class Stray:
    """An indirect call through an ops object that no annotated site explains."""
    section: str
    offset: int
    op: str
    text: str


def _norm(mnemonic: str) -> str:
    m = mnemonic.lower().split()[-1]
    for base in ("push", "pop", "call", "jmp", "mov", "lea", "ret"):
        if m.startswith(base) and len(m) <= len(base) + 1:
            return base
    return m


def _disasm(obj: ElfObject, sec) -> list:
    cs = capstone.Cs(capstone.CS_ARCH_X86,
                     capstone.CS_MODE_64 if obj.arch.bits == 64 else capstone.CS_MODE_32)
    cs.syntax = capstone.CS_OPT_SYNTAX_ATT
    code = obj.section_data(sec)
    out = []
    off = 0
    while off < len(code):
        got = False
        for i in cs.disasm_lite(code[off:], off):
            out.append(i)            # (address, size, mnemonic, op_str)
            off = i[0] + i[1]
            got = True
        if off < len(code):
            off += 1                 # undecodable byte: resynchronise
        if not got and off >= len(code):
            break
    return out


def find_copies(obj: ElfObject, inv: Inventory, sources: list[SiteSource]) -> tuple[list[Copy], list[Stray]]:
    arch = obj.arch
    copies: dict[tuple[str, int], Copy] = {}
    strays: list[Stray] = []
    objects = {s.ops_object for s in inv.sites}
    ops_by_obj = {o.obj: o for o in inv.ops}
    spans = _object_spans(obj, objects)
    for idx, sec in enumerate(obj.sections):
        if not sec["sh_flags"] & SHF_EXECINSTR or sec["sh_type"] == "SHT_NOBITS":
            continue
        relocs = [r for r in obj.relocations_for(sec.name) if _names_ops(obj, r, spans) is not None]
        if not relocs:
            continue
        ins = _disasm(obj, sec)
        starts = [i[0] for i in ins]
        import bisect
        for r in relocs:
            k = bisect.bisect_right(starts, r.offset) - 1
            if k < 0:
                continue
            addr, size, mnem, ops_text = ins[k]
            name, base = _names_ops(obj, r, spans)
            if r.type_name in _PCREL:
                off = r.addend + (addr + size - r.offset) - base
            elif r.type_name in _ABS:
                off = r.addend - base
            else:
                continue
            if _norm(mnem) not in ("call", "jmp") or not ops_text.startswith("*"):
                continue            # a load or store of the ops object, not a call
            ops = ops_by_obj[name]
            op = next((o for o in ops.ops if o.offset == off), None)
            found = _match(arch, ins, k, op, name, inv, sources)
            if found is None:
                strays.append(Stray(sec.name, addr, op.path if op else f"+{off:#x}",
                                    f"{mnem} {ops_text}"))
                continue
            start, length, site_i, mask = found
            copies[(sec.name, start)] = Copy(sec.name, start, length, inv.sites[site_i].type_number,
                                             mask, site_i)
    return sorted(copies.values(), key=lambda c: (obj.section_index(c.section), c.offset)), strays


def _object_spans(obj: ElfObject, names: set[str]) -> dict[str, tuple[str | None, int, int]]:
    """Ops object -> (its section or None if undefined, value, size)."""
    out = {}
    for s in obj.symbols:
        if s.name in names and s.kind != "STT_SECTION":
            out[s.name] = (obj.section_name_of(s), s.value, s.size)
    return out


def _names_ops(obj: ElfObject, r: Reloc, spans) -> tuple[str, int] | None:
    """(ops object, the value to subtract) if relocation r points into one."""
    if r.symbol.name in spans and r.symbol.kind != "STT_SECTION":
        return r.symbol.name, 0
    if r.symbol.kind == "STT_SECTION":
        # a static ops object is referenced through its section's symbol
        sec = obj.section_name_of(r.symbol)
        for name, (s, value, size) in sorted(spans.items()):
            if s == sec and value - 16 <= r.addend < value + size:
                return name, value
    return None


def _match(arch, ins, k, op: Op | None, obj_name: str, inv: Inventory, sources: list[SiteSource]):
    """Match a site's instruction sequence around the call at ins[k].
    Returns (start, length, site index, clobber mask) or None."""
    if op is None:
        return None
    found = []
    for i, src in enumerate(sources):
        s = src.site
        if s.op != op.path or s.ops_object != obj_name:
            continue
        shape = [_norm(st.name) for st in src.site_stmts if not st.is_directive]
        calls = [j for j, m in enumerate(shape) if m == "call"]
        if not calls:
            continue
        j = calls[0]
        lo, hi = k - j, k - j + len(shape)
        if lo < 0 or hi > len(ins):
            continue
        if [_norm(x[2]) for x in ins[lo:hi]] != shape:
            continue
        start = ins[lo][0]
        length = sum(x[1] for x in ins[lo:hi])
        found.append((start, length, i, s.mask))
    if not found:
        return None
    # Same code, different clobber sets: only what every candidate allows is safe.
    mask = found[0][3]
    for f in found[1:]:
        mask &= f[3]
    start, length, i, _ = found[0]
    return start, length, i, mask
