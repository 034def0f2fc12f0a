"""Find every copy of every site in a compiled object.

gcc copies an asm statement as often as it inlines or unrolls it, so the
object, not the source, says where the sites are. Each copy contains a
`call *` whose memory operand is relocated against the ops object at the
op's offset; that relocation anchors the search, and the site's instruction
sequence (from its template) is matched around it in the disassembly. This
needs no help from the compiler, so it also regenerates a stripped table.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TYPE_CHECKING

import capstone

from ..errors import PvError
from .elfobj import SHDR_SIZE, ElfObject, Reloc, merge_ranges

if TYPE_CHECKING:        # the build path's object-only check needs neither
    from ..emit.patches import Patch
    from ..frontend.sites import SiteSource
    from ..model import Inventory, Site

SHF_EXECINSTR = 4
_PCREL = {"R_X86_64_PC32", "R_X86_64_PLT32", "R_386_PC32"}
_ABS = {"R_386_32", "R_X86_64_32S", "R_X86_64_32"}


@dataclass(frozen=True, order=True)
class Copy:
    section: str
    offset: int
    length: int
    type: int
    clobbers: int
    site: int             # index into the inventory's sites


@dataclass(frozen=True)
class Stray:
    """An indirect call through an ops object that no annotated site explains."""
    section: str
    offset: int
    op: str
    text: str


@lru_cache(maxsize=4096)        # a few dozen mnemonics, met once per instruction matched
def _norm(mnemonic: str) -> str:
    m = mnemonic.lower().split()[-1]
    for base in ("push", "pop", "call", "jmp", "mov", "lea", "ret"):
        if m.startswith(base) and len(m) <= len(base) + 1:
            return base
    return m


@lru_cache(maxsize=2)
def _cs(bits: int) -> capstone.Cs:
    cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64 if bits == 64 else capstone.CS_MODE_32)
    cs.syntax = capstone.CS_OPT_SYNTAX_ATT
    return cs


def swept(obj: ElfObject, sec, data: bytes, lo: int, hi: int) -> tuple:
    """`_disasm` of data[lo:hi] of section `sec`, once per object: the
    register-reached calls and the copies both sweep a function that holds
    a relocated load of the ops object (10,000 sites: 10,000 instructions)."""
    memo = obj.__dict__.setdefault("_pvpass_swept", {})
    key = (sec["sh_offset"], sec["sh_size"], lo, hi)
    got = memo.get(key)
    if got is None:
        got = memo[key] = _disasm(obj.arch.bits, data, lo, hi)
    return got


def _disasm(bits: int, data: bytes, lo: int, hi: int) -> tuple:
    """Linear sweep of data[lo:hi] (one function, or the whole section):
    (offset, size, mnemonic, operands) per instruction."""
    cs = _cs(bits)
    view = memoryview(data)
    out = []
    off = lo
    try:
        while off < hi:
            for i in cs.disasm_lite(view[off:hi], off):
                out.append(i)
                off = i[0] + i[1]
            if off < hi:
                off += 1             # undecodable byte: resynchronise
    except capstone.CsError as e:    # out of memory on code of absurd size
        raise PvError(f"cannot disassemble {hi - lo} bytes of code at {lo:#x} (capstone: {e})") from None
    return tuple(out)


def _type_name(t) -> str:
    return t if isinstance(t, str) else f"{t:#x}"


def find_copies(obj: ElfObject, inv: Inventory, sources: list[SiteSource],
                by_op: dict | None = None) -> tuple[list[Copy], list[Stray]]:
    """`by_op`: shapes_by_op(sources), when the caller has it."""
    copies: dict[tuple[str, int], Copy] = {}
    strays: list[Stray] = []
    objects = {s.ops_object for s in inv.sites}
    op_at = {o.obj: _first_at(o.ops) for o in inv.ops}
    spans = _object_spans(obj, objects)
    by_op = shapes_by_op(sources) if by_op is None else by_op
    for idx, sec in enumerate(obj.sections):
        if not sec["sh_flags"] & SHF_EXECINSTR or sec["sh_type"] == "SHT_NOBITS":
            continue
        named = [(r, n) for r in obj.relocations_for(sec.name) if (n := _names_ops(obj, r, spans)) is not None]
        if not named:
            continue
        if sec["sh_type"] != "SHT_PROGBITS":
            # every reader (and the kernel's patcher) takes sites only from
            # executable PROGBITS: a table into this would be refused
            raise obj.bad(obj.header["e_shoff"] + idx * SHDR_SIZE[obj.bits],
                          f"section header {idx} ({sec.name}): code that calls through an ops object, "
                          f"but of type {_type_name(sec['sh_type'])}, not SHT_PROGBITS: its sites "
                          f"cannot be tabled")
        ins: list = []
        data = obj.section_data(sec)
        for lo, hi in _ranges(obj, idx, len(data), [r for r, _ in named]):
            ins += swept(obj, sec, data, lo, hi)
        starts = [i[0] for i in ins]
        funcs = _functions(obj, idx)
        names_at = _names_finder(funcs)
        for r, (name, base) in named:
            k = bisect.bisect_right(starts, r.offset) - 1
            if k < 0:
                continue
            addr, size, mnem, ops_text = ins[k]
            if r.type_name in _PCREL:
                off = r.addend + (addr + size - r.offset) - base
            elif r.type_name in _ABS:
                off = r.addend - base
            else:
                continue
            if _norm(mnem) not in ("call", "jmp") or not ops_text.startswith("*"):
                continue            # a load or store of the ops object, not a call
            op = op_at[name].get(off)
            found = _match(ins, k, by_op.get((name, op.path), []) if op else [], names_at(addr))
            if found is None:
                strays.append(Stray(sec.name, addr, op.path if op else f"+{off:#x}",
                                    f"{mnem} {ops_text}"))
                continue
            start, length, site_i, mask = found
            copies[(sec.name, start)] = Copy(sec.name, start, length, inv.sites[site_i].type_number,
                                             mask, site_i)
    order = {name: obj.section_index(name) for name in {c.section for c in copies.values()}}
    return sorted(copies.values(), key=lambda c: (order[c.section], c.offset)), strays


def _first_at(ops) -> dict:
    """Offset -> the first op at that offset (as a search of the ops finds it)."""
    out: dict = {}
    for o in ops:
        out.setdefault(o.offset, o)
    return out


def shapes_by_op(sources: list[SiteSource], shapes: list[tuple[str, ...]] | None = None
                 ) -> dict[tuple[str, str], list[_Shape]]:
    """(ops object, op) -> its sites grouped by instruction shape (a copy is
    matched once per shape, not once per site: per site, matching was
    quadratic in the sites of an op). `shapes`: site_shapes(sources)."""
    by_op: dict[tuple[str, str], dict[tuple[str, ...], _Shape]] = {}
    for i, (src, shape) in enumerate(zip(sources, site_shapes(sources) if shapes is None else shapes)):
        if "call" in shape:
            site = src.site
            group = by_op.setdefault((site.ops_object, site.op), {})
            g = group.get(shape)
            if g is None:
                g = group[shape] = _Shape(shape, shape.index("call"), i, {}, site.mask)
            g.by_function.setdefault(site.function, i)
            g.mask &= site.mask
    return {k: list(v.values()) for k, v in by_op.items()}


def copy_site(arch, inv: Inventory, c: Copy) -> Site:
    """A copy as a site of its own: the object's length and clobber mask."""
    return replace(inv.sites[c.site], length=c.length, mask=c.clobbers,
                   clobbers=arch.regs_of_mask(c.clobbers))


def copy_patch(arch, inv: Inventory, c: Copy, backend) -> Patch:
    """What one copy becomes for one backend (raises PatchError)."""
    from ..emit.patches import decide
    site = copy_site(arch, inv, c)
    ops = inv.ops_struct_for(site.ops_object)
    return decide(arch, site, ops.op(site.op) if ops else None, backend)


def _ranges(obj: ElfObject, idx: int, size: int, relocs: list[Reloc]) -> list[tuple[int, int]]:
    """The functions that hold the relocations: only they are disassembled
    (a sweep from a function's start stays in step). Without function
    symbols, the whole section."""
    funcs = sorted((s.value, s.value + s.size) for s in obj.symbols
                   if s.kind == "STT_FUNC" and s.shndx == idx and s.size)
    out: set[tuple[int, int]] = set()
    for r in relocs:
        i = bisect.bisect_right(funcs, (r.offset, 1 << 62)) - 1
        if i < 0 or not funcs[i][0] <= r.offset < funcs[i][1]:
            return [(0, size)]
        out.add(funcs[i])
    return merge_ranges(out)            # overlapping symbols: sweep each byte once


def _object_spans(obj: ElfObject, names: set[str]) -> dict[str, tuple[str | None, int, int]]:
    """Ops object -> (its section or None if undefined, value, size)."""
    out = {}
    for s in obj.symbols:
        if s.name in names and s.kind != "STT_SECTION":
            out[s.name] = (obj.section_name_of(s), s.value, s.size)
    return out


def _names_ops(obj: ElfObject, r: Reloc, spans) -> tuple[str, int] | None:
    """(ops object, the value to subtract) if relocation r points into one."""
    if r.symbol.name in spans and r.symbol.kind != "STT_SECTION":
        return r.symbol.name, 0
    if r.symbol.kind == "STT_SECTION":
        # a static ops object is referenced through its section's symbol
        sec = obj.section_name_of(r.symbol)
        for name, (s, value, size) in sorted(spans.items()):
            if s == sec and value - 16 <= r.addend < value + size:
                return name, value
    return None


def site_shape(src: SiteSource) -> tuple[str, ...]:
    """The site's instructions as the disassembler names them (no operands)."""
    return tuple(_norm(st.name) for st in src.site_stmts if not st.is_directive)


def site_shapes(sources: list[SiteSource]) -> list[tuple[str, ...]]:
    """`site_shape` of each source, once per list of statements: the sites
    of one statement text share theirs (pvpass/frontend/stmtsites.py)."""
    got: dict[int, tuple[str, ...]] = {}
    out = []
    for src in sources:
        shape = got.get(id(src.site_stmts))
        if shape is None:
            shape = got[id(src.site_stmts)] = site_shape(src)
        out.append(shape)
    return out


# gcc names a clone or a split part of function f "f.isra.0", "f.constprop.1",
# "f.part.0", "f.cold", ...: C names hold no dot, so f is what precedes the first.
def c_function(symbol: str) -> str:
    return symbol.split(".", 1)[0]


def _functions(obj: ElfObject, idx: int) -> list[tuple[int, int, str]]:
    """(start, end, C function) of every function symbol in section idx."""
    return sorted((s.value, s.value + s.size, c_function(s.name)) for s in obj.symbols
                  if s.kind == "STT_FUNC" and s.shndx == idx and s.size)


def _function_names(funcs: list[tuple[int, int, str]], addr: int) -> set[str]:
    """The C functions whose code holds addr (several when aliases share it)."""
    i = bisect.bisect_right(funcs, (addr, 1 << 62, "")) - 1
    if i < 0:
        return set()
    first = funcs[i][0]
    return {name for lo, hi, name in funcs[bisect.bisect_left(funcs, (first,)):i + 1]
            if lo <= addr < hi}


def _names_finder(funcs: list[tuple[int, int, str]]):
    """_function_names(funcs, addr), each function's set made once: a
    function of 10,000 sites asked it 10,000 times. The functions that
    may hold addr all start where the last one starting at or below it
    does (index i); those that do are the ones ending past addr."""
    memo: dict[int, tuple[int, frozenset[str]]] = {}

    def names(addr: int):
        i = bisect.bisect_right(funcs, (addr, 1 << 62, "")) - 1
        if i < 0:
            return frozenset()
        got = memo.get(i)
        if got is None:
            first = funcs[i][0]
            cands = funcs[bisect.bisect_left(funcs, (first,)):i + 1]
            got = memo[i] = (min(hi for _, hi, _ in cands), frozenset(n for _, _, n in cands))
        return got[1] if addr < got[0] else _function_names(funcs, addr)
    return names


_NORMS: dict[int, tuple[tuple, tuple[str, ...]]] = {}


def _norms(ins: tuple) -> tuple[str, ...]:
    """`_norm` of each instruction's mnemonic, once per swept function (the
    entry holds `ins`, so its id is not reused meanwhile)."""
    got = _NORMS.get(id(ins))
    if got is None or got[0] is not ins:
        if len(_NORMS) >= 64:
            _NORMS.clear()
        got = _NORMS[id(ins)] = (ins, tuple(_norm(x[2]) for x in ins))
    return got[1]


@dataclass
class _Shape:
    """The sites of one op that share one instruction shape."""
    shape: tuple[str, ...]
    call: int                       # the call's index in the shape
    first: int                      # the first site's index
    by_function: dict[str, int]     # C function -> the first site's index there
    mask: int                       # the clobber mask all the sites allow


def _match(ins, k, groups, where: set[str]):
    """Match the candidate shapes around the call at ins[k], in the code of
    the C functions `where`. Returns (start, length, site index, clobber
    mask) or None. The copy is attributed to the first matching site of its
    own function; a copy in any other function was inlined there, and every
    site of that shape is then as likely (the first is taken)."""
    found = []
    norms = None
    for g in groups:
        lo, hi = k - g.call, k - g.call + len(g.shape)
        if lo < 0 or hi > len(ins):
            continue
        if norms is None:
            norms = _norms(ins)
        if norms[lo:hi] != g.shape:
            continue
        found.append((ins[lo][0], ins[lo][1] if hi - lo == 1 else sum([x[1] for x in ins[lo:hi]]), g))
    if not found:
        return None
    if len(found) == 1:             # the common case, without the general one's lists and key function
        start, length, g = found[0]
        own = [i for w in where if (i := g.by_function.get(w)) is not None]
        return start, length, min(own) if own else g.first, g.mask
    # Same code, different clobber sets: only what every candidate allows is safe.
    mask = found[0][2].mask
    for f in found[1:]:
        mask &= f[2].mask
    own = [(i, f) for f in found for w in where if (i := f[2].by_function.get(w)) is not None]
    i, (start, length, _) = min(own or [(f[2].first, f) for f in found], key=lambda p: p[0])
    return start, length, i, mask
