"""Which static functions a translation unit can reach.

gcc emits a static (inline) function only when code it emits calls it or
takes its address, so a site in a header's static inline function that the
TU never uses is never compiled there: lint findings inside such functions
are not the TU's findings (a kernel header holds hundreds of them, and PIC or
-m32 TUs would report errors for sites gcc never makes). The reach is read
from the text: every name a root mentions (a non-static function, or a
declaration with an initializer) is used, and so is every name a used
static function mentions.

Only the static functions that hold a finding are asked about, and each is
answered backwards: from where its name is mentioned to the chunks that
mention it, until a root is met or no mention is left. A kernel TU has
~20,000 chunks and one or two findings; walking every chunk's names was
most of this module's time (docs/lint.md).
"""
from __future__ import annotations

import bisect
import re

from ..diag import Diagnostic
from ..frontend.chunkmemo import remembered
from ..frontend.scan import ScanResult
from ..textsplit import whole_words

# names, not members: `.read_cr0 = ...` in an initializer calls nothing
_IDENT = re.compile(r'(?<![.\w])(?<!->)[A-Za-z_]\w*')
_STATIC = re.compile(r'\bstatic\b')


def unreachable(res: ScanResult, diags: list[Diagnostic]) -> set[Diagnostic]:
    """The diagnostics that lie in static functions the TU cannot reach."""
    if not diags:
        return set()
    pp, tu, parser = res.pp, res.parser.tu, res.parser
    text = pp.text
    lines: dict[str, set[int]] = {}
    for d in diags:
        lines.setdefault(d.loc.file, set()).add(d.loc.line)
    kind: dict[int, object] = {}      # chunk index -> True (a root), a static name, or None

    def kind_of(c):
        k = kind.get(c.index, False)
        if k is False:
            if not c.is_func:
                k = True if text.find("=", c.start, c.end) >= 0 else None
            else:
                k = _static_name(text, c, parser) or True
            kind[c.index] = k
        return k

    def chunks_naming(name: str):
        """The chunks where `name` stands as a name (an `_IDENT` match)."""
        for i in mentions(text, name):
            c = tu.chunk_at(i)
            if c is not None:
                yield c

    final: dict[str, int] = {}

    def defines(name: str, c) -> bool:
        """Is `c` the static function `name` stands for (the last chunk
        that defines it, as a dict built in text order keeps)?"""
        if name not in final:
            final[name] = max([o.index for o in chunks_naming(name) if o.is_func and kind_of(o) == name]
                             + [c.index])
        return final[name] == c.index

    def reached(name: str) -> bool:
        todo, seen = [name], {name}
        while todo:
            for c in chunks_naming(todo.pop()):
                k = kind_of(c)
                if k is True:
                    return True
                if isinstance(k, str) and k not in seen and defines(k, c):
                    seen.add(k)
                    todo.append(k)
        return False

    hidden: set[tuple[str, int]] = set()
    for file, want in lines.items():
        for c in _function_chunks_of(pp, tu, file):
            name = kind_of(c)
            if not isinstance(name, str):
                continue
            first = pp.loc(c.start)
            last = pp.loc(c.end - 1)
            end = last.line if last.file == first.file else first.line
            inside = {ln for ln in want if first.line <= ln <= end}
            if inside and defines(name, c) and not reached(name):
                hidden |= {(file, ln) for ln in inside}
    return {d for d in diags if (d.loc.file, d.loc.line) in hidden}


def _function_chunks_of(pp, tu, file: str):
    """The function chunks that start in `file`'s stretches of the text."""
    offs, files = pp._offsets, pp._files
    spans = [(offs[i], offs[i + 1] if i + 1 < len(offs) else len(pp.text))
             for i, f in enumerate(files) if f == file]
    if file == pp.main_file and (not offs or offs[0] > 0):
        spans.insert(0, (0, offs[0] if offs else len(pp.text)))
    starts = tu._starts
    for a, b in spans:
        for k in range(bisect.bisect_left(starts, a), bisect.bisect_left(starts, b)):
            if tu.chunks[k].is_func:
                yield tu.chunks[k]


def mentions(text: str, name: str):
    """Offsets where `name` is an `_IDENT` match in `text`: a whole word,
    not a member after `.` or `->`."""
    for i in whole_words(text, name):
        if not (i and text[i - 1] == ".") and not (i >= 2 and text[i - 2:i] == "->"):
            yield i


# It reads the chunk's text and the two characters before it (the \b of
# _STATIC): once per process for each.

def _static_name(text: str, c, parser) -> str | None:
    """The name a function chunk defines when it is static."""
    s0 = max(c.start - 2, 0)
    sub = text[s0:c.end]

    def compute():
        name, at = parser.declarator(c)
        return name if name and _STATIC.search(sub, c.start - s0, c.start - s0 + at) else None
    return remembered(f"static{c.start - s0}", sub, compute)
