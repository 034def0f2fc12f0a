"""The emit plan: table entries, every (site, backend) patch, and the
trampolines they share. Pure data for the renderers and the link step."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..arch import Arch
from ..diag import Diagnostic, Note
from ..model import Backend, Inventory, Op, Site
from .native import builtin_backends
from .nops import check_table
from .patches import Patch, PatchError, decide
from .stubs import Trampoline


@dataclass(frozen=True)
class TableRow:
    label: str            # the symbol/expression the instr field points at
    type: int
    length: int
    clobbers: int
    comment: str


@dataclass
class EmitPlan:
    arch: Arch
    source: str
    sites: list[Site]
    rows: list[TableRow]
    backends: list[Backend]
    patches: dict[tuple[int, str], Patch] = field(default_factory=dict)
    trampolines: list[Trampoline] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    ops: list = field(default_factory=list)          # the OpsStructs the sites use


def site_label(i: int) -> str:
    return f"__pvpass_site_{i}"


def site_comment(site: Site) -> str:
    where = f"{site.loc.file.rsplit('/', 1)[-1]}:{site.loc.line}:{site.loc.col}"
    return f"{where} {site.function or '?'}: {site.op}"


def all_backends(arch: Arch, inv: Inventory, builtin=True) -> list[Backend]:
    """The built-in backends (all of them, or those named in `builtin`), then
    the source's own."""
    out: list[Backend] = []
    if builtin:
        for ops in inv.ops:
            out += [b for b in builtin_backends(arch, ops) if builtin is True or b.name in builtin]
    names = {b.name for b in out}
    out += [b for b in inv.backends if b.name not in names]
    return out


TABLE_BYTE_MAX = 255        # a table entry's type and len fields are one byte each


def type_unfit(op_path: str, type_number: int) -> str | None:
    """Why an op's type number cannot be recorded in the table (or None)."""
    if 0 <= type_number <= TABLE_BYTE_MAX:
        return None
    return (f"op {op_path} has type number {type_number}, which does not fit the table's "
            f"one-byte type field")


def length_unfit(op_path: str, length: int) -> str | None:
    """Why a site's length cannot be recorded in the table (or None)."""
    if length <= TABLE_BYTE_MAX:
        return None
    return (f"the site is {length} bytes: longer than the {TABLE_BYTE_MAX} bytes the table's "
            f"one-byte len field records ({op_path})")


def table_diagnostics(inv: Inventory) -> list[Diagnostic]:
    """PV005 for an op, PV003 for a site that the table cannot record."""
    out, seen = [], set()
    for site in inv.sites:
        ops = inv.ops_struct_for(site.ops_object)
        op = ops.op(site.op) if ops else None
        why = type_unfit(site.op, site.type_number)
        if why and site.op not in seen:
            seen.add(site.op)
            out.append(Diagnostic((op.loc if op and op.loc else site.loc), "error", why, "PV005"))
        why = length_unfit(site.op, site.length)
        if why:
            out.append(Diagnostic(site.loc, "error", why, "PV003"))
    return out


def make_plan(arch: Arch, inv: Inventory, nops: str = "p6", builtin: bool = True) -> EmitPlan:
    check_table(arch.bits, nops)
    rows = [TableRow(site_label(i), s.type_number, s.length, s.mask, site_comment(s))
            for i, s in enumerate(inv.sites)]
    backends = all_backends(arch, inv, builtin)
    plan = EmitPlan(arch, inv.source, list(inv.sites), rows, backends, ops=list(inv.ops))
    plan.diagnostics += table_diagnostics(inv)
    if plan.diagnostics:
        return plan                 # no entry, no patch: the table cannot hold these sites
    tramps: dict[str, Trampoline] = {}
    for i, site in enumerate(inv.sites):
        ops = inv.ops_struct_for(site.ops_object)
        op: Op | None = ops.op(site.op) if ops else None
        for b in backends:
            try:
                p = decide(arch, site, op, b, nops)
            except PatchError as e:
                if b.builtin:
                    from .patches import Patch as _P
                    p = _P("keep", b"", None, None, None, None, f"{e}: the indirect call stays")
                else:
                    t = b.targets.get(site.op)
                    notes = (Note(t.loc, f"backend {b.name} sets {site.op} here"),) if t and t.loc else ()
                    plan.diagnostics.append(Diagnostic(site.loc, "error", f"{e} (site in "
                                                       f"{site.function or '?'})", "PV004", notes))
                    continue
            plan.patches[(i, b.name)] = p
            if p.trampoline is not None:
                tramps.setdefault(p.trampoline.name, p.trampoline)
    plan.trampolines = [tramps[k] for k in sorted(tramps)]
    return plan
