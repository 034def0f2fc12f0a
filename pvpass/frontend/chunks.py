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


@dataclass(frozen=True)
class Chunk:
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
    def typedef_names(self) -> frozenset[str]:
        names: set[str] = set()
        t = self.text
        for c in self.chunks:
            head = t[c.start:c.start + 40].lstrip()
            if head.startswith("__extension__"):
                head = head[13:].lstrip()
            if head.startswith("typedef") and not c.is_func:
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
            if c.is_func:
                continue
            seg = t[c.start:c.end]
            if "{" not in seg:
                continue
            for m in _TAG_DEF.finditer(seg):
                idx.setdefault((m.group(1), m.group(2)), c)
        return idx


# Anchoring directive lines on "\n" rather than "^" with re.M is twice as
# fast; the blanked newline does not matter, only positions are used.
# (literals as "[^"\\\n]*(?:\\.[^"\\\n]*)*": the same strings as
# "(?:[^"\\\n]|\\.)*" at two thirds of the time)
_LITERAL = re.compile(r'''"[^"\\\n]*(?:\\.[^"\\\n]*)*"|'[^'\\\n]*(?:\\.[^'\\\n]*)*'|\n[ \t]*\#[^\n]*''')
_BRACE = re.compile(r'[{}]')
_DIRECTIVE = re.compile(r"(?m)^[ \t]*#[^\n]*")


def _blank(m: re.Match) -> str:
    return " " * len(m.group())


def split(text: str) -> ChunkedTU:
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
    out = []
    for c in chunks:
        s = c.start
        while s < c.end:
            if text[s] in " \t\r\n":
                s += 1
            elif text[s] == "#" and (s == 0 or text[s - 1] == "\n"):
                nl = text.find("\n", s, c.end)
                s = c.end if nl < 0 else nl + 1
            else:
                break
        out.append(Chunk(c.index, s, c.end, c.is_func, c.body))
    return out


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
