"""What the file holds, read from its memory image: the sites
(`.parainstructions`), the patch records (`.pvpass.patches`) with their
backend names and code, and each site's bytes as they are in the file."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import struct

from capstone import CS_ARCH_X86, CS_MODE_32, CS_MODE_64, Cs
from capstone import x86_const as CX
from elftools.common.exceptions import ELFError

from .. import table
from ..diag import PvError
from ..link.elfobj import ElfObject
from ..link.tableread import bracket, read_checked
from .image import Image, load

TRAMP_SECTION, TRAMP_PREFIX = table.TRAMP_SECTION, table.TRAMP_PREFIX


@dataclass(frozen=True)
class SiteCopy:
    addr: int
    type: int
    length: int
    clobbers: int
    code: bytes         # the site's bytes in the file
    where: str          # section+offset or address, with symbol+offset


@dataclass(frozen=True)
class Record:
    backend: str
    code_addr: int
    code: bytes
    target: int
    type: int
    length: int
    clobbers: int
    call_off: int | None
    kind: str
    pcrel_off: int | None


@dataclass
class Artifact:
    path: str
    arch: str
    bits: int
    image: Image
    sites: list[SiteCopy]
    records: list[Record]
    trampolines: list[tuple[int, int]]

    def in_trampoline(self, addr: int) -> bool:
        return any(lo <= addr < hi for lo, hi in self.trampolines)

    def backends(self) -> list[str]:
        return sorted({r.backend for r in self.records})

    def find(self, backend: str, s: SiteCopy) -> Record | None:
        """pvpass_find in pvpass_rt.c: the first record of the backend with
        the site's type, length and clobber mask."""
        return self._by_key.get((backend, s.type, s.length, s.clobbers))

    @cached_property
    def _by_key(self) -> dict[tuple[str, int, int, int], Record]:
        out: dict[tuple[str, int, int, int], Record] = {}
        for r in self.records:
            out.setdefault((r.backend, r.type, r.length, r.clobbers), r)    # the first wins
        return out

    def ops_object_target(self, backend: str, type_: int) -> int | None:
        """The function the backend's ops initializer (an object named like
        the backend) holds for the op: type number x pointer size is the op's
        offset in the template struct."""
        for a, size, name in self.image.symbols:
            if name == backend and size >= (type_ + 1) * (self.bits // 8):
                return self.image.word(a + type_ * (self.bits // 8)) or None
        return None


def read(path: str) -> Artifact:
    try:
        return _read(path)
    except (ELFError, OverflowError, ValueError, struct.error) as e:
        # pyelftools, deep in a corrupt file (name or link fields out of range)
        raise PvError(f"{path}: corrupt ELF file ({e})") from None


def _read(path: str) -> Artifact:
    obj = read_checked(path)
    img = load(obj)
    arch = obj.arch
    if table.SECTION not in img.sections:
        raise PvError(f"{path}: no {table.SECTION} section: nothing to verify")
    lo, hi = _bracket(obj, img, table.SECTION, "__parainstructions")
    try:
        raw = table.unpack(arch, img.read(lo, hi - lo))
    except ValueError as e:
        raise PvError(f"{path}: {table.SECTION}: {e}") from None
    sites = [SiteCopy(instr, typ, ln, clob, img.read(instr, ln), img.where(instr))
             for instr, typ, ln, clob in raw]
    records = []
    if table.PATCH_SECTION in img.sections:
        lo, hi = _bracket(obj, img, table.PATCH_SECTION, "__pvpass_patches")
        try:
            recs = table.unpack_patch(arch, img.read(lo, hi - lo))
        except ValueError as e:
            raise PvError(f"{path}: {table.PATCH_SECTION}: {e}") from None
        for r in recs:
            records.append(Record(img.cstring(r.backend), r.code, img.read(r.code, r.length), r.target,
                                  r.type, r.length, r.clobbers, r.call_off, r.kind, r.pcrel_off))
    return Artifact(path, arch.name, arch.bits, img, sites, records, _trampolines(img))


def _bracket(obj: ElfObject, img: Image, section: str, symbol: str) -> tuple[int, int]:
    """A table's extent as addresses in the image (`tableread.bracket`)."""
    lo, hi = bracket(obj, obj.section(section), symbol)
    base = img.sections[section].addr
    return base + lo, base + hi


def _trampolines(img: Image) -> list[tuple[int, int]]:
    """Where trampolines are: their section in an object; in a program
    (where they land in .text) the extent of their symbols."""
    t = img.sections.get(TRAMP_SECTION)
    if t is not None:
        return [(t.addr, t.addr + t.size)]
    return sorted((a, a + size) for a, size, name in img.symbols if name.startswith(TRAMP_PREFIX))


@lru_cache(maxsize=2)
def _cs(bits: int) -> Cs:
    cs = Cs(CS_ARCH_X86, CS_MODE_64 if bits == 64 else CS_MODE_32)
    cs.detail = True
    return cs


def disasm(bits: int, code: bytes, addr: int = 0) -> list:
    return list(_cs(bits).disasm(code, addr))


def holds_indirect_call(bits: int, code: bytes) -> bool:
    """Unpatched: the site still calls through memory or a register."""
    return any(i.mnemonic == "call" and i.operands and i.operands[0].type != CX.X86_OP_IMM
               for i in disasm(bits, code))
