"""Splitting text at top-level commas: C declarator lists (the chunker) and
assembler operand lists (the encoder) alike; finding a name in a TU."""
from __future__ import annotations

import re

_WORD = re.compile(r'\w')


def split_commas(s: str, opens: str = "(", closes: str = ")") -> list[str]:
    """`s` split at the commas outside brackets (an unbalanced close counts
    as top level again); always at least one piece."""
    out, depth, cur = [], 0, []
    for ch in s:
        if ch in opens:
            depth += 1
        elif ch in closes:
            depth -= 1
        if ch == "," and depth <= 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def whole_words(text: str, word: str, start: int = 0):
    """Offsets where `word` (a C name) stands as a whole word, as `\\bWORD\\b`
    matches: str.find runs at C speed over a 3 MB TU, where such a regex
    takes tens of ms (it has no literal prefix to skip ahead with)."""
    n = len(word)
    i = text.find(word, start)
    while i >= 0:
        if not (i and _WORD.match(text, i - 1)) and not _WORD.match(text, i + n):
            yield i
        i = text.find(word, i + n)
