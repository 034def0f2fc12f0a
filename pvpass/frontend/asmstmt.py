"""GNU C asm statements at the C level.

pycparserext parses `asm(...)` but not named operands (`[x] "r"(y)`),
`asm goto` or `asm inline`; this module reads each asm statement from the
preprocessed text itself (template literals with a map back to their source
offsets, operands with names and numbers, clobbers, goto labels), and lists
the spans pycparser must see as blanks. Blanking keeps every other offset,
line and column where it was.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..diag import PvError

_CTOK = re.compile(r'''(?P<str>L?"(?:[^"\\\n]|\\.)*")|(?P<chr>L?'(?:[^'\\\n]|\\.)*')|(?P<id>[A-Za-z_]\w*)|(?P<num>\.?\d[\w.]*)|(?P<dir>^[ \t]*\#[^\n]*)|(?P<ws>\s+)|(?P<p>.)''', re.M | re.S)
_ASM_KW = re.compile(r'\b(?:asm|__asm__|__asm)\b')
_QUALS = {"volatile", "__volatile__", "__volatile", "inline", "__inline__", "__inline", "goto"}
_ESC = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v",
        "\\": "\\", "'": "'", '"': '"', "?": "?", "e": "\x1b"}


@dataclass
class Operand:
    index: int            # gcc's operand number: outputs first, then inputs
    name: str | None
    constraint: str
    expr: str             # the C expression, as text
    expr_off: int         # offset of the expression in the preprocessed text
    off: int              # offset of the operand's start
    is_output: bool


@dataclass
class AsmStmt:
    off: int              # offset of the asm keyword
    end: int              # offset just past the closing ')'
    qualifiers: tuple[str, ...]
    template: str         # the decoded template
    tmap: tuple[int, ...]  # template index -> preprocessed offset - tbase (len+1 entries)
    outputs: list[Operand] = field(default_factory=list)
    inputs: list[Operand] = field(default_factory=list)
    clobbers: list[tuple[str, int]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    basic: bool = True    # no ':' sections: '%' is not special
    blanks: list[tuple[int, int]] = field(default_factory=list)
    tbase: int = 0        # moving a statement moves this, and shares tmap

    @property
    def operands(self) -> list[Operand]:
        return self.outputs + self.inputs

    def operand(self, ref: str) -> Operand | None:
        """The operand a template reference names: '[name]' or a number."""
        ops = self.operands
        if ref.startswith("["):
            name = ref[1:-1]
            return next((o for o in ops if o.name == name), None)
        i = int(ref)
        return ops[i] if 0 <= i < len(ops) else None

    def template_off(self, i: int) -> int:
        return self.tbase + self.tmap[min(max(i, 0), len(self.tmap) - 1)]


def decode_string(lit: str, off: int) -> tuple[str, list[int]]:
    """Decode a C string literal token; map each decoded char to its offset."""
    q = lit.index('"')
    body_off = off + q + 1
    body = lit[q + 1:-1]
    out: list[str] = []
    pos: list[int] = []
    i = 0
    while i < len(body):
        c = body[i]
        start = i
        if c == "\\" and i + 1 < len(body):
            n = body[i + 1]
            if n in _ESC:
                c, i = _ESC[n], i + 2
            elif n in "01234567":
                m = re.match(r'[0-7]{1,3}', body[i + 1:])
                c, i = chr(int(m.group(), 8)), i + 1 + len(m.group())
            elif n == "x":
                m = re.match(r'[0-9a-fA-F]+', body[i + 2:])
                if m is None:        # gcc: "\x used with no following hex digits"
                    raise _Malformed("\\x used with no following hex digits", body_off + start)
                c, i = chr(int(m.group(), 16) & 0xFF), i + 2 + len(m.group())
            else:
                c, i = n, i + 2
        else:
            i += 1
        out.append(c)
        pos.append(body_off + start)
    return "".join(out), pos


class _Tokens:
    """C tokens from `start`, read as far as the asm statement needs: a
    function with n asm statements costs O(n) tokens, not O(n) each."""

    def __init__(self, text: str, start: int, end: int) -> None:
        self._it = ((m.lastgroup, m.group(), m.start()) for m in _CTOK.finditer(text, start, end)
                    if m.lastgroup not in ("ws", "dir"))
        self.toks: list[tuple[str, str, int]] = []
        self.i = 0

    def peek(self, k: int = 0):
        j = self.i + k
        while j >= len(self.toks):
            t = next(self._it, None)
            if t is None:
                return ("eof", "", -1)
            self.toks.append(t)
        return self.toks[j]

    def next(self):
        t = self.peek()
        self.i += 1
        return t

    def expect(self, value: str, what: str, text_end: int):
        t = self.next()
        if t[1] != value:
            raise _Malformed(f"expected '{value}' {what}", t[2] if t[2] >= 0 else text_end)
        return t


class _Malformed(Exception):
    def __init__(self, msg: str, off: int) -> None:
        super().__init__(msg)
        self.off = off


def find_asm(text: str, start: int, end: int, loc_of) -> list[AsmStmt]:
    """Every asm statement whose keyword lies in text[start:end].
    `loc_of(off)` gives a Loc for error messages. Read once per process for
    each chunk text (pvpass/frontend/chunkmemo.py): the statements are kept
    with offsets relative to the text and moved to `start` for each caller,
    who gets objects of its own."""
    from .chunkmemo import remembered
    s0 = max(start - 1, 0)           # the char before: `\b` and `^` read it
    sub = text[s0:end]
    rel = remembered(f"asm{start - s0}", sub,
                     lambda: tuple(_find_asm(sub, start - s0, len(sub), lambda off: loc_of(off + s0))))
    return [_moved(a, d + s0) for a, d in rel]


def _moved(a: AsmStmt, d: int) -> AsmStmt:
    """A copy of `a` with every offset d further on."""
    def op(o: Operand) -> Operand:
        return Operand(o.index, o.name, o.constraint, o.expr, o.expr_off + d, o.off + d, o.is_output)
    return AsmStmt(a.off + d, a.end + d, a.qualifiers, a.template, a.tmap,
                   [op(o) for o in a.outputs], [op(o) for o in a.inputs],
                   [(c, o + d) for c, o in a.clobbers], list(a.labels), a.basic,
                   [(x + d, y + d) for x, y in a.blanks], a.tbase + d)


def _find_asm(text: str, start: int, end: int, loc_of) -> list[tuple[AsmStmt, int]]:
    """The statements of text[start:end], each as (a statement, how far to
    move it). A statement whose exact text was read before in this process
    (in any chunk) is that statement again, moved (one macro expanded
    10,000 times, in one function or in 5,000, is tokenized once):
    `_parse_one` reads only the tokens from the keyword to the closing ')',
    and each of them is decided by the characters up to that ')'. The memo
    keeps each statement moved to offset 0; `_extent` only proposes which
    text to look up; a miss is read as before."""
    from .chunkmemo import keep, known
    out = []
    for kw in keywords(text, start, end):
        if _in_literal(text, start, kw):
            continue
        ext = _extent(text, kw, end)
        got = known("asmstmt", text[kw:ext]) if ext else None
        if got is not None:
            out.append((got, kw))
            continue
        try:
            stmt = _parse_one(text, kw, end)
        except _Malformed as e:
            raise PvError(f"malformed asm statement: {e}", loc_of(e.off)) from None
        if stmt is not None:
            out.append((stmt, 0))
            if known("asmstmt", text[kw:stmt.end]) is None:
                keep("asmstmt", text[kw:stmt.end], _moved(stmt, -kw))
    return out


def keywords(text: str, start: int, end: int):
    """Where `_ASM_KW.finditer(text, start, end)` matches, found with
    str.find: a pattern that starts with \b is tried at every position
    (25 ms over a function of 1.4 MB). As the regex does, \b reads the
    characters before `start` and takes `end` for the end of the text."""
    i = text.find("asm", start, end)
    while i >= 0:
        after = i + 3
        if i - 2 >= start and text.startswith("__", i - 2) and not _word_before(text, i - 2):
            if (after + 2 <= end and text.startswith("__", after) and not _word_at(text, after + 2, end)) \
                    or not _word_at(text, after, end):
                yield i - 2                   # __asm__, __asm
        elif not _word_before(text, i) and not _word_at(text, after, end):
            yield i                           # asm
        i = text.find("asm", after, end)


def _word_before(text: str, p: int) -> bool:
    return p > 0 and (text[p - 1].isalnum() or text[p - 1] == "_")


def _word_at(text: str, p: int, end: int) -> bool:
    return p < end and (text[p].isalnum() or text[p] == "_")


def _extent(text: str, kw: int, end: int) -> int | None:
    """Where the statement at `kw` likely ends: at its first ");" (a
    statement has one; a ");" inside it only makes the guess miss), looked
    for within 64 KiB."""
    e = text.find(");", kw, min(end, kw + 65536))
    return e + 1 if e >= 0 else None


_ESCAPED = re.compile(r'\\.')
_CHAR_LIT = re.compile(r"'[^']*'")


def _in_literal(text: str, start: int, pos: int) -> bool:
    # Cheap check: count unescaped quotes on the line before pos.
    bol = max(text.rfind("\n", start, pos) + 1, start)
    seg = text[bol:pos]
    if '"' not in seg:
        return False
    seg = _CHAR_LIT.sub('', _ESCAPED.sub('', seg))
    return seg.count('"') % 2 == 1


def _parse_one(text: str, kw_off: int, end: int) -> AsmStmt | None:
    toks = _Tokens(text, kw_off, end)
    toks.next()                                   # the keyword
    quals, blanks = [], []
    while toks.peek()[0] == "id" and toks.peek()[1] in _QUALS:
        k, v, o = toks.next()
        quals.append(v.strip("_") if v.startswith("__") else v)
        if v in ("goto", "inline", "__inline__", "__inline"):
            blanks.append((o, o + len(v)))
    if toks.peek()[1] != "(":
        return None                               # e.g. `asm` used as a name
    toks.next()
    template, tmap = [], []
    last_end = toks.peek()[2]
    while toks.peek()[0] == "str":
        _, lit, o = toks.next()
        s, pos = decode_string(lit, o)
        template.append(s)
        tmap.extend(pos)
        last_end = o + len(lit) - 1
    if not template:
        raise _Malformed("expected the asm template string", toks.peek()[2])
    tmap.append(last_end)
    stmt = AsmStmt(kw_off, 0, tuple(quals), "".join(template), tuple(tmap), blanks=blanks)
    section = 0
    index = 0
    while True:
        k, v, o = toks.next()
        if v == ")":
            stmt.end = o + 1
            break
        if v != ":":
            raise _Malformed(f"unexpected '{v}' in asm statement", o if o >= 0 else end)
        section += 1
        stmt.basic = False
        if section == 4:
            blanks.append((o, o + 1))
        if section in (1, 2):
            ops = _operands(toks, blanks, index, section == 1, end)
            index += len(ops)
            (stmt.outputs if section == 1 else stmt.inputs).extend(ops)
        elif section == 3:
            stmt.clobbers = _clobbers(toks, end)
        elif section == 4:
            while toks.peek()[1] not in (")", ""):
                k2, v2, o2 = toks.next()
                blanks.append((o2, o2 + len(v2)))
                if k2 == "id":
                    stmt.labels.append(v2)
        else:
            raise _Malformed("too many ':' sections in asm statement", o)
    return stmt


def _operands(toks: _Tokens, blanks, index: int, is_output: bool, end: int) -> list[Operand]:
    ops: list[Operand] = []
    while toks.peek()[1] not in (":", ")", ""):
        start = toks.peek()[2]
        name = None
        if toks.peek()[1] == "[":
            _, _, o = toks.next()
            k, name, _ = toks.next()
            if k != "id":
                raise _Malformed("expected an operand name after '['", o)
            _, _, c = toks.expect("]", "after the operand name", end)
            blanks.append((o, c + 1))
        if toks.peek()[0] != "str":
            raise _Malformed("expected a constraint string", toks.peek()[2])
        constraint = ""
        while toks.peek()[0] == "str":
            t = toks.next()
            constraint += decode_string(t[1], t[2])[0]
        toks.expect("(", "before the operand's expression", end)
        depth, parts = 1, []
        expr_start = toks.peek()[2]
        while depth:
            k, v, o = toks.next()
            if k == "eof":
                raise _Malformed("unbalanced parentheses in asm operand", end)
            if v in "([{" and k == "p":
                depth += 1
            elif v in ")]}" and k == "p":
                depth -= 1
                if depth == 0:
                    break
            parts.append((v, o))
        expr = toks_text(parts)
        ops.append(Operand(index + len(ops), name, constraint, expr, expr_start, start, is_output))
        if toks.peek()[1] == ",":
            toks.next()
    return ops


def toks_text(parts) -> str:
    out = []
    prev_end = None
    for v, o in parts:
        if prev_end is not None and o > prev_end:
            out.append(" ")
        out.append(v)
        prev_end = o + len(v)
    return "".join(out)


def _clobbers(toks: _Tokens, end: int) -> list[tuple[str, int]]:
    out = []
    while toks.peek()[1] not in (":", ")", ""):
        k, v, o = toks.next()
        if k == "str":
            out.append((decode_string(v, o)[0], o))
        elif v != ",":
            raise _Malformed(f"unexpected '{v}' in the clobber list", o)
    return out


_NOT_NL = re.compile(r'[^\n]')


def blank_spans(text: str, spans) -> str:
    """`text` with the given (start, end) spans replaced by spaces, newlines
    kept. Slices between the spans: a function of 10,000 asm statements
    has 10,000 spans in 1.4 MB, which char by char took 30 ms."""
    if not spans:
        return text
    out, at = [], 0
    for a, b in sorted(spans):
        a = max(a, at)
        if a >= b:
            continue
        seg = text[a:b]
        out += [text[at:a], _NOT_NL.sub(" ", seg) if "\n" in seg else " " * len(seg)]
        at = b
    out.append(text[at:])
    return "".join(out)
