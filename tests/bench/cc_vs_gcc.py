#!/usr/bin/env python3
"""`pvpass cc -- gcc` over `gcc` per kernel TU: CPU (user+sys, children
included) and wall, run by hand (not by pytest).

    tests/bench/kernel_tus.sh /work/wt/kernel
    .venv/bin/python tests/bench/cc_vs_gcc.py /work/wt/kernel/tus/*.cmd [--records native] [-n 3]

Each NAME.cmd holds the kernel's own compile command of the .c (second line)
and the directory to run it in (first line); the object and the dependency
file go to a temporary directory. "cold" is the first `pvpass cc` run with an
empty pvpass cache, "warm" the next one (a result-cache hit where the run
was cached). Without --records a kernel-dialect object only gets the
object-only table check; with it, the full analysis and the records.
"""
from __future__ import annotations

import argparse
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PVPASS = [sys.executable, "-m", "pvpass"]


def timed(argv: list[str], cwd: str, env: dict) -> tuple[float, float]:
    """(CPU seconds of the children, wall seconds)."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(argv, cwd=cwd, env=env, capture_output=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode:
        sys.exit(f"{' '.join(argv[:6])}...: exit {p.returncode}\n{p.stderr.decode()[-2000:]}")
    return (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), wall


def kernel_command(cmd_file: Path, tmp: str) -> tuple[str, list[str]]:
    cwd, line = cmd_file.read_text().splitlines()[:2]
    argv = shlex.split(line)
    out = []
    for i, a in enumerate(argv):
        if i and argv[i - 1] == "-o":
            a = os.path.join(tmp, "tu.o")
        elif a.startswith("-Wp,-MMD,") or a.startswith("-Wp,-MD,"):
            a = a.split(",", 2)[0] + "," + a.split(",", 2)[1] + "," + os.path.join(tmp, "tu.d")
        out.append(a)
    return cwd, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cmds", nargs="+", type=Path)
    ap.add_argument("--records", help="pass --records to pvpass cc (full analysis path)")
    ap.add_argument("-n", type=int, default=3, help="runs of gcc and of the warm path (median)")
    a = ap.parse_args()
    extra = ["--records", a.records] if a.records else []
    print(f"{'TU':<30} {'gcc cpu':>8} {'cold cpu':>9} {'warm cpu':>9} {'cold wall':>10} {'warm wall':>10}")
    rows = []
    for f in a.cmds:
        with tempfile.TemporaryDirectory() as tmp:
            cwd, argv = kernel_command(f, tmp)
            env = dict(os.environ, PVPASS_CACHE_DIR=os.path.join(tmp, "cache"))
            g = [timed(argv, cwd, env) for _ in range(a.n)]
            cold = timed([*PVPASS, "cc", *extra, "--", *argv], cwd, env)
            warm = [timed([*PVPASS, "cc", *extra, "--", *argv], cwd, env) for _ in range(a.n)]
        gc, gw = statistics.median(x[0] for x in g), statistics.median(x[1] for x in g)
        wc, ww = statistics.median(x[0] for x in warm), statistics.median(x[1] for x in warm)
        rows.append((cold[0] / gc, wc / gc))
        print(f"{f.stem:<30} {gc:7.2f}s {cold[0] / gc:8.2f}x {wc / gc:8.2f}x "
              f"{cold[1] / gw:9.2f}x {ww / gw:9.2f}x")
    if rows:
        print(f"{'median':<30} {'':>8} {statistics.median(r[0] for r in rows):8.2f}x "
              f"{statistics.median(r[1] for r in rows):8.2f}x   (CPU ratios: user+sys incl. children)")


if __name__ == "__main__":
    main()
