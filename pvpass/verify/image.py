"""The file as it would sit in memory: a relocatable object's allocated
sections laid out and relocated, or an executable's load segments as
linked. Undefined functions get stand-in addresses, so a call to them can
be emulated by a stand-in (`emulate.py`)."""
from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field

from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection

from ..diag import PvError
from ..link.elfobj import ElfObject

BASE = 0x0800_0000          # where a relocatable object's first section goes
STANDIN_BASE = 0x0F00_0000  # one 16-byte slot per undefined symbol
STANDIN_SLOT = 16
GOT_BASE = 0x0F80_0000      # GOT slots the object's GOT relocations ask for
MAX_IMAGE = 0x0600_0000     # below the emulator's stack (emulate.STACK_LO)
SHF_ALLOC = 2
SHF_EXECINSTR = 4
SHF_TLS = 0x400
R_X86_64_TPOFF32 = 23       # local-exec TLS: S + A - the thread pointer
R_386_TLS_LE = 17           # the same on i386, through %gs (its base is 0 in unicorn)

# relocation types by arch: what is computed (S+A, S+A-P, G+A-P, ...)
_ABS = {"i386": {1}, "x86_64": {1, 10, 11}}
_PCREL = {"i386": {2, 4}, "x86_64": {2, 4, 24}}
_GOTPC = {"i386": set(), "x86_64": {9, 41, 42}}
_RELATIVE, _GLOB_DAT, _JUMP_SLOT = 8, 6, 7


@dataclass
class Section:
    name: str
    addr: int
    size: int
    exec: bool


@dataclass
class Image:
    path: str
    bits: int
    relocatable: bool
    chunks: dict[int, bytearray] = field(default_factory=dict)   # start -> bytes
    sections: dict[str, Section] = field(default_factory=dict)
    symbols: list[tuple[int, int, str]] = field(default_factory=list)  # (addr, size, name)
    standins: dict[int, str] = field(default_factory=dict)             # addr -> name
    unsupported: list[str] = field(default_factory=list)
    tp: int | None = None     # x86-64 thread pointer (%fs base): the end of the TLS block

    def read(self, addr: int, n: int) -> bytes:
        for start, buf in self.chunks.items():
            if start <= addr and addr + n <= start + len(buf):
                return bytes(buf[addr - start:addr - start + n])
        raise PvError(f"{self.path}: {n} bytes at {addr:#x} are outside the file's sections")

    def word(self, addr: int) -> int:
        return struct.unpack("<Q" if self.bits == 64 else "<I", self.read(addr, self.bits // 8))[0]

    def cstring(self, addr: int) -> str:
        out = bytearray()
        while len(out) < 256:
            b = self.read(addr + len(out), 1)
            if b == b"\0":
                return out.decode(errors="replace")
            out += b
        raise PvError(f"{self.path}: unterminated string at {addr:#x}")

    def address_of(self, name: str) -> int | None:
        a = next((a for a, _, n in self.symbols if n == name), None)
        return a if a is not None else next((a for a, n in self.standins.items() if n == name), None)

    def symbol_at(self, addr: int) -> str | None:
        return next((n for a, _, n in self.symbols if a == addr), None)

    def holder(self, addr: int, size: int) -> str | None:
        """The symbol whose object holds [addr, addr+size), as sym+off: the
        memory an inline replacement may name (a stand-in slot for an
        undefined symbol is 16 bytes)."""
        sec = self.section_at(addr)
        if sec is not None and sec.exec:
            return None
        for a, n, name in self.symbols:
            if a <= addr and (addr + size <= a + n if n else addr == a):
                return f"{name}+{addr - a:#x}"
        for a, name in self.standins.items():
            if a <= addr and addr + size <= a + STANDIN_SLOT:
                return f"{name}+{addr - a:#x}"
        return None

    def add_blob(self, name: str, addr: int, data: bytes) -> None:
        """Code or data the program maps at run time (a ROM), at its address."""
        if not data or len(data) > MAX_IMAGE:
            raise PvError(f"{name}: {len(data):#x} bytes: empty or too large to map (at most {MAX_IMAGE:#x})")
        end = addr + len(data)
        for start, buf in self.chunks.items():
            if start < end and addr < start + len(buf):
                raise PvError(f"{name}: {addr:#x}-{end:#x} overlaps the file's memory at "
                              f"{start:#x}-{start + len(buf):#x}")
        if addr < 0 or end > 1 << self.bits:
            raise PvError(f"{name}: {addr:#x}-{end:#x} is outside the {self.bits}-bit address space")
        self.chunks[addr] = bytearray(data)
        self.sections[name] = Section(name, addr, len(data), True)

    def section_at(self, addr: int) -> Section | None:
        return next((s for s in self.sections.values() if s.addr <= addr < s.addr + max(s.size, 1)), None)

    def where(self, addr: int) -> str:
        """section+offset (object) or the address (program), and symbol+offset."""
        s = self.section_at(addr)
        place = f"{s.name}+{addr - s.addr:#x}" if s and self.relocatable else f"{addr:#x}"
        best = None
        for a, size, name in self.symbols:
            if a <= addr and (addr < a + size or size == 0 and s is not None and self.section_at(a) is s) \
                    and (best is None or a > best[0]):
                best = (a, name)
        if addr in self.standins:
            best = (addr, self.standins[addr] + " (stand-in)")
        return f"{place} <{best[1]}+{addr - best[0]:#x}>" if best else place


def load(obj: ElfObject) -> Image:
    img = Image(obj.path, obj.arch.bits, obj.is_relocatable)
    (_load_object if obj.is_relocatable else _load_program)(obj, img)
    if img.standins:      # `ret` for a stand-in function, memory for a stand-in datum
        img.chunks[STANDIN_BASE] = bytearray(b"\xc3" * STANDIN_SLOT * len(img.standins))
    return img


def _fits(obj: ElfObject, size: int) -> None:
    if size > MAX_IMAGE:
        raise PvError(f"{obj.path}: {size:#x} bytes of sections: too large to emulate "
                      f"(at most {MAX_IMAGE:#x})")


def _standin(img: Image, name: str) -> int:
    for a, n in img.standins.items():
        if n == name:
            return a
    a = STANDIN_BASE + STANDIN_SLOT * len(img.standins)
    img.standins[a] = name
    return a


def _load_object(obj: ElfObject, img: Image) -> None:
    addr = BASE
    for s in obj.sections:
        if not s["sh_flags"] & SHF_ALLOC or not s.name:
            continue
        align = max(int(s["sh_addralign"]), 16)
        addr = (addr + align - 1) // align * align
        img.sections[s.name] = Section(s.name, addr, s["sh_size"], bool(s["sh_flags"] & SHF_EXECINSTR))
        addr += s["sh_size"]
        if s["sh_flags"] & SHF_TLS:   # TLS sections are laid out in a row: the block ends here
            img.tp = (addr + 15) // 16 * 16
    _fits(obj, addr - BASE)
    img.chunks[BASE] = buf = bytearray(addr - BASE + 16)
    for s in obj.sections:
        if s.name in img.sections and s["sh_type"] != "SHT_NOBITS":
            o = img.sections[s.name].addr - BASE
            buf[o:o + s["sh_size"]] = obj.section_data(s)
    common = addr
    sym_addr: dict[int, int] = {}
    for sym in obj.symbols:
        sec = obj.section_name_of(sym)
        if sec in img.sections:
            a = img.sections[sec].addr + (0 if sym.kind == "STT_SECTION" else sym.value)
            if sym.name and sym.kind != "STT_SECTION":
                img.symbols.append((a, sym.size, sym.name))
        elif sym.shndx == "SHN_ABS":
            a = sym.value
        elif sym.shndx == "SHN_COMMON":
            common = (common + 15) // 16 * 16
            a, common = common, common + sym.size
        elif sym.shndx == "SHN_UNDEF" and sym.name:
            a = _standin(img, sym.name)
        else:
            continue
        sym_addr[sym.index] = a
    if common > addr:
        _fits(obj, common - BASE)
        buf.extend(bytes(common - addr))
    got: dict[int, int] = {}
    arch = obj.arch.name
    for name, sec in img.sections.items():
        for r in obj.relocations_for(name):
            P = sec.addr + r.offset
            S = sym_addr.get(r.symbol.index)
            if S is None:
                img.unsupported.append(f"{name}+{r.offset:#x}: symbol {r.symbol.name!r} has no address")
                continue
            t = r.type
            if t in _ABS[arch]:
                v, size = S + r.addend, (8 if arch == "x86_64" and t == 1 else 4)
            elif t in _PCREL[arch]:
                v, size = S + r.addend - P, (8 if t == 24 else 4)
            elif arch == "x86_64" and t == R_X86_64_TPOFF32 and img.tp is not None:
                v, size = S + r.addend - img.tp, 4
            elif arch == "i386" and t == R_386_TLS_LE:      # thread pointer 0: %gs:S is S
                v, size = S + r.addend, 4
            elif t in _GOTPC[arch]:
                slot = got.setdefault(S, GOT_BASE + 8 * len(got))
                v, size = slot + r.addend - P, 4
            else:
                img.unsupported.append(f"{name}+{r.offset:#x}: relocation type {r.type_name}")
                continue
            mask = (1 << (8 * size)) - 1
            o = P - BASE
            buf[o:o + size] = (v & mask).to_bytes(size, "little")
    if got:
        img.chunks[GOT_BASE] = bytearray(b"".join(struct.pack("<Q", s) for s in got))


def _load_program(obj: ElfObject, img: Image) -> None:
    # program headers and dynamic relocations: pyelftools, on the bytes the
    # project's reader already checked (verify is not on the build path)
    elf = ELFFile(io.BytesIO(obj.data))
    for seg in elf.iter_segments():
        if seg["p_type"] == "PT_TLS" and obj.arch.bits == 64:
            # the initial TLS image as the thread's block, %fs at its end
            # (.tbss has addresses but no bytes of its own in a program)
            align = max(seg["p_align"], 1)
            img.tp = (seg["p_vaddr"] + seg["p_memsz"] + align - 1) // align * align
        if seg["p_type"] != "PT_LOAD":
            continue
        _fits(obj, seg["p_memsz"])
        data = bytearray(seg.data()) + bytes(seg["p_memsz"] - seg["p_filesz"])
        img.chunks[seg["p_vaddr"]] = data
    for s in obj.sections:
        if s["sh_flags"] & SHF_ALLOC and s.name:
            img.sections[s.name] = Section(s.name, s["sh_addr"], s["sh_size"],
                                           bool(s["sh_flags"] & SHF_EXECINSTR))
    img.symbols = [(s.value, s.size, s.name) for s in obj.symbols
                   if s.name and isinstance(s.shndx, int) and s.kind in ("STT_FUNC", "STT_OBJECT", "STT_NOTYPE")]
    # Dynamic relocations: the loader's work, done with stand-ins for what
    # lives in shared libraries.
    word = obj.arch.bits // 8
    for s in elf.iter_sections():
        if not isinstance(s, RelocationSection) or not s["sh_flags"] & SHF_ALLOC:
            continue
        syms = elf.get_section(s["sh_link"]) if s["sh_link"] else None
        for r in s.iter_relocations():
            t, P = r["r_info_type"], r["r_offset"]
            addend = r["r_addend"] if r.is_RELA() else None
            if t == _RELATIVE:
                v = addend if addend is not None else img.word(P)
            elif t in (_GLOB_DAT, _JUMP_SLOT, 1) and syms is not None:
                sym = syms.get_symbol(r["r_info_sym"])
                v = sym["st_value"] if sym["st_shndx"] != "SHN_UNDEF" else _standin(img, sym.name)
                v += addend or 0
            else:
                continue
            _poke(img, P, v & ((1 << (8 * word)) - 1), word)


def _poke(img: Image, addr: int, value: int, size: int) -> None:
    for start, buf in img.chunks.items():
        if start <= addr and addr + size <= start + len(buf):
            buf[addr - start:addr - start + size] = value.to_bytes(size, "little")
            return
