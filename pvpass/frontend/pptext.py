"""Preprocessed text and the map from its offsets back to source locations.

gcc -E keeps `# LINE "FILE" FLAGS` markers; a location is found by bisecting
the markers and counting newlines, only for the offsets somebody asks about.
"""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

from ..diag import Loc, source_line

# Anchored on "\n" (3x faster than "^" with re.M on a 3 MB TU); a marker on
# the very first line is handled apart.
_MARKER = re.compile(r'\n#(?:line)? *(\d+) +"((?:[^"\\\n]|\\.)*)"[^\n]*')


_NL = re.compile(r'\n')
_TOKEN = re.compile(r'[A-Za-z_]\w*|\d\w*|[^\s]')


def _unescape_name(s: str) -> str:
    return s.replace('\\\\', '\\').replace('\\"', '"')


@dataclass
class PPText:
    text: str
    main_file: str
    _offsets: list[int] = field(default_factory=list)
    _files: list[str] = field(default_factory=list)
    _lines: list[int] = field(default_factory=list)
    _nl: dict[int, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        text = "\n" + self.text[:4096] if self.text.startswith("#") else None
        if text is not None:
            m = _MARKER.match(text)
            if m:
                self._add(m.end(), m)        # offsets shifted by the added "\n"
        # (inlined _add: a kernel TU has ~4,000 markers)
        offsets, files, lines = self._offsets, self._files, self._lines
        for m in _MARKER.finditer(self.text):
            offsets.append(m.end() + 1)
            name = m.group(2)
            files.append(_unescape_name(name) if "\\" in name else name)
            lines.append(int(m.group(1)))

    def _add(self, end: int, m: re.Match) -> None:
        self._offsets.append(end)
        self._files.append(_unescape_name(m.group(2)))
        self._lines.append(int(m.group(1)))

    def files(self) -> list[str]:
        """Every file the line markers name (the main source and its headers)."""
        return sorted(set(self._files))

    def file_at(self, off: int) -> str:
        """The file of offset `off`: loc()'s file without counting lines."""
        i = bisect.bisect_right(self._offsets, off) - 1
        return self._files[i] if i >= 0 else self.main_file

    def loc(self, off: int) -> Loc:
        """The (file, line, column) of offset `off` as gcc -E reports it."""
        i = bisect.bisect_right(self._offsets, off) - 1
        if i < 0:
            base, file, line = 0, self.main_file, 1
        else:
            base, file, line = self._offsets[i], self._files[i], self._lines[i]
        nl = self._newlines(i, base)
        k = bisect.bisect_left(nl, off)
        bol = nl[k - 1] + 1 if k else self.text.rfind("\n", 0, off) + 1
        return Loc(file, line + k, off - bol + 1)

    def _newlines(self, i: int, base: int) -> list[int]:
        """Offsets of the newlines between marker i and the next, found once:
        a function of n lines with n sites costs O(n), not O(n) per site."""
        got = self._nl.get(i)
        if got is None:
            end = self._offsets[i + 1] if i + 1 < len(self._offsets) else len(self.text)
            got = self._nl[i] = [m.start() for m in _NL.finditer(self.text, base, end)]
        return got

    def user_loc(self, loc: Loc) -> Loc:
        """A location whose column was counted in a macro-expanded line (it
        lies past the end of the source line), moved to the macro's use.
        Any other location is returned as it is."""
        src = source_line(loc.file, loc.line) if loc.line > 0 else None
        if src is None or loc.col <= len(src) + 1:
            return loc
        for i in range(len(self._offsets) - 1, -1, -1):
            if self._files[i] != loc.file or self._lines[i] > loc.line:
                continue
            k = loc.line - self._lines[i]
            nl = self._newlines(i, self._offsets[i])
            if k <= len(nl):
                bol = nl[k - 1] + 1 if k else self._offsets[i]
                return self.source_loc(bol + loc.col - 1)
        return Loc(loc.file, loc.line, len(src) + 1)

    def source_loc(self, off: int, token: str = "") -> Loc:
        """Like loc(), with the column moved to where `token` (default: the
        token at `off`) stands in the original source line: gcc -E does not
        keep every column, and a token that came from a macro is found at the
        macro's use, not at its column in the expanded line."""
        loc = self.loc(off)
        src = source_line(loc.file, loc.line)
        if src is None:
            return loc
        if not token:
            m = _TOKEN.match(self.text, off)
            if m is None:
                return loc if loc.col <= len(src) + 1 else Loc(loc.file, loc.line, len(src) + 1)
            token = m.group()
        if src[loc.col - 1:loc.col - 1 + len(token)] == token:
            return loc
        hits = [m.start() for m in re.finditer(re.escape(token), src)]
        if len(hits) == 1:
            return Loc(loc.file, loc.line, hits[0] + 1)
        if hits:
            best = min(hits, key=lambda h: abs(h + 1 - loc.col))
            return Loc(loc.file, loc.line, best + 1)
        # The token came from a macro: point at the macro invocation, where
        # the preprocessed line stops matching the source line.
        bol = self.text.rfind("\n", 0, off) + 1
        pp_line = self.text[bol:off]
        i = j = 0
        while i < len(src) and j < len(pp_line):
            if src[i].isspace() or pp_line[j].isspace():
                while i < len(src) and src[i].isspace():
                    i += 1
                while j < len(pp_line) and pp_line[j].isspace():
                    j += 1
            elif src[i] == pp_line[j]:
                i, j = i + 1, j + 1
            else:
                break
        while i > 0 and (src[i - 1].isalnum() or src[i - 1] == "_"):
            i -= 1
        return Loc(loc.file, loc.line, i + 1)
