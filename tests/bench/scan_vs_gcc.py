#!/usr/bin/env python3
"""pvpass scan time over `gcc -c -O2` time on the same preprocessed TU
(run by hand, not by pytest). Also checks the scan against gcc's table.

    tests/bench/kernel_tus.sh out/kernel          # prepares real kernel TUs
    .venv/bin/python tests/bench/scan_vs_gcc.py out/kernel/tus/*.i

A FILE.flags beside FILE.i holds the compiler flags (kernel_tus.sh writes
them); without it `-O2` is used. "cold" is a first run with an empty parse
cache, "warm" the steady state of a build, where header chunks are cached.
"cc" is `pvpass cc -- gcc ... -c` over plain gcc: what a build pays. Each
time is printed as CPU (user+sys of the child) / wall, best of n runs.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import resource
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from pvpass.link.elfobj import ElfObject  # noqa: E402
from pvpass.link.tableread import read_entries  # noqa: E402


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def best(argv, n=3, env=None) -> tuple[float, float, subprocess.CompletedProcess]:
    """(CPU, wall, the last run): the best of n runs of each."""
    cpu = wall = None
    r = None
    for _ in range(n):
        c0, t0 = _children_cpu(), time.perf_counter()
        r = subprocess.run(argv, capture_output=True, env=env)
        dt, dc = time.perf_counter() - t0, _children_cpu() - c0
        wall = dt if wall is None else min(wall, dt)
        cpu = dc if cpu is None else min(cpu, dc)
    return cpu, wall, r


def main() -> None:
    files = sys.argv[1:]
    if not files:
        sys.exit(__doc__)
    print(f"{'TU':<30} {'MB':>5} {'gcc -O2 cpu/wall':>16} {'scan cold':>11} {'scan warm':>11} "
          f"{'warm/gcc':>11} {'cc/gcc':>11} sites gcc-entries ok")
    for f in files:
        flags_file = Path(f).with_suffix(".flags")
        flags = flags_file.read_text().split() if flags_file.exists() else ["-O2"]
        with tempfile.TemporaryDirectory() as tmp:
            obj = os.path.join(tmp, "x.o")
            c_gcc, t_gcc, r = best(["gcc", *flags, "-c", f, "-o", obj])
            if r.returncode:
                print(f"{f}: gcc failed: {r.stderr.decode()[:300]}")
                continue
            env = dict(os.environ, PVPASS_CACHE_DIR=os.path.join(tmp, "cache"))
            scan = [sys.executable, "-m", "pvpass", "scan", f, "--", *flags]
            c_cold, t_cold, r = best(scan, 1, env)
            c_warm, t_warm, r = best(scan, 3, env)
            if r.returncode:
                print(f"{f}: pvpass failed: {r.stderr.decode()[:300]}")
                continue
            sites = json.loads(r.stdout)["sites"]
            cc = [sys.executable, "-m", "pvpass", "cc", "--", "gcc", *flags, "-c", f, "-o",
                  os.path.join(tmp, "cc.o")]
            c_cc, t_cc, rc = best(cc, 3, env)
            ours = {(s["type"], s["length"], s["mask"]) for s in sites}
            theirs = {(e.type, e.length, e.clobbers) for e in read_entries(ElfObject.read(obj))}
            ok = "yes" if theirs <= ours else f"NO: missing {sorted(theirs - ours)[:5]}"
            mb = os.path.getsize(f) / 1e6
            print(f"{Path(f).name[:30]:<30} {mb:5.2f} {c_gcc:7.2f}/{t_gcc:5.2f}s {c_cold:5.2f}/{t_cold:4.2f}s "
                  f"{c_warm:5.2f}/{t_warm:4.2f}s {c_warm / c_gcc:5.2f}/{t_warm / t_gcc:4.2f}x "
                  f"{c_cc / c_gcc:5.2f}/{t_cc / t_gcc:4.2f}x {len(sites):5} {len(theirs):5} distinct  {ok}")


if __name__ == "__main__":
    main()
