"""ELF I/O for the link step and `pvpass table` (pyelftools underneath):
validate the file, name its arch, and give sections, symbols and
relocations (with addends resolved for both RELA and REL) as plain data."""
from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from functools import cached_property

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from ..arch import ARCHES, Arch
from ..diag import PvError

_MACHINES = {"EM_386": "i386", "EM_X86_64": "x86_64"}


@dataclass(frozen=True)
class Symbol:
    index: int
    name: str
    value: int
    size: int
    kind: str           # STT_FUNC, STT_SECTION, ...
    bind: str
    shndx: object       # section index or 'SHN_UNDEF'/'SHN_ABS'/...


@dataclass(frozen=True)
class Reloc:
    offset: int         # in the section the relocations apply to
    type: int
    type_name: str
    symbol: Symbol
    addend: int


_R_NAMES = {
    "i386": {1: "R_386_32", 2: "R_386_PC32", 4: "R_386_PLT32", 9: "R_386_GOTOFF", 10: "R_386_GOTPC"},
    "x86_64": {1: "R_X86_64_64", 2: "R_X86_64_PC32", 4: "R_X86_64_PLT32", 10: "R_X86_64_32",
               11: "R_X86_64_32S", 9: "R_X86_64_GOTPCREL", 41: "R_X86_64_GOTPCRELX",
               42: "R_X86_64_REX_GOTPCRELX"},
}


_STT = {0: "STT_NOTYPE", 1: "STT_OBJECT", 2: "STT_FUNC", 3: "STT_SECTION", 4: "STT_FILE",
        5: "STT_COMMON", 6: "STT_TLS", 10: "STT_GNU_IFUNC"}
_STB = {0: "STB_LOCAL", 1: "STB_GLOBAL", 2: "STB_WEAK", 10: "STB_GNU_UNIQUE"}
_SHN = {0: "SHN_UNDEF", 0xFFF1: "SHN_ABS", 0xFFF2: "SHN_COMMON"}


class ElfObject:
    """A parsed ELF file (held in memory: the input is never written)."""

    def __init__(self, path: str, data: bytes) -> None:
        self.path = path
        self.data = data
        if data[:4] != b"\x7fELF":
            raise PvError(f"{path}: not an ELF file")
        try:
            self.elf = ELFFile(io.BytesIO(data))
            machine = self.elf["e_machine"]
            self.sections = list(self.elf.iter_sections())
        except (ELFError, struct.error, ValueError, OSError) as e:
            raise PvError(f"{path}: corrupt or truncated ELF file ({e})") from None
        if machine not in _MACHINES:
            raise PvError(f"{path}: ELF for machine {machine}, not i386 or x86-64")
        self.arch: Arch = ARCHES[_MACHINES[machine]]
        self._relocs: dict[int, list[Reloc]] = {}
        if (self.elf.elfclass == 64) != (self.arch.bits == 64):
            raise PvError(f"{path}: ELF class does not match machine {machine}")
        for s in self.sections:
            if s["sh_type"] != "SHT_NOBITS" and s["sh_offset"] + s["sh_size"] > len(data):
                raise PvError(f"{path}: truncated ELF file (section {s.name} ends at "
                              f"{s['sh_offset'] + s['sh_size']:#x}, file has {len(data):#x} bytes)")

    @classmethod
    def read(cls, path: str) -> "ElfObject":
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise PvError(f"{path}: {e.strerror}") from None
        return cls(path, data)

    @property
    def is_relocatable(self) -> bool:
        return self.elf["e_type"] == "ET_REL"

    def section(self, name: str):
        return next((s for s in self.sections if s.name == name), None)

    def section_index(self, name: str) -> int | None:
        for i, s in enumerate(self.sections):
            if s.name == name:
                return i
        return None

    def section_data(self, sec) -> bytes:
        if sec["sh_type"] == "SHT_NOBITS":
            return b"\0" * sec["sh_size"]
        off = sec["sh_offset"]
        return self.data[off:off + sec["sh_size"]]

    # Symbols and relocations are read with struct from the raw bytes: the
    # construct-based readers of pyelftools are ~20x slower on big objects.

    @cached_property
    def symbols(self) -> list[Symbol]:
        st = next((x for x in self.sections if x["sh_type"] == "SHT_SYMTAB"), None)
        if st is None:
            return []
        strtab = self.section_data(self.sections[st["sh_link"]])
        data = self.section_data(st)
        fmt = "<IIIBBH" if self.arch.bits == 32 else "<IBBHQQ"
        size = struct.calcsize(fmt)
        if len(data) % size:
            raise PvError(f"{self.path}: corrupt symbol table (size {len(data)})")
        out = []
        for i, t in enumerate(struct.iter_unpack(fmt, data)):
            if self.arch.bits == 32:
                name, value, sz, info, other, shndx = t
            else:
                name, info, other, shndx, value, sz = t
            end = strtab.find(b"\0", name)
            nm = strtab[name:end if end >= 0 else len(strtab)].decode(errors="replace")
            out.append(Symbol(i, nm, value, sz, _STT.get(info & 0xF, str(info & 0xF)),
                              _STB.get(info >> 4, str(info >> 4)), _SHN.get(shndx, shndx)))
        return out

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
        out: list[Reloc] = []
        for s in self.sections:
            t = s["sh_type"]
            if t not in ("SHT_REL", "SHT_RELA") or s["sh_info"] != idx:
                continue
            rela = t == "SHT_RELA"
            data = self.section_data(s)
            if self.arch.bits == 64:
                fmt = "<QQq" if rela else "<QQ"
            else:
                fmt = "<IIi" if rela else "<II"
            size = struct.calcsize(fmt)
            if len(data) % size:
                raise PvError(f"{self.path}: corrupt relocations in {s.name}")
            for r in struct.iter_unpack(fmt, data):
                off, info = r[0], r[1]
                si, rt = (info >> 32, info & 0xFFFFFFFF) if self.arch.bits == 64 else (info >> 8, info & 0xFF)
                if si >= len(syms):
                    raise PvError(f"{self.path}: relocation in {s.name} at {off:#x} names a missing symbol")
                addend = r[2] if rela else self._implicit_addend(target, off, rt)
                out.append(Reloc(off, rt, names.get(rt, str(rt)), syms[si], addend))
        out.sort(key=lambda r: r.offset)
        self._relocs[idx] = out
        return out

    def _implicit_addend(self, sec, off: int, rtype: int) -> int:
        data = self.section_data(sec)
        if off + 4 > len(data):
            raise PvError(f"{self.path}: relocation offset {off:#x} outside {sec.name}")
        return struct.unpack_from("<i", data, off)[0]

    def section_name_of(self, sym: Symbol) -> str | None:
        if isinstance(sym.shndx, int) and 0 < sym.shndx < len(self.sections):
            return self.sections[sym.shndx].name
        return None

    def function_at(self, section: str, offset: int) -> tuple[str, int] | None:
        """The symbol (function first) covering section+offset."""
        best = None
        for s in self.symbols:
            if self.section_name_of(s) != section or s.kind not in ("STT_FUNC", "STT_NOTYPE", "STT_OBJECT"):
                continue
            if not s.name:
                continue
            if s.value <= offset and (offset < s.value + s.size or s.size == 0):
                if best is None or s.value > best.value or (s.value == best.value and s.kind == "STT_FUNC"):
                    best = s
        return (best.name, offset - best.value) if best else None
