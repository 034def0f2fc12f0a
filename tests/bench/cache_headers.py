#!/usr/bin/env python3
"""What the exact result cache costs per compile on a kernel-sized TU.

Generates a TU that includes HEADERS headers (default 700, about a kernel
TU's count) of SIZE bytes each (default 8 KiB), plus testdata/pvpass/sites.c
(so the result cache is used), warms the cache with one `pvpass cc`, then
times, per compile:

- the lookup alone (`ResultCache.get`, in process, REPEAT times):
  `stat` when every header's stat is the recorded one (the inode cache
  hits), and `rehash` when every header must be read and hashed again (its
  ctime moved: `touch`, `cp -p`, a checkout) — each run restores the stat
  first, so every lookup hashes all of them;
- a whole `pvpass cc` cache hit (a subprocess, gcc's compile included), and
  gcc alone on the same command, for scale.

Prints CPU (user+sys, children included for the subprocesses) and wall per
compile, median of the runs:

    nice -n 10 .venv/bin/python tests/bench/cache_headers.py [--headers 700] [--size 8192] [--repeat 20]
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
sys.path.insert(0, str(ROOT))
from pvpass import buildcache  # noqa: E402
from pvpass.driver import parse_compile  # noqa: E402

SRC = ROOT / "testdata" / "pvpass" / "sites.c"
INCLUDE = ROOT / "pvpass" / "include"


def _cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def make_tu(d: Path, headers: int, size: int) -> Path:
    inc = d / "include"
    inc.mkdir()
    for i in range(headers):
        lines = [f"#ifndef H{i}_H", f"#define H{i}_H"]
        n = 0
        while sum(map(len, lines)) < size:
            lines.append(f"extern int h{i}_decl_{n}(int a, unsigned long b, const char *c);")
            n += 1
        lines.append("#endif")
        (inc / f"h{i:03d}.h").write_text("\n".join(lines) + "\n")
    tu = d / "tu.c"
    tu.write_text("".join(f'#include "h{i:03d}.h"\n' for i in range(headers))
                  + SRC.read_text().replace('"ops.h"', f'"{SRC.parent}/ops.h"'))
    return tu


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--headers", type=int, default=700)
    p.add_argument("--size", type=int, default=8192)
    p.add_argument("--repeat", type=int, default=20)
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="pvpass-bench-cache.") as d:
        d = Path(d)
        tu = make_tu(d, a.headers, a.size)
        os.environ["PVPASS_CACHE_DIR"] = str(d / "cache")
        argv = ["gcc", "-O2", "-fno-pie", "-I", str(INCLUDE), "-I", str(d / "include"), "-c", str(tu),
                "-o", str(d / "tu.o")]
        # headers older than the racy window, so that their stat is recorded
        old = time.time_ns() - 10 * 10**9
        for h in (d / "include").iterdir():
            os.utime(h, ns=(old, old))
        time.sleep(2.1)                  # ctime (set by utime) out of the racy window too
        r = subprocess.run([sys.executable, "-m", "pvpass", "cc", "--", *argv], capture_output=True, text=True,
                           cwd=ROOT)
        assert r.returncode == 0, r.stderr
        c = parse_compile(argv)
        cache = buildcache.ResultCache()
        key = cache.key(c.compiler, c.cache_args(), c.sources[0], c.arch_name(), "records=None")
        entry = cache.get(key)
        assert entry is not None, "no cache entry"
        nh = len(entry["headers"])
        assert all(h[2] for h in entry["headers"]), "some header's stat was not recorded"

        def timed(fn, before=lambda: None) -> tuple[float, float]:
            cpu, wall = [], []
            for _ in range(a.repeat):
                before()
                c0, w0 = _cpu_self(), time.perf_counter()
                fn()
                cpu.append(_cpu_self() - c0)
                wall.append(time.perf_counter() - w0)
            return statistics.median(cpu), statistics.median(wall)

        def lookup():
            assert cache.get(key) is not None

        def forget_stats():
            """Every header's recorded stat made stale, as after a touch."""
            e = cache.get(key)
            e["headers"] = [[path, sha, [0, 0, 0, 0, 0]] for path, sha, _ in e["headers"]]
            e.pop("sum", None)
            cache._store(key, e)

        rows = [("lookup, every header's stat unchanged (stat only)", timed(lookup)),
                ("lookup, every header read and hashed again", timed(lookup, forget_stats))]
        lookup()                                      # the stats back

        def sub(cmd) -> tuple[float, float]:
            cpu, wall = [], []
            for _ in range(max(3, a.repeat // 4)):
                c0, w0 = _cpu_children(), time.perf_counter()
                r = subprocess.run(cmd, capture_output=True, cwd=ROOT)
                assert r.returncode == 0, r.stderr
                cpu.append(_cpu_children() - c0)
                wall.append(time.perf_counter() - w0)
            return statistics.median(cpu), statistics.median(wall)
        rows.append(("pvpass cc, a cache hit (gcc included)", sub([sys.executable, "-m", "pvpass", "cc", "--", *argv])))
        rows.append(("gcc alone", sub(argv)))
        print(f"TU: {nh} headers of ~{a.size} bytes ({a.headers} generated + system), "
              f"median of {a.repeat} runs (subprocesses: {max(3, a.repeat // 4)})")
        print(f"{'what':<52} {'CPU ms':>8} {'wall ms':>8}")
        for what, (cpu, wall) in rows:
            print(f"{what:<52} {cpu * 1000:>8.1f} {wall * 1000:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
