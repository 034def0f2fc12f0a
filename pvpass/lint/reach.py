"""Which static functions a translation unit can reach.

gcc emits a static (inline) function only when code it emits calls it or
takes its address, so a site in a header's static inline function that the
TU never uses is never compiled there: lint findings inside such functions
are not the TU's findings (a kernel header holds hundreds of them, and PIC or
-m32 TUs would report errors for sites gcc never makes). The reach is read
from the text: every name a root mentions (a non-static function, or a
declaration with an initializer) is used, and so is every name a used
static function mentions.
"""
from __future__ import annotations

import re

from ..diag import Diagnostic
from ..frontend.chunkmemo import remembered
from ..frontend.scan import ScanResult

# names, not members: `.read_cr0 = ...` in an initializer calls nothing
_IDENT = re.compile(r'(?<![.\w])(?<!->)[A-Za-z_]\w*')
_STATIC = re.compile(r'\bstatic\b')


def unreachable(res: ScanResult, diags: list[Diagnostic]) -> set[Diagnostic]:
    """The diagnostics that lie in static functions the TU cannot reach."""
    if not diags:
        return set()
    text, tu, parser = res.pp.text, res.parser.tu, res.parser
    static: dict[str, object] = {}
    roots = []
    for c in tu.chunks:
        if not c.is_func:
            if "=" in text[c.start:c.end]:
                roots.append(c)
            continue
        name = _static_name(text, c, parser)
        if name:
            static[name] = c
        else:
            roots.append(c)
    if not static:
        return set()
    names = static.keys()
    todo = set()
    for c in roots:
        todo |= names & _identifiers(text, c)
    reached: set[str] = set()
    while todo:
        n = todo.pop()
        if n in reached:
            continue
        reached.add(n)
        c = static[n]
        todo |= (names & _identifiers(text, c)) - reached
    lines: dict[str, set[int]] = {}
    for d in diags:
        lines.setdefault(d.loc.file, set()).add(d.loc.line)
    hidden: set[tuple[str, int]] = set()
    for n, c in static.items():
        if n in reached or res.pp.file_at(c.start) not in lines:
            continue                 # (most unused header inlines: no line counting for them)
        first = res.pp.loc(c.start)
        last = res.pp.loc(c.end - 1)
        end = last.line if last.file == first.file else first.line
        hidden |= {(first.file, ln) for ln in lines[first.file] if first.line <= ln <= end}
    return {d for d in diags if (d.loc.file, d.loc.line) in hidden}


# Both read the chunk's text and the two characters before it (the
# lookbehinds of _IDENT, the \b of _STATIC): once per process for each.

def _static_name(text: str, c, parser) -> str | None:
    """The name a function chunk defines when it is static."""
    s0 = max(c.start - 2, 0)
    sub = text[s0:c.end]

    def compute():
        name, at = parser.declarator(c)
        return name if name and _STATIC.search(sub, c.start - s0, c.start - s0 + at) else None
    return remembered(f"static{c.start - s0}", sub, compute)


def _identifiers(text: str, c) -> frozenset[str]:
    s0 = max(c.start - 2, 0)
    sub = text[s0:c.end]
    return remembered(f"idents{c.start - s0}", sub, lambda: frozenset(_IDENT.findall(sub, c.start - s0)))
