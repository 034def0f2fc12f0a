"""Which translation units of a compile database lint can decide from the
object the build made, without preprocessing them (docs/lint.md, "The
object gate").

A TU's findings lie in code (PV001-PV004, PV007, PV010: sites and calls
through an ops object, reported only where gcc emits them, reach.py) or in
declarations and comments (PV005, PV006, PV008, PV009). gcc compiles what
the code findings are about into the object: a kernel-style site pushes an
entry into `.parainstructions`, and every site or plain call through an ops
object loads from that object, which leaves its symbol in the symbol table
(a local one for a static object). The declaration findings and
pvpass-style sites (`# pvpass:` comments, which leave no section) need
text: the TU's own text is its main file; the files the build's dependency
file names say which headers it read. A TU is decided from its object,
with no finding of its own, when (`facts`, then `named` and
`runner._gated`):

- its object is up to date: no older than its source and every file the
  dependency file names (and that file exists: without it the headers are
  unknown), as make decides not to compile it again (built.py's test,
  without the line markers of a preprocessor run);
- the object is an ELF relocatable of lint's arch, with no LTO sections
  (their code is not in the object yet), no section named after
  `.parainstructions` or pvpass, and no symbol naming an ops object;
- no header it reads holds `pvpass` or `__PVPASS__` (pvpass-style sites,
  and text that differs under lint's `-D__PVPASS__`), and its main file
  holds neither, nor `.parainstructions`, nor an ops object's or ops
  struct's name (its own sites, backends, ops structs, annotations and
  suppressions);
- every header it reads that holds kernel-style site text or an ops
  object's or struct's name has been read by a TU linted in full (which
  reports what the header declares; else the first TU left that reads it
  is linted in full).

The names come from the TUs linted in full (their sites' ops objects and
`--ops`, the ops structs' tags), round by round until a round rules out no
TU. Anything else (no object, a stale one, no dependency file, a foreign
or unreadable file) is linted in full.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass

# Text that makes a header (or the main file) need the full lint: the
# scan's site marks (`pvpass:`; `pvpass` covers `#include "pvpass.h"` and
# suppressions too) and lint's own predefined macro; in the main file also
# kernel-style site text. A header with that text is a site header.
_MARKS = (b"pvpass", b"__PVPASS__", b".parainstructions")
_PVPASS, _SITES = 3, 4          # bits of _found: the first two marks, the third


@dataclass(frozen=True)
class Facts:
    """What one TU's object and files say, before the ops objects' names
    are known. `why`: the reason it needs the full lint ("" when it may be
    decided from its object); `symbols`: the object's symbol names;
    `site_headers`: the headers it reads that hold kernel-style site text."""
    why: str
    symbols: frozenset[str] = frozenset()
    site_headers: frozenset[str] = frozenset()


def depfile_of(args: list[str], obj: str | None, cwd: str) -> str | None:
    """The dependency file a compile command writes (-Wp,-MD,FILE or
    -Wp,-MMD,FILE; -MD/-MMD, into -MF FILE or beside the object),
    absolute; None when it writes none (an -MF alone names no file the
    compile writes)."""
    out = None
    md = False
    for i, a in enumerate(args):
        if a == "-MF" and i + 1 < len(args):
            out = args[i + 1]
        elif a.startswith("-MF") and len(a) > 3:
            out = a[3:]
        elif a.startswith(("-Wp,-MD,", "-Wp,-MMD,")):
            out, md = a.split(",", 2)[2], True
        elif a in ("-MD", "-MMD"):
            md = True
    if not md:
        return None
    if out is None and obj:
        out = os.path.splitext(obj)[0] + ".d"
    return None if out is None else os.path.join(cwd, out)


def dependencies(depfile: str) -> list[str] | None:
    """The files a dependency file names, or None when there is none.
    Kbuild's fixdep turns gcc's `.X.o.d` into `.X.o.cmd` (a `deps_X :=`
    list, `$(wildcard F)` for files that may not exist); make-style files
    are `target: dep dep \\` rules."""
    text = _read(depfile)
    if text is None and depfile.endswith(".d"):
        cmd = _read(depfile[:-2] + ".cmd")
        return None if cmd is None else _kbuild_deps(cmd)
    return None if text is None else _make_deps(text)


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            return f.read().decode(errors="surrogateescape")
    except OSError:
        return None


def _make_deps(text: str) -> list[str] | None:
    """`target: dep dep \\` rules (-MP's `header.h:` ones have none)."""
    out: list[str] = []
    for line in text.replace("\\\n", " ").splitlines():
        colon = line.find(":")
        if colon < 0:
            continue
        # an escaped space (`\\ `) belongs to the name; `$$` is a dollar
        words = line[colon + 1:].replace("\\ ", "\0").split()
        out += [w.replace("\0", " ").replace("$$", "$") for w in words]
    return out or None


def _kbuild_deps(text: str) -> list[str] | None:
    """The `source_X :=` file and the `deps_X :=` list (None without one:
    then the headers are unknown)."""
    out: list[str] = []
    inside = listed = False
    for line in text.splitlines():
        if line.startswith("deps_"):
            inside = listed = True
            continue
        if line.startswith("source_"):
            out.append(line.partition(":=")[2].strip())
            continue
        if not inside:
            continue
        item = line.strip().removesuffix("\\").strip()
        if not item:
            if not line.rstrip().endswith("\\"):
                inside = False
            continue
        if item.startswith("$(wildcard ") and item.endswith(")"):
            item = "?" + item[len("$(wildcard "):-1]     # may not exist (make's wildcard)
        out.append(item)
    return out if listed else None


def facts(job) -> Facts:
    """`runner.lint_file`'s job (with its dependency file) -> Facts. Run in
    a worker: it stats the TU's files and reads its object."""
    path, arch_name, _cpp, _ops, cwd, _cc, obj, depfile = job
    if not obj:
        return Facts("no object")
    if not depfile:
        return Facts("no dependency file")
    src = os.path.abspath(path if os.path.isabs(path) else os.path.join(cwd or ".", path))
    try:
        st = os.stat(obj)
    except OSError:
        return Facts("no object")
    if not stat.S_ISREG(st.st_mode):
        return Facts("no object")
    deps = dependencies(depfile)
    if deps is None:
        return Facts("no dependency file")
    built = st.st_mtime_ns
    site_headers = set()
    for d in [src] + deps:
        optional = d.startswith("?")
        f = os.path.abspath(os.path.join(cwd or ".", d[1:] if optional else d))
        got = _stat(f)
        if got is None:
            if optional:
                continue
            return Facts("stale object")         # a dependency that is gone
        if got[2] > built:
            return Facts("stale object")
        if optional or f == src:
            continue
        found = _found(f, got)
        if found & _PVPASS:
            return Facts("a header holds pvpass text")
        if found & _SITES:
            site_headers.add(f)
    if _found(src, _stat(src)):
        return Facts("the main file holds pvpass text")
    got = _object_facts(obj, arch_name)
    return Facts(got.why, got.symbols, frozenset(site_headers))


def _object_facts(obj: str, arch_name: str | None) -> Facts:
    from ..arch import get_arch
    from ..errors import PvError
    from ..link.elfobj import ElfObject
    try:
        o = ElfObject.read(obj)
        arch = get_arch(arch_name)
        if not o.is_relocatable or o.arch.name != arch.name:
            return Facts("not a relocatable object of the arch")
        for s in o.sections:
            if "parainstructions" in s.name or "pvpass" in s.name:
                return Facts("object holds sites")
            if s.name.startswith((".gnu.lto_", ".llvm.lto")):
                return Facts("LTO object")
        names = frozenset(s.name for s in o.symbols if s.name)
    except PvError:
        return Facts("unreadable object")
    if any(n.startswith("__gnu_lto") for n in names):
        return Facts("LTO object")
    return Facts("", names)


_stats: dict[str, tuple[int, int, int, int] | None] = {}
_marked: dict[tuple, bool] = {}


def forget() -> None:
    """Start a run afresh (the caches hold one run's look at the tree)."""
    _stats.clear()
    _marked.clear()
    _named.clear()


def _stat(path: str) -> tuple[int, int, int, int] | None:
    """(dev, inode, mtime, size) of a file, once per process: one lint run
    is one look at the tree, and a kernel TU names ~1,500 files (its
    headers and Kbuild's config files), mostly the same ones."""
    if path in _stats:
        return _stats[path]
    try:
        st = os.stat(path)
        got = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
    except OSError:
        got = None
    _stats[path] = got
    return got


def _found(path: str, ident) -> int:
    """Bit i set when the file holds _MARKS[i]; all set for a file that
    cannot be read."""
    return _holds(path, ident, _MARKS, _marked)


def _holds(path: str, ident, needles: tuple[bytes, ...], memo: dict) -> int:
    """Bit i set when the file holds needles[i], read once per file identity
    (and needles); all set (at least one) for a file that cannot be read."""
    every = (1 << len(needles)) - 1 or 1
    if ident is None:
        return every
    key = (path, ident, needles)
    got = memo.get(key)
    if got is None:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            return every
        got = memo[key] = sum(1 << i for i, m in enumerate(needles) if m in data)
    return got


def named(arg) -> tuple[bool, frozenset[str]]:
    """(whether the main file mentions a name of `names`, the headers that
    do) of one TU (`facts`'s job), once the full lints have told the ops
    objects' and structs' names. Run in a worker."""
    job, names = arg
    path, _arch, _cpp, _ops, cwd, _cc, _obj, depfile = job
    src = os.path.abspath(path if os.path.isabs(path) else os.path.join(cwd or ".", path))
    needles = tuple(n.encode() for n in names)
    headers = set()
    for d in dependencies(depfile) or ():
        if d.startswith("?"):
            continue
        f = os.path.abspath(os.path.join(cwd or ".", d))
        if f != src and _mentions(f, _stat(f), needles):
            headers.add(f)
    return _mentions(src, _stat(src), needles), frozenset(headers)


_named: dict[tuple, bool] = {}


def _mentions(path: str, ident, needles: tuple[bytes, ...]) -> bool:
    return _holds(path, ident, needles, _named) != 0
