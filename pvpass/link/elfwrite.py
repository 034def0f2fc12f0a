"""Write a relocatable object with new sections added, as objtool does.

Why write ELF directly rather than assemble and `ld -r`: `ld -r` rewrites
the whole object (merges sections, renumbers symbols, can drop or reorder
what it considers unneeded), while the link step must leave everything
else exactly as it was. Here existing sections keep their indices, flags
and bytes; new sections go at the end of the section table; new local
symbols (section symbols of new sections) are inserted after the existing
locals, and every relocation and group that names a global is renumbered;
new global symbols (undefined call targets) are appended. A new section
named as one of APPENDED that the object already has (`.eh_frame`, whose
entries find their CIE by relative offsets) is appended to it instead.
"""
from __future__ import annotations

import struct
from bisect import bisect_right
from dataclasses import dataclass, field


from ..diag import PvError
from .elfobj import SYM_SIZE, ElfObject, _cstr, merge_ranges

# The file offset of a section with contents is aligned as its sh_addralign
# says: an alignment over MAX_WRITTEN_ALIGN is refused, and the padding in all is
# bounded by the input's size plus MAX_PADDING (no input makes a huge output).
MAX_WRITTEN_ALIGN = 1 << 20
MAX_PADDING = 16 << 20

SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_RELA, SHT_NOBITS, SHT_REL, SHT_GROUP = 1, 2, 3, 4, 8, 9, 17
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR, SHF_MERGE, SHF_STRINGS, SHF_INFO_LINK = 1, 2, 4, 0x10, 0x20, 0x40
STB_LOCAL, STB_GLOBAL = 0, 1
STT_NOTYPE, STT_FUNC, STT_SECTION = 0, 2, 3
STV_HIDDEN = 2
APPENDED = (".eh_frame",)


@dataclass(frozen=True)
class SymRef:
    """What a new relocation points at: a section (by name, new or old) or a
    symbol by name (found in the object, else added as undefined global)."""
    section: str | None = None
    symbol: str | None = None


@dataclass
class NewReloc:
    offset: int
    type: int
    target: SymRef
    addend: int


@dataclass
class NewSection:
    name: str
    flags: int
    align: int
    data: bytes
    relocs: list[NewReloc] = field(default_factory=list)
    type: int = SHT_PROGBITS
    entsize: int = 0


@dataclass
class Edit:
    """Changes to an existing section: new bytes at some offsets, its
    relocations inside the given ranges dropped, new ones added."""
    writes: list[tuple[int, bytes]] = field(default_factory=list)
    drop: list[tuple[int, int]] = field(default_factory=list)
    relocs: list[NewReloc] = field(default_factory=list)


@dataclass
class NewSymbol:
    name: str
    section: str          # new section name
    value: int
    size: int
    kind: int = STT_FUNC


_SHDR = {32: "<IIIIIIIIII", 64: "<IIQQQQIIQQ"}
_SYM = {32: "<IIIBBH", 64: "<IBBHQQ"}


def _pack_sym(bits, name, value, size, info, other, shndx) -> bytes:
    if bits == 32:
        return struct.pack(_SYM[32], name, value, size, info, other, shndx)
    return struct.pack(_SYM[64], name, info, other, shndx, value, size)


def _unpack_sym(bits, data, off):
    if bits == 32:
        name, value, size, info, other, shndx = struct.unpack_from(_SYM[32], data, off)
    else:
        name, info, other, shndx, value, size = struct.unpack_from(_SYM[64], data, off)
    return [name, value, size, info, other, shndx]


def require_relocatable(obj: ElfObject) -> None:
    """link, patch and show rewrite an object: refuse a linked file up front,
    even when there would be nothing to add."""
    if not obj.is_relocatable:
        raise PvError(f"{obj.path}: not a relocatable object (ET_REL): link, patch and show "
                      f"take the object the compiler wrote, before the final link")


def add_sections(obj: ElfObject, new: list[NewSection], new_syms: list[NewSymbol] = (),
                 edits: dict[str, Edit] | None = None) -> bytes:
    require_relocatable(obj)
    bits = obj.arch.bits
    rela = bits == 64
    ehdr = obj.header
    if ehdr["e_phnum"] or ehdr["e_phoff"]:
        raise obj.bad(0x2C if bits == 64 else 0x1C, "a relocatable object with program headers")
    old = obj.sections
    nold = len(old)
    if obj.symtab is None:
        raise PvError(f"{obj.path}: no symbol table")
    if any(s["sh_type"] == "SHT_SYMTAB_SHNDX" for s in old):
        raise PvError(f"{obj.path}: objects with more than 65280 sections are not supported")
    for s in old:
        a = s["sh_addralign"]
        if s["sh_type"] not in ("SHT_NOBITS", "SHT_NULL") and a > MAX_WRITTEN_ALIGN:
            raise obj.bad(s.header_offset, f"section {s.index} ({s.name}): sh_addralign {a:#x} "
                                           f"is over {MAX_WRITTEN_ALIGN:#x}, the most the link "
                                           f"step writes")
    new, edits = _appended(obj, new, edits)
    symtab = obj.symtab
    symtab_i = symtab.index
    obj.symbols                          # checks every symbol
    strtab_i = symtab["sh_link"]
    shstr_i = ehdr["e_shstrndx"]
    sym_data = bytearray(obj.section_data(symtab))
    syms = [_unpack_sym(bits, sym_data, i) for i in range(0, len(sym_data), SYM_SIZE[bits])]
    first_global = symtab["sh_info"]
    strtab = bytearray(obj.section_data(old[strtab_i]))
    # one table for symbol and section names (some tools share them): one buffer
    shstrtab = strtab if shstr_i == strtab_i else bytearray(obj.section_data(old[shstr_i]))

    def add_str(tab: bytearray, s: str) -> int:
        b = s.encode() + b"\0"
        i = tab.find(b)
        if i >= 0 and (i == 0 or tab[i - 1] == 0):
            return i
        off = len(tab)
        tab += b
        return off

    # section indices of the new sections and their relocation sections
    all_new: list[tuple[NewSection, bool]] = []
    for s in new:
        all_new.append((s, False))
    for s in new:
        if s.relocs:
            all_new.append((s, True))
    new_index = {s.name: nold + i for i, (s, is_rel) in enumerate(all_new) if not is_rel}
    sec_index = {s.name: s.index for s in reversed(old)}       # the first of a name, as obj.section
    for name in new_index:
        if name in sec_index:
            raise PvError(f"{obj.path}: already has a section {name}")
    sec_index.update(new_index)

    # local section symbols for every section a new relocation names
    existing_secsym = {}
    for i, sy in enumerate(syms):
        if sy[3] & 0xF == STT_SECTION and i < first_global:
            existing_secsym.setdefault(sy[5], i)
    new_locals: list[list] = []
    secsym_of: dict[str, int] = {}
    edits = edits or {}
    all_relocs = [r for s in new for r in s.relocs] + [r for e in edits.values() for r in e.relocs]
    need_sections = sorted({r.target.section for r in all_relocs if r.target.section},
                           key=lambda n: sec_index.get(n, 1 << 30))
    for name in need_sections:
        if name not in sec_index:
            raise PvError(f"{obj.path}: no section {name}")
        idx = sec_index[name]
        if idx in existing_secsym:
            secsym_of[name] = existing_secsym[idx]
        else:
            secsym_of[name] = first_global + len(new_locals)
            new_locals.append([0, 0, 0, (STB_LOCAL << 4) | STT_SECTION, 0, idx])
    for ns in new_syms:
        new_locals.append([add_str(strtab, ns.name), ns.value, ns.size,
                           (STB_LOCAL << 4) | ns.kind, 0, new_index[ns.section]])
    shift = len(new_locals)
    globals_ = syms[first_global:]
    syms = syms[:first_global] + new_locals + globals_
    by_name: dict[str, int] = {}
    for i, sy in enumerate(syms):
        nm = _cstr(strtab, sy[0])
        if nm and (sy[3] & 0xF) != STT_SECTION:
            # a defined symbol wins over an undefined one of the same name
            if nm not in by_name or sy[5] != 0:
                by_name[nm] = i

    def sym_index(ref: SymRef) -> int:
        if ref.section is not None:
            return secsym_of[ref.section]
        i = by_name.get(ref.symbol)
        if i is None:
            syms.append([add_str(strtab, ref.symbol), 0, 0, (STB_GLOBAL << 4) | STT_NOTYPE, 0, 0])
            i = by_name[ref.symbol] = len(syms) - 1
        return i

    def pack_rel(r: NewReloc, data: bytearray | None) -> bytes:
        si = sym_index(r.target)
        if rela:
            return struct.pack("<QQq", r.offset, (si << 32) | r.type, r.addend)
        if data is not None:
            struct.pack_into("<i", data, r.offset, r.addend)      # REL: addend in place
        return struct.pack("<II", r.offset, (si << 8) | r.type)

    # new relocation sections
    rel_data: dict[str, bytes] = {}
    for s in new:
        if not s.relocs:
            continue
        out = bytearray()
        data = bytearray(s.data)
        for r in sorted(s.relocs, key=lambda r: r.offset):
            out += pack_rel(r, data)
        s.data = bytes(data)
        rel_data[s.name] = bytes(out)

    def renum(i: int) -> int:
        return i + shift if i >= first_global else i

    # rewrite existing relocation sections and groups for the renumbering
    contents: dict[int, bytes] = {}
    edited: dict[int, bytearray] = {}
    for name, e in edits.items():
        i = sec_index.get(name)
        if i is None or i >= nold:
            raise PvError(f"{obj.path}: no section {name} to edit")
        d = edited[i] = bytearray(obj.section_data(old[i]))
        for off, b in e.writes:
            d[off:off + len(b)] = b
    for i, s in enumerate(old):
        t = s["sh_type"]
        if t not in ("SHT_REL", "SHT_RELA"):
            continue
        if s["sh_link"] != symtab_i:
            raise obj.bad(s.header_offset, f"{s.name}: relocations against section {s['sh_link']}, "
                                           f"not the symbol table")
        edit = edits.get(old[s["sh_info"]].name)
        if shift or edit:
            d = obj.section_data(s)
            ent = s["sh_entsize"]
            keep = bytearray()
            dropped = _in_ranges(edit.drop if edit else [])
            for k, (r_off, si, rtype, _) in enumerate(obj.rel_entries(s)):
                e = bytearray(d[k * ent:(k + 1) * ent])
                if bits == 64:
                    struct.pack_into("<Q", e, 8, (renum(si) << 32) | rtype)
                else:
                    struct.pack_into("<I", e, 4, (renum(si) << 8) | rtype)
                if dropped(r_off):
                    continue
                keep += e
            if edit:
                tgt = edited.get(s["sh_info"])
                for r in sorted(edit.relocs, key=lambda r: r.offset):
                    keep += pack_rel(r, tgt)
            contents[i] = bytes(keep)
    for i, d in edited.items():
        contents[i] = bytes(d)
    sym_out = bytearray()
    for sy in syms:
        sym_out += _pack_sym(bits, *sy)
    contents[symtab_i] = bytes(sym_out)
    contents[strtab_i] = bytes(strtab)

    # section headers: old ones (raw, with updated sizes), then the new ones
    shoff0, shentsize = ehdr["e_shoff"], ehdr["e_shentsize"]
    headers: list[list] = [list(struct.unpack_from(_SHDR[bits], obj.data, shoff0 + i * shentsize))
                           for i in range(nold)]
    headers[symtab_i][7] = first_global + shift
    for h in headers:
        if h[1] == SHT_GROUP and h[6] == symtab_i:
            h[7] = renum(h[7])
    new_hdrs = []
    for s, is_rel in all_new:
        if is_rel:
            name = (".rela" if rela else ".rel") + s.name
            data = rel_data[s.name]
            new_hdrs.append(([add_str(shstrtab, name), SHT_RELA if rela else SHT_REL, SHF_INFO_LINK, 0, 0,
                              len(data), symtab_i, new_index[s.name], 8 if bits == 64 else 4,
                              24 if rela else 8], data))
        else:
            new_hdrs.append(([add_str(shstrtab, s.name), s.type, s.flags, 0, 0, len(s.data), 0, 0,
                              s.align, s.entsize], s.data))
    contents[shstr_i] = bytes(shstrtab)

    # lay the file out again: header, section contents in index order, headers
    ehsize = ehdr["e_ehsize"]
    out = bytearray(obj.data[:ehsize])
    blobs: list[tuple[list, bytes | None]] = []
    for i, s in enumerate(old):
        if i == 0:
            blobs.append((headers[0], None))
            continue
        d = contents.get(i)
        if d is None and headers[i][1] != SHT_NOBITS:
            d = obj.section_data(s)
        headers[i][5] = len(d) if d is not None else headers[i][5]
        blobs.append((headers[i], d))
    blobs += new_hdrs
    padding = 0
    for h, d in blobs[1:]:
        align = max(h[8], 1)
        if d is None:
            h[4] = _align(len(out), align)
            continue
        pad = _align(len(out), align) - len(out)
        padding += pad
        if padding > MAX_PADDING + len(obj.data):
            raise PvError(f"{obj.path}: section alignment {align:#x} would pad the output "
                          f"past {padding:#x} bytes: refused")
        out += b"\0" * pad
        h[4] = len(out)
        out += d
    shoff = _align(len(out), 8)
    out += b"\0" * (shoff - len(out))
    for h, _ in blobs:
        out += struct.pack(_SHDR[bits], *h)
    # patch e_shoff and e_shnum
    if bits == 64:
        struct.pack_into("<Q", out, 0x28, shoff)
        struct.pack_into("<H", out, 0x3C, len(blobs))
    else:
        struct.pack_into("<I", out, 0x20, shoff)
        struct.pack_into("<H", out, 0x30, len(blobs))
    return bytes(out)


def _appended(obj: ElfObject, new: list[NewSection], edits: dict[str, Edit] | None):
    """New sections of an APPENDED name the object has become edits that
    extend it (its end must be aligned for them, and relocations need its
    relocation section)."""
    edits = dict(edits or {})
    keep = []
    for s in new:
        old = obj.section(s.name) if s.name in APPENDED else None
        if old is None:
            keep.append(s)
            continue
        end = old["sh_size"]
        if end % max(s.align, 1) or old["sh_type"] == "SHT_NOBITS" or s.name in edits:
            raise obj.bad(old.header_offset, f"section {old.name}: {end:#x} bytes, which the link step "
                                             f"cannot extend with {s.align}-aligned entries")
        if s.relocs and not any(r["sh_info"] == old.index and r["sh_type"] in ("SHT_REL", "SHT_RELA")
                                for r in obj.sections):
            raise PvError(f"{obj.path}: section {old.name} has no relocation section to extend")
        edits[s.name] = Edit(writes=[(end, s.data)],
                             relocs=[NewReloc(r.offset + end, r.type, r.target, r.addend) for r in s.relocs])
    return keep, edits


def _in_ranges(ranges: list[tuple[int, int]]):
    """x -> whether some [a, b) holds it, by bisection (as many ranges as
    site copies, as many queries as relocations)."""
    merged = merge_ranges(ranges)
    starts = [a for a, _ in merged]

    def inside(x: int) -> bool:
        k = bisect_right(starts, x) - 1
        return k >= 0 and x < merged[k][1]
    return inside


def _align(x: int, a: int) -> int:
    return (x + a - 1) // a * a

