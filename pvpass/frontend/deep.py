"""Deeply nested C, as deep as gcc takes it.

pycparser is a recursive-descent parser: about eleven Python frames per
level of parentheses, so Python's default limit of 1,000 frames stops it
near 90 levels, where gcc (8 MB stack) goes past 30,000. A parse that hits
the limit is run again in a thread with a large stack and a high limit;
beyond that, one error names the deepest point of the text.
"""
from __future__ import annotations

import sys
import threading

from ..diag import Loc, PvError

STACK_BYTES = 512 << 20        # reserved, not touched: pages are mapped on use
FRAMES = 600_000               # ~50,000 levels of parentheses, past gcc's depth


def deep_call(fn, *args):
    """fn(*args) in a thread with a large stack and recursion limit; its
    exceptions, RecursionError included, are raised here."""
    out: dict[str, object] = {}

    def run() -> None:
        try:
            out["value"] = fn(*args)
        except BaseException as e:       # handed to the caller's thread
            out["error"] = e

    old_limit = sys.getrecursionlimit()
    try:
        old_stack = threading.stack_size(STACK_BYTES)
    except (ValueError, RuntimeError):
        raise RecursionError("no deep stack here") from None
    sys.setrecursionlimit(max(old_limit, FRAMES))
    try:
        t = threading.Thread(target=run, name="pvpass-deep")
        t.start()
        t.join()
    except (RuntimeError, MemoryError):          # no room for the stack (ulimit -v)
        raise RecursionError("cannot start a thread with a deep stack") from None
    finally:
        threading.stack_size(old_stack)
        sys.setrecursionlimit(old_limit)
    if "error" in out:
        raise out["error"]              # type: ignore[misc]
    return out["value"]


def deepest(text: str) -> tuple[int, int]:
    """(offset, depth) of the most deeply nested bracket of C text,
    outside string and character literals."""
    depth = best = where = 0
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "([{":
            depth += 1
            if depth > best:
                best, where = depth, i
        elif c in ")]}":
            depth -= 1
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            i = j
        i += 1
    return where, best


def too_deep(loc: Loc, depth: int) -> PvError:
    return PvError(f"nesting too deep for pvpass ({depth} levels of brackets; "
                   f"it follows about 50,000)", loc)
