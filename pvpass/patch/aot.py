"""Ahead-of-time patching: write one backend's patch into every site copy
of a linked object, so the program runs patched without the runtime.

Each copy's indirect call loses its relocation (the operand that named the
ops object); an inline replacement gets the relocations of the symbols it
names (R_386_32, R_X86_64_PC32, R_X86_64_32S, R_X86_64_32), a call gets a
PC-relative relocation to its target or to the trampoline the link step
put in `.text.pvpass`. The table stays, so `pvpass table` still lists the sites.
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import table
from ..diag import PvError
from ..emit.patches import Patch, PatchError
from ..emit.plan import all_backends
from ..emit.stubs import disassemble
from ..frontend.scan import ScanResult
from ..link.copies import Copy, copy_patch, find_copies
from ..link.elfobj import ElfObject
from ..link.elfwrite import Edit, NewReloc, SymRef, add_sections
from ..link.regcalls import site_losses
from ..link.step import R_CALL, TRAMP_SECTION, fixup_relocs, name_losses


@dataclass
class PatchedCopy:
    copy: Copy
    patch: Patch
    before: list[str]
    after: list[str]


def plan_copies(obj: ElfObject, res: ScanResult, backend: str) -> list[PatchedCopy]:
    inv = res.inventory
    backends = {b.name: b for b in all_backends(obj.arch, inv)}
    if not backends:
        raise PvError(f"no backend '{backend}': the source has no backends (it annotates no paravirt site)")
    if backend not in backends:
        raise PvError(f"no backend '{backend}' (have: {', '.join(sorted(backends))})")
    b = backends[backend]
    copies, _ = find_copies(obj, inv, res.sources)
    # copies no table holds (pvpass cc warned about them already): said again,
    # as they stay indirect calls whatever this patch does
    name_losses(obj, inv, site_losses(obj, inv, res.sources), "warning")
    if not copies:
        raise PvError(f"{obj.path}: no unpatched site copies (already patched ahead of time?)")
    out = []
    for c in copies:
        try:
            p = copy_patch(obj.arch, inv, c, b)
        except PatchError as e:
            raise PvError(f"{e} (backend {backend}, site {inv.sites[c.site].loc})") from None
        code = obj.section_data(obj.section(c.section))[c.offset:c.offset + c.length]
        after = [f"call {p.call_target}" if off == p.call_offset else _named(t, off, size, p)
                 for off, size, t in disassemble(obj.arch, p.code)] if p.kind != "keep" else []
        out.append(PatchedCopy(c, p, [t for _, _, t in disassemble(obj.arch, code)], after))
    return out


def _named(text: str, off: int, size: int, p: Patch) -> str:
    """An instruction's text, with the symbol its relocated field names."""
    for f in p.inline.fixups if p.inline is not None else ():
        if off <= f.offset < off + size:
            text += f" <{f.symbol}{f.value:+d}>" if f.value else f" <{f.symbol}>"
    return text


def patch_object(obj: ElfObject, res: ScanResult, backend: str) -> bytes:
    if obj.section(table.PATCH_SECTION) is None:
        raise PvError(f"{obj.path}: not linked by pvpass yet (run `pvpass link` first: "
                      f"it adds the trampolines a patch may call)")
    tramps = {s.name for s in obj.symbols if obj.section_name_of(s) == TRAMP_SECTION}
    edits: dict[str, Edit] = {}
    for pc in plan_copies(obj, res, backend):
        c, p = pc.copy, pc.patch
        if p.kind == "keep":
            continue
        e = edits.setdefault(c.section, Edit())
        e.writes.append((c.offset, p.code))
        e.drop.append((c.offset, c.offset + c.length))
        e.relocs += fixup_relocs(p, c.offset)
        if p.call_offset is not None:
            if p.trampoline is not None and p.call_target not in tramps:
                raise PvError(f"{obj.path}: trampoline {p.call_target} is missing: link with "
                              f"--builtin, or with the backend's source")
            e.relocs.append(NewReloc(c.offset + p.call_offset + 1, R_CALL[obj.arch.name],
                                     SymRef(symbol=p.call_target), -4))
    return add_sections(obj, [], [], edits)


def show(obj: ElfObject, res: ScanResult, backend: str) -> str:
    lines = []
    for pc in plan_copies(obj, res, backend):
        c = pc.copy
        s = res.inventory.sites[c.site]
        fn = obj.function_at(c.section, c.offset)
        where = f"{c.section}+{c.offset:#x}" + (f" <{fn[0]}+{fn[1]:#x}>" if fn else "")
        lines.append(f"{where}: {s.op} (len {c.length}, clobbers "
                     f"{','.join(obj.arch.regs_of_mask(c.clobbers)) or 'none'}): {pc.patch.note}")
        lines.append(f"    before: {'; '.join(pc.before)}")
        lines.append(f"    after:  {'; '.join(pc.after) if pc.after else '(unchanged)'}")
    return "\n".join(lines) + "\n"
