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
    global _bytes
    key = (kind, text)
    try:
        return _memo[key]            # type: ignore[return-value]
    except KeyError:
        pass
    value = compute()
    if _bytes + len(text) > _MAX_BYTES:
        _memo.clear()
        _bytes = 0
    _memo[key] = value
    _bytes += len(text)
    return value
