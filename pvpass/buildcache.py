"""The result cache of `pvpass cc`, like ccache's direct mode.

Key: pvpass's version, the arch, the compiler's identity (each command word
resolved, with its size and mtime), the flags (without the output name), the
working directory, the source's path and contents, and what records were
asked for. An entry holds the headers the compile read (path, size, mtime,
content hash, taken from the preprocessed text's line markers), the hash of
the object the compiler wrote, and what the link step added to it (or that
it added nothing). A hit needs no preprocessing and no analysis: the headers
are stat'ed (hashed only when size or mtime changed), the compiler's fresh
object is compared with the recorded one, and the recorded sections are
added to it.

Entries are JSON (data only: loading one cannot run code) with a checksum
over their contents (a flipped byte is a miss, not a wrong object), written to a
temporary file and renamed (safe under `make -j`; no fsync: a torn entry
after a crash is a miss). Anything unreadable or of the wrong shape is a
miss. The cache is bounded (PVPASS_CACHE_SIZE, default 2 GB over this and
the parse cache): now and then a store evicts the least recently used
entries. PVPASS_CACHE=0 turns it off, PVPASS_CACHE_DIR moves it (default
$XDG_CACHE_HOME/pvpass).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from . import __version__
from .atomicio import write_atomic

FORMAT = 1
_MAX_ENTRY = 64 << 20
_DEFAULT_LIMIT = 2 << 30


def cache_root() -> Path | None:
    if os.environ.get("PVPASS_CACHE", "1") == "0":
        return None
    base = os.environ.get("PVPASS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pvpass")
    return Path(base)


@lru_cache(maxsize=1)
def code_identity() -> str:
    """pvpass's own code as it is on disk: results of other code (an upgrade,
    a developer's edit) are not reused. The size and mtime of each source,
    grammar and runtime file: a few hundred stats, under a millisecond."""
    pkg = Path(__file__).resolve().parent
    h = hashlib.sha256(__version__.encode())
    for base in (pkg, pkg.parent / "grammar"):
        if not base.is_dir():
            continue
        for p in sorted(base.rglob("*")):
            if p.suffix in (".py", ".lark", ".h", ".c", ".ld") and "__pycache__" not in p.parts:
                try:
                    st = p.stat()
                except OSError:
                    continue
                h.update(f"{p.relative_to(base)}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()[:16]


def size_limit() -> int:
    v = os.environ.get("PVPASS_CACHE_SIZE", "")
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    try:
        if v and v[-1].lower() in units:
            return int(float(v[:-1]) * units[v[-1].lower()])
        return int(v) if v else _DEFAULT_LIMIT
    except ValueError:
        return _DEFAULT_LIMIT


def file_hash(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None


def _identity(word: str) -> str:
    """A compiler command word as the file it runs: path, size, mtime."""
    path = shutil.which(word) or word
    try:
        st = os.stat(path)
        return f"{os.path.realpath(path)}:{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        return word


@dataclass
class Header:
    path: str
    size: int
    mtime: int
    sha: str


def headers_of(paths) -> list[Header]:
    out = []
    for p in sorted(set(paths)):
        try:
            st = os.stat(p)
        except OSError:
            continue                       # <built-in> and friends
        sha = file_hash(p)
        if sha is not None:
            out.append(Header(p, st.st_size, st.st_mtime_ns, sha))
    return out


class ResultCache:
    def __init__(self, root: Path | None = None) -> None:
        root = cache_root() if root is None else root
        self.dir = None if root is None else root / f"results-{FORMAT}"

    def key(self, compiler: list[str], args: list[str], source: str, arch: str,
            extra: str) -> str | None:
        """None when the source cannot be read (no caching)."""
        src_sha = file_hash(source)
        if self.dir is None or src_sha is None:
            return None
        h = hashlib.sha256()
        for part in (code_identity(), str(FORMAT), arch, *map(_identity, compiler), "\1", *args, "\1",
                     os.getcwd(), os.path.abspath(source), src_sha, extra):
            h.update(part.encode(errors="surrogateescape"))
            h.update(b"\0")
        return h.hexdigest()

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / key

    def get(self, key: str) -> dict | None:
        """The entry if every header it read is unchanged, else None."""
        if self.dir is None:
            return None
        p = self._path(key)
        try:
            with open(p, "rb") as f:
                raw = f.read(_MAX_ENTRY + 1)
            entry = json.loads(raw) if len(raw) <= _MAX_ENTRY else None
        except (OSError, ValueError, RecursionError):
            entry = None
        if not _valid(entry, key):
            self._count("misses")
            return None
        for path, size, mtime, sha in entry["headers"]:
            try:
                st = os.stat(path)
            except OSError:
                self._count("misses")
                return None
            if (st.st_size, st.st_mtime_ns) != (size, mtime) and file_hash(path) != sha:
                self._count("misses")
                return None
        try:
            os.utime(p)                       # least recently used goes first
        except OSError:
            pass
        self._count("hits")
        return entry

    def put(self, key: str, headers: list[Header], object_sha: str, value, stderr: str = "") -> None:
        """`stderr`: the pass's warnings for this compile, replayed on a hit."""
        if self.dir is None:
            return
        entry = {"format": FORMAT, "key": key, "object": object_sha,
                 "headers": [[h.path, h.size, h.mtime, h.sha] for h in headers], "value": value,
                 "stderr": stderr}
        entry["sum"] = _checksum(entry)
        try:
            d = self._path(key).parent
            d.mkdir(parents=True, exist_ok=True)
            write_atomic(self._path(key), json.dumps(entry, separators=(",", ":")), durable=False, sweep=False)
        except OSError:
            return                            # a cache that cannot be written is no cache
        if int(key[2:4], 16) == 0:            # one store in 256 checks the size
            evict(self.dir.parent, size_limit())

    def _count(self, what: str) -> None:
        """One byte appended per event: O_APPEND writes do not race."""
        try:
            d = self.dir / "stats"
            d.mkdir(parents=True, exist_ok=True)
            fd = os.open(d / what, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, b".")
            finally:
                os.close(fd)
        except OSError:
            pass


def _checksum(e: dict) -> str:
    """Over everything but itself: a flipped byte in a valid JSON string (the
    recorded section bytes) is caught here."""
    body = {k: v for k, v in e.items() if k != "sum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _valid(e, key: str) -> bool:
    if not isinstance(e, dict) or e.get("format") != FORMAT or e.get("key") != key:
        return False
    if e.get("sum") != _checksum(e):
        return False
    if not isinstance(e.get("object"), str) or not isinstance(e.get("headers"), list):
        return False
    for h in e["headers"]:
        if not (isinstance(h, list) and len(h) == 4 and isinstance(h[0], str)
                and isinstance(h[1], int) and isinstance(h[2], int) and isinstance(h[3], str)):
            return False
    return "value" in e and isinstance(e.get("stderr", ""), str)


def _unlink(p) -> None:
    try:
        os.unlink(p)
    except OSError:
        pass


def _entries(root: Path):
    """(mtime, size, path) of every file under the cache root."""
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            try:
                st = os.stat(p)
            except OSError:
                continue
            yield st.st_mtime, st.st_size, p


def evict(root: Path, limit: int) -> int:
    """Remove the least recently used files until the cache is under 80% of
    `limit`. Returns how many were removed."""
    files = [e for e in _entries(root) if "/stats/" not in e[2]]
    total = sum(s for _, s, _ in files)
    if total <= limit:
        return 0
    removed = 0
    for _, size, p in sorted(files):
        if total <= limit * 0.8:
            break
        _unlink(p)
        total -= size
        removed += 1
    return removed


def stats(root: Path) -> dict:
    out = {"directory": str(root), "limit": size_limit(), "result entries": 0, "parse entries": 0,
           "bytes": 0, "hits": 0, "misses": 0}
    if not root.is_dir():
        return out
    for _, size, p in _entries(root):
        rel = os.path.relpath(p, root)
        if rel.startswith(f"results-{FORMAT}{os.sep}stats{os.sep}"):
            out[os.path.basename(p)] = out.get(os.path.basename(p), 0) + size
            continue
        out["bytes"] += size
        if rel.startswith("results-"):
            out["result entries"] += 1
        elif rel.startswith("chunks-"):
            out["parse entries"] += 1
    return out


def clear(root: Path) -> None:
    if root.is_dir():
        for child in root.iterdir():
            if child.name.startswith(("results-", "chunks-")):
                shutil.rmtree(child, ignore_errors=True)
