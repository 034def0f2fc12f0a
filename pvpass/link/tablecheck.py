"""Object-only checks for the build path (`pvpass cc`): no source needed.

A kernel-dialect object carries the compiler-made table: each entry gives the
site's place, type number and length. `check_table` checks what the runtime
relies on: the entry lies inside its section on instruction boundaries, holds
a `call *` through an ops object, and its type number is that op's slot
(offset / pointer size), as the kernel's PARAVIRT_PATCH() computes it.

Nearly every kernel site is the one instruction PARAVIRT_CALL assembles to,
`call *disp32` (FF 15 + a relocated disp32, RIP-relative on x86-64,
absolute on i386: exactly 6 bytes in both modes). An entry of exactly those
bytes, with its relocation at +2, is checked without a disassembler; any
other entry is disassembled with capstone (imported only then: it costs
~30 ms, a tenth of a small kernel compile).

`may_hold_sites` says whether an object without a table could hold a
pvpass-dialect site at all: a site is a `call *`/`jmp *` whose memory operand
is relocated, and such an instruction ends in its relocated disp32 right after
an FF opcode with ModRM (and SIB). Objects with none need no front-end run.
"""
from __future__ import annotations

import bisect
from collections import namedtuple

from .. import table
from ..errors import PvError
from .elfobj import ElfObject
from .tableread import read_entries

SHF_EXECINSTR = 4


class CheckedEntry(namedtuple("CheckedEntry", "entry ops_object offset")):
    """A table.Entry that holds, the ops object its call goes through, and
    the op's offset in it."""
    __slots__ = ()


def check_table(obj: ElfObject, entries: list[table.Entry] | None = None) -> list[CheckedEntry]:
    """Check every entry of the object's compiler-made table (PvError on the
    first bad one, naming the object and the entry's place); `entries`: the
    table as read_entries read it, when the caller has it."""
    out = []
    ptr = obj.arch.ptr_size
    datas: dict[str, bytes] = {}
    starts: dict[str, list[int]] = {}     # relocation offsets per section (sorted)
    for i, e in enumerate(read_entries(obj) if entries is None else entries):
        where = f"{obj.path}: {table.SECTION} entry {i} ({e.section}+{e.offset:#x})"
        sec = obj.section(e.section)
        if sec is None or not sec["sh_flags"] & SHF_EXECINSTR:
            raise PvError(f"{where}: not in an executable section")
        data = datas.get(e.section)
        if data is None:
            data = datas[e.section] = obj.section_data(sec)
            starts[e.section] = [r.offset for r in obj.relocations_for(e.section)]
        if e.length == 0 or e.offset + e.length > len(data):
            raise PvError(f"{where}: length {e.length} runs past the section's end")
        rels, offs = obj.relocations_for(e.section), starts[e.section]
        found = _plain_call(obj, data, e, rels, offs)
        if found is None:
            found = _decoded_call(obj, data, e, rels, offs, where)
        name, off = found
        if off % ptr or off // ptr != e.type:
            raise PvError(f"{where}: type {e.type}, but the call goes through {name}+{off:#x} "
                          f"(type {off / ptr:g})")
        out.append(CheckedEntry(e, name, off))
    return out


# ModRM 0x15: FF /2 (call) with a disp32 and no base: RIP-relative on x86-64,
# absolute on i386; no prefix, no SIB, so the instruction is exactly 6 bytes.
_CALL_DISP32 = b"\xff\x15"


def _plain_call(obj: ElfObject, data: bytes, e, rels, offs) -> tuple[str, int] | None:
    """(ops object, offset) when the entry is exactly one `call *disp32` whose
    disp32 is relocated against a data symbol; else None (decode it)."""
    if e.length != 6 or data[e.offset:e.offset + 2] != _CALL_DISP32:
        return None
    k = bisect.bisect_left(offs, e.offset)
    hits = rels[k:bisect.bisect_left(offs, e.offset + 6)]
    if len(hits) != 1 or hits[0].offset != e.offset + 2 or \
            hits[0].symbol.kind in ("STT_FUNC", "STT_SECTION"):
        return None
    r = hits[0]
    if obj.arch.bits == 64 and r.type_name in ("R_X86_64_PC32", "R_X86_64_PLT32"):
        return r.symbol.name, r.addend + 4          # disp32 is relative to the end (+6)
    if obj.arch.bits == 32 and r.type_name == "R_386_32":
        return r.symbol.name, r.addend
    return None


def _decoded_call(obj: ElfObject, data: bytes, e, rels, offs, where: str) -> tuple[str, int]:
    """The general case: disassemble the entry's bytes (capstone)."""
    from .copies import _ABS, _PCREL, _disasm, _norm      # capstone: only here
    ins = _disasm(obj.arch.bits, data, e.offset, e.offset + e.length)
    if not ins or ins[-1][0] + ins[-1][1] != e.offset + e.length:
        raise PvError(f"{where}: length {e.length} does not end on an instruction boundary")
    calls = [x for x in ins if _norm(x[2]) in ("call", "jmp") and x[3].startswith("*")]
    found = None
    for addr, size, _, _ in calls:
        for r in rels[bisect.bisect_left(offs, addr):bisect.bisect_left(offs, addr + size)]:
            if r.symbol.kind not in ("STT_FUNC", "STT_SECTION"):
                if r.type_name in _PCREL:
                    found = (r.symbol.name, r.addend + (addr + size - r.offset))
                elif r.type_name in _ABS:
                    found = (r.symbol.name, r.addend)
    if found is None:
        raise PvError(f"{where}: no call through an ops object in the site's {e.length} bytes")
    return found


def may_hold_sites(obj: ElfObject) -> bool:
    """True when some executable section has a relocated disp32 that ends a
    `call *`/`jmp *` memory operand with neither base nor index register
    (FF /2../5, ModRM and maybe SIB: see _mem_call_modrm). Bytes that only
    look like one (the end of another instruction, then an opcode byte that
    reads as that ModRM) are told apart by disassembling the function
    (capstone) from its start, so an object without a real one costs no
    preprocessor run."""
    return confirmed_call(obj, call_candidates(obj))


def call_candidates(obj: ElfObject) -> list[tuple[str, bytes, int]]:
    """(section, its bytes, relocation offset) of each relocated disp32 whose
    preceding bytes read as such a `call *`/`jmp *`: a byte test, no
    disassembler. An empty list: no site can be in the object; else
    `confirmed_call` tells a real call from look-alike bytes. Split so that
    a result-cache hit, which the object's hash already vouches for, never
    pays for capstone."""
    return list(iter_call_candidates(obj))


def iter_call_candidates(obj: ElfObject):
    """call_candidates one at a time: the build path asks whether there is
    one, then (maybe) whether one decodes as a call, which the first
    usually does (a function of 10,000 sites built a list of 10,000)."""
    for sec in obj.sections:
        if not sec["sh_flags"] & SHF_EXECINSTR or sec["sh_type"] == "SHT_NOBITS":
            continue
        rels = obj.relocations_for(sec.name)
        if not rels:
            continue
        data = obj.section_data(sec)
        for r in rels:
            o = r.offset
            if (o >= 2 and data[o - 2] == 0xFF and _mem_call_modrm(data[o - 1], sib=None)) or \
                    (o >= 3 and data[o - 3] == 0xFF and _mem_call_modrm(data[o - 2], sib=data[o - 1])):
                yield sec.name, data, o


def confirmed_call(obj: ElfObject, candidates: list[tuple[str, bytes, int]]) -> bool:
    """Whether some candidate decodes as a `call *`/`jmp *` (capstone, from
    its function's start)."""
    decoded: dict[tuple[str, int], dict[int, tuple]] = {}
    return any(_decodes_as_call(obj, name, data, o, decoded) for name, data, o in candidates)


# Relocations that reach a global through the GOT: x86-64 GOTPCREL,
# GOTPCRELX, REX_GOTPCRELX; i386 GOT32, GOTOFF, GOT32X.
GOT_RELOCS = {64: (9, 41, 42), 32: (3, 9, 43)}


def got_advice(bits: int) -> str:
    """What makes the ops object reachable by a relocated call again."""
    if bits == 32:
        return "build i386 code with -fno-pie and without -fpic, as the kernel does"
    return ("give the ops object hidden visibility (#pragma GCC visibility push(hidden) around its "
            "declaration) or build with -fno-pic")


# Functions longer than this are not decoded to confirm a candidate (it is
# taken as one): memory and time stay bounded (a 128 MB `.fill` in an asm
# statement made capstone run out of memory), and the full analysis that
# follows says what is wrong with such code.
_DECODE_MAX = 1 << 20


def _function_insns(obj: ElfObject, section: str, data: bytes, off: int, decoded: dict) -> dict | None:
    """The instructions of the function covering `off`, by offset (capstone,
    cached per function); None when no symbol says where it starts or the
    function is over _DECODE_MAX bytes."""
    sym = obj.symbol_covering(section, off)
    if sym is None:
        return None
    from .copies import _disasm
    start = sym.value
    end = start + sym.size if sym.size else len(data)
    if end - start > _DECODE_MAX:
        return None
    ins = decoded.get((section, start))
    if ins is None:
        ins = decoded[(section, start)] = {i[0]: i for i in _disasm(obj.arch.bits, data, start, end)}
    return ins


def _decodes_as_call(obj: ElfObject, section: str, data: bytes, off: int, decoded: dict) -> bool:
    """Whether the instruction holding the relocated field at `off` is an
    indirect call or jump, decoded from the start of its function (True when
    no symbol says where that starts)."""
    ins = _function_insns(obj, section, data, off, decoded)     # capstone: only for candidates
    if ins is None:
        return True
    from .copies import _norm
    for back in range(1, 16):               # an instruction is at most 15 bytes
        i = ins.get(off - back)
        if i is not None and i[0] + i[1] > off:
            return _norm(i[2]) in ("call", "jmp", "lcall", "ljmp") and i[3].startswith("*")
    return False


def _mem_call_modrm(modrm: int, sib: int | None) -> bool:
    """FF /2../5 through a bare disp32: no base and no index register. That
    is how gcc addresses a member of a global ops object (`%c[op]`, or an
    "m" operand: absolute, or RIP-relative on x86-64); a base or index
    register with a relocated ops address would index an array of ops
    objects, which has no constant type number. (The based forms are also
    where i386's `mov sym, %eax`, A1 + abs32, reads as `jmp *sym(%ecx)`
    after any 0xFF byte.)"""
    mod, reg, rm = modrm >> 6, (modrm >> 3) & 7, modrm & 7
    if reg not in (2, 3, 4, 5) or mod != 0:     # call, lcall, jmp, ljmp
        return False
    if sib is None:
        return rm == 5
    return rm == 4 and sib & 7 == 5 and (sib >> 3) & 7 == 4
