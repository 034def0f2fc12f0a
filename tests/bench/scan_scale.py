#!/usr/bin/env python3
"""Scan CPU time against the number of sites (run by hand, not by pytest).

    .venv/bin/python tests/bench/scan_scale.py [MAX_SITES]

Scans generated sources (tests/test_scale.py's generator: one function
holding every site, and translation units of 100-site functions) with an
empty parse cache and prints CPU time (user + sys, children included) per
size, per site, and each size's ratio to the size before it: linear work
keeps the per-site time flat and the ratio near 2.
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from test_scale import source  # noqa: E402


def cpu(path: Path) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", "pvpass", "scan", str(path), "--format", "text"], check=True,
                   stdout=subprocess.DEVNULL, cwd=ROOT, env={**os.environ, "PVPASS_CACHE": "0"})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def main() -> None:
    top = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    with tempfile.TemporaryDirectory() as d:
        for label, per in (("one function", None), ("100-site functions", 100)):
            prev = None
            n = 1250
            while n <= top:
                src = Path(d) / f"s{n}.c"
                src.write_text(source(n, per or n))
                t = cpu(src)
                ratio = f"{t / prev:.2f}x" if prev else "-"
                print(f"{label:20} {n:6} sites  {t:6.2f} s CPU  {t / n * 1e3:5.2f} ms/site  vs half: {ratio}")
                prev, n = t, n * 2


if __name__ == "__main__":
    main()
