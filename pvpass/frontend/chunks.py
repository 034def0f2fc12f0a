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

_TOKENS = re.compile(r'''"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|^[ \t]*\#[^\n]*|[{};]''', re.M)
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

    def text(self, src: str) -> str:
        return src[self.start:self.end]


@dataclass
class ChunkedTU:
    text: str
    chunks: list[Chunk]
    _starts: list[int] = field(default_factory=list)

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
                names.update(typedef_names_of(t[c.start:c.end]))
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


def split(text: str) -> ChunkedTU:
    chunks: list[Chunk] = []
    depth = 0
    start = 0
    func_open = False      # the depth-0 '{' opened a function body
    for m in _TOKENS.finditer(text):
        tok = m.group()
        ch = tok[0]
        if ch == ";":
            if depth == 0:
                chunks.append(Chunk(len(chunks), start, m.end(), False))
                start = m.end()
        elif ch == "{":
            if depth == 0:
                func_open = _before_is_close_paren(text, m.start())
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0 and func_open:
                chunks.append(Chunk(len(chunks), start, m.end(), True))
                start = m.end()
                func_open = False
            elif depth < 0:
                depth = 0
        elif depth == 0 and ch not in "\"'" and not text[start:m.start()].strip():
            # A directive line between declarations: not part of a chunk.
            start = m.end()
    return ChunkedTU(text, _strip_leading(text, chunks))


def _strip_leading(text: str, chunks: list[Chunk]) -> list[Chunk]:
    """Move each chunk's start past white space so locations point at code."""
    out = []
    for c in chunks:
        s = c.start
        while s < c.end and text[s] in " \t\r\n":
            s += 1
        out.append(Chunk(c.index, s, c.end, c.is_func))
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
    for part in _split_top(s):
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


def _split_top(s: str) -> list[str]:
    out, depth, cur = [], 0, []
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


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
