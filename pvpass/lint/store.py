"""A translation unit's lint findings kept on disk across runs.

The findings of `pvpass lint` on a TU are a function of its preprocessed
text, the arch, the preprocessor flags, the compiler (its code model, and
PV010's compile), `--ops`, pvpass's own code, and the source lines that
locations are moved along (columns gcc -E does not keep). The key holds
all but the last: the SHA-256 of the text, so a header whose contents
change (whatever its size and mtime) or a -D/-m32 that changes any line
of the text gives another key, and the flags themselves, so that no two
flag sets share an entry even where the text is the same. The entry holds
the findings and the hash of every file whose lines were read; a file
that changed since is a miss. A hit costs the preprocessor run and a
hash, instead of splitting, scanning and checking the text.

Only clean scans are kept: bad input is reported afresh each time. An
entry is JSON (data: loading one runs no code) behind a header line that
names its key and the SHA-256 of the rest, written to a temporary and
renamed. Anything else (another key's entry, a torn or flipped one, a
FIFO, a symlink, the wrong shape) is a miss. It lives beside the parse
cache (`lint-CODE/` under PVPASS_CACHE_DIR), is bounded with it by
PVPASS_CACHE_SIZE, and goes with `pvpass cache --clear`; PVPASS_CACHE=0
turns it off.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..diag import Diagnostic, Loc, Note

FORMAT = "pvpass-lint-2"
_MAX_ENTRY = 4 << 20


class LintStore:
    def __init__(self) -> None:
        from ..buildcache import cache_root, code_identity
        root = cache_root()
        self.dir: Path | None = None if root is None else root / f"lint-{code_identity()}"

    def key(self, text: str, path: str, arch: str, cppflags, cc: str, extra_ops) -> str | None:
        if self.dir is None:
            return None
        from ..buildcache import _identity
        h = hashlib.sha256()
        for part in (FORMAT, path, arch, "\1", *cppflags, "\1", _identity(cc), "\1", *extra_ops, "\1"):
            h.update(part.encode(errors="surrogateescape"))
            h.update(b"\0")
        h.update(text.encode(errors="surrogateescape"))
        return h.hexdigest()

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / key

    def get(self, key: str | None) -> tuple[list[Diagnostic], tuple[str, ...]] | None:
        """The stored findings and ops names (runner.FileResult.names), or
        None (a miss) whatever is wrong."""
        if key is None or self.dir is None:
            return None
        from ..buildcache import file_hash, read_regular, unseal
        data = read_regular(self._path(key), _MAX_ENTRY, follow=False)      # a FIFO is a miss
        body = unseal(FORMAT, key, data) if data is not None and len(data) <= _MAX_ENTRY else None
        if body is None:
            return None               # another key's entry, torn, or flipped
        try:
            entry = json.loads(body)
            files, diags = entry["files"], [_diag(d) for d in entry["diagnostics"]]
            names = tuple(_str(n) for n in entry["names"])
            if not (isinstance(files, dict) and all(isinstance(f, str) and (s is None or isinstance(s, str))
                                                    for f, s in files.items())):
                return None
        except (ValueError, KeyError, TypeError, RecursionError):
            return None
        if any(file_hash(f) != sha for f, sha in files.items()):
            return None               # a source line that locations were read from has changed
        return diags, names

    def put(self, key: str | None, diags: list[Diagnostic], files: set[str], names=()) -> None:
        if key is None or self.dir is None:
            return
        from ..atomicio import write_atomic
        from ..buildcache import evict, file_hash, seal, size_limit
        data = seal(FORMAT, key, json.dumps({"files": {f: file_hash(f) for f in sorted(files)},
                                             "diagnostics": [_json(d) for d in diags],
                                             "names": sorted(names)},
                                            separators=(",", ":")).encode())
        if len(data) > _MAX_ENTRY:
            return
        try:
            self._path(key).parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self._path(key), data, durable=False, sweep=False, through=False)
        except OSError:
            return                    # a store that cannot be written is no store
        if int(key[2:4], 16) == 0:    # one store in 256 checks the size
            evict(self.dir.parent, size_limit())


def _loc_json(loc: Loc) -> list:
    return [loc.file, loc.line, loc.col]


def _json(d: Diagnostic) -> dict:
    return {"loc": _loc_json(d.loc), "level": d.level, "message": d.message, "rule": d.rule,
            "notes": [[_loc_json(n.loc), n.message] for n in d.notes], "units": list(d.units)}


def _loc(v) -> Loc:
    file, line, col = v
    if not (isinstance(file, str) and type(line) is int and type(col) is int):
        raise TypeError("not a location")
    return Loc(file, line, col)


def _str(v) -> str:
    if not isinstance(v, str):
        raise TypeError("not a string")
    return v


def _diag(v) -> Diagnostic:
    if not isinstance(v, dict) or v.get("level") not in ("error", "warning", "note"):
        raise TypeError("not a diagnostic")
    return Diagnostic(_loc(v["loc"]), v["level"], _str(v["message"]), _str(v["rule"]),
                      tuple(Note(_loc(l), _str(m)) for l, m in v["notes"]),
                      tuple(_str(u) for u in v["units"]))


_store: LintStore | None = None


def lint_store() -> LintStore:
    """The process's store (PVPASS_CACHE and PVPASS_CACHE_DIR as it started)."""
    global _store
    if _store is None:
        _store = LintStore()
    return _store
