"""The build path's sites of a function, read from its annotated asm
statements, each distinct statement text analysed once per scan.

`pvpass cc` runs after gcc has compiled the source, so no parse of the
whole function is needed to know its C is valid: a site needs only its
statement's operand expressions and the function's name. The function's
head and those of its annotated statements whose text is new are parsed
together (one pycparser run on the text the whole-function parse would see:
the chunk's blanks and rewrites, each statement behind a line marker of its
own place), and `SiteBuilder.sites_of` runs on each new text. A statement
whose exact text was met before gets that statement's sites again, with
its own location, asm statement and function: one macro expanded 10,000
times in one function is parsed and encoded once (a whole-function parse
was ~0.2 ms a site).

A function none of whose statements is new (the same macros in another
function) needs only its name, yet its head is parsed each time (~60 us):
a head that differs from one parsed before only in the declarator's
identifier parses the same, with that identifier for the name
(`_head_shape` says when), so it is parsed once per shape.

Exact: a C expression's parse depends on its context only through which
names are typedef names. Where the function holds no `typedef` and no
operand of a new statement names one of the TU's typedef names (which a
parameter or local could shadow), a statement parses alone as it does in
its function. Otherwise, or if the reduced text does not parse as one
function of exactly those statements, the caller parses the whole function
as before. Errors are never remembered: a statement that fails is new, and
fails where it would have.
"""
from __future__ import annotations

import re

from pycparser import c_ast
from pycparserext.ext_c_parser import Asm

from .asmstmt import AsmStmt
from .chunks import Chunk
from .cparse import ChunkParser, marker
from ..diag import Loc
from ..model import Site
from .sites import SiteBuilder, SiteSource

_TYPEDEF = re.compile(r'\btypedef\b')
_IDENT = re.compile(r'[A-Za-z_]\w*')
_PLAIN = re.compile(r'[A-Za-z_][A-Za-z0-9_]*')
_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_$")


def operand_exprs(node) -> dict[int, object]:
    """Operand index -> expression, from pycparserext's Asm node (which
    reads `"r" (x)` as a call of the constraint string)."""
    out: dict[int, object] = {}
    if node is None:
        return out
    idx = 0
    for group in (node.output_operands, node.input_operands):
        for e in (group.exprs if group is not None else []):
            if isinstance(e, c_ast.FuncCall) and e.args is not None and e.args.exprs:
                out[idx] = e.args.exprs[0]
            idx += 1
    return out


class StatementSites:
    """One scan's memo: statement text -> the sites sites_of made of it."""

    def __init__(self, parser: ChunkParser, builder: SiteBuilder, shared: bool = False) -> None:
        """`shared`: the reduced functions' parses go through the parse
        cache (lint: a kernel TU's ~70 header inline sites are the next
        TU's too; a parse was most of a TU's Python time)."""
        self.parser, self.builder, self.shared = parser, builder, shared
        self._seen: dict[str, list[SiteSource]] = {}
        self._heads: set[tuple[str, str]] = set()   # head shapes that parsed as one function

    def function_sites(self, chunk: Chunk, stmts: list[AsmStmt]) -> list[SiteSource] | None:
        """The sites of the annotated statements `stmts` of function
        `chunk`, in order; None where the whole function must be parsed."""
        text = self.parser.pp.text
        keys = [text[a.off:a.end] for a in stmts]
        fresh: dict[str, AsmStmt] = {}
        for k, a in zip(keys, stmts):
            if k not in self._seen and k not in fresh:
                fresh[k] = a
        typedefs = self.parser.typedefs
        if (text.find("typedef", chunk.start, chunk.end) >= 0      # (str.find first: 1 ms a MB, not 20)
                and _TYPEDEF.search(text, chunk.start, chunk.end)) or any(
                n in typedefs for a in fresh.values() for o in a.operands for n in _IDENT.findall(o.expr)):
            return None
        parsed = self._parse(chunk, list(fresh.values()))
        if parsed is None:
            return None
        fname, nodes = parsed
        out: list[SiteSource] = []
        for k, a in zip(keys, stmts):
            if fresh.get(k) is a:
                got = self.builder.sites_of(a, operand_exprs(nodes[id(a)]), fname)
                self._seen[k] = got
                out += got
            else:
                out += [self._again(s, a, fname) for s in self._seen[k]]
        return out

    def _again(self, s: SiteSource, a: AsmStmt, fname: str | None) -> SiteSource:
        """Site source `s`, of a statement with the same text as `a`, as `a`'s."""
        call = a.operands[s.call_operand.index] if s.call_operand is not None else None
        return SiteSource(_relocated(s.site, self.builder.site_loc(a), fname), a, s.template,
                          s.annotation, s.operand_exprs, call, s.site_stmts)

    def _parse(self, chunk: Chunk, fresh: list[AsmStmt]):
        """(the function's name, id(statement) -> its Asm node) from one
        parse of the function's head and the statements `fresh`; None if
        that text is not such a function."""
        pp, p = self.parser.pp, self.parser
        if chunk.body < chunk.start:          # no function body known
            return None
        # the head and the new statements as the whole function's parse sees them
        head, *texts = p.prepared_parts(chunk, [(chunk.start, chunk.body)] + [(a.off, a.end) for a in fresh])
        shape = None if fresh else self._head_shape(chunk, head)
        if shape is not None and shape[0] in self._heads:
            return shape[1], {}
        parts = [marker(pp.loc(chunk.start)), head, "{"]
        for a, t in zip(fresh, texts):
            parts += ["\n", marker(pp.loc(a.off)), t, ";"]
        parts.append("\n}\n")
        try:
            text, file = "".join(parts), pp.loc(chunk.start).file
            ast = p.parse_text(text, file, cached=True) if self.shared else p.parse_text(text, file)
        except Exception:        # RecursionError, ParseError, pycparser's own: the whole parse says
            return None
        funcs = [d for d in ast.ext if isinstance(d, c_ast.FuncDef)]
        if len(ast.ext) != 1 or len(funcs) != 1:
            return None
        items = funcs[0].body.block_items or []
        if len(items) != len(fresh) or not all(isinstance(n, Asm) for n in items):
            return None
        name = funcs[0].decl.name
        if shape is not None and name == shape[1] and head.count(name) == 1:
            self._heads.add(shape[0])
        return name, {id(a): n for a, n in zip(fresh, items)}

    def _head_shape(self, chunk: Chunk, head: str) -> tuple[tuple[str, str], str] | None:
        """((the prepared head before and after its declarator's identifier),
        that identifier), where a head of that shape with any such
        identifier parses alike: the identifier is one whole token that
        pycparser lexes as ID (no keyword, no typedef name; ASCII). Then the
        two heads' tokens differ in that ID's value alone, and so do their
        parses; where the one parsed held its name once, that ID was the
        declarator's, and the name of the other is its own identifier.
        None where that does not hold: the head is parsed."""
        name, k = self.parser.declarator(chunk)
        if not name or k < 0 or not _PLAIN.fullmatch(name) or head[k:k + len(name)] != name:
            return None
        e = k + len(name)
        if (k and head[k - 1] in _WORD_CHARS) or (e < len(head) and head[e] in _WORD_CHARS):
            return None
        if name in self.parser.typedefs or _is_keyword(name):
            return None
        return (head[:k], head[e:]), name


def _is_keyword(name: str) -> bool:
    """Whether pycparserext's GNU C lexer reads `name` as a keyword."""
    from pycparser.c_lexer import _keyword_map
    from pycparserext.ext_c_parser import GnuCParser
    return name in _keyword_map or name in GnuCParser.lexer_class._extra_keywords


def _relocated(s: Site, loc: Loc, function: str | None) -> Site:
    """`dataclasses.replace(s, loc=loc, function=function)` at a fifth of
    its cost (it inspects the fields each time)."""
    n = object.__new__(Site)
    n.__dict__.update(s.__dict__, loc=loc, function=function)
    return n
