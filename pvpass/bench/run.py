"""`pvpass bench`: build the harness per arch, run it, read its callers, and
write the result (text, JSON, CSV; with --out also the plot)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .. import tools
from ..diag import PvError
from ..atomicio import write_atomic
from ..jsonout import dumps
from .build import build
from .callers import caller_code
from .measure import MODES, collect, convs_of, rows_of
from .report import Result, render_csv, render_text, to_json


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def bench(archs: tuple[str, ...], runs: int, calls: int) -> Result:
    gcc = tools.run(["gcc", "-dumpfullversion"], what="gcc").stdout.decode().strip()
    load_before = os.getloadavg()
    rows, callers, cflags, clock, exes = [], [], {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="pvpass-bench-") as tmp:
        for arch in archs:
            work = Path(tmp) / arch
            work.mkdir()
            h = build(arch, work)
            cflags[arch], exes[arch] = list(h.cflags), h.exe
            callers += [caller_code(h.obj, arch, c) for c in ("bare", *convs_of(arch))]
        got = collect(exes, runs, calls)
        for arch in archs:
            arch_rows, clock[arch] = rows_of(arch, {m: got[(arch, m)] for m in MODES})
            rows += arch_rows
    return Result(archs, runs, calls, _cpu(), gcc, cflags, load_before, os.getloadavg(),
                  tuple(rows), tuple(callers), clock)


def write_outputs(res: Result, out: Path) -> None:
    """bench.txt, bench.json, bench.csv, bench.png, bench.svg in out; the
    plot is made first, so a missing matplotlib leaves nothing half-written."""
    from .plot import render
    png, svg = render(res)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PvError(f"{out}: {e.strerror}") from None
    write_atomic(out / "bench.txt", render_text(res))
    write_atomic(out / "bench.json", dumps(to_json(res)))
    write_atomic(out / "bench.csv", render_csv(res))
    write_atomic(out / "bench.png", png)
    write_atomic(out / "bench.svg", svg)


def render(res: Result, fmt: str) -> str:
    if fmt == "json":
        return dumps(to_json(res))
    return render_csv(res) if fmt == "csv" else render_text(res)
