#!/usr/bin/env python3
"""`pvpass cc` and `pvpass scan` against gcc as sites grow: CPU (user+sys,
children included) and peak RSS of each command on the same generated
source (run by hand, not by pytest).

    nice -n 10 .venv/bin/python tests/bench/scale_vs_gcc.py [--sites 10000] [--cflags "-O2 -fno-pie"]
        [--shape function|functions|spread|both|all] [--per-function 10]

PVPASS_BENCH_TREE=DIR runs the pvpass of another checkout (a commit's
tree: `git archive COMMIT | tar -x -C DIR`) with the same generator, for a
before-and-after comparison.

Three shapes (tests/test_scale.py's generator): every site in one function,
one site in each of N functions, and N sites spread over functions of
--per-function sites each (issue 15's 50,000 sites in 5,000 functions:
`--sites 50000 --shape spread`); "both" runs the first two, "all" the three. Each row: gcc's figures, pvpass cc's
and scan's, their ratios to gcc, and how many sites the object's table
holds (gcc at -O1 and above keeps the ops object's address in a register
across the calls of one function, so pass -O0 for the one-function shape
to table them all with the macros of this tree).

PYTHONDONTWRITEBYTECODE is dropped for the runs, and a compile through
`pvpass cc` runs first, so pvpass's modules run from cached bytecode as an installed
pvpass does (pip compiles them): recompiling them from source on each run
cost ~0.1 s CPU here.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from test_scale import source  # noqa: E402

PVPASS = [sys.executable, "-m", "pvpass"]
if os.environ.get("PVPASS_BENCH_TREE"):      # that tree's pvpass first, this venv's packages after
    PVPASS = [sys.executable, "-S", "-c", "import sys; sys.path[:0] = sys.argv[1:3]; del sys.argv[1:3]; "
              "from pvpass.cli import main; raise SystemExit(main(sys.argv[1:]))",
              os.environ["PVPASS_BENCH_TREE"], next(p for p in sys.path if p.endswith("site-packages"))]


ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {"PVPASS_CACHE": "0"}


def measure(argv: list[str]) -> tuple[float, int, float]:
    """(CPU seconds of the command and its children, peak RSS in MB of the
    largest of them, wall seconds): wait4 reports that process tree alone."""
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.stderr.close()
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        sys.exit(f"{shlex.join(argv[:8])}...: exit {p.returncode}\n{err.decode()[-2000:]}")
    return ru.ru_utime + ru.ru_stime, ru.ru_maxrss // 1024, time.perf_counter() - t0


def tabled(obj: Path) -> int:
    out = subprocess.run(PVPASS + ["table", str(obj)], capture_output=True, text=True, cwd=ROOT).stdout
    return int(out.split(": ", 1)[1].split()[0]) if out else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=int, default=10000)
    ap.add_argument("--cflags", default="-O2 -fno-pie")
    ap.add_argument("--shape", choices=("function", "functions", "spread", "both", "all"), default="both")
    ap.add_argument("--per-function", type=int, default=10, help="sites per function of the spread shape")
    a = ap.parse_args()
    inc = subprocess.run(PVPASS + ["--include-dir"], capture_output=True, text=True, cwd=ROOT,
                         env=ENV).stdout.strip()
    cflags = shlex.split(a.cflags) + [f"-I{inc}"]
    shapes = {"function": a.sites, "functions": 1, "spread": a.per_function}
    print(f"{'shape':34} {'gcc CPU':>8} {'wall':>6} {'RSS':>6} | {'cc CPU':>8} {'wall':>6} {'RSS':>6} "
          f"{'x gcc':>6} {'x RSS':>6} | {'scan CPU':>8} {'wall':>6} {'RSS':>6} {'x gcc':>6} | tabled")
    with tempfile.TemporaryDirectory() as d:
        for warm in (["cc", "--", "gcc", f"-I{inc}", "-c", str(ROOT / "testdata/pvpass/sites.c"),
                      "-o", str(Path(d) / "warm.o")], ["scan", str(ROOT / "testdata/pvpass/sites.c")]):
            subprocess.run(PVPASS + warm, env=ENV, capture_output=True, cwd=ROOT)   # writes the bytecode
        for shape, per in shapes.items():
            if a.shape not in (shape, "all") and not (a.shape == "both" and shape != "spread"):
                continue
            src = Path(d) / f"{shape}.c"
            src.write_text(source(a.sites, per))
            g = measure(["gcc", *cflags, "-c", str(src), "-o", str(Path(d) / "gcc.o")])
            obj = Path(d) / "cc.o"
            c = measure(PVPASS + ["cc", "--", "gcc", *cflags, "-c", str(src), "-o", str(obj)])
            s = measure(PVPASS + ["scan", str(src), "--format", "text", "--", f"-I{inc}"])
            label = {"function": f"{a.sites} sites in one function",
                     "functions": f"{a.sites} functions, one site each",
                     "spread": f"{a.sites} sites, {per} a function"}[shape]
            print(f"{label:34} {g[0]:7.2f}s {g[2]:5.2f}s {g[1]:4}MB | {c[0]:7.2f}s {c[2]:5.2f}s {c[1]:4}MB "
                  f"{c[0] / g[0]:5.1f}x {c[1] / g[1]:5.1f}x | {s[0]:7.2f}s {s[2]:5.2f}s {s[1]:4}MB "
                  f"{s[0] / g[0]:5.1f}x | {tabled(obj)}", flush=True)


if __name__ == "__main__":
    main()
