"""Splitting text at top-level commas: C declarator lists (the chunker) and
assembler operand lists (the encoder) alike."""
from __future__ import annotations


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
