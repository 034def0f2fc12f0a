"""The front end's pipeline: preprocess -> chunk -> parse what matters ->
ops, sites, backends. `scan_pp` is pure: it returns a `ScanResult` with its
warnings in the inventory and prints nothing."""
from __future__ import annotations

import gc
import re
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from ..arch import Arch
from ..diag import EXIT_BAD_INPUT, Diagnostic, Loc, PvError, emit
from ..model import Inventory
from . import chunks
from .chunkmemo import remembered
from .annotation import Annotation, AnnotationError, is_annotation, parse_annotation
from .asmtemplate import TemplateError, parse_template
from .backends import BackendFinder
from pycparser import c_ast
from pycparserext.ext_c_parser import Asm

from .cparse import ChunkParser, nodes_of
from .layout import TypeEnv
from .operands import code_model
from .ops import OpsIndex
from .pptext import PPText
from .preprocess import compiler_verdict, default_cc, preprocess
from .sites import SiteBuilder, SiteSource
from .stmtsites import StatementSites, operand_exprs

_MARK = re.compile(r'\.parainstructions\b|pvpass\s*:')


@dataclass
class ScanResult:
    inventory: Inventory
    sources: list[SiteSource]
    pp: PPText
    parser: ChunkParser
    env: TypeEnv
    ops_index: OpsIndex
    annotations: list[tuple[Annotation, Loc]] = field(default_factory=list)


def scan(src: str, arch: Arch, cppflags: list[str], report: bool = True,
         cc: str | None = None) -> ScanResult:
    """Scan a source. With `report`, the front end's warnings (C it cannot
    follow) go to stderr here: the commands have nowhere else to show them.
    `cc`: the compiler the build uses (`default_cc()` if none)."""
    return scan_reported(preprocess(src, arch, cppflags, cc), arch, cppflags, report, cc=cc)


def scan_reported(pp: PPText, arch: Arch, cppflags: list[str], report: bool = True,
                  compiled: bool = False, cc: str | None = None, shared: bool = False) -> ScanResult:
    """`scan_pp` with locations mapped to the source the user wrote and,
    with `report`, its warnings printed (the build path's entry)."""
    try:
        with fewer_collections():
            res = scan_pp(pp, arch, cppflags, compiled, cc, shared)
    except PvError as e:
        if e.loc is not None:
            e.loc = pp.user_loc(e.loc)
        raise
    res.inventory.diagnostics = [replace(d, loc=pp.user_loc(d.loc)) for d in res.inventory.diagnostics]
    if report:
        for d in res.inventory.diagnostics:
            emit(d)
    return res


@contextmanager
def fewer_collections():
    """The front end makes many small objects that live until it returns
    (tokens, ASTs): with CPython's default gen-0 threshold of 700 the
    collector took ~30% of a scan of 20,000 sites. The build path holds it
    over the link step too, which makes objects per site copy while the
    scan's are alive (0.09 s of collections at 10,000 sites)."""
    old = gc.get_threshold()
    gc.set_threshold(10_000, 50, 50)
    try:
        yield
    finally:
        gc.set_threshold(*old)


def scan_pp(pp: PPText, arch: Arch, cppflags: list[str], compiled: bool = False,
            cc: str | None = None, shared: bool = False) -> ScanResult:
    """`compiled`: the compiler has already compiled this text (the build
    path), so C the parser cannot follow needs no gcc -fsyntax-only to tell a
    warning from an error. `shared`: the site statements' parses go through
    the parse cache (StatementSites; lint, which meets the same header
    inlines in every TU). Otherwise C that pvpass cannot parse is put to
    the compiler (once): if it rejects the text, its first error is the
    error (exit 2), with its own message and location."""
    verdict: list[tuple[bool, PvError | None]] = [(True, None)] if compiled else []

    def compiler_ok() -> bool:
        """True when the compiler accepts the text; its error when it
        rejects it; False when it cannot say (it crashed)."""
        if not verdict:
            verdict.append(compiler_verdict(pp.main_file, arch, cppflags, cc))
        ok, err = verdict[0]
        if err is not None:
            raise err
        return ok

    try:
        return _scan_pp(pp, arch, cppflags, compiled, cc, compiler_ok, shared)
    except PvError as e:
        if e.rule or e.code != EXIT_BAD_INPUT or not e.message.startswith("cannot parse C"):
            raise
        compiler_ok()            # gcc's error when it rejects the text too
        raise


def _scan_pp(pp: PPText, arch: Arch, cppflags: list[str], compiled: bool, cc: str | None,
             compiler_ok, shared: bool = False) -> ScanResult:
    tu = chunks.split(pp.text)
    parser = ChunkParser(pp, tu)
    env = TypeEnv(parser, arch)
    ops_index = OpsIndex(parser, env)
    cc = cc or default_cc()
    builder = SiteBuilder(pp, arch, env, ops_index, code_model(arch, tuple(cppflags), cc))
    memo = StatementSites(parser, builder, shared) if compiled else None
    sources: list[SiteSource] = []
    annotations: list[tuple[Annotation, Loc]] = []
    marked = sorted(_marked_chunks(tu, pp.text))
    warnings: list[Diagnostic] = []
    if not compiled:
        _check_parses(pp, parser, tu, set(marked), compiler_ok)
    for idx in marked:
        chunk = tu.chunks[idx]
        if chunk.is_func:
            sources += _function_sites(pp, parser, chunk, builder, compiler_ok, warnings, memo)
            annotations += _annotations(parser.asm(chunk), builder, skip_sites=True)
        else:
            annotations += _annotations(parser.asm(chunk), builder, skip_sites=False)
    inv = Inventory(pp.main_file, arch.name, diagnostics=warnings)
    objs = sorted({s.site.ops_object for s in sources})
    for obj in objs:
        ops = ops_index.ops_struct(obj, None)
        inv.ops.append(ops)
        obj_type, _ = ops_index.object_type(obj, None)
        inv.backends += BackendFinder(parser, env, arch).find(ops, obj_type, annotations)
    # by (loc, op), with Loc's fields in its order: tuples of str and int
    # compare in C, Loc's generated __lt__ built two tuples a comparison
    sources.sort(key=lambda s: (s.site.loc.file, s.site.loc.line, s.site.loc.col, s.site.op))
    inv.sites = [s.site for s in sources]
    return ScanResult(inv, sources, pp, parser, env, ops_index, annotations)


def _check_parses(pp: PPText, parser: ChunkParser, tu, marked: set[int], compiler_ok) -> None:
    """C the compiler rejects is an error even where no site is: text that
    is no sequence of declarations (the splitter says where), or a function
    of the main file pvpass cannot parse (headers are left to the build:
    a kernel TU holds thousands of their functions). The compiler is asked
    only then; when it accepts, the C is only beyond pvpass's parser, and a
    function without sites needs nothing from it."""
    if tu.broken is not None:
        compiler_ok()
        return
    for c in tu.chunks:
        if not c.is_func or c.index in marked or pp.loc(c.start).file != pp.main_file:
            continue
        try:
            parser.parse(c)
        except PvError as e:
            if e.rule or e.code != EXIT_BAD_INPUT or not e.message.startswith("cannot parse C"):
                raise            # (nesting too deep: pvpass's own limit, gcc may crash there)
            compiler_ok()
            return


def _marked_chunks(tu, text: str) -> set[int]:
    """Indexes of the chunks that hold a mark: the chunk of the last mark
    is tried first (a function of 10,000 sites holds 10,000 in a row)."""
    out: set[int] = set()
    last = None
    for off in _marks(text):
        if last is None or not last.start <= off < last.end:
            last = tu.chunk_at(off)
            if last is None:
                continue
            out.add(last.index)
    return out


def _marks(text: str):
    """Offsets of '.parainstructions' and 'pvpass:' (str.find is 10x faster
    than one regex alternation over a 3 MB TU)."""
    for needle in (".parainstructions", "pvpass"):
        i = text.find(needle)
        while i >= 0:
            if needle == ".parainstructions" or _MARK.match(text, i):
                yield i
            i = text.find(needle, i + 1)


def _function_sites(pp: PPText, parser: ChunkParser, chunk, builder: SiteBuilder,
                    compiler_ok, warnings: list[Diagnostic],
                    memo: StatementSites | None) -> list[SiteSource]:
    """Sites of one function. The build path (`memo`: gcc has compiled the
    text) reads them from the annotated statements alone where that is
    exact (pvpass/frontend/stmtsites.py). Otherwise the whole function is
    parsed (so broken C around a site is reported), and each annotated asm
    statement is matched to its node by coordinates to get its operand
    expressions. C that gcc accepts but pycparser cannot parse is a warning:
    each asm statement is then parsed on its own, which is all a site needs."""
    stmts = [a for a in parser.asm(chunk) if _MARK.search(a.template)]
    if not stmts:
        return []
    got = memo.function_sites(chunk, stmts) if memo is not None else None
    if got is not None:
        return got
    try:
        pc = parser.parse(chunk)
    except PvError as e:
        if e.rule or e.code != EXIT_BAD_INPUT or not compiler_ok():
            raise
        fname = parser.function_name(chunk)
        why = e.message.removeprefix("cannot parse C: ")
        warnings.append(Diagnostic(e.loc or pp.source_loc(chunk.start), "warning",
                                   f"pvpass cannot follow this C, which gcc accepts ({why}): the sites "
                                   f"of {fname or 'this function'} are read from their asm statements alone"))
        return [s for a in stmts for s in builder.sites_of(a, operand_exprs(parser.parse_asm_alone(a)), fname)]
    nodes = {(n.coord.file, n.coord.line, n.coord.column): n
             for n in nodes_of(pc.ast, Asm) if n.coord is not None}
    fname = next((d.decl.name for d in pc.ast.ext if isinstance(d, c_ast.FuncDef)), None)
    out: list[SiteSource] = []
    for a in stmts:
        loc = pp.loc(a.off)
        out += builder.sites_of(a, operand_exprs(nodes.get((loc.file, loc.line, loc.col))), fname)
    return out


def _annotations(stmts, builder: SiteBuilder, skip_sites: bool):
    """The non-site annotations of asm statements, with their locations.
    What a template holds depends on its text alone: read once per process
    for each text (10,000 expansions of one site macro cost one parse)."""
    out = []
    for a in stmts:
        if "pvpass" not in a.template:
            continue
        found = remembered(f"annotations{skip_sites:d}", a.template,
                           lambda: _template_annotations(a, builder, skip_sites))
        out += [(ann, builder.tloc(a, pos)) for ann, pos in found]
    return out


def _template_annotations(a, builder: SiteBuilder, skip_sites: bool):
    """(annotation, template index) of each non-site annotation of `a`."""
    try:
        tpl = parse_template(a.template)
    except TemplateError as e:
        raise PvError(str(e), builder.tloc(a, e.pos)) from None
    out = []
    for c in tpl.comments:
        if not is_annotation(c.text):
            continue
        try:
            ann = parse_annotation(c.text)
        except AnnotationError as e:
            raise builder.annotation_error(a, c.pos, e) from None
        if ann.kind == "site":
            if not skip_sites:
                raise PvError("a pvpass site annotation outside a function",
                              builder.tloc(a, c.pos), rule="PV008")
            continue
        out.append((ann, c.pos))
    return tuple(out)
