"""Suppressions: `pvpass-lint: allow PVnnn[, PVnnn] reason` in a comment on
the diagnostic's line or the line before. Unused ones are reported (PV009)."""
from __future__ import annotations

import re
from pathlib import Path

from ..diag import Diagnostic, Loc
from .rules import RULES

_ALLOW = re.compile(r'(?://|/\*).*?pvpass-lint:\s*allow\s+(PV\d{3}(?:\s*,\s*PV\d{3})*)\s*(.*?)(?:\*/)?\s*$')


def suppressions(path: str) -> dict[int, tuple[set[str], str, int]]:
    """line -> (rule ids, reason, column)."""
    out = {}
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return out
    for n, line in enumerate(lines, 1):
        m = _ALLOW.search(line)
        if m:
            rules = {r.strip() for r in m.group(1).split(",")}
            out[n] = (rules, m.group(2).strip(), line.index("pvpass-lint") + 1)
    return out


def apply(diags: list[Diagnostic], main_file: str) -> list[Diagnostic]:
    files = {d.loc.file for d in diags} | {main_file}
    table = {f: suppressions(f) for f in files}
    used: set[tuple[str, int, str]] = set()
    kept = []
    for d in diags:
        sup = table.get(d.loc.file, {})
        hit = None
        for line in (d.loc.line, d.loc.line - 1):
            if line in sup and d.rule in sup[line][0]:
                hit = line
                break
        if hit is None:
            kept.append(d)
        else:
            used.add((d.loc.file, hit, d.rule))
    for line, (rules, reason, col) in sorted(table.get(main_file, {}).items()):
        for r in sorted(rules):
            if (main_file, line, r) not in used:
                what = "unknown rule" if r not in RULES else "suppresses nothing here"
                kept.append(Diagnostic(Loc(main_file, line, col), RULES["PV009"].level,
                                       f"suppression of {r} {what}", "PV009"))
        if not reason:
            kept.append(Diagnostic(Loc(main_file, line, col), RULES["PV009"].level,
                                   "suppression without a reason", "PV009"))
    return kept
