"""Indirect calls through an address that a register holds.

gcc may print an asm "m" operand of a global as `disp(%reg)` once it holds
the object's address in a register (a loop, several sites in a function,
-O1 keeping it in a callee-saved register), and PIC code always does, with
the address loaded from the GOT. No relocation marks such a call: the
relocation is on the load, which may be far from the call (gcc hoists it
out of loops). So the load is followed, not a window of bytes: from each
relocated load of an address into a register (`mov $sym`, `lea sym`,
`mov sym@GOTPCREL(%rip)`, `lea sym@GOTOFF(%ebx)`, `mov sym@GOT(%ebx)`), the
function is swept forward (capstone, linear) to every `call *`/`jmp *`
whose memory operand has that register as base or index, until the
register is written again. i386's `call *sym@GOTOFF(%ebx)` is its own load.

Bytes first: a section is decoded only where it has both a relocated load
and an FF /2 or /4 byte pair with a base register (cheap regex), so the
build path pays nothing for code that has neither.
"""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from functools import lru_cache

from ..arch import get_arch
from ..textsplit import split_commas
from .elfobj import ElfObject, Reloc
from .tablecheck import GOT_RELOCS

SHF_EXECINSTR = 4

# Relocations of an address load. x86-64: PC32 (lea sym(%rip)), 32/32S/64
# (mov $sym); i386: 32 (mov $sym, lea sym); and the GOT's (GOT_RELOCS).
_ADDR = {64: {2, 10, 11, 1}, 32: {1, 9}}
# FF /2 (call) or /4 (jmp) with a memory operand that has a base register:
# mod 0 (not rm 5: disp32 alone), 1 or 2.
_REG_CALL = re.compile(rb"\xff[\x10-\x14\x16\x17\x20-\x24\x26\x27\x50-\x57\x60-\x67\x90-\x97\xa0-\xa7]")
_NO_WRITE = ("cmp", "test", "push", "bt", "call", "jmp", "nop", "prefetch")
# registers a direct call may change (psABI): what a C call in between kills
_CALLER_SAVED = {64: {"rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11"},
                 32: {"rax", "rcx", "rdx"}}
_IMPLICIT = {"cltd": {"rdx"}, "cqto": {"rdx"}, "cdq": {"rdx"}, "cqo": {"rdx"}, "div": {"rax", "rdx"},
             "idiv": {"rax", "rdx"}, "mul": {"rax", "rdx"}, "rdtsc": {"rax", "rdx"}, "cpuid":
             {"rax", "rbx", "rcx", "rdx"}}


@dataclass(frozen=True)
class RegCall:
    section: str
    offset: int           # the call instruction
    size: int
    text: str             # as capstone prints it: "call *0x4(%edx)"
    symbol: str           # the object whose address the register holds
    value: int            # offset into that object the call reads
    reg: str              # as printed ("edx")
    load: int             # section offset of the relocated load
    got: bool             # the address came through the GOT
    index: int            # the call's position in `insns`
    # the function's instructions (capstone lite tuples), one tuple shared by
    # the calls found in it: not hashed (that was O(function) per call)
    insns: tuple = field(compare=False)


# The sweep below reads every instruction after each load: one function
# of 10,000 sites is 10,000 instructions, most of them the same few texts,
# so what is read from an instruction's text is kept per text.
@lru_cache(maxsize=4096)
def canon(reg: str) -> str:
    """%edx, %dx, %dl -> rdx; %r12d -> r12 (one name per register: x86-64's
    names, of which i386's are a subset)."""
    return get_arch("x86_64").canon_reg(reg) or reg.lstrip("%")


@lru_cache(maxsize=65536)
def _operands(text: str) -> tuple[str, ...]:
    """AT&T operands split at top-level commas."""
    return tuple(o.strip() for o in split_commas(text) if o.strip())


_MEM = re.compile(r"^\*?(?:%\w+:)?(-?(?:0x[0-9a-f]+|\d+))?\(\s*(%\w+)?\s*(?:,\s*(%\w+)\s*(?:,\s*\d)?)?\s*\)$")


@lru_cache(maxsize=65536)
def mem_regs(operand: str) -> tuple[int, frozenset[str]] | None:
    """(displacement, canonical base/index registers) of a memory operand."""
    m = _MEM.match(operand.strip())
    if not m:
        return None
    disp = int(m.group(1), 0) if m.group(1) else 0
    return disp, frozenset(canon(r) for r in (m.group(2), m.group(3)) if r and r != "%rip" and r != "%eip")


@lru_cache(maxsize=65536)
def _written(mnem: str, ops: tuple[str, ...], bits: int) -> frozenset[str]:
    return frozenset(_written_set(mnem, ops, bits))


def _written_set(mnem: str, ops: tuple[str, ...], bits: int) -> set[str]:
    m = mnem.split()[-1]
    if m in _IMPLICIT:
        return _IMPLICIT[m]
    if m.startswith("call") and ops and not ops[0].startswith("*"):
        return _CALLER_SAVED[bits]           # a C call in between
    if m.startswith(_NO_WRITE) or m.startswith("j") or not ops:
        return set()
    dst = ops[-1]
    out = {canon(dst)} if dst.startswith("%") else set()
    if m.startswith("xchg") and ops[0].startswith("%"):
        out.add(canon(ops[0]))
    return out


def function_spans(obj: ElfObject, idx: int, size: int) -> list[tuple[int, int]]:
    """(start, end) of each function symbol of section idx; the whole
    section when it has none."""
    spans = sorted({(s.value, s.value + s.size) for s in obj.symbols
                    if s.kind == "STT_FUNC" and s.shndx == idx and s.size})
    return spans or [(0, size)]


def candidates(obj: ElfObject, wanted=None):
    """(section, data, start, end, loads) of each function where the bytes
    allow a register-reached call: a relocated load into a register (by its
    opcode) and an FF /2 or /4 whose base or index register has the same
    number (low three bits: a superset). No decoding."""
    bits = obj.arch.bits
    got_types = set(GOT_RELOCS[bits])
    addr_types = _ADDR[bits] | got_types
    for idx, sec in enumerate(obj.sections):
        if not sec["sh_flags"] & SHF_EXECINSTR or sec["sh_type"] == "SHT_NOBITS":
            continue
        loads = [r for r in obj.relocations_for(sec.name) if r.type in addr_types
                 and r.symbol.kind != "STT_FUNC" and (wanted is None or wanted(r) is not None)]
        if not loads:
            continue
        data = obj.section_data(sec)
        hits = sorted((m.start(), _call_regs(data, m.start())) for m in _REG_CALL.finditer(data))
        hits = [h for h in hits if h[1]]
        if not hits:
            continue
        dests = sorted((r.offset, d) for r in loads
                       for d in _load_dest(data, r.offset, r.type in got_types, bits == 32 and r.type == 9))
        for lo, hi in function_spans(obj, idx, len(data)):
            here = dests[bisect.bisect_left(dests, (lo,)):bisect.bisect_left(dests, (hi,))]
            if here and any(regs & {d for o, d in here if o < at + 2} for at, regs in
                            hits[bisect.bisect_left(hits, (lo,)):bisect.bisect_left(hits, (hi,))]):
                yield sec, data, lo, hi, [r for r in loads if lo <= r.offset < hi]


def may_call_through_register(obj: ElfObject) -> bool:
    """Whether the object may hold a register-reached call (bytes only)."""
    return next(candidates(obj), None) is not None


def _call_regs(data: bytes, at: int) -> set[int]:
    """Numbers (low three bits) of the base and index registers of the
    FF /2 or /4 at `at`."""
    modrm = data[at + 1]
    mod, rm = modrm >> 6, modrm & 7
    if rm != 4:
        return {rm}
    if at + 2 >= len(data):
        return set()
    sib = data[at + 2]
    if mod == 0 and sib & 7 == 5:
        return set()             # disp32(,%index): the relocated field is the object
    return {sib & 7} | ({(sib >> 3) & 7} if (sib >> 3) & 7 != 4 else set())


def _load_dest(data: bytes, o: int, got: bool, gotoff: bool) -> set[int]:
    """The registers (low three bits) a relocated load of an address at
    field `o` may write, read from the bytes before it (every reading: the
    bytes alone cannot tell `8B B8 disp32` from `B8 imm32`): mov $imm, %r
    (B8+r), mov $imm32, r/m (C7 /0, register), lea with the field as
    displacement (8D, ModRM or SIB), mov from the GOT (8B: any other mov
    reads the object's contents); i386's `call *sym@GOTOFF(%reg)` loads
    and calls at once."""
    out = set()
    if o >= 1 and 0xB8 <= data[o - 1] <= 0xBF:
        out.add(data[o - 1] & 7)
    if o >= 2 and data[o - 2] == 0xC7 and data[o - 1] >> 6 == 3:
        out.add(data[o - 1] & 7)
    ops = (0x8D, 0x8B) if got else (0x8D,)
    if o >= 2 and data[o - 2] in ops:
        out.add((data[o - 1] >> 3) & 7)
    if o >= 3 and data[o - 3] in ops and data[o - 2] & 7 == 4:
        out.add((data[o - 2] >> 3) & 7)
    if gotoff and o >= 2 and data[o - 2] == 0xFF and (data[o - 1] >> 3) & 7 in (2, 4):
        out.add(data[o - 1] & 7)
    return out


def reg_calls(obj: ElfObject, wanted=None) -> list[RegCall]:
    """Every indirect call or jump through a register that a relocated load
    filled with an object's address. `wanted(reloc)` -> (object, value to
    subtract) or None filters the loads (None: any data symbol)."""
    from .copies import _norm, swept
    bits = obj.arch.bits
    got_types = set(GOT_RELOCS[bits])          # i386 GOTOFF counts: PIC code's way to a local object
    out: list[RegCall] = []
    for sec, data, lo, hi, fl in candidates(obj, wanted):
        ins = swept(obj, sec, data, lo, hi)        # shared by every call found in it
        at = {i[0]: k for k, i in enumerate(ins)}
        starts = sorted(at)
        for r in fl:
            k = at.get(starts[bisect.bisect_right(starts, r.offset) - 1]) if starts else None
            if k is None:
                continue
            who = _target(obj, r, wanted)
            if who is None:
                continue
            name, base = who
            got = r.type in got_types
            addr, size, mnem, text = ins[k]
            ops = _operands(text)
            m = _norm(mnem)
            if m in ("call", "jmp") and text.startswith("*"):
                mr = mem_regs(text)
                if mr and mr[1] and bits == 32 and r.type == 9:     # call *sym@GOTOFF(%ebx)
                    out.append(RegCall(sec.name, addr, size, f"{mnem} {text}", name, r.addend - base,
                                       re.search(r"%(\w+)", text).group(1), addr, True, k, ins))
                continue
            if m not in ("mov", "lea") or len(ops) != 2 or not ops[1].startswith("%"):
                continue
            if m == "mov" and not got and not ops[0].startswith("$"):
                continue        # a load of the object's contents, not of its address
            gotoff = bits == 32 and r.type == 9       # the register holds sym - GOT
            value = 0 if got and not gotoff else _value(r, addr, size, bits)
            held = {canon(ops[1])}
            pushed: list[bool] = []                   # a site's push/pop keeps the value
            for j in range(k + 1, len(ins)):
                a2, s2, mn2, t2 = ins[j]
                o2 = _operands(t2)
                n2 = _norm(mn2)
                if n2 == "push" and len(o2) == 1:
                    pushed.append(o2[0].startswith("%") and canon(o2[0]) in held)
                    continue
                if n2 == "pop" and len(o2) == 1 and o2[0].startswith("%") and pushed:
                    (held.add if pushed.pop() else held.discard)(canon(o2[0]))
                    if not held:
                        break
                    continue
                if n2 in ("call", "jmp") and t2.startswith("*"):
                    mr = mem_regs(t2)
                    if mr and mr[1] & held:
                        out.append(RegCall(sec.name, a2, s2, f"{mn2} {t2}", name,
                                           value + mr[0] - base, ops[1].lstrip("%"), addr, got,
                                           j, ins))
                if n2 == "mov" and len(o2) == 2 and o2[0].startswith("%") \
                        and o2[1].startswith("%") and canon(o2[0]) in held:
                    held.add(canon(o2[1]))
                    continue
                held -= _written(mn2, o2, bits)
                if not held:
                    break
    # one per call and function sweep: the same call found from two loads
    # of the function (its tuple of instructions is that sweep's own)
    once = {(c, id(c.insns)): c for c in out}
    return sorted(once.values(), key=lambda c: (c.section, c.offset))


def _value(r: Reloc, addr: int, size: int, bits: int) -> int:
    """What the loaded register holds, relative to the symbol."""
    if bits == 64 and r.type == 2:           # lea sym+X(%rip): the field is PC-relative
        return r.addend + (addr + size - r.offset)
    return r.addend


def _target(obj: ElfObject, r: Reloc, wanted):
    if wanted is not None:
        return wanted(r)
    if r.symbol.kind == "STT_SECTION":
        sec = obj.section_name_of(r.symbol)
        s = obj.section(sec) if sec else None
        if s is None or s["sh_flags"] & SHF_EXECINSTR:
            return None
        return sec, 0
    return (r.symbol.name, 0) if r.symbol.name else None


@dataclass(frozen=True)
class Loss:
    """A copy of an annotated site that gcc kept and no table can name: its
    call goes through a register (see the module's docstring)."""
    site: int             # index into the inventory's sites
    call: RegCall
    start: int            # the copy: the site's instructions around the call
    length: int


def site_losses(obj: ElfObject, inv, sources, by_op: dict | None = None) -> list[Loss]:
    """The register-reached calls through an ops object that match an
    annotated site's instructions (others are no site: lint's PV001 names
    plain calls)."""
    from .copies import _first_at, _function_names, _functions, _match, _names_ops, _object_spans, shapes_by_op
    spans = _object_spans(obj, {s.ops_object for s in inv.sites})
    by_op = shapes_by_op(sources) if by_op is None else by_op
    # ops object -> offset -> its first op there (as a search of ops.ops finds it)
    op_at = {o.obj: _first_at(o.ops) for o in inv.ops}
    out = []
    funcs_of: dict[str, list] = {}       # per section, not per call
    for c in reg_calls(obj, lambda r: _names_ops(obj, r, spans)):
        op = op_at.get(c.symbol, {}).get(c.value)
        if op is None:
            continue
        funcs = funcs_of.get(c.section)
        if funcs is None:
            funcs = funcs_of[c.section] = _functions(obj, obj.section_index(c.section))
        found = _match(c.insns, c.index, by_op.get((c.symbol, op.path), []),
                       _function_names(funcs, c.offset))
        if found is not None:
            out.append(Loss(found[2], c, found[0], found[1]))
    return out

