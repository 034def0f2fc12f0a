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
from elftools.elf.relocation import RelocationSection

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

    @cached_property
    def symbols(self) -> list[Symbol]:
        st = self.elf.get_section_by_name(".symtab")
        if st is None:
            return []
        out = []
        try:
            for i, s in enumerate(st.iter_symbols()):
                out.append(Symbol(i, s.name, s["st_value"], s["st_size"],
                                  s["st_info"]["type"], s["st_info"]["bind"], s["st_shndx"]))
        except (ELFError, struct.error, ValueError) as e:
            raise PvError(f"{self.path}: corrupt symbol table ({e})") from None
        return out

    def relocations_for(self, name: str) -> list[Reloc]:
        """Relocations that apply to section `name`, addends made explicit."""
        idx = self.section_index(name)
        out: list[Reloc] = []
        if idx is None:
            return out
        target = self.sections[idx]
        syms = self.symbols
        names = _R_NAMES[self.arch.name]
        for s in self.sections:
            if not isinstance(s, RelocationSection) or s["sh_info"] != idx:
                continue
            try:
                for r in s.iter_relocations():
                    sym = syms[r["r_info_sym"]] if r["r_info_sym"] < len(syms) else None
                    if sym is None:
                        raise PvError(f"{self.path}: relocation in {s.name} at {r['r_offset']:#x} "
                                      f"names a missing symbol")
                    if r.is_RELA():
                        addend = r["r_addend"]
                    else:
                        addend = self._implicit_addend(target, r["r_offset"], r["r_info_type"])
                    out.append(Reloc(r["r_offset"], r["r_info_type"],
                                     names.get(r["r_info_type"], str(r["r_info_type"])), sym, addend))
            except (ELFError, struct.error, ValueError) as e:
                raise PvError(f"{self.path}: corrupt relocations in {s.name} ({e})") from None
        out.sort(key=lambda r: r.offset)
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
