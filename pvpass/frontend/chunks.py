"""Split a preprocessed translation unit into top-level declarations.

This is what keeps the pass fast: a kernel TU is ~3 MB, mostly headers, and
pycparser manages ~0.25 MB/s. One regex pass over the text finds the
top-level boundaries (`;` and function-body `}` at brace depth 0, outside
string and character literals); later stages hand pycparser only the chunks
they need (functions holding annotated asm, the ops structs and what their
layout depends on, the backends' initializers) and seed its scope with the
TU's typedef names instead of parsing every typedef.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

from ..textsplit import split_commas
from .chunkmemo import remembered

_TAG_DEF = re.compile(r'\b(struct|union|enum)\s+(?:__attribute__\s*\(\(.*?\)\)\s*)*([A-Za-z_]\w*)\s*\{')
_IDENT = re.compile(r'[A-Za-z_]\w*')
_KEYWORDS = frozenset("""auto break case char const continue default do double else enum
extern float for goto if inline int long register restrict return short signed sizeof
static struct switch typedef union unsigned void volatile while _Bool _Complex
__extension__ __attribute__ __attribute __const __const__ __restrict __restrict__
__signed__ __inline __inline__ __volatile__ __volatile typeof __typeof__ __typeof
_Alignas _Atomic _Noreturn _Thread_local __thread __int128 asm __asm__ __asm""".split())


class Chunk(NamedTuple):
    """A top-level declaration's place in the text (a tuple: a kernel TU
    makes ~15,000 of them, three times faster than a frozen dataclass)."""
    index: int
    start: int
    end: int          # exclusive; includes the closing ';' or '}'
    is_func: bool
    body: int = -1    # a function's: the offset of its body's '{'

    def text(self, src: str) -> str:
        return src[self.start:self.end]


@dataclass
class ChunkedTU:
    text: str
    chunks: list[Chunk]
    _starts: list[int] = field(default_factory=list)
    # where the text stops being a sequence of declarations (a '}' with no
    # '{', a '{' never closed, text after the last ';' or '}'), or None
    broken: int | None = None

    def __post_init__(self) -> None:
        self._starts = [c.start for c in self.chunks]

    def chunk_at(self, off: int) -> Chunk | None:
        import bisect
        i = bisect.bisect_right(self._starts, off) - 1
        if i >= 0 and self.chunks[i].start <= off < self.chunks[i].end:
            return self.chunks[i]
        return None

    @cached_property
    def typedef_chunks(self) -> list[Chunk]:
        """The chunks that are `typedef ...;` declarations, in text order.
        Only the chunks where the word stands are looked at (str.find),
        not each of a kernel TU's ~15,000."""
        out: list[Chunk] = []
        t = self.text
        seen = -1
        i = t.find("typedef")
        while i >= 0:
            c = self.chunk_at(i)
            if c is not None and c.index > seen:
                seen = c.index
                head = t[c.start:c.start + 40].lstrip()
                if head.startswith("__extension__"):
                    head = head[13:].lstrip()
                if head.startswith("typedef") and not c.is_func:
                    out.append(c)
            i = t.find("typedef", i + 7)
        return out

    @cached_property
    def typedef_names(self) -> frozenset[str]:
        names: set[str] = set()
        t = self.text
        for c in self.typedef_chunks:
            decl = t[c.start:c.end]
            names.update(remembered("typedef_names", decl, lambda: tuple(typedef_names_of(decl))))
        return frozenset(names)

    @cached_property
    def tag_index(self) -> dict[tuple[str, str], Chunk]:
        """(kind, tag) -> the chunk holding that struct/union/enum definition.
        Nested definitions are file-scope in C, so their outer chunk counts."""
        idx: dict[tuple[str, str], Chunk] = {}
        t = self.text
        for c in self.chunks:
            # within the text, not a copy of each chunk: the character
            # before a chunk is no word character, so \b reads the same
            if c.is_func or t.find("{", c.start, c.end) < 0:
                continue
            for m in _TAG_DEF.finditer(t, c.start, c.end):
                idx.setdefault((m.group(1), m.group(2)), c)
        return idx


# Anchoring directive lines on "\n" rather than "^" with re.M is twice as
# fast; the blanked newline does not matter, only positions are used.
# (literals as "[^"\\\n]*(?:\\.[^"\\\n]*)*": the same strings as
# "(?:[^"\\\n]|\\.)*" at two thirds of the time). Adjacent string literals
# on one line are blanked as one match, the blanks and tabs between them
# too (the scan reads them alike): a site's template is six literals, and
# the call per match was most of the split.
_STRING = r'"[^"\\\n]*(?:\\.[^"\\\n]*)*"'
_LITERAL = re.compile(_STRING + r'(?:[ \t]*' + _STRING + r')*'
                      r'''|'[^'\\\n]*(?:\\.[^'\\\n]*)*'|\n[ \t]*\#[^\n]*''')
_BRACE = re.compile(r'[{}]')
_DIRECTIVE = re.compile(r"(?m)^[ \t]*#[^\n]*")


def _blank(m: re.Match) -> str:
    return " " * len(m.group())


def split(text: str) -> ChunkedTU:
    """Top-level declarations, read a stretch of the text at a time.

    Every kernel TU holds mostly the same header text, so the split of a
    stretch is kept (chunkmemo) and met again in the next TU. A stretch
    runs from one directive line (a line marker) to the next; the split
    entered where nothing is pending (brace depth 0, no declaration begun)
    depends on the stretch's text alone. A stretch that does not end so
    (a line marker inside a struct) is read together with the next ones,
    doubling, until the joined text does; the last one, at the end of the
    text, is taken as it ends (a brace never closed, text after the last
    ';'). Nothing in the scan crosses a newline but a directive line, which
    begins at one, so this is `_split` of the whole text, chunk for chunk."""
    bounds = _stretches(text)
    chunks: list[Chunk] = []
    broken: int | None = None
    k = 0
    while k < len(bounds) - 1:
        n = 1
        while True:
            j = min(k + n, len(bounds) - 1)
            a, b = bounds[k], bounds[j]
            piece = text[a:b]
            got = remembered("split", piece, lambda: _split_piece(piece))
            if got[1] or j == len(bounds) - 1:
                break
            n *= 2
        rel, clean, cut = got
        base = len(chunks)
        chunks += [Chunk(base + i, a + s, a + e, f, a + o if o >= 0 else -1)
                   for i, (s, e, f, o) in enumerate(rel)]
        if cut is not None and broken is None:
            broken = a + cut
        k = j
    return ChunkedTU(text, chunks, broken=broken)


def _stretches(text: str) -> list[int]:
    """0, the offset of the newline before each directive line, len(text)."""
    out = [0]
    i = text.find("\n#")
    while i >= 0:
        out.append(i)
        i = text.find("\n#", i + 2)
    if len(text) > 0:
        out.append(len(text))
    return out


def _split_piece(piece: str) -> tuple[tuple[tuple[int, int, bool, int], ...], bool, int | None]:
    """(chunks as (start, end, is_func, body), whether it ends with nothing
    pending, where it stops being declarations) of a stretch entered with
    nothing pending."""
    tu = _split(piece)
    clean = tu.broken is None and _skip_leading(piece, tu.chunks[-1].end if tu.chunks else 0,
                                                len(piece)) == len(piece)
    return tuple((c.start, c.end, c.is_func, c.body) for c in tu.chunks), clean, tu.broken


def _split(text: str) -> ChunkedTU:
    """Top-level declarations. Literals and directive lines are blanked
    first (same length), then only braces are walked in Python; top-level
    semicolons are found with str.find between depth-0 brace runs."""
    clean = _LITERAL.sub(_blank, text)
    chunks: list[Chunk] = []
    start = 0
    depth = 0
    zero_from = 0            # where the current depth-0 stretch began
    func_open = False
    broken: int | None = None
    opened = 0
    for m in _BRACE.finditer(clean):
        pos = m.start()
        if clean[pos] == "{":
            if depth == 0:
                start = _semis(clean, zero_from, pos, start, chunks)
                func_open = _before_is_close_paren(clean, pos)
                opened = pos
            depth += 1
        else:
            if depth == 0:
                if broken is None:
                    broken = pos         # stray '}'
                continue
            depth -= 1
            if depth == 0:
                zero_from = pos + 1
                if func_open:
                    chunks.append(Chunk(len(chunks), start, pos + 1, True, opened))
                    start = pos + 1
                    func_open = False
    if depth == 0:
        end = _semis(clean, zero_from, len(clean), start, chunks)
        rest = _DIRECTIVE.sub("", clean[end:]).strip()
        if rest and broken is None:
            broken = end + clean[end:].find(rest[0])     # no ';' ends it
    elif broken is None:
        broken = opened                  # never closed
    return ChunkedTU(text, _strip_leading(text, chunks), broken=broken)


def _semis(clean: str, a: int, b: int, start: int, chunks: list[Chunk]) -> int:
    """Close a chunk at every ';' in clean[a:b]; return the next start."""
    i = clean.find(";", a, b)
    while i >= 0:
        chunks.append(Chunk(len(chunks), start, i + 1, False))
        start = i + 1
        i = clean.find(";", start, b)
    return start


def _strip_leading(text: str, chunks: list[Chunk]) -> list[Chunk]:
    """Move each chunk's start past white space and directive lines, so
    locations point at code."""
    return [Chunk(c.index, _skip_leading(text, c.start, c.end), c.end, c.is_func, c.body) for c in chunks]


def _skip_leading(text: str, s: int, end: int) -> int:
    """Past white space and directive lines from `s` (at most to `end`): a
    chunk's start, or `end` when only those follow."""
    while s < end:
        if text[s] in " \t\r\n":
            s += 1
        elif text[s] == "#" and (s == 0 or text[s - 1] == "\n"):
            nl = text.find("\n", s, end)
            s = end if nl < 0 else nl + 1
        else:
            break
    return s


def _before_is_close_paren(text: str, pos: int) -> bool:
    """Is the character before `pos` (skipping white space and directive
    lines) a ')', i.e. does this '{' open a function body?"""
    i = pos - 1
    while i >= 0:
        while i >= 0 and text[i] in " \t\r\n":
            i -= 1
        bol = text.rfind("\n", 0, i + 1) + 1
        if text[bol:i + 1].lstrip().startswith("#"):
            i = bol - 1
            continue
        break
    return i >= 0 and text[i] == ")"


def strip_balanced(s: str, opener: str, closer: str) -> str:
    out, depth = [], 0
    for ch in s:
        if ch == opener:
            depth += 1
        elif ch == closer and depth:
            depth -= 1
            continue
        if depth == 0:
            out.append(ch)
    return "".join(out)


_ATTR = re.compile(r'\b(?:__attribute__|__attribute|__asm__|__asm|asm)\s*\(')


def _drop_calls(s: str, pat: re.Pattern) -> str:
    while True:
        m = pat.search(s)
        if not m:
            return s
        i, depth = m.end(), 1
        while i < len(s) and depth:
            depth += {"(": 1, ")": -1}.get(s[i], 0)
            i += 1
        s = s[:m.start()] + " " + s[i:]


def typedef_names_of(decl: str) -> list[str]:
    """The names a `typedef ...;` declaration introduces (heuristic, but the
    parser reports any name it then fails on with its location)."""
    s = re.sub(r'^\s*#[^\n]*', ' ', decl, flags=re.M)
    s = strip_balanced(s, "{", "}")
    s = _drop_calls(s, _ATTR)
    s = strip_balanced(s, "[", "]")
    s = s.strip().rstrip(";")
    names = []
    for part in split_commas(s):
        part = part.strip()
        # Drop trailing parameter lists: `(*name)(int)` or `name(void)`.
        while part.endswith(")"):
            j = _matching_open(part, len(part) - 1)
            if j < 0:
                break
            inner = part[j + 1:-1]
            before = part[:j].rstrip()
            if inner.lstrip().startswith(("*", "^")) or not before:
                part = before + " " + inner      # a parenthesised declarator
            else:
                part = before                    # a parameter list
        ids = [x for x in _IDENT.findall(part) if x not in _KEYWORDS]
        if ids:
            names.append(ids[-1])
    return names


def _matching_open(s: str, close: int) -> int:
    depth = 0
    for i in range(close, -1, -1):
        if s[i] == ")":
            depth += 1
        elif s[i] == "(":
            depth -= 1
            if depth == 0:
                return i
    return -1
