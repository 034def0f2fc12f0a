"""ELF input for the link step and `pvpass table`: validate the file, name
its arch, and give sections, symbols and relocations (with addends resolved
for both RELA and REL) as plain data.

Every header, section, symbol and relocation field is checked against the
file before use (offsets and sizes inside the file, indices in range,
alignments powers of two, entry sizes as the psABI sets them), so work and
memory stay bounded by the input's size; a bad field is one PvError,
"OBJ: offset 0x...: what is wrong", with the file offset of the field's
record. The headers are read with struct rather than pyelftools, which
trusts them (a symbol table whose sh_link names itself recurses without end).
"""
from __future__ import annotations

import os
import stat
import struct
import sys
from bisect import bisect_right
from collections import namedtuple
from functools import cached_property
from itertools import accumulate

from ..arch import ARCHES, Arch
from ..errors import PvError

_MACHINES = {3: "i386", 62: "x86_64"}
_OTHER_MACHINES = {2: "SPARC", 8: "MIPS", 20: "PowerPC", 21: "PowerPC64", 22: "S/390", 40: "ARM",
                   43: "SPARC V9", 50: "IA-64", 183: "AArch64", 243: "RISC-V", 258: "LoongArch"}
_ET = {1: "ET_REL", 2: "ET_EXEC", 3: "ET_DYN", 4: "ET_CORE"}
_SHT = {0: "SHT_NULL", 1: "SHT_PROGBITS", 2: "SHT_SYMTAB", 3: "SHT_STRTAB", 4: "SHT_RELA",
        5: "SHT_HASH", 6: "SHT_DYNAMIC", 7: "SHT_NOTE", 8: "SHT_NOBITS", 9: "SHT_REL",
        11: "SHT_DYNSYM", 14: "SHT_INIT_ARRAY", 15: "SHT_FINI_ARRAY", 16: "SHT_PREINIT_ARRAY",
        17: "SHT_GROUP", 18: "SHT_SYMTAB_SHNDX"}
_STT = {0: "STT_NOTYPE", 1: "STT_OBJECT", 2: "STT_FUNC", 3: "STT_SECTION", 4: "STT_FILE",
        5: "STT_COMMON", 6: "STT_TLS", 10: "STT_GNU_IFUNC"}
_STB = {0: "STB_LOCAL", 1: "STB_GLOBAL", 2: "STB_WEAK", 10: "STB_GNU_UNIQUE"}
_SHN = {0: "SHN_UNDEF", 0xFFF1: "SHN_ABS", 0xFFF2: "SHN_COMMON"}
SHN_LORESERVE, SHN_XINDEX = 0xFF00, 0xFFFF
MAX_ALIGN = 1 << 30          # sanity only: the writer bounds the padding it adds

_R_NAMES = {
    "i386": {1: "R_386_32", 2: "R_386_PC32", 4: "R_386_PLT32", 9: "R_386_GOTOFF", 10: "R_386_GOTPC"},
    "x86_64": {1: "R_X86_64_64", 2: "R_X86_64_PC32", 4: "R_X86_64_PLT32", 10: "R_X86_64_32",
               11: "R_X86_64_32S", 9: "R_X86_64_GOTPCREL", 41: "R_X86_64_GOTPCRELX",
               42: "R_X86_64_REX_GOTPCRELX"},
}
# bytes a relocation writes, where it is not 4 (psABI tables)
_R_WIDTH = {"i386": {0: 0, 5: 0, 20: 2, 21: 2, 22: 1, 23: 1, 40: 0},
            "x86_64": {0: 0, 1: 8, 5: 0, 6: 8, 7: 8, 8: 8, 12: 2, 13: 2, 14: 1, 15: 1, 16: 8,
                       17: 8, 18: 8, 24: 8, 25: 8, 27: 8, 28: 8, 29: 8, 30: 8, 31: 8, 33: 8,
                       35: 0, 36: 16, 37: 8, 38: 8}}

_EHDR = {32: "<HHIIIIIHHHHHH", 64: "<HHIQQQIHHHHHH"}     # from e_type on (offset 16)
_SHDR = {32: "<IIIIIIIIII", 64: "<IIQQQQIIQQ"}
_SYM = {32: "<IIIBBH", 64: "<IBBHQQ"}
SHDR_SIZE = {32: 40, 64: 64}
EHDR_SIZE = {32: 52, 64: 64}
SYM_SIZE = {32: 16, 64: 24}
REL_SIZE = {(32, False): 8, (32, True): 12, (64, False): 16, (64, True): 24}


# Named tuples (see arch.py): every `pvpass cc` reads objects.
class UnsupportedTarget(PvError):
    """A well-formed ELF file for a target pvpass does not table (another
    machine, big-endian, x32): the build path leaves such objects alone."""

    def __init__(self, message: str, target: str) -> None:
        super().__init__(message)
        self.target = target


class Symbol(namedtuple("Symbol", "index name value size kind bind shndx")):
    """kind: STT_FUNC, STT_SECTION, ...; shndx: a section index, or
    'SHN_UNDEF'/'SHN_ABS'/..."""
    __slots__ = ()


class Reloc(namedtuple("Reloc", "offset type type_name symbol addend")):
    """offset: in the section the relocations apply to; addend made explicit
    (REL: read from the section)."""
    __slots__ = ()


class Section:
    """One section header; `sec["sh_type"]` gives the type's name
    (`SHT_NOBITS`, or the number when unnamed), other fields their values."""
    __slots__ = ("index", "name", "header_offset", "fields")

    def __init__(self, index: int, name: str, header_offset: int, fields: dict) -> None:
        self.index = index
        self.name = name
        self.header_offset = header_offset    # where its header is in the file
        self.fields = fields

    def __repr__(self) -> str:
        return f"Section({self.index}, {self.name!r})"

    def __getitem__(self, key: str):
        if key == "sh_type":
            t = self.fields["sh_type"]
            return _SHT.get(t, t)
        return self.fields[key]


_SH_KEYS = ("sh_name", "sh_type", "sh_flags", "sh_addr", "sh_offset", "sh_size", "sh_link",
            "sh_info", "sh_addralign", "sh_entsize")
_EH_KEYS = ("e_type", "e_machine", "e_version", "e_entry", "e_phoff", "e_shoff", "e_flags",
            "e_ehsize", "e_phentsize", "e_phnum", "e_shentsize", "e_shnum", "e_shstrndx")


class ElfObject:
    """A parsed ELF file (held in memory: the input is never written)."""

    def __init__(self, path: str, data: bytes) -> None:
        self.path = path
        self.data = data
        self.header = self._read_header()
        self.arch: Arch = ARCHES[_MACHINES[self.header["e_machine"]]]
        self.bits = self.arch.bits
        self.sections: list[Section] = self._read_sections()
        self._by_name: dict[str, Section] = {}
        for s in self.sections:
            first = self._by_name.setdefault(s.name, s)
            if first is not s and self.is_relocatable and (s["sh_flags"] & 4 or first["sh_flags"] & 4):
                # sites, copies and the table name code sections by name
                raise self.bad(s.header_offset, f"sections {first.index} and {s.index} are both "
                                                f"named {s.name}, one of them code")
        self._relocs: dict[int, list[Reloc]] = {}
        self._rel_entries: dict[int, list] = {}     # check_all reads them all once
        self.clamped: dict[int, int] = {}    # symbol index -> its size, where a linked file's is clamped

    @classmethod
    def read(cls, path: str) -> "ElfObject":
        try:
            with open(path, "rb") as f:
                if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):    # /dev/zero never ends
                    raise PvError(f"{path}: not a regular file")
                data = f.read()
        except OSError as e:
            raise PvError(f"{path}: {e.strerror}") from None
        return cls(path, data)

    def bad(self, offset: int, what: str) -> PvError:
        return PvError(f"{self.path}: offset {offset:#x}: {what}")

    def unsupported(self, offset: int, what: str, target: str) -> UnsupportedTarget:
        return UnsupportedTarget(f"{self.path}: offset {offset:#x}: {what}", target)

    # --- headers -------------------------------------------------------

    def _read_header(self) -> dict:
        d = self.data
        if d[:4] != b"\x7fELF":
            raise self.bad(0, "not an ELF file")
        if len(d) < 16:
            raise self.bad(len(d), "truncated ELF identification")
        cls, enc = d[4], d[5]
        if cls not in (1, 2):
            raise self.bad(4, f"unknown ELF class {cls}")
        bits = 32 if cls == 1 else 64
        if enc != 1:
            m = struct.unpack_from(">H", d, 18)[0] if len(d) >= 20 else 0
            what = _OTHER_MACHINES.get(m, _MACHINES.get(m, f"machine {m}"))
            if enc != 2:
                raise self.bad(5, f"unknown data encoding {enc} {bits}-bit ELF ({what})")
            raise self.unsupported(5, f"big-endian {bits}-bit ELF ({what}): pvpass reads little-endian "
                                      f"i386 and x86-64 objects", f"big-endian {what}")
        if len(d) < EHDR_SIZE[bits]:
            raise self.bad(len(d), f"truncated ELF header ({len(d)} bytes, needs {EHDR_SIZE[bits]})")
        h = dict(zip(_EH_KEYS, struct.unpack_from(_EHDR[bits], d, 16)))
        m = h["e_machine"]
        if m not in _MACHINES:
            what = _OTHER_MACHINES.get(m, f"machine {m}")
            raise self.unsupported(18, f"ELF for {what}, not i386 or x86-64", what)
        if (bits == 64) != (_MACHINES[m] == "x86_64"):
            if m == 62:
                raise self.unsupported(4, "32-bit ELF class for machine x86_64 (x32 is not supported)", "x32")
            raise self.bad(4, f"{bits}-bit ELF class for machine {_MACHINES[m]}")
        if h["e_type"] not in (1, 2, 3):
            raise self.bad(16, f"ELF type {_ET.get(h['e_type'], h['e_type'])}: not a relocatable "
                               f"object, executable or shared library")
        eh_off = 40 if bits == 32 else 52
        if h["e_ehsize"] != EHDR_SIZE[bits]:
            raise self.bad(eh_off, f"e_ehsize {h['e_ehsize']}, not {EHDR_SIZE[bits]}")
        shoff, shnum = h["e_shoff"], h["e_shnum"]
        if shoff == 0:
            h["e_shnum"] = 0
            return h
        if shnum == 0:
            raise self.bad(eh_off + 8, "e_shnum 0 with a section header table (extended section "
                                       "numbering, over 65279 sections) is not supported")
        if h["e_shentsize"] != SHDR_SIZE[bits]:
            raise self.bad(eh_off + 6, f"e_shentsize {h['e_shentsize']}, not {SHDR_SIZE[bits]}")
        end = shoff + shnum * SHDR_SIZE[bits]
        if end > len(d):
            raise self.bad(shoff, f"section header table ({shnum} headers) ends at {end:#x}, "
                                  f"past the end of the file ({len(d):#x} bytes): truncated or corrupt")
        if not 0 < h["e_shstrndx"] < shnum:
            raise self.bad(eh_off + 10, f"e_shstrndx {h['e_shstrndx']} is not a section index "
                                        f"(the object has {shnum} sections)")
        return h

    def _read_sections(self) -> list[Section]:
        h, d, bits = self.header, self.data, self.bits
        shnum, shoff = h["e_shnum"], h["e_shoff"]
        offs = [shoff + i * SHDR_SIZE[bits] for i in range(shnum)]
        raw = [(o, dict(zip(_SH_KEYS, struct.unpack_from(_SHDR[bits], d, o)))) for o in offs]
        for i, (off, f) in enumerate(raw):
            if i == 0:
                continue
            where = f"section header {i}"
            if f["sh_type"] not in (0, 8):                       # NULL, NOBITS hold no bytes
                if f["sh_offset"] > len(d) or f["sh_offset"] + f["sh_size"] > len(d):
                    raise self.bad(off, f"{where}: contents [{f['sh_offset']:#x}, "
                                        f"{f['sh_offset'] + f['sh_size']:#x}) past the end of the "
                                        f"file ({len(d):#x} bytes): truncated or corrupt")
            a = f["sh_addralign"]
            if a & (a - 1) or a > MAX_ALIGN:
                raise self.bad(off, f"{where}: sh_addralign {a:#x} is not a power of two "
                                    f"up to {MAX_ALIGN:#x}")
            if f["sh_type"] in (2, 4, 9, 11, 17) and (f["sh_link"] >= shnum or f["sh_link"] == i):
                raise self.bad(off, f"{where}: sh_link {f['sh_link']} is not another section")
        names_off, names = raw[h["e_shstrndx"]] if shnum else (0, None)
        if shnum and names["sh_type"] != 3:
            raise self.bad(names_off, f"e_shstrndx names section {h['e_shstrndx']}, which is not "
                                      f"a string table")
        strs = self._slice(names) if shnum else b""
        out = []
        for i, (off, f) in enumerate(raw):
            n = f["sh_name"]
            if n and n >= len(strs):
                raise self.bad(off, f"section header {i}: name offset {n:#x} past the section "
                                    f"name table ({len(strs):#x} bytes)")
            out.append(Section(i, _cstr(strs, n), off, f))
        for s in out[1:]:
            self._check_section(s, out)
        return out

    def _check_section(self, s: Section, secs: list[Section]) -> None:
        t, f, bits = s.fields["sh_type"], s.fields, self.bits
        where = f"section {s.index} ({s.name})"
        want = {2: SYM_SIZE[bits], 11: SYM_SIZE[bits], 9: REL_SIZE[(bits, False)],
                4: REL_SIZE[(bits, True)], 17: 4}.get(t)
        if want is None:
            return
        if f["sh_entsize"] != want:
            raise self.bad(s.header_offset, f"{where}: sh_entsize {f['sh_entsize']}, not {want}")
        if f["sh_size"] % want:
            raise self.bad(s.header_offset, f"{where}: size {f['sh_size']:#x} is not a whole "
                                            f"number of {want}-byte entries")
        link = secs[f["sh_link"]]
        if t in (2, 11) and link.fields["sh_type"] != 3:
            raise self.bad(s.header_offset, f"{where}: its string table (section "
                                            f"{link.index}) is not a string table")
        if t in (2, 11) and f["sh_info"] > f["sh_size"] // want:
            raise self.bad(s.header_offset, f"{where}: sh_info {f['sh_info']} (first global) "
                                            f"past its {f['sh_size'] // want} symbols")
        if t in (4, 9, 17) and link.fields["sh_type"] not in (2, 11):
            raise self.bad(s.header_offset, f"{where}: sh_link {link.index} is not a symbol table")
        if t == 17 and f["sh_info"] >= link.fields["sh_size"] // SYM_SIZE[bits]:
            raise self.bad(s.header_offset, f"{where}: sh_info {f['sh_info']} (signature symbol) "
                                            f"past the symbol table")
        if t in (4, 9) and f["sh_info"] >= len(secs):
            raise self.bad(s.header_offset, f"{where}: sh_info {f['sh_info']} is not a section index")

    def _slice(self, f: dict) -> bytes:
        if f["sh_type"] in (0, 8):
            return b""
        return self.data[f["sh_offset"]:f["sh_offset"] + f["sh_size"]]

    @property
    def is_relocatable(self) -> bool:
        return self.header["e_type"] == 1

    def section(self, name: str) -> Section | None:
        return self._by_name.get(name)

    def section_index(self, name: str) -> int | None:
        s = self._by_name.get(name)
        return s.index if s is not None else None

    def section_data(self, sec: Section) -> bytes:
        """The section's bytes in the file (none for SHT_NOBITS: its size is
        not an allocation the input can make us do)."""
        return self._slice(sec.fields)

    # --- symbols and relocations ---------------------------------------
    # Read with struct from the raw bytes: construct-based readers are ~20x
    # slower on big objects.

    @cached_property
    def symtab(self) -> Section | None:
        tabs = [s for s in self.sections if s["sh_type"] == "SHT_SYMTAB"]
        if len(tabs) > 1:
            raise self.bad(tabs[1].header_offset, f"a second symbol table (section {tabs[1].index})")
        return tabs[0] if tabs else None

    @cached_property
    def symbols(self) -> list[Symbol]:
        st = self.symtab
        if st is None:
            return []
        strtab = self.section_data(self.sections[st["sh_link"]])
        data = self.section_data(st)
        bits, nsec = self.bits, len(self.sections)
        out = []
        for i, t in enumerate(struct.iter_unpack(_SYM[bits], data)):
            if bits == 32:
                name, value, sz, info, other, shndx = t
            else:
                name, info, other, shndx, value, sz = t
            where = st["sh_offset"] + i * SYM_SIZE[bits]
            if name and name >= len(strtab):
                raise self.bad(where, f"symbol {i}: name offset {name:#x} past the string table "
                                      f"({len(strtab):#x} bytes)")
            if shndx == SHN_XINDEX:
                raise self.bad(where, f"symbol {i}: extended section index (SHN_XINDEX) is not supported")
            if 0 < shndx < SHN_LORESERVE and shndx >= nsec:
                raise self.bad(where, f"symbol {i}: section index {shndx} past the {nsec} sections")
            nm = _cstr(strtab, name)
            kind = _STT.get(info & 0xF, str(info & 0xF))
            if 0 < shndx < SHN_LORESERVE and kind not in ("STT_SECTION", "STT_TLS"):
                sz = self._fit_symbol(where, i, nm, kind, value, sz, self.sections[shndx])
            out.append(Symbol(i, nm, value, sz, kind, _STB.get(info >> 4, str(info >> 4)),
                              _SHN.get(shndx, shndx)))
        return out

    def _fit_symbol(self, where: int, i: int, name: str, kind: str, value: int, size: int,
                    sec: Section) -> int:
        """A symbol must lie inside its section (disassembly and table dumps
        walk it): refused in an object, clamped in a linked file, where the
        linker's own symbols (`_end`, ...) may sit at a section's edge."""
        base = 0 if self.is_relocatable else sec["sh_addr"]
        end = base + sec["sh_size"]
        if base <= value and value + size <= end:
            return size
        if self.is_relocatable and kind in ("STT_FUNC", "STT_OBJECT"):
            raise self.bad(where, f"symbol {i} '{name}' [{value:#x}, {value + size:#x}) extends "
                                  f"past its section {sec.name} ({sec['sh_size']:#x} bytes)")
        self.clamped[i] = size
        return max(0, min(size, end - value))

    def symbol_offset(self, sym: Symbol) -> int:
        """Where sym's record is in the file (for messages)."""
        return self.symtab["sh_offset"] + sym.index * SYM_SIZE[self.bits]

    def rel_entries(self, s: Section) -> list[tuple[int, int, int, int | None]]:
        """(r_offset, symbol index, type, addend or None for REL) of one
        relocation section, symbol indices checked, and in an object each
        field inside the section it applies to."""
        cached = self._rel_entries.get(s.index)
        if cached is not None:
            return cached
        rela = s["sh_type"] == "SHT_RELA"
        bits = self.bits
        fmt = ("<QQq" if rela else "<QQ") if bits == 64 else ("<IIi" if rela else "<II")
        nsyms = self.sections[s["sh_link"]]["sh_size"] // SYM_SIZE[bits]
        target = self.sections[s["sh_info"]]
        size = target["sh_size"] if self.is_relocatable else 1 << 64
        widths = _R_WIDTH[self.arch.name]
        out = []
        for k, r in enumerate(struct.iter_unpack(fmt, self.section_data(s))):
            off, info = r[0], r[1]
            si, rt = (info >> 32, info & 0xFFFFFFFF) if bits == 64 else (info >> 8, info & 0xFF)
            if si >= nsyms:
                raise self.bad(s["sh_offset"] + k * REL_SIZE[(bits, rela)],
                               f"relocation {k} in {s.name} names symbol {si}, past the "
                               f"{nsyms} symbols")
            if off + widths.get(rt, 4) > size:
                raise self.bad(s["sh_offset"] + k * REL_SIZE[(bits, rela)],
                               f"relocation {k} in {s.name} at {off:#x} is outside "
                               f"{target.name} ({size:#x} bytes)")
            out.append((off, si, rt, r[2] if rela else None))
        self._rel_entries[s.index] = out
        return out

    def check_all(self) -> None:
        """Check every symbol and every relocation of every section, not only
        those a command reads: link and patch copy the rest into their output
        (debug info, unwind tables), so a corrupt field there is refused as
        one the command reads would be."""
        self.symbols
        for s in self.sections:
            if s["sh_type"] not in ("SHT_REL", "SHT_RELA"):
                continue
            self._against_symtab(s)
            info = s["sh_info"]
            if self.is_relocatable and 0 < info < len(self.sections) and \
                    self.sections[info].fields["sh_type"] in (0, 8):      # NULL, NOBITS
                # a writer keeps no bytes there, so its relocations would point past them
                t = self.sections[info]
                raise self.bad(s.header_offset, f"{s.name}: relocations for section {info}, but "
                                                f"{t.name} is {t['sh_type']}: it holds no bytes")
            if s.index not in self._rel_entries and not self._rels_in_bounds(s):
                self.rel_entries(s)         # the exact check: the first bad entry, by name

    def _rels_in_bounds(self, s: Section) -> bool:
        """True when every relocation of s surely passes rel_entries' checks,
        by column: the largest symbol index, the largest offset plus the
        widest of the types present (C-speed maxima and sets over memoryview
        columns of the file's bytes, no tuple per entry: `pvpass cc` checks
        every object of a kernel build, whose unwind and ksymtab relocations
        no command reads). False: see rel_entries."""
        f = s.fields
        if sys.byteorder != "little" or not f["sh_size"]:
            return not f["sh_size"]
        raw = memoryview(self.data)[f["sh_offset"]:f["sh_offset"] + f["sh_size"]]
        n = 3 if f["sh_type"] == 4 else 2       # words of one entry (RELA: + addend)
        if self.bits == 64:                     # r_info: type in the low half, symbol in the high
            words, halves = raw.cast("Q"), raw.cast("I")
            top = max(halves[3::2 * n])
        else:                                   # r_info: symbol << 8 | type
            words = halves = raw.cast("I")
            top = max(words[1::n]) >> 8
        if top >= self.sections[f["sh_link"]].fields["sh_size"] // SYM_SIZE[self.bits]:
            return False
        if not self.is_relocatable:
            return True
        size, end = self.sections[f["sh_info"]].fields["sh_size"], max(words[0::n])
        if end + 16 <= size:                    # 16: the widest relocation (R_X86_64_TLSDESC)
            return True
        types = set(halves[2::2 * n]) if self.bits == 64 else set(raw[4::4 * n])
        widths = _R_WIDTH[self.arch.name]
        return end + max(widths.get(t, 4) for t in types) <= size

    def _against_symtab(self, s: Section) -> bool:
        """Whether relocation section s uses the symbol table; in an object
        it must (a linked file's dynamic relocations use .dynsym)."""
        if s["sh_link"] == (self.symtab.index if self.symtab else -1):
            return True
        if self.is_relocatable:
            raise self.bad(s.header_offset, f"{s.name}: relocations against a symbol table "
                                            f"other than the object's (section {s['sh_link']})")
        return False

    def relocations_for(self, name: str) -> list[Reloc]:
        """Relocations that apply to section `name`, addends made explicit."""
        idx = self.section_index(name)
        if idx is None:
            return []
        cached = self._relocs.get(idx)
        if cached is not None:
            return cached
        target = self.sections[idx]
        syms = self.symbols
        names = _R_NAMES[self.arch.name]
        widths = _R_WIDTH[self.arch.name]
        out: list[Reloc] = []
        tdata: bytes | None = None          # the target's bytes, for REL addends (read once)
        for s in self.sections:
            if s["sh_type"] not in ("SHT_REL", "SHT_RELA") or s["sh_info"] != idx:
                continue
            if not self._against_symtab(s):
                continue            # dynamic relocations (.rela.plt): not ours to read
            for off, si, rt, addend in self.rel_entries(s):
                width = widths.get(rt, 4)
                if addend is None:
                    if tdata is None:
                        tdata = self.section_data(target)
                    addend = _implicit_addend(tdata, off, width)
                out.append(Reloc(off, rt, names.get(rt, str(rt)), syms[si], addend))
        out.sort(key=lambda r: r.offset)
        self._relocs[idx] = out
        return out

    def section_name_of(self, sym: Symbol) -> str | None:
        if isinstance(sym.shndx, int) and 0 < sym.shndx < len(self.sections):
            return self.sections[sym.shndx].name
        return None

    @cached_property
    def _func_index(self) -> dict[str, tuple[list, list, list]]:
        """Per section: candidate symbols sorted by (value, FUNC last), their
        values, and the running maximum of their ends (size 0: no end)."""
        by_sec: dict[str, list[Symbol]] = {}
        for s in self.symbols:
            sec = self.section_name_of(s)
            if sec is not None and s.name and s.kind in ("STT_FUNC", "STT_NOTYPE", "STT_OBJECT"):
                by_sec.setdefault(sec, []).append(s)
        out = {}
        for sec, syms in by_sec.items():
            # walked from the end: the last FUNC or the first other symbol wins a tie
            syms.sort(key=lambda s: (s.value, s.kind == "STT_FUNC",
                                     s.index if s.kind == "STT_FUNC" else -s.index))
            ends = list(accumulate((s.value + s.size if s.size else 1 << 64 for s in syms), max))
            out[sec] = (syms, [s.value for s in syms], ends)
        return out

    def function_at(self, section: str, offset: int) -> tuple[str, int] | None:
        """The symbol (function first) covering section+offset, and the
        offset into it."""
        s = self.symbol_covering(section, offset)
        return None if s is None else (s.name, offset - s.value)

    def symbol_covering(self, section: str, offset: int) -> Symbol | None:
        """The symbol (function first) covering section+offset: the one with
        the highest start, a FUNC among equals; a size-0 symbol covers all
        after it."""
        syms, values, ends = self._func_index.get(section, ((), [], []))
        k = bisect_right(values, offset) - 1
        while k >= 0 and ends[k] > offset:        # nothing at or before k reaches offset otherwise
            s = syms[k]
            if s.size == 0 or offset < s.value + s.size:
                return s
            k -= 1
        return None


def _implicit_addend(data: bytes, off: int, width: int) -> int:
    """A REL relocation's addend: the bytes it applies to."""
    if width not in (1, 2, 4, 8) or off + width > len(data):
        return 0
    return int.from_bytes(data[off:off + width], "little", signed=True)


def merge_ranges(ranges) -> list[tuple[int, int]]:
    """Sorted, disjoint [lo, hi) ranges covering the same offsets (ranges
    that only touch stay apart)."""
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


def _cstr(tab: bytes, off: int) -> str:
    end = tab.find(b"\0", off)
    return tab[off:end if end >= 0 else len(tab)].decode(errors="replace")
