#!/usr/bin/env python3
"""Start-up of the build path (run by hand): the CPU `pvpass cc` adds to a
compile on each of its paths, and which heavy packages each path imports.

    .venv/bin/python tests/bench/startup.py [-n 20]

Paths: a result-cache hit (pvpass dialect), the object-only check (kernel
dialect), an object with no relocated `call *` (plain C). Prints the median
CPU (user+sys, children included) and wall of `pvpass cc -- gcc -c` minus
those of `gcc -c` on the same file, gcc and pvpass runs interleaved, beside
`python -c pass`.

PYTHONDONTWRITEBYTECODE is dropped for the runs: an installed pvpass has its
bytecode compiled (pip does it), and recompiling every module from source on
each run added ~20 ms per path here, which is not what a user pays.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("keystone", "elftools", "lark", "pycparser", "pycparserext", "capstone", "unicorn")


def cpu(argv, env) -> float:
    return timed(argv, env)[0]


def timed(argv, env) -> tuple[float, float]:
    """(CPU user+sys of the children, wall) of one run."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), wall


def heavy_imports(argv, env) -> list[str]:
    r = subprocess.run([sys.executable, "-X", "importtime", *argv[1:]], env=env, capture_output=True, text=True)
    mods = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if "import time:" in line}
    return sorted(m for m in mods if m in HEAVY)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "plain.c"
        plain.write_text("int f(int x) { return x * 3; }\n")
        env = dict(os.environ, PVPASS_CACHE_DIR=os.path.join(tmp, "cache"))
        env.pop("PYTHONDONTWRITEBYTECODE", None)          # as installed: bytecode cached
        inc = ["-I", str(ROOT / "pvpass/include")]
        cases = {"cache hit (pvpass dialect)": [*inc, str(ROOT / "testdata/pvpass/sites.c")],
                 "object-only check (kernel dialect)": [str(ROOT / "testdata/kernel/k61.c")],
                 "no call * (plain C)": [str(plain)]}
        py = [timed([sys.executable, "-c", "pass"], env) for _ in range(a.n)]
        print(f"python -c pass: {statistics.median(c for c, _ in py) * 1000:.1f} ms CPU, "
              f"{statistics.median(w for _, w in py) * 1000:.1f} ms wall")
        for name, args in cases.items():
            g = ["gcc", "-O2", "-c", *args, "-o", os.path.join(tmp, "o.o")]
            p = [sys.executable, "-m", "pvpass", "cc", "--", *g]
            cpu(p, env)                                   # fill the caches
            runs = [(timed(g, env), timed(p, env)) for _ in range(a.n)]
            gc_, gw = (statistics.median(r[0][i] for r in runs) for i in (0, 1))
            pc, pw = (statistics.median(r[1][i] for r in runs) for i in (0, 1))
            print(f"{name:<36} gcc {gc_ * 1000:4.0f} ms CPU {gw * 1000:4.0f} ms wall, pvpass cc adds "
                  f"{(pc - gc_) * 1000:5.1f} ms CPU {(pw - gw) * 1000:5.1f} ms wall; "
                  f"imports {', '.join(heavy_imports(p, env)) or 'none of ' + '/'.join(HEAVY)}")


if __name__ == "__main__":
    main()
