"""`pvpass lint`: files (or trees, or a compile_commands.json) in, sorted
diagnostics out, in text, JSON or SARIF; parallel with -j, deterministic."""
from __future__ import annotations

import json
import shlex
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from .. import __version__
from ..arch import get_arch
from ..diag import Diagnostic, EXIT_BAD_INPUT, EXIT_FINDINGS, EXIT_OK, Loc, PvError, render
from ..model import SCHEMA_VERSION
from .rules import RULES


@dataclass
class FileResult:
    path: str
    diagnostics: list[Diagnostic] = field(default_factory=list)
    input_error: bool = False
    names: tuple[str, ...] = ()   # its ops objects' and ops structs' names (gate.py learns them)
    files: tuple[str, ...] = ()   # the files its text came from, absolute (gate.py)
    gated: bool = False           # decided from its object (gate.py), not preprocessed


Job = tuple[str, str | None, tuple[str, ...], tuple[str, ...], str | None, str | None, str | None,
            str | None]


def lint_file(job: Job) -> FileResult:
    """One file (a top-level function so worker processes can run it).
    `obj`: the object the build's command writes, `depfile` its dependency
    file (compile database only; gate.py reads them). Findings of a text
    met before come from the store (store.py)."""
    path, arch_name, cpp, extra_ops, cwd, cc, obj, _depfile = job
    from ..diag import lines_read
    from ..frontend.preprocess import default_cc, preprocess
    from .store import lint_store
    import os
    old = os.getcwd()
    try:
        if cwd:
            os.chdir(cwd)
        arch = get_arch(arch_name)
        res = FileResult(path)
        try:
            pp = preprocess(path, arch, list(cpp), cc)
        except PvError as e:
            return _failed(res, e, path, not e.rule)
        if obj:
            res.files = tuple(os.path.normpath(os.path.abspath(f)) for f in pp.files()
                              if not (f.startswith("<") and f.endswith(">")))
        store = lint_store()
        key = store.key(pp.text, path, arch.name, cpp, cc or default_cc(), extra_ops)
        got = store.get(key)
        if got is not None:
            res.diagnostics, res.names = got
            return res
        with lines_read() as files:
            done = _lint_text(res, pp, arch, cpp, extra_ops, cc, obj)
        if done:
            store.put(key, res.diagnostics, files, res.names)
        return res
    finally:
        os.chdir(old)


def _lint_text(res: FileResult, pp, arch, cpp, extra_ops, cc, obj) -> bool:
    """Scan and check one preprocessed TU into `res`; False when it stopped
    at bad input (or a finding the scan raises)."""
    from ..frontend.scan import scan_reported
    from .built import compiled_by_build
    from .checks import check_all
    from .kept import check_kept
    from .reach import unreachable
    from .suppress import apply
    path = res.path
    try:
        scanned = scan_reported(pp, arch, list(cpp), report=False,
                                compiled=compiled_by_build(obj, pp), cc=cc, shared=True)
    except PvError as e:
        _failed(res, e, path, not e.rule)
        return False
    try:
        kept = check_kept(scanned, arch, list(cpp), cc)
    except PvError as e:          # C that gcc rejects: bad input, as in scan
        _failed(res, e, path, True)
        return False
    res.names = _ops_names(scanned, extra_ops)
    diags = apply([_in_source(scanned.pp, d) for d in check_all(scanned, arch, extra_ops) + kept], path)
    hidden = unreachable(scanned, diags)
    res.diagnostics = sorted((d if d.loc.file == path else replace(d, units=(path,))
                              for d in diags if d not in hidden), key=Diagnostic.sort_key)
    return True


def _ops_names(scanned, extra_ops) -> tuple[str, ...]:
    """The ops objects PV001 checks calls through, and the struct tags
    that make a backend initializer (backends.py): the names that tell
    gate.py a TU may hold what its object cannot show."""
    from ..frontend.backends import _nested_tags
    from .checks import ops_objects
    names = set(ops_objects(scanned, extra_ops))
    for ops in scanned.inventory.ops:
        names.add(ops.tag)
        try:
            tags: dict[str, str] = {}
            _nested_tags(scanned.ops_index.object_type(ops.obj, None)[0], "", tags)
            names |= set(tags)
        except PvError:
            pass
    return tuple(sorted(n for n in names if n))


def _failed(res: FileResult, e: PvError, path: str, bad_input: bool) -> FileResult:
    d = e.diagnostic()
    res.diagnostics = [d if e.loc is not None else replace(d, loc=Loc(path))]
    res.input_error = bad_input
    return res


def _in_source(pp, d: Diagnostic) -> Diagnostic:
    """Columns counted in macro-expanded text moved to the macro's use."""
    return replace(d, loc=pp.user_loc(d.loc),
                   notes=tuple(replace(n, loc=pp.user_loc(n.loc)) for n in d.notes))


def collect(paths: list[str]) -> list[str]:
    out: list[str] = []
    for p in paths:
        q = Path(p)
        if q.is_dir():
            out += sorted(str(f) for f in q.rglob("*.c"))
        else:
            out.append(p)
    seen = set()
    return [p for p in out if not (p in seen or seen.add(p))]


def from_compile_db(build_dir: str, paths=()
                    ) -> list[tuple[str, list[str], str, str, str | None, str | None]]:
    """(file, cpp flags, directory, compiler, object, dependency file) per
    entry of BUILD_DIR/compile_commands.json (only those under `paths`, when
    given): a cross-compiled tree is preprocessed by its own compiler."""
    from ..driver import parse
    from .gate import depfile_of
    db = Path(build_dir) / "compile_commands.json"
    try:
        entries = json.loads(db.read_text())
    except (OSError, ValueError) as e:
        raise PvError(f"{db}: cannot read the compilation database ({e})") from None
    wanted = tuple(str(Path(p).resolve()) for p in paths) + tuple(paths)
    out = []
    for e in entries:
        f = e["file"]
        d = e.get("directory", build_dir)
        f = f if Path(f).is_absolute() else str(Path(d) / f)
        if wanted and not f.startswith(wanted):
            continue         # before splitting: shlex takes ~8 ms per kernel command
        args = e.get("arguments") or shlex.split(e.get("command", ""))
        cc, cpp, obj = parse(args)
        obj = obj if obj is None or Path(obj).is_absolute() else str(Path(d) / obj)
        out.append((f, cpp, d, cc, obj, depfile_of(args, obj, d) if obj else None))
    return sorted(out, key=lambda e: (e[0], e[1], e[2], e[3], e[4] or "", e[5] or ""))


def run(paths, arch, cpp, jobs=1, build_dir=None, extra_ops=(), gate=True) -> list[FileResult]:
    """Every TU's result, in the order of the files. Under -p, with `gate`,
    a TU whose object shows it holds nothing to lint is decided from it
    (gate.py) instead of preprocessed."""
    if build_dir:
        jobsl = [(f, arch, tuple(flags), tuple(extra_ops), d, cc, obj, dep)
                 for f, flags, d, cc, obj, dep in from_compile_db(build_dir, paths)]
    else:
        jobsl = [(f, arch, tuple(cpp), tuple(extra_ops), None, None, None, None) for f in collect(paths)]
    if jobs > 1 and len(jobsl) > 1:
        with ProcessPoolExecutor(max_workers=jobs) as ex:
            return _run(ex.map, jobsl, build_dir and gate, extra_ops, jobs)
    return _run(map, jobsl, build_dir and gate, extra_ops, 1)


def _run(mapper, jobsl: list[Job], gate: bool, extra_ops, jobs: int) -> list[FileResult]:
    if not gate:
        return _progress(mapper(lint_file, jobsl), len(jobsl))
    order: dict[int, int] = {}        # id(result) -> its job's index
    return sorted(_progress(_gated(mapper, jobsl, extra_ops, jobs, order), len(jobsl)),
                  key=lambda r: order[id(r)])


def _gated(mapper, jobsl: list[Job], extra_ops, jobs: int, order: dict[int, int]):
    """Results of the full lint of every TU that the gate cannot decide,
    then of the TUs it decides from their objects (gate.py). Round by
    round, the TUs linted in full tell the ops names, and which headers a
    full lint has read; a TU left is linted in full when its object or its
    main file names an ops object or struct, and the first TU left that
    reads a header no full lint has read yet, which holds site text or
    names one, is too. The rounds end when one rules out no TU."""
    from . import gate
    gate.forget()
    many = {"chunksize": 16} if jobs > 1 else {}
    facts = list(mapper(gate.facts, jobsl, **many))
    names = set(extra_ops)
    read: set[str] = set()            # the files the TUs linted in full read
    todo = [i for i, f in enumerate(facts) if f.why]
    left = [i for i, f in enumerate(facts) if not f.why]
    while todo or left:
        for i, r in zip(todo, mapper(lint_file, [jobsl[i] for i in todo])):
            order[id(r)] = i
            names |= set(r.names)
            read |= set(r.files)
            yield r
        known = tuple(sorted(names))
        named = list(mapper(gate.named, [(jobsl[i], known) for i in left], **many))
        todo, met = [], set()
        for i, (main_names, headers) in zip(left, named):
            if main_names or any(s.partition(".")[0] in names for s in facts[i].symbols):
                todo.append(i)
                continue
            unread = (facts[i].site_headers | headers) - read - met
            if unread:            # one full lint reports what such a header holds
                todo.append(i)
                met |= unread
        if not todo:
            break
        out = set(todo)
        left = [i for i in left if i not in out]
    for i in left:
        r = FileResult(jobsl[i][0], gated=True)
        order[id(r)] = i
        yield r


def _progress(results, total: int, stream=None, clock=None) -> list[FileResult]:
    """Collect results, with a progress line when stderr is a terminal: TUs
    done of the total, the rate so far and the time left at that rate. It
    goes to stderr only (the JSON and SARIF reports are on stdout or -o) and
    is wiped before the report."""
    import time
    stream = stream or sys.stderr
    clock = clock or time.monotonic
    show = total > 1 and stream.isatty()
    out = []
    start = clock()
    for r in results:
        out.append(r)
        if show:
            stream.write(f"\r\033[K{progress_line(len(out), total, clock() - start)} {r.path}")
            stream.flush()
    if show:
        stream.write("\r\033[K")
    return out


def progress_line(done: int, total: int, elapsed: float) -> str:
    """`pvpass lint: [12/40] 1.5 TU/s, ETA 0:18`."""
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = f"{int((total - done) / rate) // 60}:{int((total - done) / rate) % 60:02d}" if rate else "?"
    return f"pvpass lint: [{done}/{total}] {rate:.1f} TU/s, ETA {eta}"


def finish(results: list[FileResult], werror: bool) -> tuple[list[Diagnostic], int]:
    """All results' diagnostics; a finding in a header that several
    translation units include is one diagnostic naming them all."""
    merged: dict[Diagnostic, Diagnostic] = {}
    for r in results:
        for d in r.diagnostics:
            if werror and d.level == "warning":
                d = replace(d, level="error")
            seen = merged.get(d)
            if seen is None:
                merged[d] = d
            elif d.units:
                merged[d] = replace(seen, units=seen.units + tuple(u for u in d.units if u not in seen.units))
    diags = list(merged.values())
    if any(r.input_error for r in results):
        return diags, EXIT_BAD_INPUT
    if any(d.level == "error" for d in diags):
        return diags, EXIT_FINDINGS
    return diags, EXIT_OK


def render_text(diags: list[Diagnostic], files: int, gated: int = 0) -> str:
    return "".join(render(d) + "\n" for d in diags) + summary(diags, files, gated)


def summary(diags: list[Diagnostic], files: int, gated: int = 0) -> str:
    """One line, clean or not: files checked (and how many of them were
    decided from their objects, when any), errors, warnings (notes when
    there are any), then the count by rule."""
    def n(count: int, word: str) -> str:
        return f"{count} {word}{'' if count == 1 else 's'}"
    counts = [n(sum(d.level == lv for d in diags), lv) for lv in ("error", "warning")]
    if notes := sum(d.level == "note" for d in diags):
        counts.append(n(notes, "note"))
    rules: dict[str, int] = {}
    for d in diags:
        rules[d.rule or "input"] = rules.get(d.rule or "input", 0) + 1
    by_rule = f" ({', '.join(f'{r} {k}' for r, k in sorted(rules.items()))})" if rules else ""
    from_obj = f" ({gated} decided from {'its object' if gated == 1 else 'their objects'})" if gated else ""
    return f"pvpass lint: {n(files, 'file')} checked{from_obj}, {', '.join(counts)}{by_rule}\n"


def _loc_json(loc: Loc) -> dict:
    return {"file": loc.file, "line": loc.line, "col": loc.col}


def render_json(diags: list[Diagnostic]) -> str:
    return json.dumps({"schema": SCHEMA_VERSION, "tool": "pvpass", "kind": "lint",
                       "diagnostics": [{**_loc_json(d.loc), "level": d.level, "rule": d.rule or None,
                                        "message": d.message,
                                        "notes": [{**_loc_json(n.loc), "message": n.message} for n in d.notes],
                                        **({"units": list(d.units)} if d.units else {})}
                                       for d in diags]}, indent=2) + "\n"


def _sarif_loc(loc: Loc) -> dict:
    region = {"startLine": max(loc.line, 1)}
    if loc.col > 0:
        region["startColumn"] = loc.col
    return {"physicalLocation": {"artifactLocation": {"uri": Path(loc.file).as_posix()},
                                 "region": region}}


def render_sarif(diags: list[Diagnostic]) -> str:
    ids = list(RULES)
    rules = [{"id": r.id, "name": r.name, "shortDescription": {"text": r.summary},
              "fullDescription": {"text": r.summary}, "help": {"text": r.doc},
              "defaultConfiguration": {"level": r.level}} for r in RULES.values()]
    results = []
    for d in diags:
        res = {"ruleId": d.rule or "input", "level": d.level if d.level in ("error", "warning", "note") else "none",
               "message": {"text": d.message}, "locations": [_sarif_loc(d.loc)]}
        if d.rule in RULES:
            res["ruleIndex"] = ids.index(d.rule)
        if d.units:
            res["properties"] = {"translationUnits": list(d.units)}
        if d.notes:
            res["relatedLocations"] = [{"id": i, **_sarif_loc(n.loc), "message": {"text": n.message}}
                                       for i, n in enumerate(d.notes)]
        results.append(res)
    doc = {"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0",
           "runs": [{"tool": {"driver": {"name": "pvpass", "version": __version__,
                                         "informationUri": "https://example.invalid/pvpass",
                                         "rules": rules}},
                     "results": results}]}
    return json.dumps(doc, indent=2) + "\n"
