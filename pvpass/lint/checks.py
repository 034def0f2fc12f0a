"""The lint checks over one scanned translation unit. Each check is a
function from the scan result to diagnostics; `RULES` holds their docs."""
from __future__ import annotations

import re

from pycparser import c_ast

from ..arch import Arch
from ..diag import Diagnostic, Loc, Note, PvError
from ..emit.patches import PatchError, decide, site_clobbers
from ..emit.plan import all_backends, length_unfit, type_unfit
from ..emit.stubs import inline_stub
from ..encode import EncodeError
from ..frontend.asmtemplate import Indirect, OpRef, parse_template, TemplateError
from ..frontend.cparse import nodes_of
from ..frontend.ops import member_path
from ..frontend.scan import ScanResult
from ..textsplit import whole_words
from .constraints import effects
from .rules import RULES


def _d(loc: Loc, rule: str, message: str, level: str | None = None, notes=()) -> Diagnostic:
    return Diagnostic(loc, level or RULES[rule].level, message, rule, tuple(notes))


def check_all(res: ScanResult, arch: Arch, extra_objects=()) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    out += check_clobbers(res, arch)
    out += check_lengths_and_backends(res, arch)
    out += check_ops(res)
    out += check_unset(res)
    out += check_signatures(res, arch)
    out += check_unwrapped(res, arch, extra_objects)
    return out


def check_clobbers(res: ScanResult, arch: Arch) -> list[Diagnostic]:
    """PV002: the annotation's clobber set against the asm constraints."""
    out = []
    for src in res.sources:
        site = src.site
        eff = effects(arch, src.asm)
        allowed = site_clobbers(arch, site)
        missing = [r for r in arch.gprs if r in allowed and r not in eff.written]
        if missing:
            out.append(_d(site.loc, "PV002",
                          f"the site lets the callee clobber {', '.join('%' + r for r in missing)}, but the "
                          f"asm statement neither outputs nor clobbers {'it' if len(missing) == 1 else 'them'}: "
                          f"gcc may keep a live value there ({site.op})"))
        clobberable = {r for r, _ in arch.clobber_bits}
        result = {arch.ret_reg} if site.returns else set()
        extra = [r for r in arch.gprs if r in eff.written and r in clobberable
                 and r not in site.clobbers and r not in result]
        if extra:
            out.append(_d(site.loc, "PV002",
                          f"the asm statement declares {', '.join('%' + r for r in extra)} clobbered, but the "
                          f"site does not let the callee clobber {'it' if len(extra) == 1 else 'them'}: "
                          f"a lost optimisation ({site.op})", "warning"))
    return out


def check_lengths_and_backends(res: ScanResult, arch: Arch) -> list[Diagnostic]:
    """PV003 (too short) and PV004 (no trampoline possible)."""
    out = []
    inv = res.inventory
    backends = all_backends(arch, inv, builtin=True)
    for src in res.sources:
        site = src.site
        if site.length < 5:
            out.append(_d(site.loc, "PV003", f"the site is {site.length} bytes: too short for a "
                                             f"5-byte call ({site.op})"))
            continue
        too_long = length_unfit(site.op, site.length)
        if too_long:
            out.append(_d(site.loc, "PV003", too_long))
            continue
        ops = inv.ops_struct_for(site.ops_object)
        op = ops.op(site.op) if ops else None
        for b in backends:
            t = b.targets.get(site.op)
            if t is None or (b.builtin and b.name != "native"):
                continue
            notes = [Note(t.loc, f"backend {b.name} sets {site.op} here")] if t.loc else []
            if t.contract.kind == "inline" and t.contract.text is not None:
                try:
                    n = len(inline_stub(arch, t.contract.text).code)
                except EncodeError as e:
                    out.append(_d(site.loc, "PV004", f"backend {b.name}: the inline replacement for "
                                                     f"{site.op} does not assemble: {e}", notes=notes))
                    continue
                if n > site.length:
                    out.append(_d(site.loc, "PV003",
                                  f"the site is {site.length} bytes, shorter than backend {b.name}'s "
                                  f"{n}-byte inline replacement for {site.op}; it will get a call instead",
                                  "warning", notes))
            if b.builtin:
                continue
            try:
                decide(arch, site, op, b)
            except PatchError as e:
                out.append(_d(site.loc, "PV004", f"{e}", notes=notes))
    return out


def check_ops(res: ScanResult) -> list[Diagnostic]:
    """PV005: type numbers that do not fit the table's byte, or collide."""
    out = []
    for ops in res.inventory.ops:
        seen = {}
        for op in ops.ops:
            loc = op.loc or ops.loc or Loc(res.pp.main_file)
            too_big = type_unfit(op.path, op.type_number)
            if too_big:
                out.append(_d(loc, "PV005", too_big))
            first = seen.get(op.type_number)
            if first is not None:
                notes = [Note(first.loc, f"{first.path} has it too")] if first.loc else []
                out.append(_d(loc, "PV005", f"ops {first.path} and {op.path} share type number "
                                            f"{op.type_number}", notes=notes))
            else:
                seen[op.type_number] = op
    return out


def _group(path: str) -> str:
    return path.split(".", 1)[0] if "." in path else ""


def check_unset(res: ScanResult) -> list[Diagnostic]:
    """PV006: a backend initializer that leaves an op NULL. Only the groups
    (nested ops structs) the initializer sets count: Xen-style partial
    initializers of one group, copied in with `pv_ops.cpu = xen_cpu_ops.cpu`,
    are not expected to set the others."""
    out = []
    for b in res.inventory.backends:
        if b.builtin or b.scope is None:
            continue
        touched = {_group(p) for p in list(b.targets) + list(b.absent)}
        for ops in res.inventory.ops:
            for op in ops.ops:
                if (op.path.startswith(b.scope) and _group(op.path) in touched
                        and op.path not in b.targets and op.path not in b.absent):
                    out.append(_d(b.loc or Loc(res.pp.main_file), "PV006",
                                  f"backend {b.name} leaves {op.path} unset: a NULL call at run time"))
    return out


def check_signatures(res: ScanResult, arch: Arch) -> list[Diagnostic]:
    """PV007: argument count and return value against the prototype."""
    out = []
    for src in res.sources:
        s = src.site
        ops = res.inventory.ops_struct_for(s.ops_object)
        op = ops.op(s.op) if ops else None
        if op is None or op.nargs is None:
            continue
        notes = [Note(op.loc, f"{op.path} is declared here")] if op.loc else []
        if s.nargs is not None and s.nargs != op.nargs:
            out.append(_d(s.loc, "PV007", f"the site passes {s.nargs} argument{'s' if s.nargs != 1 else ''} "
                                          f"but {op.path} takes {op.nargs}", notes=notes))
        if s.returns and op.returns is False:
            out.append(_d(s.loc, "PV007", f"the site reads a result from {op.path}, which returns void",
                          notes=notes))
    return out


def ops_objects(res: ScanResult, extra=()) -> set[str]:
    objs = {s.ops_object for s in res.inventory.sites} | set(extra)
    objs |= {a.backend for a, _ in res.annotations if a.kind == "ops" and a.backend}
    return objs


def check_unwrapped(res: ScanResult, arch: Arch, extra=()) -> list[Diagnostic]:
    """PV001: calls through an ops object that no annotation wraps."""
    out = []
    objs = ops_objects(res, extra)
    if not objs:
        return out
    text = res.pp.text
    site_asm = {id(s.asm) for s in res.sources}
    seen = set()
    for at, obj in sorted((i, o) for o in objs for i in _member_uses(text, o)):
        chunk = res.parser.tu.chunk_at(at)
        if chunk is None or not chunk.is_func or chunk.index in seen:
            continue
        seen.add(chunk.index)
        try:
            pc = res.parser.parse(chunk)
        except PvError as e:
            out.append(_d(e.loc or res.pp.loc(chunk.start), "PV001",
                          f"this function mentions {obj} but pvpass cannot parse it, so its calls "
                          f"were not checked ({e.message})", "warning"))
            continue
        for fc in nodes_of(pc.ast, c_ast.FuncCall):
            callee = fc.name
            if isinstance(callee, c_ast.UnaryOp) and callee.op == "*":
                callee = callee.expr
            mp = member_path(callee)
            if mp and mp[0] in objs and mp[1]:
                off = pc.offset_of(fc.coord)
                loc = res.pp.source_loc(chunk.start + off, mp[0]) if off is not None else \
                    Loc(fc.coord.file, fc.coord.line, fc.coord.column or 0)
                out.append(_d(loc, "PV001", f"call through {mp[0]}.{'.'.join(mp[1])} is not an "
                                            f"annotated site: it can never be patched"))
        for a in pc.asm:
            if id(a) in site_asm or "parainstructions" in a.template or "pvpass" in a.template:
                continue
            hit = _asm_ops_call(a, objs, pc)
            if hit:
                out.append(_d(res.pp.source_loc(a.off, "asm"), "PV001",
                              f"asm 'call *' through {hit} has no pvpass annotation: it can never be patched"))
    return out


_DOT = re.compile(r'\s*\.')


def _member_uses(text: str, obj: str):
    """Offsets of OBJ as a whole word followed by a dot (after white space
    or none), as PV001 once found them with a regex (~60 ms a kernel TU)."""
    return (i for i in whole_words(text, obj) if _DOT.match(text, i + len(obj)))


def _asm_ops_call(a, objs, pc) -> str | None:
    try:
        tpl = parse_template(a.template)
    except TemplateError:
        return None
    for st in tpl.stmts(""):
        if st.name in ("call", "callq", "calll", "jmp", "jmpq") and st.args and isinstance(st.args[0], Indirect):
            t = st.args[0].target
            if isinstance(t, OpRef):
                o = a.operand(t.ref)
                if o is not None and re.match(r'\s*&?\s*(%s)\b' % "|".join(map(re.escape, objs)), o.expr):
                    return o.expr.replace(" ", "")
    return None
