#!/usr/bin/env python3
"""What learning the code model costs a `pvpass cc` compile with sites
(run by hand, not by pytest): the compile of a pvpass-dialect source
through the Python path, result-cache miss, with this tree's pvpass and
with another tree's, beside plain gcc and beside the `gcc -dM -E` run that
asked the compiler for its default model on every such compile before;
then `code_model()` alone in each tree, in a process whose in-process
cache is cleared before each call (as each compile is a new process), its
CPU and its children's: what a compile pays for the model, resolved far
below the noise of whole compiles.

    git archive COMMIT | tar -x -C /tmp/before
    nice -n 10 .venv/bin/python tests/bench/code_model.py --before /tmp/before [-n 20] [--cflags "-O2"]

Each round writes a fresh copy of the source (a comment naming the round:
the result cache misses, the compiler-facts store does not) and runs every
case on it, interleaved, so the machine's load falls on all alike. CPU is
user+sys of the command and its children (RUSAGE_CHILDREN), wall the
command's; each figure is the median of -n rounds after one warm-up round.
"""
from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SITE_PACKAGES = next(p for p in sys.path if p.endswith("site-packages"))
sys.path.insert(0, str(ROOT / "tests" / "bench"))
from fastpath import timed  # noqa: E402  (one way to time a command)


def pvpass(tree: Path | None) -> list[str]:
    """The pvpass of `tree` (None: this one), with this venv's packages
    (as tests/bench/same_output.py runs it)."""
    if tree is None:
        return [sys.executable, "-m", "pvpass"]
    return [sys.executable, "-S", "-c", "import sys; sys.path[:0] = sys.argv[1:3]; del sys.argv[1:3]; "
            "from pvpass.cli import main; raise SystemExit(main(sys.argv[1:]))", str(tree), SITE_PACKAGES]


_ONE_CALL = """
import resource, statistics, sys, time
from pvpass.arch import get_arch
from pvpass.frontend import operands
arch, n, flags = get_arch("x86_64"), int(sys.argv[1]), tuple(sys.argv[2:])
cpu, wall = [], []
for _ in range(n + 1):
    for name in ("_code_model", "_default_model"):      # the tree before has the one, this tree the other
        if hasattr(operands, name):
            getattr(operands, name).cache_clear()
    r0, c0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.process_time(), time.perf_counter()
    operands.code_model(arch, flags, "gcc")
    r1, c1, t1 = resource.getrusage(resource.RUSAGE_CHILDREN), time.process_time(), time.perf_counter()
    cpu.append(c1 - c0 + r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    wall.append(t1 - t0)
print(statistics.median(cpu[1:]), statistics.median(wall[1:]))
"""


def one_call(tree: Path | None, n: int, flags: list[str], env: dict) -> tuple[float, float]:
    """Median CPU and wall of code_model() in a fresh in-process cache."""
    argv = pvpass(tree)[:-2] + ["-c", _ONE_CALL] if tree is None else \
        [sys.executable, "-S", "-c", "import sys; sys.path[:0] = sys.argv[1:3]; del sys.argv[1:3]; "
         "exec(sys.argv.pop(1))", str(tree), SITE_PACKAGES, _ONE_CALL]
    r = subprocess.run([*argv, str(n), *flags], env=env, capture_output=True, text=True, check=True)
    cpu, wall = map(float, r.stdout.split())
    return cpu, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, required=True, help="the other tree (a commit's pvpass/ and grammar/)")
    ap.add_argument("-n", type=int, default=20)
    ap.add_argument("--cflags", default="-O2")
    ap.add_argument("--source", type=Path, default=ROOT / "testdata" / "pvpass" / "sites.c")
    a = ap.parse_args()
    flags = shlex.split(a.cflags)
    text = a.source.read_text()
    with tempfile.TemporaryDirectory(prefix="pvpass-bench-") as d:
        d = Path(d)
        env = {**os.environ, "PVPASS_SERVER": "0"}
        envs = {name: {**env, "PVPASS_CACHE_DIR": str(d / f"cache-{name}")} for name in ("before", "after")}
        src = d / a.source.name
        inc = ["-I", str(ROOT / "pvpass" / "include"), "-I", str(a.source.parent)]
        cases = {
            "gcc": (["gcc", *flags, *inc, "-c", str(src), "-o", str(d / "g.o")],
                    env, None),
            "gcc -dM -E (the probe)": (["gcc", "-m64", *[f for f in flags if f.startswith(("-f", "-m", "-O"))],
                                        "-dM", "-E", "-x", "c", "-"], env, b""),
            "pvpass cc (before)": ([*pvpass(a.before), "cc", "--", "gcc", *flags, *inc, "-c", str(src),
                                    "-o", str(d / "b.o")], envs["before"], None),
            "pvpass cc (this tree)": ([*pvpass(None), "cc", "--", "gcc", *flags, *inc, "-c", str(src),
                                       "-o", str(d / "a.o")],
                                      envs["after"], None),
        }
        got: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
        for k in range(a.n + 1):
            src.write_text(f"/* round {k} */\n{text}")
            for name, (argv, e, stdin) in cases.items():
                t = timed(argv, e, stdin=stdin)
                if k:
                    got[name].append(t)
    med = {name: (statistics.median(c for c, _ in v), statistics.median(w for _, w in v)) for name, v in got.items()}
    print(f"{a.source.name} {a.cflags}, median of {a.n} (ms)")
    for name, (cpu, wall) in med.items():
        print(f"  {name:<26} CPU {1000 * cpu:7.1f}  wall {1000 * wall:7.1f}")
    b, t = med["pvpass cc (before)"], med["pvpass cc (this tree)"]
    print(f"  saving per compile         CPU {1000 * (b[0] - t[0]):7.1f}  wall {1000 * (b[1] - t[1]):7.1f}")
    with tempfile.TemporaryDirectory(prefix="pvpass-bench-") as d:
        env = {**os.environ, "PVPASS_CACHE_DIR": d}
        print(f"code_model() alone, median of {a.n} (ms, children included)")
        for name, tree in (("before", a.before), ("this tree", None)):
            cpu, wall = one_call(tree, a.n, flags, env)
            print(f"  {name:<26} CPU {1000 * cpu:7.2f}  wall {1000 * wall:7.2f}")


if __name__ == "__main__":
    main()
