"""Facts about a chunk that depend only on its text, computed once per
process rather than once per translation unit.

Every kernel TU includes mostly the same headers: a lint worker meets the
same ~80 paravirt.h static inlines and thousands of the same declarations
in each TU it is given, and reading their asm statements and declarators
again was about a third of lint's Python time (docs/lint.md). The key is
the exact text the computation reads, with the characters before the chunk
that regex lookbehinds and `\\b` look at, so a hit returns what the
computation would return; the values are immutable, or relative to the
chunk and moved by the caller. Errors are not kept: they are raised again.
Bounded by the bytes of the keys (the texts): past the bound it starts
over.
"""
from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T")
_MAX_BYTES = 64 << 20
_memo: dict[tuple[str, str], object] = {}
_bytes = 0


def remembered(kind: str, text: str, compute: Callable[[], T]) -> T:
    """compute(), which reads only `text` (kind tells computations over the
    same text apart), from the memo when it was asked before."""
    try:
        return _memo[(kind, text)]   # type: ignore[return-value]
    except KeyError:
        pass
    value = compute()
    keep(kind, text, value)
    return value


def known(kind: str, text: str):
    """What `keep` was given for (kind, text), or None: for a caller that
    can only propose a key (it computes, and keeps, under the exact one)."""
    return _memo.get((kind, text))


def keep(kind: str, text: str, value: object) -> None:
    global _bytes
    if _bytes + len(text) > _MAX_BYTES:
        _memo.clear()
        _bytes = 0
    if (kind, text) not in _memo:
        _bytes += len(text)
    _memo[(kind, text)] = value
