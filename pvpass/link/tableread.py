"""Read pvpass's sections of any object, checked before anything follows
them: the patch-site table (entries resolved to section+offset through the
relocations of their `instr` fields) and the patch records. `read_checked`
is the one reader of link, patch, show, table and verify."""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate
from typing import Callable, NamedTuple

from .. import table
from ..errors import PvError
from .elfobj import ElfObject

MAX_PATCH_LEN = 255 - 1         # the kernel's alternative.c: a longer site or record is a BUG at boot
TABLE_BYTE_MAX = 255            # pvpass's runtime patches what the table's len byte can say


@dataclass(frozen=True)
class Site:
    """One `.parainstructions` entry (struct paravirt_patch_site) at an
    address: a linked file's own, a module's at its load layout, an
    object's section+offset as _ObjectPlaces numbers it."""
    index: int
    addr: int
    type: int
    length: int


def read_checked(path: str) -> ElfObject:
    """The file, with every symbol, relocation, table entry and patch record
    checked: the commands that copy an object (link, patch) or report on it
    (show, table, verify) refuse what any of them would."""
    obj = ElfObject.read(path)
    check(obj)
    return obj


def check(obj: ElfObject) -> list[table.Entry]:
    """read_checked's checks on an object already in memory (`pvpass cc`
    reads the compiler's output itself); its table's entries."""
    obj.check_all()
    _one_section_per_table(obj)
    sec = obj.section(table.SECTION)
    entries: list[table.Entry] = []
    if sec is not None:
        lo, hi = bracket(obj, sec, "__parainstructions")
        entries = _read_entries(obj, sec, lo, hi)
        if entries:
            _check_entries(obj, entries, sec["sh_offset"] + lo)
    read_records(obj)
    return entries


def _one_section_per_table(obj: ElfObject) -> None:
    """A linked file's tables are one section each: of two sections of one
    name, pvpass reads the first and the kernel whichever its linker
    script's symbols bracket."""
    if obj.is_relocatable:
        return
    first: dict[str, int] = {}
    for s in obj.sections:
        if s.name in (table.SECTION, table.ALT_SECTION, table.PATCH_SECTION):
            if s.name in first:
                raise obj.bad(s.header_offset, f"sections {first[s.name]} and {s.index} are both named "
                                               f"{s.name}: which is the table?")
            first[s.name] = s.index


def read_entries(obj: ElfObject) -> list[table.Entry]:
    sec = obj.section(table.SECTION)
    if sec is None:
        return []
    return _read_entries(obj, sec, *bracket(obj, sec, "__parainstructions"))


def _read_entries(obj: ElfObject, sec, lo: int, hi: int) -> list[table.Entry]:
    """The entries in bytes [lo, hi) of the table's section sec."""
    if sec["sh_type"] == "SHT_NOBITS" and sec["sh_size"]:
        raise obj.bad(sec.header_offset, f"{table.SECTION} is SHT_NOBITS: a table without contents")
    data = obj.section_data(sec)[lo:hi]
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
                raise obj.bad(sec["sh_offset"] + lo + i * size, f"{table.SECTION} entry {i} has no "
                                                                f"relocation for its instr field")
            secname = obj.section_name_of(r.symbol)
            if secname is None:
                raise obj.bad(sec["sh_offset"] + lo + i * size, f"{table.SECTION} entry {i} points at "
                                                                f"symbol '{r.symbol.name}' outside any section")
            base = 0 if r.symbol.kind == "STT_SECTION" else r.symbol.value
            # REL (i386): the addend is the field itself
            out.append(table.Entry(secname, base + r.addend, typ, length, clob))
        elif instr:             # 0: a PIE's, filled at load time
            e = table.Entry(section_at(instr), instr, typ, length, clob)
            _in_code(obj, sec["sh_offset"] + lo + i * size, f"{table.SECTION} entry {i}", e.section,
                     instr, length)
            out.append(e)
        else:
            out.append(table.Entry("", instr, typ, length, clob))
    return out


def is_code(sec, off: int, length: int) -> bool:
    """[off, off + length) of section sec is code: inside one executable
    SHT_PROGBITS section (the patcher writes there; a section of another
    type, even executable, holds no code a loader maps as such)."""
    return sec is not None and bool(sec["sh_flags"] & 4) and sec["sh_type"] == "SHT_PROGBITS" \
        and 0 <= off and off + length <= sec["sh_size"]


def _hex(addr: int) -> str:
    return f"{addr:#x}"


def in_code(obj: ElfObject, at: int, what: str, where, addr: int, length: int,
            label: Callable[[int], str] = _hex) -> None:
    """[addr, addr + length) must be code (is_code); where: the (section,
    offset) holding addr, None outside every section. The error names obj
    and the file offset at (the table record that points there); label
    names an address."""
    if where is None or not is_code(where[0], where[1], length):
        raise obj.bad(at, f"{what}: [{label(addr)}, {label(addr + length)}) is not inside one "
                          f"executable section")


def check_sites(obj: ElfObject, sites: list[Site], table_at: int, where,
                max_len: int = MAX_PATCH_LEN, label: Callable[[int], str] = _hex) -> None:
    """What a patcher takes for granted of the entries, none of it needing
    a symbol: each no longer than it patches (max_len: the kernel's
    apply_paravirt() BUG_ONs past MAX_PATCH_LEN), inside code, none
    overlapping another (the patcher writes each one's whole length).
    where: addr -> (section, offset in it) as the file is placed (a linked
    file's headers, a module's load layout, an object's _ObjectPlaces);
    obj and table_at (the table's file offset) name a bad entry; label
    names an address. Every reader runs it: check() on any file's table,
    the kernel image's and a module's readers on theirs."""
    size = obj.arch.entry_size
    for s in sites:
        at, what = table_at + s.index * size, f"{table.SECTION} entry {s.index}"
        if s.length > max_len:
            raise obj.bad(at, f"{what}: a {s.length}-byte site, longer than the kernel "
                              f"patches ({MAX_PATCH_LEN}, MAX_PATCH_LEN)")
        in_code(obj, at, what, where(s.addr), s.addr, s.length, label)
    last = None
    for s in sorted(sites, key=lambda s: s.addr):
        if last is not None and s.addr < last.addr + last.length:
            raise obj.bad(table_at + s.index * size,
                          f"{table.SECTION} entry {s.index} at {label(s.addr)} overlaps entry "
                          f"{last.index} [{label(last.addr)}, {label(last.addr + last.length)})")
        last = s


def _check_entries(obj: ElfObject, entries: list[table.Entry], table_at: int) -> None:
    """check_sites on the table of any file, as read_entries read it: the
    same checks the kernel image's and a module's readers make, so no
    command (table, show, patch, link, verify, cc) lists, copies or patches
    two sites over one byte, a site in data or past its section's end. A
    table with patch records is pvpass's, whose runtime patches all that
    the len byte can say; one without is the kernel's (MAX_PATCH_LEN).
    An entry left 0 for a PIE's dynamic relocation is not checked."""
    limit = MAX_PATCH_LEN if obj.section(table.PATCH_SECTION) is None else TABLE_BYTE_MAX
    if obj.is_relocatable:
        places = _ObjectPlaces(obj)
        sites = [Site(i, places.addr(e.section, e.offset), e.type, e.length) for i, e in enumerate(entries)]
        check_sites(obj, sites, table_at, places.where, limit, places.label)
    else:
        sites = [Site(i, e.offset, e.type, e.length) for i, e in enumerate(entries) if e.section]
        check_sites(obj, sites, table_at, code_finder(obj), limit)


class _ObjectPlaces:
    """An object's sections as disjoint ranges of numbers, so that
    check_sites, made for addresses, checks section+offset places: offset o
    of section k is k * SPAN + SPAN / 2 + o. An offset (a 64-bit symbol value
    plus a 64-bit addend) is far inside +-SPAN / 2, so a negative or huge
    one never lands in another section."""
    SPAN = 1 << 80

    def __init__(self, obj: ElfObject) -> None:
        self.obj = obj

    def addr(self, section: str, offset: int) -> int:
        return self.obj.section(section).index * self.SPAN + self.SPAN // 2 + offset

    def where(self, addr: int):
        k, off = divmod(addr, self.SPAN)
        return self.obj.sections[k], off - self.SPAN // 2

    def label(self, addr: int) -> str:
        sec, off = self.where(addr)
        return f"{sec.name}{off:+#x}" if off < 0 else f"{sec.name}+{off:#x}"


def code_finder(obj: ElfObject):
    """addr -> (section, offset in it) of a linked file, as its section
    headers place them (_section_finder); None outside every section."""
    find = _section_finder(obj)

    def where(addr: int):
        name = find(addr)
        s = obj.section(name) if name else None
        return None if s is None else (s, addr - s["sh_addr"])
    return where


def _in_code(obj: ElfObject, at: int, what: str, section: str, addr: int, length: int) -> None:
    """In a linked file, [addr, addr + length) must be code (in_code)."""
    s = obj.section(section) if section else None
    in_code(obj, at, what, None if s is None else (s, addr - s["sh_addr"]), addr, length)


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


class Place(NamedTuple):
    """Where a record's pointer leads: a section and the offset in it, or
    (section None) an undefined symbol plus an addend."""
    section: str | None
    offset: int
    symbol: str = ""


def read_records(obj: ElfObject) -> list[tuple[str, table.PatchRecord]]:
    """Each patch record of `.pvpass.patches` with its backend's name, every
    pointer checked before anyone follows it: the backend name is a string
    ending inside the strings, the code lies inside the patch code, a call
    target is a place in code (or an undefined function), and the offsets of
    the call and of a pc-relative field lie inside the code. In a program the
    strings and code share the patches' output section (`pvpass ldscript`).
    A record that fails is one PvError naming it and its file offset."""
    sec = obj.section(table.PATCH_SECTION)
    if sec is None:
        return []
    lo, hi = bracket(obj, sec, "__pvpass_patches")
    try:
        recs = table.unpack_patch(obj.arch, obj.section_data(sec)[lo:hi])
    except ValueError as e:
        raise obj.bad(sec["sh_offset"] + lo, f"{table.PATCH_SECTION}: {e}") from None
    size, ptr = table.patch_size(obj.arch), obj.arch.ptr_size
    place = _reloc_places(obj, sec) if obj.is_relocatable else _address_places(obj)
    home = {table.STRINGS_SECTION, table.CODE_SECTION} if obj.is_relocatable else {table.PATCH_SECTION}
    out = []
    for i, r in enumerate(recs):
        at = i * size

        def bad(what: str) -> PvError:
            return obj.bad(sec["sh_offset"] + lo + at, f"{table.PATCH_SECTION} record {i}: {what}")
        if r.kind not in table.KINDS:
            raise bad(f"unknown {r.kind}")
        for name, off, width in (("call", r.call_off, 5), ("pc-relative field", r.pcrel_off, 4)):
            if off is not None and off + width > r.length:
                raise bad(f"its {name} at offset {off} does not fit its {r.length} bytes of code")
        name_at, code_at = place(at, r.backend), place(at + ptr, r.code)
        if not obj.is_relocatable and (name_at is None or code_at is None):
            out.append(("", r))         # a PIE's pointers: filled at load time
            continue
        strings = _home_bytes(obj, name_at, home - {table.CODE_SECTION})
        end = strings.find(b"\0", name_at.offset) if strings is not None else -1
        if strings is None or end <= name_at.offset:
            raise bad(f"its backend name pointer {_where(name_at)} is not a name in "
                      f"{table.STRINGS_SECTION}")
        code = _home_bytes(obj, code_at, home - {table.STRINGS_SECTION})
        if code is None or code_at.offset + r.length > len(code):
            raise bad(f"its code pointer {_where(code_at)} (+{r.length} bytes) is not inside "
                      f"{table.CODE_SECTION}")
        target = place(at + 2 * ptr, r.target)
        if r.kind in ("call", "trampoline") and target is None and obj.is_relocatable:
            raise bad(f"a {r.kind} record without a target")
        if target is not None and not _is_code(obj, target, r.kind):
            raise bad(f"its call target {_where(target)} is not "
                      f"{'a trampoline' if r.kind == 'trampoline' else 'a place in code'}")
        out.append((strings[name_at.offset:end].decode(errors="replace"), r))
    return out


def bracket(obj: ElfObject, sec, symbol: str) -> tuple[int, int]:
    """A table's extent in its section's bytes: all of them in an object; in
    a program, between the symbols the linker-script fragment defines (the
    patches' output section also holds the patch code and strings)."""
    if not obj.is_relocatable:
        syms = {s.name: s.value for s in obj.symbols if isinstance(s.shndx, int) and s.kind != "STT_SECTION"}
        if symbol in syms and symbol + "_end" in syms:
            lo, hi = syms[symbol] - sec["sh_addr"], syms[symbol + "_end"] - sec["sh_addr"]
            if not 0 <= lo <= hi <= sec["sh_size"]:
                raise obj.bad(sec.header_offset, f"{symbol} and {symbol}_end do not bracket a part "
                                                 f"of {sec.name}")
            return lo, hi
    return 0, sec["sh_size"]


def _where(p: Place | None) -> str:
    if p is None:
        return "(none)"
    return f"{p.section}+{p.offset:#x}" if p.section is not None else f"{p.symbol}{p.offset:+#x}"


def _home_bytes(obj: ElfObject, p: Place | None, homes: set[str]) -> bytes | None:
    """The contents of p's section when it is one of `homes`, else None."""
    if p is None or p.section not in homes or p.offset < 0:
        return None
    return obj.section_data(obj.section(p.section))


def _is_code(obj: ElfObject, p: Place, kind: str) -> bool:
    if p.section is None:                   # an undefined function: the call goes to its start
        return p.offset == 0 and kind != "trampoline"
    s = obj.section(p.section)
    if s is None or kind == "trampoline" and obj.is_relocatable and p.section != table.TRAMP_SECTION:
        return False
    return bool(s["sh_flags"] & 4) and 0 <= p.offset < s["sh_size"]


def _reloc_places(obj: ElfObject, sec):
    """An object's pointer field -> the place its relocation names (None:
    no relocation, the field must then be 0)."""
    relocs = {r.offset: r for r in obj.relocations_for(table.PATCH_SECTION)}
    absolute = obj.arch.ptr_size * 8

    def place(at: int, value: int) -> Place | None:
        r = relocs.get(at)
        if r is None:
            if value:
                raise obj.bad(sec["sh_offset"] + at, f"{table.PATCH_SECTION}: pointer {value:#x} "
                                                     f"at offset {at:#x} has no relocation")
            return None
        if r.type != 1:          # R_386_32, R_X86_64_64: the record's pointers are absolute
            raise obj.bad(sec["sh_offset"] + at, f"{table.PATCH_SECTION}: relocation {r.type_name} "
                                                 f"at offset {at:#x}, not a {absolute}-bit pointer")
        secname = obj.section_name_of(r.symbol)
        if secname is None:
            return Place(None, r.addend, r.symbol.name or "?")
        base = 0 if r.symbol.kind == "STT_SECTION" else r.symbol.value
        return Place(secname, base + r.addend)
    return place


def _address_places(obj: ElfObject):
    """A program's pointer field -> the section holding its address (None:
    0, which a PIE's dynamic relocation may fill at load time)."""
    find = _section_finder(obj)

    absolute = {s.value: s.name for s in obj.symbols if s.shndx == "SHN_ABS" and s.name}

    def place(at: int, value: int) -> Place | None:
        if not value:
            return None
        name = find(value)
        s = obj.section(name) if name else None
        if s is not None:
            return Place(name, value - s["sh_addr"])
        if value in absolute:       # code at a fixed address (a ROM), as in the object
            return Place(None, 0, absolute[value])
        return Place("(no section)", value)
    return place
