"""The result cache of `pvpass cc`, like ccache's direct mode.

Key: pvpass's version, the arch, the compiler's identity (each command word
resolved, with its size and mtime), the flags (without the output name), the
working directory, the source's path and contents, and what records were
asked for. An entry holds the headers the compile read (taken from the
preprocessed text's line markers), each with its content hash, the hash of
the object the compiler wrote, and what the link step added to it (or that
it added nothing). A hit needs no preprocessing and no analysis: each
header's contents must be the recorded ones, the compiler's fresh object
must be the recorded one, and the recorded sections are added to it.

Exact, as ccache's direct mode is unless told to be sloppy: a header is
decided by its contents, never by size and mtime (`cp -p`, `tar`,
`rsync -a` and `touch -r` keep those across a change). It stays fast the
way ccache 4's inode cache does: next to each header's hash the entry keeps
the stat of the file it hashed (device, inode, size, mtime, ctime); a file
whose stat is unchanged is not read again, and any change (ctime changes on
every write and cannot be set back) means hashing it. A file changed within
two seconds of being hashed gets no stat (timestamps are coarse: a second
write in the same tick would keep them), so it is hashed on every lookup
until an entry refreshed later records it. An entry whose headers had to be
hashed is rewritten with their new stat.

A cache directory is not trusted: an entry that is no regular file (a FIFO,
a device, a symlink) is a miss and is never opened for a blocking read.

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

import contextlib
import hashlib
import json
import os
import shutil
import stat
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from . import __version__
from .atomicio import write_atomic

FORMAT = 2
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


@contextlib.contextmanager
def _regular_file(path, follow: bool = True):
    """The open file if `path` is a regular file, else None: opened
    non-blocking (a FIFO planted in a cache directory must not hang a
    build) and checked with fstat before any read; `follow=False` refuses
    symlinks too. OSError from reading it reaches the caller."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | (0 if follow else os.O_NOFOLLOW))
    except OSError:
        yield None
        return
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            yield None
            return
        with os.fdopen(fd, "rb", closefd=False) as f:
            yield f
    finally:
        os.close(fd)


def read_regular(path, limit: int, follow: bool = True) -> bytes | None:
    """At most `limit` + 1 bytes of `path` if it is a regular file, else None."""
    try:
        with _regular_file(path, follow) as f:
            return None if f is None else f.read(limit + 1)
    except OSError:
        return None


def seal(form: str, key: str, body: bytes) -> bytes:
    """An entry of the chunk caches: a line naming its format and key, the
    SHA-256 of the body, the body."""
    return f"{form} {key}\n".encode() + hashlib.sha256(body).digest() + body


def unseal(form: str, key: str, data: bytes) -> bytes | None:
    """The body of `seal`'s entry, or None when it is another format's or
    key's entry, torn, or flipped anywhere (a name in a pickle too)."""
    head = f"{form} {key}\n".encode()
    body = data[len(head) + 32:]
    if data[:len(head)] != head or data[len(head):len(head) + 32] != hashlib.sha256(body).digest():
        return None
    return body


def file_hash(path: str) -> str | None:
    """The SHA-256 of a regular file's contents (None for anything else)."""
    try:
        with _regular_file(path) as f:
            return None if f is None else hashlib.file_digest(f, "sha256").hexdigest()
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


_RACY_NS = 2_000_000_000      # a stat this close to the hash is not trusted


@dataclass
class Header:
    path: str
    sha: str
    stat: list[int]       # [dev, ino, size, mtime_ns, ctime_ns] of what was hashed; [] if too new


def _stat_id(st: os.stat_result) -> list[int]:
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def hashed(path: str) -> Header | None:
    """A header's content hash and the stat it was taken under (None: no
    such regular file, as `<built-in>`). The stat is taken before and after
    hashing: a file written meanwhile, or too recently, keeps no stat."""
    import time
    try:
        before = os.stat(path)
    except OSError:
        return None
    sha = file_hash(path)
    if sha is None:
        return None
    try:
        after = os.stat(path)
    except OSError:
        return None
    sid = _stat_id(after)
    now = time.time_ns()
    if sid != _stat_id(before) or max(after.st_mtime_ns, after.st_ctime_ns) > now - _RACY_NS:
        sid = []
    return Header(path, sha, sid)


def headers_of(paths) -> list[Header]:
    return [h for h in map(hashed, sorted(set(paths))) if h is not None]


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
        raw = read_regular(p, _MAX_ENTRY, follow=False)
        try:
            entry = json.loads(raw) if raw is not None and len(raw) <= _MAX_ENTRY else None
        except (ValueError, RecursionError):
            entry = None
        if not _valid(entry, key):
            self._count("misses")
            return None
        rehashed = False
        for i, (path, sha, sid) in enumerate(entry["headers"]):
            try:
                st = os.stat(path)
            except OSError:
                self._count("misses")
                return None
            if sid and _stat_id(st) == sid:
                continue                      # the file that was hashed, untouched since
            h = hashed(path)
            if h is None or h.sha != sha:
                self._count("misses")
                return None
            entry["headers"][i] = [path, sha, h.stat]
            rehashed = True
        if rehashed:                          # their new stat, so that the next hit reads nothing
            self._store(key, entry)
        else:
            try:
                os.utime(p)                   # least recently used goes first
            except OSError:
                pass
        self._count("hits")
        return entry

    def put(self, key: str, headers: list[Header], object_sha: str, value, stderr: str = "") -> None:
        """`stderr`: the pass's warnings for this compile, replayed on a hit."""
        if self.dir is None:
            return
        entry = {"format": FORMAT, "key": key, "object": object_sha,
                 "headers": [[h.path, h.sha, h.stat] for h in headers], "value": value,
                 "stderr": stderr}
        if self._store(key, entry) and int(key[2:4], 16) == 0:     # one store in 256 checks the size
            evict(self.dir.parent, size_limit())

    def _store(self, key: str, entry: dict) -> bool:
        entry["sum"] = _checksum(entry)
        try:
            d = self._path(key).parent
            d.mkdir(parents=True, exist_ok=True)
            # through=False: a FIFO planted where the entry goes is replaced, never opened
            write_atomic(self._path(key), json.dumps(entry, separators=(",", ":")), durable=False,
                         sweep=False, through=False)
        except OSError:
            return False                      # a cache that cannot be written is no cache
        return True

    def _count(self, what: str) -> None:
        """One byte appended per event: O_APPEND writes do not race."""
        try:
            d = self.dir / "stats"
            d.mkdir(parents=True, exist_ok=True)
            fd = os.open(d / what, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK
                         | os.O_NOFOLLOW, 0o644)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                return
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
        if not (isinstance(h, list) and len(h) == 3 and isinstance(h[0], str) and isinstance(h[1], str)
                and isinstance(h[2], list) and len(h[2]) in (0, 5) and all(type(x) is int for x in h[2])):
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
                st = os.lstat(p)       # a symlink planted here is not followed
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
           "lint entries": 0,
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
        elif rel.startswith("lint-"):
            out["lint entries"] += 1
    return out


def clear(root: Path) -> None:
    if root.is_dir():
        for child in root.iterdir():
            if child.name.startswith(("results-", "chunks-", "lint-", "compilers-")):
                shutil.rmtree(child, ignore_errors=True)
