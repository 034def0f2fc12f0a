"""Diagnostics: one model, one gcc-style rendering, documented exit codes.

Every stage reports problems as `Diagnostic`s; fatal input problems travel as
`PvError` up to the command line, which prints them and exits with the code
they carry. Besides the commands, only warnings print where they arise
(`frontend.scan.scan`, the link step's missing sites): every command that
scans or links must show them, and none stops for them.
"""
from __future__ import annotations

import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .errors import (EXIT_BAD_INPUT, EXIT_FINDINGS, EXIT_NO_TOOL, EXIT_OK,  # noqa: F401
                     PvError, ToolMissing)


@dataclass(frozen=True, order=True)
class Loc:
    """A place in a source file (1-based line and column) or in an object."""
    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return self.file
        if self.col <= 0:
            return f"{self.file}:{self.line}"
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Note:
    loc: Loc
    message: str


@dataclass(frozen=True)
class Diagnostic:
    loc: Loc
    level: str            # "error" | "warning" | "note"
    message: str
    rule: str = ""        # "PVnnn" or "" for input errors
    notes: tuple[Note, ...] = field(default=())
    # lint: the translation units a finding in a header was found in
    units: tuple[str, ...] = field(default=(), compare=False)

    def sort_key(self) -> tuple:
        return (self.loc, self.rule, self.message)


_line_cache: dict[str, list[str] | None] = {}
_reads: list[set[str]] = []


@contextmanager
def lines_read():
    """The set of files `source_line` is asked about meanwhile: lint's
    store (pvpass/lint/store.py) keeps their hashes beside the findings
    whose columns they moved."""
    seen: set[str] = set()
    _reads.append(seen)
    try:
        yield seen
    finally:
        _reads.remove(seen)


def source_line(path: str, line: int) -> str | None:
    """The text of a source line, for the caret display (None if unreadable)."""
    for seen in _reads:
        seen.add(path)
    if path not in _line_cache:
        try:
            _line_cache[path] = Path(path).read_text(errors="replace").splitlines()
        except OSError:
            _line_cache[path] = None
    lines = _line_cache[path]
    if lines is None or not 0 < line <= len(lines):
        return None
    return lines[line - 1]


_NOT_TAB = re.compile(r"[^\t]")
_WIDE = 160          # longer source lines are shown around the column only


def _caret(loc: Loc) -> list[str]:
    text = source_line(loc.file, loc.line) if loc.line > 0 else None
    if text is None:
        return []
    col = max(loc.col - 1, 0)
    if len(text) > _WIDE:
        lo = max(min(col, len(text)) - _WIDE // 2, 0)
        head = "..." if lo else ""
        tail = "..." if lo + _WIDE < len(text) else ""
        text, col = head + text[lo:lo + _WIDE] + tail, col - lo + len(head)
    pad = _NOT_TAB.sub(" ", text[:col])
    return [f" {text}", f" {pad}^"]


def render(d: Diagnostic, caret: bool = True) -> str:
    rule = f" [{d.rule}]" if d.rule else ""
    out = [f"{d.loc}: {d.level}: {d.message}{rule}"]
    if caret:
        out += _caret(d.loc)
    for n in d.notes:
        out.append(f"{n.loc}: note: {n.message}")
        if caret:
            out += _caret(n.loc)
    if len(d.units) > 1:
        more = f" and {len(d.units) - 3} more" if len(d.units) > 3 else ""
        out.append(f"{d.units[0]}: note: found in {len(d.units)} translation units: "
                   f"{', '.join(d.units[:3])}{more}")
    return "\n".join(out)


_recorders: list[list[str]] = []


def emit(d: Diagnostic, stream=None) -> None:
    text = render(d)
    print(text, file=stream or sys.stderr)
    for r in _recorders:
        r.append(text)


def emit_all(ds, stream=None) -> None:
    """`emit` of each, in one write: one message per site copy is 10,000
    for a function of 10,000 sites, and stderr writes each line apart."""
    texts = [render(d) for d in ds]
    if texts:
        print("\n".join(texts), file=stream or sys.stderr)
    for r in _recorders:
        r.extend(texts)


@contextmanager
def recording():
    """Collect what `emit` prints meanwhile (the build path keeps it with a
    cached result, to say it again on a hit)."""
    said: list[str] = []
    _recorders.append(said)
    try:
        yield said
    finally:
        _recorders.remove(said)
