"""A linked kernel image (vmlinux) as the kernel's boot-time patcher sees
it: bytes by virtual address, symbols by name, the `.parainstructions`
entries, the `.altinstructions` records, the initial `pv_ops`.

Only what the image holds is used: nothing here knows an op's name or a
backend's targets (those are the image's own pointers).
"""
from __future__ import annotations

import struct
from bisect import bisect_right
from dataclasses import dataclass
from functools import cached_property

from .. import table
from ..errors import PvError
from ..link.elfobj import ElfObject, Symbol
from ..link.tableread import MAX_PATCH_LEN, Site, bracket, check_sites, code_finder, in_code, read_entries

ALT_SECTION = table.ALT_SECTION
ALT_RECORD = struct.Struct("<iiHBB")     # 6.1's struct alt_instr, __packed: 12 bytes
ALT_FLAG_INV = 1 << 15                   # ALTINSTR_FLAG_INV: patch if the feature is absent


@dataclass(frozen=True)
class Alt:
    """One `.altinstructions` record with its fields made absolute."""
    index: int
    addr: int            # instr_offset resolved
    repl: int            # repl_offset resolved
    cpuid: int           # feature bit | ALT_FLAG_INV
    instrlen: int
    repllen: int

    @property
    def feature(self) -> int:
        return self.cpuid & ~ALT_FLAG_INV

    @property
    def inverted(self) -> bool:
        return bool(self.cpuid & ALT_FLAG_INV)


class Placed:
    """Sections at addresses: which one holds an address, at what offset."""

    def __init__(self, secs: list[tuple[int, object]]) -> None:
        secs = sorted(secs, key=lambda t: t[0])
        self._starts = [a for a, _ in secs]
        self._secs = secs

    def at(self, addr: int) -> tuple[object, int] | None:
        k = bisect_right(self._starts, addr) - 1
        if k >= 0:
            a, s = self._secs[k]
            if addr < a + s["sh_size"]:
                return s, addr - a
        return None

    @property
    def end(self) -> int:
        return max((a + s["sh_size"] for a, s in self._secs), default=0)


def parse_sites(path: str, arch, data: bytes) -> list[Site]:
    """The `.parainstructions` entries of a table whose addresses are final."""
    try:
        raw = table.unpack(arch, data)
    except ValueError as e:
        raise PvError(f"{path}: {table.SECTION}: {e}") from None
    return [Site(i, instr, typ, length) for i, (instr, typ, length, _) in enumerate(raw)]


def parse_alts(path: str, data: bytes, base: int) -> list[Alt]:
    """The `.altinstructions` records of a table at address base."""
    if len(data) % ALT_RECORD.size:
        raise PvError(f"{path}: {ALT_SECTION}: {len(data)} bytes is not a whole number "
                      f"of {ALT_RECORD.size}-byte records (not Linux 6.1's struct alt_instr?)")
    out = []
    for i, off in enumerate(range(0, len(data), ALT_RECORD.size)):
        io, ro, cpuid, il, rl = ALT_RECORD.unpack_from(data, off)
        out.append(Alt(i, base + off + io, base + off + 4 + ro, cpuid, il, rl))
    return out


def check_alts(obj: ElfObject, alts: list[Alt], table_at: int, where) -> None:
    """Each record as the kernel's macros make it (apply_alternatives()
    relies on it): the original instructions and the replacement inside
    code, no longer than MAX_PATCH_LEN, the replacement no longer than the
    original (the assembler pads it), and no record's instructions partly
    over another's. where, obj, table_at: as check_sites."""
    for a in alts:
        what, at = f"{ALT_SECTION} record {a.index}", table_at + a.index * ALT_RECORD.size
        if a.instrlen > MAX_PATCH_LEN:
            raise obj.bad(at, f"{what}: {a.instrlen} bytes of instructions, longer than the kernel "
                              f"patches ({MAX_PATCH_LEN}, MAX_PATCH_LEN)")
        if a.repllen > a.instrlen:
            raise obj.bad(at, f"{what}: a {a.repllen}-byte replacement for {a.instrlen} bytes")
        in_code(obj, at, f"{what}'s instructions", where(a.addr), a.addr, a.instrlen)
        if a.repllen:
            in_code(obj, at, f"{what}'s replacement", where(a.repl), a.repl, a.repllen)
    prev = None
    for a in sorted(alts, key=lambda a: (a.addr, a.instrlen)):
        # ALTERNATIVE_2's records share their instructions; others are apart
        if prev is not None and a.addr < prev.addr + prev.instrlen and \
                (a.addr, a.instrlen) != (prev.addr, prev.instrlen):
            raise obj.bad(table_at + a.index * ALT_RECORD.size,
                          f"{ALT_SECTION} record {a.index}'s instructions at {a.addr:#x} "
                          f"overlap record {prev.index}'s [{prev.addr:#x}, "
                          f"{prev.addr + prev.instrlen:#x})")
        prev = a


def is_stripped_image(obj: ElfObject) -> bool:
    """An executable (ET_EXEC, as every vmlinux is) with a patch-site table,
    no pvpass patch records and no symbol table: a kernel image after strip
    or objcopy --strip-all."""
    return obj.header["e_type"] == 2 and obj.symtab is None and obj.section(table.SECTION) is not None \
        and obj.section(table.PATCH_SECTION) is None


def is_kernel_image(obj: ElfObject) -> bool:
    """A linked image with a patch-site table, the kernel's pv_ops and its
    _paravirt_nop, and no pvpass patch records: what the kernel's own
    patcher, not a pvpass backend, patches (a pvpass program may call its
    ops object pv_ops too)."""
    if obj.is_relocatable or obj.section(table.SECTION) is None or obj.section(table.PATCH_SECTION):
        return False
    names = {s.name for s in obj.symbols}
    return "pv_ops" in names and "_paravirt_nop" in names


def kernel_image(obj: ElfObject) -> "KernelImage | None":
    """The image, its tables and ops objects checked, when obj is a kernel
    image (is_kernel_image); None for any other file. A stripped image
    (is_stripped_image) is an error: its pv_ops, _paravirt_nop and x86_nops
    are found by name."""
    if not is_kernel_image(obj):
        if is_stripped_image(obj):
            raise obj.bad(obj.section(table.SECTION).header_offset,
                          f"a linked file with {table.SECTION} and no symbol table: a stripped "
                          f"kernel image? pvpass finds pv_ops, _paravirt_nop and x86_nops by name")
        return None
    img = KernelImage(obj)
    img.sites, img.alts, img.pv_ops
    from .rules import kernel_nops          # rules reads the image: imported here
    kernel_nops(img)
    return img


def check_listed(obj: ElfObject) -> None:
    """What `pvpass table` checks of a linked file beyond read_checked: a
    kernel image's tables and ops objects (kernel_image); a stripped
    image's tables (is_stripped_image), by the checks that need no symbol
    (check_sites, check_alts): it can be listed, not patched."""
    if obj.is_relocatable:
        return
    if is_stripped_image(obj):
        img = KernelImage(obj)
        img.sites, img.alts
    elif obj.symtab is not None:
        kernel_image(obj)


class KernelImage:
    def __init__(self, obj: ElfObject) -> None:
        if obj.is_relocatable:
            raise PvError(f"{obj.path}: a relocatable object, not a linked kernel image")
        self.obj = obj
        self.arch = obj.arch
        self.path = obj.path
        self.placed = Placed([(s["sh_addr"], s) for s in obj.sections
                              if s["sh_flags"] & 2 and s["sh_size"] and s["sh_addr"]
                              and s["sh_type"] != "SHT_NOBITS"])

    # --- bytes by address -------------------------------------------------
    def where(self, addr: int) -> tuple[object, int] | None:
        """(section, offset in it) holding addr, None outside the file's bytes."""
        return self.placed.at(addr)

    def file_offset(self, addr: int, n: int) -> int:
        w = self.where(addr)
        if w is None or w[1] + n > w[0]["sh_size"]:
            raise PvError(f"{self.path}: {n} bytes at {addr:#x} are not in one section of the file")
        return w[0]["sh_offset"] + w[1]

    def read(self, addr: int, n: int) -> bytes:
        off = self.file_offset(addr, n)
        return self.obj.data[off:off + n]

    def extent(self, addr: int) -> int:
        """Bytes from addr to the end of its section; 0 outside the file's bytes."""
        w = self.where(addr)
        return 0 if w is None else w[0]["sh_size"] - w[1]

    def read_upto(self, addr: int, n: int) -> bytes:
        """At most n bytes from addr, up to the end of its section (a decoder's look-ahead)."""
        return self.read(addr, min(n, self.extent(addr)))

    def ptr(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, self.arch.ptr_size), "little")

    # --- symbols ----------------------------------------------------------
    @cached_property
    def _by_name(self) -> dict[str, Symbol]:
        out: dict[str, Symbol] = {}
        for s in self.obj.symbols:
            if s.name and s.kind != "STT_SECTION" and isinstance(s.shndx, int):
                # a global wins over a local of the same name
                if s.name not in out or (s.bind == "STB_GLOBAL" and out[s.name].bind != "STB_GLOBAL"):
                    out[s.name] = s
        return out

    @cached_property
    def _globals(self) -> dict[str, Symbol]:
        return {s.name: s for s in self.obj.symbols if s.name and isinstance(s.shndx, int)
                and s.bind in ("STB_GLOBAL", "STB_WEAK") and s.kind != "STT_SECTION"}

    def global_symbol(self, name: str) -> Symbol | None:
        """What a module's undefined symbol of that name resolves to."""
        return self._globals.get(name)

    def symbol(self, name: str) -> Symbol | None:
        return self._by_name.get(name)

    def need(self, name: str, why: str) -> Symbol:
        s = self.symbol(name)
        if s is None:
            raise PvError(f"{self.path}: no symbol '{name}' ({why})")
        return s

    @cached_property
    def _funcs(self) -> tuple[list[int], list[Symbol]]:
        # every symbol, locals included: static functions of the same name
        # in several files each name their own code
        syms = sorted((s.value, s.kind != "STT_FUNC", s.name, s) for s in self.obj.symbols
                      if s.name and s.kind in ("STT_FUNC", "STT_NOTYPE", "STT_OBJECT")
                      and isinstance(s.shndx, int) and self.where(s.value))
        return [v for v, *_ in syms], [s for *_, s in syms]

    def name_of(self, addr: int) -> str:
        """symbol+offset as objdump prints it (the nearest symbol at or below)."""
        values, syms = self._funcs
        k = bisect_right(values, addr) - 1
        if k < 0:
            return f"{addr:#x}"
        s = syms[k]
        return s.name if addr == s.value else f"{s.name}+{addr - s.value:#x}"

    def label(self, addr: int) -> str:
        """How show names a site: symbol+offset."""
        return self.name_of(addr)

    # --- the tables -------------------------------------------------------
    @cached_property
    def sites(self) -> list[Site]:
        """The entries, checked (check_sites)."""
        sec = self.obj.section(table.SECTION)
        out = [Site(i, e.offset, e.type, e.length) for i, e in enumerate(read_entries(self.obj))]
        if out:
            check_sites(self.obj, out, sec["sh_offset"] + bracket(self.obj, sec, "__parainstructions")[0],
                        self._code_at)
        return out

    @cached_property
    def alts(self) -> list[Alt]:
        """The records, checked (check_alts)."""
        sec = self.obj.section(ALT_SECTION)
        if sec is None:
            return []
        out = parse_alts(self.path, self.obj.section_data(sec), sec["sh_addr"])
        check_alts(self.obj, out, sec["sh_offset"], self._code_at)
        return out

    @cached_property
    def _code_at(self):
        return code_finder(self.obj)

    def object_bytes(self, name: str, why: str) -> tuple[Symbol, bytes]:
        """A data object of the image and its bytes: all of them inside one
        section with contents (a linked file's symbols are otherwise clamped)."""
        s = self.need(name, why)
        w = self.where(s.value)
        if s.index in self.obj.clamped or not s.size or w is None or w[1] + s.size > w[0]["sh_size"]:
            size = self.obj.clamped.get(s.index, s.size)
            raise self.obj.bad(self.obj.symbol_offset(s), f"symbol '{name}' [{s.value:#x}, "
                               f"{s.value + size:#x}) is not inside one section with contents")
        return s, self.read(s.value, s.size)

    @cached_property
    def pv_ops(self) -> Symbol:
        s, _ = self.object_bytes("pv_ops", "the ops object the sites call through")
        if s.size % self.arch.ptr_size:
            raise self.obj.bad(self.obj.symbol_offset(s),
                               f"pv_ops has size {s.size}, not a whole number of pointers")
        return s

    def ops_values(self, name: str) -> list[int]:
        """The pointers of a typeof(pv_ops) object, by type number."""
        s = self.need(name, "an ops object of the image")
        if self.obj.clamped.get(s.index, s.size) != self.pv_ops.size:
            raise self.obj.bad(self.obj.symbol_offset(s), f"{name} has {s.size} bytes, pv_ops "
                               f"{self.pv_ops.size}: not a whole typeof(pv_ops)")
        _, data = self.object_bytes(name, "an ops object of the image")
        n = self.arch.ptr_size
        return [int.from_bytes(data[i:i + n], "little") for i in range(0, len(data), n)]

    @cached_property
    def init_range(self) -> tuple[int, int] | None:
        """[__init_begin, __init_end): memory the kernel frees after boot."""
        b, e = self.symbol("__init_begin"), self.symbol("__init_end")
        return (b.value, e.value) if b and e else None

    def in_init(self, addr: int) -> bool:
        r = self.init_range
        return r is not None and r[0] <= addr < r[1]
