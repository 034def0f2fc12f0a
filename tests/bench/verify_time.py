#!/usr/bin/env python3
"""Time of `pvpass verify` on the demo and the systems example (run by
hand, to hold a change to verify against the 2x budget of issue 17):

    .venv/bin/python tests/bench/verify_time.py [-n 3] [--root DIR]

Builds each example once with its Makefile (`CC="pvpass cc -- gcc"`) from
the worktree at --root (default: this one), then runs `pvpass verify` on
each artifact n times in a subprocess and prints the median CPU (user+sys,
children) and wall time per artifact and their sum. The systems example
is verified with its VMI ROM mapped, both arches. Where the tree's verify
takes `--source` (issue 17), each artifact is verified a second time with
its source, as the full check runs.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VMI_ROM_BASE = "0x50000000"       # pvpass/examples/systems/vmi_rom.h


def timed(argv: list[str], env: dict, cwd: Path) -> tuple[float, float, int]:
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(argv, env=env, capture_output=True, cwd=cwd)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), wall, p.returncode


def build(root: Path, tmp: Path, env: dict) -> list[tuple[str, list[str]]]:
    pv = f"{sys.executable} -m pvpass"
    out = []
    d = tmp / "demo"
    shutil.copytree(root / "pvpass/examples/demo", d)
    subprocess.run(["make", "-C", str(d), f"PVPASS={pv}", f"CC={pv} cc -- gcc"], check=True,
                   capture_output=True, env=env, cwd=root)
    src = ["--source", str(d / "demo.c"), "--", f"-I{root / 'pvpass/runtime'}"]
    out += [("demo.o", [str(d / "demo.o")], src), ("demo", [str(d / "demo")], src)]
    for arch in ("x86_64", "i386"):
        d = tmp / f"systems-{arch}"
        shutil.copytree(root / "pvpass/examples/systems", d)
        subprocess.run(["make", "-C", str(d), f"PVPASS={pv}", f"CC={pv} cc -- gcc", f"ARCH={arch}",
                        "systems", "vmi_rom.bin"], check=True, capture_output=True, env=env, cwd=root)
        rom = ["--map", f"{d / 'vmi_rom.bin'}@{VMI_ROM_BASE}"]
        src = ["--source", str(d / "systems.c"), "--", f"-I{root / 'pvpass/runtime'}"]
        out += [(f"systems.o ({arch})", [str(d / "systems.o"), *rom], src),
                (f"systems ({arch})", [str(d / "systems"), *rom], src)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=3)
    ap.add_argument("--root", type=Path, default=ROOT, help="the worktree whose pvpass runs")
    a = ap.parse_args()
    # `python -m` puts the working directory first on the path: run in the tree
    env = dict(os.environ, PYTHONPATH=str(a.root))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.TemporaryDirectory() as t:
        env["PVPASS_CACHE_DIR"] = os.path.join(t, "cache")
        arts = build(a.root, Path(t), env)
        helps = subprocess.run([sys.executable, "-m", "pvpass", "verify", "--help"], env=env,
                               capture_output=True, text=True, cwd=a.root).stdout
        for with_source in (False, True) if "--source" in helps else (False,):
            total_cpu = total_wall = 0.0
            print(f"pvpass verify{' --source' if with_source else ''}, median of {a.n} runs ({a.root}):")
            for name, args, src in arts:
                argv = [sys.executable, "-m", "pvpass", "verify", *args, *(src if with_source else [])]
                runs = [timed(argv, env, a.root) for _ in range(a.n)]
                c = statistics.median(r[0] for r in runs)
                w = statistics.median(r[1] for r in runs)
                total_cpu, total_wall = total_cpu + c, total_wall + w
                print(f"  {name:22} CPU {c:6.2f} s  wall {w:6.2f} s  exit {runs[0][2]}")
            print(f"  {'total':22} CPU {total_cpu:6.2f} s  wall {total_wall:6.2f} s")


if __name__ == "__main__":
    main()
