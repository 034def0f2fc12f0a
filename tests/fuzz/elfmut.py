"""Where the fields of an ELF object are, for mutating them: found with
pyelftools (not pvpass's own reader, which is what the mutations test)."""
from __future__ import annotations

import io
from dataclasses import dataclass

from elftools.elf.elffile import ELFFile


@dataclass(frozen=True)
class Field:
    name: str           # e.g. "shdr[3].sh_addralign", "sym[7].st_size"
    offset: int         # in the file
    size: int           # bytes
    value: int


_EHDR = {32: [("e_type", 16, 2), ("e_machine", 18, 2), ("e_version", 20, 4), ("e_entry", 24, 4),
              ("e_phoff", 28, 4), ("e_shoff", 32, 4), ("e_flags", 36, 4), ("e_ehsize", 40, 2),
              ("e_phentsize", 42, 2), ("e_phnum", 44, 2), ("e_shentsize", 46, 2),
              ("e_shnum", 48, 2), ("e_shstrndx", 50, 2)],
         64: [("e_type", 16, 2), ("e_machine", 18, 2), ("e_version", 20, 4), ("e_entry", 24, 8),
              ("e_phoff", 32, 8), ("e_shoff", 40, 8), ("e_flags", 48, 4), ("e_ehsize", 52, 2),
              ("e_phentsize", 54, 2), ("e_phnum", 56, 2), ("e_shentsize", 58, 2),
              ("e_shnum", 60, 2), ("e_shstrndx", 62, 2)]}
_SHDR = {32: [("sh_name", 4), ("sh_type", 4), ("sh_flags", 4), ("sh_addr", 4), ("sh_offset", 4),
              ("sh_size", 4), ("sh_link", 4), ("sh_info", 4), ("sh_addralign", 4), ("sh_entsize", 4)],
         64: [("sh_name", 4), ("sh_type", 4), ("sh_flags", 8), ("sh_addr", 8), ("sh_offset", 8),
              ("sh_size", 8), ("sh_link", 4), ("sh_info", 4), ("sh_addralign", 8), ("sh_entsize", 8)]}
_SYM = {32: [("st_name", 4), ("st_value", 4), ("st_size", 4), ("st_info", 1), ("st_other", 1),
             ("st_shndx", 2)],
        64: [("st_name", 4), ("st_info", 1), ("st_other", 1), ("st_shndx", 2), ("st_value", 8),
             ("st_size", 8)]}
_REL = {(32, False): [("r_offset", 4), ("r_info", 4)],
        (32, True): [("r_offset", 4), ("r_info", 4), ("r_addend", 4)],
        (64, False): [("r_offset", 8), ("r_info", 8)],
        (64, True): [("r_offset", 8), ("r_info", 8), ("r_addend", 8)]}


def _get(data: bytes, off: int, size: int) -> int:
    return int.from_bytes(data[off:off + size], "little")


def fields(data: bytes) -> list[Field]:
    """Every header, section header, symbol and relocation field."""
    elf = ELFFile(io.BytesIO(data))
    bits = elf.elfclass
    out = [Field(n, o, s, _get(data, o, s)) for n, o, s in _EHDR[bits]]
    shoff, shent = elf["e_shoff"], elf["e_shentsize"]
    for i in range(elf.num_sections()):
        o = shoff + i * shent
        for n, s in _SHDR[bits]:
            out.append(Field(f"shdr[{i}].{n}", o, s, _get(data, o, s)))
            o += s
    for i, sec in enumerate(elf.iter_sections()):
        t = sec["sh_type"]
        if t == "SHT_SYMTAB":
            layout, ent = _SYM[bits], sec["sh_entsize"]
            kind = "sym"
        elif t in ("SHT_REL", "SHT_RELA"):
            layout, ent = _REL[(bits, t == "SHT_RELA")], sec["sh_entsize"]
            kind = f"{sec.name}"
        else:
            continue
        for k in range(sec["sh_size"] // max(ent, 1)):
            o = sec["sh_offset"] + k * ent
            for n, s in layout:
                out.append(Field(f"{kind}[{k}].{n}", o, s, _get(data, o, s)))
                o += s
    return out


def set_field(data: bytes, f: Field, value: int) -> bytes:
    value &= (1 << (8 * f.size)) - 1
    return data[:f.offset] + value.to_bytes(f.size, "little") + data[f.offset + f.size:]


def find(data: bytes, name: str) -> Field:
    return next(f for f in fields(data) if f.name == name)


def section_index(data: bytes, name: str) -> int:
    elf = ELFFile(io.BytesIO(data))
    return next(i for i, s in enumerate(elf.iter_sections()) if s.name == name)


def symbol_index(data: bytes, name: str) -> int:
    elf = ELFFile(io.BytesIO(data))
    st = elf.get_section_by_name(".symtab")
    return next(i for i, s in enumerate(st.iter_symbols()) if s.name == name)

