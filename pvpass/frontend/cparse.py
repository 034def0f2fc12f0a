"""pycparser (with pycparserext's GNU C) on single top-level chunks.

Each chunk is parsed on its own, with the TU's typedef names seeded into the
parser's scope, after length-preserving rewrites of what pycparser does not
know (`__signed__`, `__builtin_offsetof`, `__int128`, named asm operands,
`asm goto`, attributes). Offsets, lines and columns stay where they were, so
pycparser's coordinates and our own text offsets agree.
"""
from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field

from pycparser import c_ast
from pycparser.c_parser import ParseError
from pycparserext.ext_c_parser import Asm

from ..parsecache import parse_cache
from ..diag import Loc, PvError

from .asmstmt import AsmStmt, blank_spans, find_asm
from .chunks import Chunk, ChunkedTU
from .deep import deep_call, deepest, too_deep
from .gnuc import CParser
from .pptext import PPText

BUILTIN_TYPEDEFS = frozenset({"__builtin_va_list", "__int128_t", "__uint128_t",
                              "_pvi128_", "_pvu128_", "_Float128", "__float128"})

# (pattern, replacement, what every match holds): a pattern that starts
# with \b is tried at each position (~30 ms over a 1.4 MB function), the
# hint is found by a plain search or a regex without that start.
_REWRITES = [
    (re.compile(r'\b(?:unsigned\s+__int128|__int128\s+unsigned)\b'), "_pvu128_", "__int128"),
    (re.compile(r'\b(?:signed\s+)?__int128\b'), "_pvi128_", "__int128"),
    (re.compile(r'\b__signed__\b'), "signed", "__signed__"),
    (re.compile(r'\b__builtin_offsetof\b'), "offsetof", "__builtin_offsetof"),
    (re.compile(r'\b__auto_type\b'), "int", "__auto_type"),
    (re.compile(r'\b__label__\b[^;]*;'), "", "__label__"),
    (re.compile(r'\b__thread\b'), "", "__thread"),
    # imaginary constants (1i, 2.0fj): the value does not matter here
    (re.compile(r'\b(?<![.])(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?[fFlL]?)[ij]\b'), lambda m: m.group(1) + " ",
     re.compile(r'[\d.fFlL][ij]\b')),
]
_ATTR = re.compile(r'\b__attribute(?:__)?\s*\(\(')
_DECLARATOR = re.compile(r'([A-Za-z_]\w*)\s*\(')
_NOT_NAMES = frozenset({"__typeof__", "__typeof", "typeof", "__asm__", "__asm", "asm", "_Alignas",
                        "__alignof__", "_Alignof", "sizeof", "__declspec", "__attribute__",
                        "__attribute"})


@dataclass(frozen=True)
class Attr:
    start: int            # chunk-relative span of the whole __attribute__((...))
    end: int
    packed: bool = False
    aligned: str | None = None     # the alignment expression text ("" = max)


@dataclass
class ParsedChunk:
    chunk: Chunk
    ast: c_ast.FileAST
    asm: list[AsmStmt]
    attrs: list[Attr]
    text: str             # the chunk's original text
    # (file, line) -> chunk-relative offset of column 1 of that line
    line_index: dict[tuple[str, int], int] = field(default_factory=dict)

    def offset_of(self, coord) -> int | None:
        """Chunk-relative offset of a pycparser coordinate."""
        if coord is None or coord.line is None:
            return None
        base = self.line_index.get((coord.file, coord.line))
        if base is None:
            return None
        return base + (coord.column or 1) - 1


_LINE_MARK = re.compile(r'[ \t]*#(?:line)? *(\d+) +"((?:[^"\\\n]|\\.)*)"')


def _line_index(text: str, loc: Loc) -> dict[tuple[str, int], int]:
    """Map each line of a chunk to its offset, following line markers."""
    idx: dict[tuple[str, int], int] = {}
    file, line = loc.file, loc.line
    pos = -(loc.col - 1)
    while True:
        idx.setdefault((file, line), pos)
        nl = text.find("\n", max(pos, 0))
        if nl < 0:
            return idx
        nxt = nl + 1
        m = _LINE_MARK.match(text, nxt)
        if m:
            file, line = m.group(2).replace('\\"', '"').replace("\\\\", "\\"), int(m.group(1))
            e = text.find("\n", nxt)
            if e < 0:
                return idx
            pos = e + 1
        else:
            pos, line = nxt, line + 1


def _attr_spans(text: str) -> list[Attr]:
    if "__attribute" not in text:       # (a scan of _ATTR's \b is ~20 ms a MB)
        return []
    out = []
    for m in _ATTR.finditer(text):
        i, depth = m.end(), 2
        while i < len(text) and depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        body = text[m.end():i - 2]
        packed = bool(re.search(r'\b__packed__\b|\bpacked\b', body))
        al = re.search(r'\b(?:__aligned__|aligned)\b\s*(\((.*)\))?', body, re.S)
        aligned = None
        if al:
            aligned = _balanced_prefix(al.group(2) or "") if al.group(1) else ""
        out.append(Attr(m.start(), i, packed, aligned))
    return out


def _balanced_prefix(s: str) -> str:
    depth = 0
    for i, ch in enumerate(s):
        if ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                return s[:i]
            depth -= 1
    return s


def _applies(hint, text: str) -> bool:
    """Whether a rewrite's hint is in the text (else it has nothing to do there)."""
    return (hint in text) if isinstance(hint, str) else hint.search(text) is not None


def _rewrite(text: str) -> str:
    for pat, rep, hint in _REWRITES:
        if not _applies(hint, text):
            continue
        text = pat.sub(rep if callable(rep) else (lambda m, rep=rep: _pad(rep, m.group())), text)
    return text


def _pad(rep: str, orig: str) -> str:
    # Keep newlines so line numbers do not move.
    nl = orig.count("\n")
    body = rep + " " * max(len(orig) - len(rep) - nl, 0)
    return body + "\n" * nl


class ChunkParser:
    """Parses chunks of one TU on demand, each once."""

    def __init__(self, pp: PPText, tu: ChunkedTU) -> None:
        self.pp = pp
        self.tu = tu
        self._cache: dict[int, ParsedChunk] = {}
        self._asm: dict[int, list[AsmStmt]] = {}
        self._parser = CParser()
        self._typedefs = tu.typedef_names | BUILTIN_TYPEDEFS

    def parse(self, chunk: Chunk) -> ParsedChunk:
        pc = self._cache.get(chunk.index)
        if pc is None:
            pc = self._cache[chunk.index] = self._parse(chunk)
        return pc

    def asm(self, chunk: Chunk) -> list[AsmStmt]:
        """The asm statements of a chunk (read once)."""
        got = self._asm.get(chunk.index)
        if got is None:
            got = self._asm[chunk.index] = find_asm(self.pp.text, chunk.start, chunk.end, self.pp.loc)
        return got

    @property
    def typedefs(self) -> frozenset[str]:
        """The names pycparser takes for typedef names in every chunk."""
        return self._typedefs

    def _parse(self, chunk: Chunk) -> ParsedChunk:
        text = chunk.text(self.pp.text)
        asm = self.asm(chunk)
        attrs = _attr_spans(text)
        loc = self.pp.loc(chunk.start)
        cache = parse_cache()
        key = cache.key(text, loc.file, loc.line, loc.col, self._typedefs)
        hit = cache.get(key)
        if hit is not None:
            ast, line_index = hit
            return ParsedChunk(chunk, ast, asm, attrs, text, line_index)
        ptext = self._prepared(chunk, text, asm, attrs)
        head = marker(loc)
        ast = self._pycparse(head + ptext, loc, chunk.start, text)
        pc = ParsedChunk(chunk, ast, asm, attrs, text, _line_index(text, loc))
        cache.put(key, ast, pc.line_index)     # too deep to keep: not kept
        return pc

    def prepared(self, chunk: Chunk) -> str:
        """The chunk's text as pycparser is given it: asm statements' and
        attributes' blanks, then the rewrites (same length, same lines)."""
        text = chunk.text(self.pp.text)
        return self._prepared(chunk, text, self.asm(chunk), _attr_spans(text))

    def prepared_parts(self, chunk: Chunk, ranges: list[tuple[int, int]]) -> list[str]:
        """prepared(chunk)[a - chunk.start:b - chunk.start] for each (a, b)
        of pp offsets in the chunk, without preparing the rest of it: a
        function of 10,000 asm statements is 1.4 MB, and the build path
        needs its head and its new statements. Blanking is character by
        character, so a range's blanks are those of the spans over it.
        The rewrites are not (a match reads past a range's ends;
        __label__'s runs to a ';'): a chunk any of them applies to is
        prepared whole. Their hints are looked for in the text before
        blanking, which holds each hint the blanked text holds: blanking
        makes spaces, no hint holds one, and the one that ends at a word
        boundary (an imaginary constant's `i`) cannot get one there, as a
        blanked span that starts with a word character starts a token."""
        text = chunk.text(self.pp.text)
        asm = self.asm(chunk)
        if (not chunk.is_func and asm and asm[0].off == chunk.start) or \
                any(_applies(hint, text) for _, _, hint in _REWRITES):
            whole = self.prepared(chunk)
            return [whole[a - chunk.start:b - chunk.start] for a, b in ranges]
        attrs = _attr_spans(text)
        offs = [s.off for s in asm]
        out = []
        for a, b in ranges:
            lo, hi = a - chunk.start, b - chunk.start
            k = max(bisect_right(offs, a) - 1, 0)       # the statement before may reach into the range
            spans = [(max(x, a) - a, min(y, b) - a) for s in asm[k:bisect_left(offs, b)] for x, y in s.blanks]
            spans += [(max(t.start, lo) - lo, min(t.end, hi) - lo) for t in attrs if t.start < hi and t.end > lo]
            out.append(blank_spans(text[lo:hi], spans))
        return out

    @staticmethod
    def _prepared(chunk: Chunk, text: str, asm: list[AsmStmt], attrs: list[Attr]) -> str:
        blanks = [(a - chunk.start, b - chunk.start) for s in asm for a, b in s.blanks]
        if not chunk.is_func and asm and asm[0].off == chunk.start:
            # a file-scope asm("..."); statement: nothing for pycparser to see
            blanks = [(0, len(text))]
        blanks += [(a.start, a.end) for a in attrs]
        return _rewrite(blank_spans(text, blanks))

    def _pycparse(self, text: str, loc: Loc, start: int, orig: str) -> c_ast.FileAST:
        """pycparser on the text of the chunk at pp offset `start` (original
        text `orig`); deep nesting is parsed again in a deep thread."""
        try:
            try:
                return self._parser.parse(text, loc.file, initial_type_symbols=self._typedefs)
            except RecursionError:
                pass
            try:
                return deep_call(self._parser.parse, text, loc.file, 0, self._typedefs)
            except RecursionError:
                where, depth = deepest(orig)
                raise too_deep(self.pp.source_loc(start + where), depth) from None
        except ParseError as e:
            raise PvError(_clean_parse_error(str(e)),
                          self._source_loc(_loc_of_parse_error(str(e), loc), loc, start, orig)) from None
        except (AssertionError, IndexError, AttributeError, TypeError) as e:
            raise PvError(f"cannot parse this declaration ({type(e).__name__})", loc) from None

    def _source_loc(self, at: Loc, loc: Loc, start: int, orig: str) -> Loc:
        """A pycparser coordinate in the chunk at pp offset `start` (which
        begins at `loc`), as a place in the source the user wrote."""
        base = _line_index(orig, loc).get((at.file, at.line)) if at.col > 0 else None
        if base is None:
            return at
        return self.pp.source_loc(start + base + at.col - 1)

    def parse_text(self, text: str, file: str, cached: bool = False) -> c_ast.FileAST:
        """pycparser on text made of this TU's chunks, in its typedef scope
        (pycparser's exceptions, RecursionError included, are the caller's).
        `cached`: through the parse cache, keyed as a chunk is (the text
        holds its own line markers), so that other TUs' parses of the same
        text are shared; failures are not kept."""
        if not cached:
            return self._parser.parse(text, file, initial_type_symbols=self._typedefs)
        cache = parse_cache()
        key = cache.key(text, file, 0, 0, self._typedefs)
        hit = cache.get(key)
        if hit is not None:
            return hit[0]
        ast = self._parser.parse(text, file, initial_type_symbols=self._typedefs)
        cache.put(key, ast, {})
        return ast

    def parse_asm_alone(self, stmt: AsmStmt):
        """The Asm node of one asm statement parsed apart from its function,
        for a function pycparser cannot parse (None if this fails too)."""
        text = self.pp.text[stmt.off:stmt.end]
        body = _rewrite(blank_spans(text, [(a - stmt.off, b - stmt.off) for a, b in stmt.blanks]))
        loc = self.pp.loc(stmt.off)
        src = "void __pvpass_asm(void) {\n" + marker(loc) + body + ";\n}\n"
        try:
            ast = self._pycparse(src, loc, stmt.off, text)
        except PvError:
            return None
        return next(walk(ast, Asm), None)

    def function_name(self, chunk: Chunk) -> str | None:
        return self.declarator(chunk)[0]

    def declarator(self, chunk: Chunk) -> tuple[str | None, int]:
        """(name, chunk-relative offset) of what a function chunk defines,
        read from its text: the first identifier before a '(' once
        attributes are blanked. Once per process for each chunk text."""
        from .chunkmemo import remembered
        text = chunk.text(self.pp.text)
        return remembered("declarator", text, lambda: declarator(text))


def declarator(t: str) -> tuple[str | None, int]:
    """`ChunkParser.declarator` of a chunk's text."""
    body = t.find("{")
    head = t[:body if body >= 0 else len(t)].rstrip()
    if head.endswith(")"):
        # usually the name stands right before the parameter list
        depth, j = 0, len(head) - 1
        while j >= 0:
            depth += {")": 1, "(": -1}.get(head[j], 0)
            if depth == 0:
                break
            j -= 1
        e = len(head[:max(j, 0)].rstrip())
        k = e
        while k > 0 and (head[k - 1].isalnum() or head[k - 1] == "_"):
            k -= 1
        name = head[k:e]
        if name and not name[0].isdigit() and name not in _NOT_NAMES:
            return name, k
    if "__attribute" in head:
        head = blank_spans(head, [(a.start, a.end) for a in _attr_spans(head)])
    for m in _DECLARATOR.finditer(head):
        if m.group(1) not in _NOT_NAMES:
            return m.group(1), m.start()
    return None, -1


def marker(loc: Loc) -> str:
    """A line marker, and the indent, that give the text after it the
    coordinates of `loc`."""
    return f'# {loc.line} "{_esc(loc.file)}"\n' + " " * (loc.col - 1)


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')


_PE = re.compile(r'^(.*?):(\d+)(?::(\d+))?: (.*)$', re.S)


def _loc_of_parse_error(msg: str, fallback: Loc) -> Loc:
    m = _PE.match(msg)
    if not m:
        return fallback
    return Loc(m.group(1), int(m.group(2)), int(m.group(3) or 0))


def _clean_parse_error(msg: str) -> str:
    m = _PE.match(msg)
    text = m.group(4) if m else msg
    if text.startswith("before: "):
        text = f"syntax error before '{text[8:]}'"
    return f"cannot parse C: {text}"


_NODES: dict[tuple[int, type], tuple[object, tuple]] = {}


def nodes_of(ast, cls) -> tuple:
    """`walk(ast, cls)` as a tuple, kept per AST object: the parse cache
    gives every TU of a process that holds the same chunk the same AST (and
    nothing changes an AST), so a header function is walked once per
    process. The entry holds the AST, so its id is not reused meanwhile."""
    key = (id(ast), cls)
    got = _NODES.get(key)
    if got is None or got[0] is not ast:
        if len(_NODES) >= 8192:
            _NODES.clear()
        got = _NODES[key] = (ast, tuple(walk(ast, cls)))
    return got[1]


def walk(node, cls):
    """Yield every node of type `cls` below `node` (pre-order)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, cls):
            yield n
        stack.extend(reversed([c for _, c in n.children()]) if hasattr(n, "children") else [])
