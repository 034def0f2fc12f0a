"""The link step: merge the patch-site table and the stubs into an object.

Inputs: a compiled object and the front end's view of its source. Output:
the same object plus `.parainstructions` (one entry per copy of each site,
its instr field relocated against the copy's section), the per-backend patch
records the runtime applies, their code, and the trampolines they call.
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import table
from ..arch import Arch
from ..diag import Diagnostic, PvError, emit, emit_all
from ..emit.patches import Patch, PatchError, pcrel_offset
from ..emit.plan import all_backends, length_unfit, type_unfit
from ..emit.cfi import Frame, eh_frame
from ..emit.stubs import Trampoline
from ..frontend.scan import ScanResult
from ..model import Backend
from .copies import Copy, c_function, copy_patch, find_copies, shapes_by_op, site_shapes
from .elfobj import ElfObject
from .regcalls import Loss, site_losses
from .tablecheck import GOT_RELOCS, got_advice
from .elfwrite import (SHF_ALLOC, SHF_EXECINSTR, SHF_MERGE, SHF_STRINGS, NewReloc,
                       NewSection, NewSymbol, SymRef, add_sections, require_relocatable)
from .tableread import read_entries

TRAMP_SECTION = table.TRAMP_SECTION
R_ABS = {"i386": 1, "x86_64": 1}          # R_386_32, R_X86_64_64
R_CALL = {"i386": 2, "x86_64": 4}         # R_386_PC32, R_X86_64_PLT32
R_PC32 = {"i386": 2, "x86_64": 2}         # R_386_PC32, R_X86_64_PC32
# the relocations an inline replacement's symbol fields need (emit/stubs.py Fixup)
R_FIXUP = {"R_386_32": 1, "R_X86_64_PC32": 2, "R_X86_64_32": 10, "R_X86_64_32S": 11}


@dataclass
class LinkResult:
    data: bytes
    copies: list[Copy]
    changed: bool
    table_from: str        # "pvpass" | "compiler" | "existing" | "none"


@dataclass
class LinkPlan:
    """What the link step adds to one object: new sections and symbols (empty:
    the object stays as the compiler wrote it)."""
    copies: list[Copy]
    sections: list[NewSection]
    symbols: list[NewSymbol]
    table_from: str


def link_object(obj: ElfObject, res: ScanResult, builtin: bool = False,
                records: tuple[str, ...] | None = None) -> LinkResult:
    plan = plan_link(obj, res, builtin, records)
    if not plan.sections:
        return LinkResult(obj.data, plan.copies, False, plan.table_from)
    return LinkResult(add_sections(obj, plan.sections, plan.symbols), plan.copies, True, plan.table_from)


def plan_link(obj: ElfObject, res: ScanResult, builtin: bool = False,
              records: tuple[str, ...] | None = None, lost: str = "error") -> LinkPlan:
    """`records` names the backends whose patch records to add (None: native,
    the source's own, and c-calls with `builtin`; (): none, so a compiler-made
    table leaves the object untouched). `lost`: what a site copy that cannot
    be tabled is, "error" (link) or "warning" (the build path, whose object
    stays correct: the copy remains an indirect call)."""
    arch = obj.arch
    inv = res.inventory
    require_relocatable(obj)
    if not inv.sites:
        raise PvError(f"{res.pp.main_file}: no paravirt sites in this source")
    shapes = site_shapes(res.sources)
    by_op = shapes_by_op(res.sources, shapes)
    losses = site_losses(obj, inv, res.sources, by_op)
    name_losses(obj, inv, losses, lost)
    if lost == "error":
        _refuse_got(obj, inv)
    copies, strays = find_copies(obj, inv, res.sources, by_op)
    if strays:
        s = strays[0]
        more = f" (and {len(strays) - 1} more)" if len(strays) > 1 else ""
        raise PvError(f"{obj.path}: {s.section}+{s.offset:#x}: '{s.text}' calls op {s.op} "
                      f"through the ops object but matches no annotated site in "
                      f"{res.pp.main_file}{more}")
    _check_missing(obj, res, copies, {l.site for l in losses}, shapes)
    _check_fits(obj, inv, copies)
    existing = read_entries(obj)
    if existing:
        _check_agrees(obj, existing, copies, res)
    if obj.section(table.PATCH_SECTION) is not None:
        return LinkPlan(copies, [], [], "existing")     # already linked
    if not copies and not existing:
        return LinkPlan(copies, [], [], "none")         # no site copy: nothing to add
    sections = []
    if not existing:
        sections.append(_table_section(arch, copies))
    elif records == ():
        return LinkPlan(copies, [], [], "compiler")
    stubs, syms = _stub_sections(arch, res, copies, builtin, records)
    return LinkPlan(copies, sections + stubs, syms, "compiler" if existing else "pvpass")


def _refuse_got(obj: ElfObject, inv) -> None:
    """PIC code (and i386 PIE) reaches an extern ops object through the GOT
    in a separate instruction, so no relocation marks the call: refuse it
    plainly. On x86-64 a hidden ops object is reached RIP-relative again."""
    names = {s.ops_object for s in inv.sites}
    how = got_advice(obj.arch.bits)
    for sec in obj.sections:
        if not sec["sh_flags"] & 4:
            continue
        for r in obj.relocations_for(sec.name):
            if r.symbol.name in names and r.type in GOT_RELOCS[obj.arch.bits]:
                raise PvError(f"{obj.path}: {sec.name}+{r.offset:#x}: the ops object "
                              f"'{r.symbol.name}' is reached through the GOT (PIC code): {how}")


def loss_message(obj: ElfObject, inv, l: Loss) -> str:
    """Why one kept copy of a site is not in the table: the shape gcc
    emitted, the bytes, the fix."""
    site, c = inv.sites[l.site], l.call
    fn = obj.function_at(c.section, c.offset)
    how = (f"loaded {c.symbol}'s address from the GOT (PIC code) into %{c.reg}" if c.got else
           f"put {c.symbol}'s address in %{c.reg}")
    head = (f"{obj.path}: {c.section}+{l.start:#x}: this copy of the site ({site.op}"
            f"{', in ' + fn[0] if fn else ''}) calls '{c.text}': gcc {how} at {c.section}+{c.load:#x}, "
            f"no relocation marks the call, so the {l.length}-byte copy is not tabled and stays "
            f"an indirect call")
    if c.got:
        return f"{head}; {got_advice(obj.arch.bits)}"
    form = "call *%c[pv_op](%%rip)" if obj.arch.bits == 64 else "call *%c[pv_op]"
    return (f"{head}; the table needs a 6-byte 'call *disp32': pass the op as "
            f"[pv_op] \"i\" (&{site.ops_object}.{site.op}) and call '{form}' (pvpass.h's "
            f"PVPASS_OP({site.op}) and PVPASS_OPCALL), which gcc cannot put in a register")


def name_losses(obj: ElfObject, inv, losses: list[Loss], level: str) -> None:
    """Each lost copy named at its site's source line: warnings go out,
    an error stops (one message, with how many more)."""
    if not losses:
        return
    if level == "error":
        l = losses[0]
        more = f" (and {len(losses) - 1} more)" if len(losses) > 1 else ""
        raise PvError(loss_message(obj, inv, l) + more, inv.sites[l.site].loc)
    emit_all(Diagnostic(inv.sites[l.site].loc, "warning", loss_message(obj, inv, l)) for l in losses)


def _check_missing(obj: ElfObject, res: ScanResult, copies: list[Copy], lost: set[int] = frozenset(),
                   shapes: list[tuple[str, ...]] | None = None) -> None:
    """A site in a function the object defines should have a copy, its own
    or an equivalent site's: the object's code does not say which of the sites
    with the same op and instructions a copy came from, and gcc may fold
    identical functions into one (-fipa-icf)."""
    sites = res.inventory.sites
    shapes = site_shapes(res.sources) if shapes is None else shapes

    def key(i: int):
        s = sites[i]
        return s.ops_object, s.op, shapes[i]

    have = {c.site for c in copies} | lost     # a lost copy was named already
    by_clobbers = {(key(i), sites[i].mask) for i in have}
    by_function = {(key(i), sites[i].function) for i in have}
    defined = {c_function(s.name) for s in obj.symbols
               if s.kind == "STT_FUNC" and s.shndx not in ("SHN_UNDEF", 0)}
    for i, s in enumerate(sites):
        if i in have or s.function not in defined:
            continue
        if (key(i), s.mask) in by_clobbers or (key(i), s.function) in by_function:
            continue
        # gcc drops an asm statement it proves unreachable (`if (0)`, a
        # constant IS_ENABLED()), which is valid C: say so, do not refuse it.
        # The site gets no entry and an unlisted call stays a plain indirect
        # call, which is always correct.
        emit(Diagnostic(s.loc, "warning",
                        f"{obj.path}: function {s.function} holds no copy of this site ({s.op}): "
                        f"gcc removed it as unreachable, or the object is not built from this "
                        f"source with these flags"))


def _check_fits(obj: ElfObject, inv, copies: list[Copy]) -> None:
    """Each copy's type and length must fit the table's one-byte fields."""
    for c in copies:
        site = inv.sites[c.site]
        why = type_unfit(site.op, c.type) or length_unfit(site.op, c.length)
        if why:
            raise PvError(f"{obj.path}: {c.section}+{c.offset:#x}: {why} (site {site.loc})")


def _check_agrees(obj: ElfObject, existing, copies: list[Copy], res: ScanResult) -> None:
    ours = {(c.section, c.offset, c.type, c.length, c.clobbers) for c in copies}
    theirs = {(e.section, e.offset, e.type, e.length, e.clobbers) for e in existing}
    if ours != theirs:
        diff = sorted(theirs - ours) or sorted(ours - theirs)
        side = "the object's table has" if theirs - ours else "the source has"
        sec, off, typ, ln, clob = diff[0]
        raise PvError(f"{obj.path}: {table.SECTION} disagrees with the source: {side} "
                      f"{sec}+{off:#x} type {typ} len {ln} clobbers {clob:#x} "
                      f"({len(theirs ^ ours)} differences)")


def _table_section(arch: Arch, copies: list[Copy]) -> NewSection:
    data = b"".join(table.pack(arch, 0, c.type, c.length, c.clobbers) for c in copies)
    relocs = [NewReloc(i * arch.entry_size, R_ABS[arch.name], SymRef(section=c.section), c.offset)
              for i, c in enumerate(copies)]
    return NewSection(table.SECTION, SHF_ALLOC, arch.ptr_size, data, relocs)


def link_backends(arch: Arch, inv, builtin: bool, records: tuple[str, ...] | None = None) -> list[Backend]:
    """The native inline set needs no symbols, so it is always recorded;
    c-calls only on request (its c_calls_* functions are the user's).
    `records`, when given, names exactly the backends to record."""
    if records is not None:
        have = all_backends(arch, inv, True)
        unknown = sorted(set(records) - {b.name for b in have})
        if unknown:
            raise PvError(f"--records: no backend {', '.join(map(repr, unknown))} "
                          f"(this source has: {', '.join(sorted(b.name for b in have)) or 'none'})")
        return [b for b in have if b.name in records]
    return all_backends(arch, inv, True if builtin else ("native",))


def _stub_sections(arch: Arch, res: ScanResult, copies: list[Copy], builtin: bool,
                   records: tuple[str, ...] | None) -> tuple[list[NewSection], list[NewSymbol]]:
    inv = res.inventory
    backends = link_backends(arch, inv, builtin, records)
    strings = bytearray()
    name_off: dict[str, int] = {}
    code = bytearray()
    recs = bytearray()
    rec_relocs: list[NewReloc] = []
    tramps: dict[str, tuple[int, Trampoline]] = {}
    tramp_text = bytearray()
    tramp_relocs: list[NewReloc] = []
    code_relocs: list[NewReloc] = []
    seen = set()
    P = arch.ptr_size
    for b in backends:
        for c in copies:
            key = (b.name, c.type, c.length, c.clobbers)
            if key in seen:
                continue
            seen.add(key)
            try:
                p = copy_patch(arch, inv, c, b)
            except PatchError as e:
                if b.builtin:
                    continue
                raise PvError(f"{e} (backend {b.name}, site {inv.sites[c.site].loc})") from None
            if p.kind == "keep":
                continue
            if b.name not in name_off:
                name_off[b.name] = len(strings)
                strings += b.name.encode() + b"\0"
            code_off = len(code)
            code += p.code
            code_relocs += fixup_relocs(p, code_off)
            base = len(recs)
            recs += table.pack_patch(arch, c.type, c.length, c.clobbers, p.call_offset, p.kind,
                                     pcrel_offset(p))
            rec_relocs.append(NewReloc(base, R_ABS[arch.name], SymRef(section=table.STRINGS_SECTION), name_off[b.name]))
            rec_relocs.append(NewReloc(base + P, R_ABS[arch.name], SymRef(section=table.CODE_SECTION), code_off))
            if p.trampoline is not None:
                t = p.trampoline
                if t.name not in tramps:
                    while len(tramp_text) % 16:
                        tramp_text += b"\xcc"
                    tramps[t.name] = (len(tramp_text), t)
                    tramp_relocs.append(NewReloc(len(tramp_text) + t.call_offset + 1, R_CALL[arch.name],
                                                 SymRef(symbol=t.target), -4))
                    tramp_text += t.code
                rec_relocs.append(NewReloc(base + 2 * P, R_ABS[arch.name],
                                           SymRef(section=TRAMP_SECTION), tramps[t.name][0]))
            elif p.call_target is not None:
                rec_relocs.append(NewReloc(base + 2 * P, R_ABS[arch.name], SymRef(symbol=p.call_target), 0))
    if not recs:
        return [], []          # no backend needs a record: add nothing
    out = [NewSection(table.PATCH_SECTION, SHF_ALLOC, P, bytes(recs), rec_relocs),
           NewSection(table.CODE_SECTION, SHF_ALLOC, 1, bytes(code), code_relocs),
           NewSection(table.STRINGS_SECTION, SHF_ALLOC | SHF_MERGE | SHF_STRINGS, 1, bytes(strings),
                      entsize=1)]
    syms = []
    if tramp_text:
        out.append(NewSection(TRAMP_SECTION, SHF_ALLOC | SHF_EXECINSTR, 16, bytes(tramp_text), tramp_relocs))
        syms = [NewSymbol(t.name, TRAMP_SECTION, off, len(t.code)) for off, t in sorted(tramps.values())]
        out.append(_eh_frame_section(arch, sorted(tramps.values())))
    return out, syms


def _eh_frame_section(arch: Arch, tramps: list[tuple[int, Trampoline]]) -> NewSection:
    """The trampolines' unwind info: a CIE and an FDE each, as GNU as writes
    them; add_sections appends it to the object's own .eh_frame."""
    data, fields = eh_frame(arch, [Frame(off, len(t.code), t.cfi) for off, t in tramps])
    relocs = [NewReloc(at, R_PC32[arch.name], SymRef(section=TRAMP_SECTION), off) for at, off in fields]
    return NewSection(".eh_frame", SHF_ALLOC, arch.ptr_size, data, relocs)


def fixup_relocs(p: Patch, at: int) -> list[NewReloc]:
    """The relocations of an inline replacement's symbol fields, for its
    copy at offset `at` (in .pvpass.code, or in a site's section)."""
    fixups = p.inline.fixups if p.inline is not None else ()
    return [NewReloc(at + f.offset, R_FIXUP[f.type], SymRef(symbol=f.symbol), f.addend) for f in fixups]

