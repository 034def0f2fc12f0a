#!/usr/bin/env python3
"""`pvpass lint -p` over a kernel build's TUs against compiling them (run by
hand, not by pytest):

    tests/bench/kernel_build.py /work/kbench          # leaves bench-plain/ and bench-plain.times
    python3 /work/kbench/linux-source-6.1/scripts/clang-tools/gen_compile_commands.py \\
        -d /work/kbench/bench-plain -o /work/kbench/bench-plain/compile_commands.json
    .venv/bin/python tests/bench/lint_vs_build.py /work/kbench/bench-plain \\
        /work/kbench/bench-plain.times [-j 2] [--runs 2] [--pvpass CMD ...] [--no-gate] [PATH...]

Runs `pvpass lint -j N -p BUILD_DIR [PATH...]` with an empty parse cache
(cold), then --runs - 1 more times with the cache the first run left (warm),
and prints each run's CPU (user+sys, children included: the preprocessor
runs) and wall beside the CPU and wall the plain build's compiles of the same
TUs took (from the per-compile log kernel_build.py writes through
tests/bench/timecc), their ratio, and lint's summary line. With several
--pvpass commands (two checkouts, say), each round runs each of them in
turn, each with a cache of its own, so that they share the machine's load. The compile database's commands may start
with timecc (kernel_build.py's CC); it is dropped from a copy.

--no-gate passes --no-gate to lint: every TU linted in full, none decided
from its object (docs/lint.md, "The object gate").

The compile log may come from a build under another load: --compile-now
compiles the same TUs again in each round (their database commands, one
at a time, into a temporary directory, without the dependency-file
options that would write into the build tree) and prints that CPU and
wall too, with each lint run's ratio to it.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PVPASS = Path(sys.executable).with_name("pvpass")


def compile_cpu(times: Path) -> dict[str, tuple[float, float]]:
    """Object (relative to the build dir) -> (CPU, wall) seconds of its compile."""
    out = {}
    for line in times.read_text().splitlines():
        p = line.split()
        if len(p) == 4:
            out[p[3].removeprefix("./")] = (float(p[0]) + float(p[1]), float(p[2]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build", type=Path)
    ap.add_argument("times", type=Path)
    ap.add_argument("paths", nargs="*")
    ap.add_argument("-j", type=int, default=os.cpu_count())
    ap.add_argument("--runs", type=int, default=1, help="the first cold, the others warm")
    ap.add_argument("--pvpass", action="append", help=f"the pvpass to run (repeatable; default {PVPASS})")
    ap.add_argument("--compile-now", action="store_true", help="compile the TUs again in each round")
    ap.add_argument("--no-gate", action="store_true", help="lint every TU in full")
    a = ap.parse_intermixed_args()
    entries = json.loads((a.build / "compile_commands.json").read_text())
    cpu = compile_cpu(a.times)
    wanted = tuple(str(Path(p).resolve()) for p in a.paths)
    gcc_cpu, gcc_wall, n, missing = 0.0, 0.0, 0, 0
    commands = []
    with tempfile.TemporaryDirectory(prefix="pvlint.") as tmp:
        db = Path(tmp) / "db"
        db.mkdir()
        for e in entries:
            e["command"] = re.sub(r"^\S*timecc\s+", "", e.get("command", ""))
            if wanted and not e["file"].startswith(wanted):
                continue
            commands.append((e.get("directory", str(a.build)), e["command"]))
            m = re.search(r"\s-o\s+(\S+)", e["command"])
            obj = m.group(1).removeprefix("./") if m else None
            if obj in cpu:
                gcc_cpu += cpu[obj][0]
                gcc_wall += cpu[obj][1]
                n += 1
            else:
                missing += 1
        (db / "compile_commands.json").write_text(json.dumps(entries))
        print(f"TUs linted with a compile logged: {n} (without: {missing})")
        print(f"gcc    CPU {gcc_cpu:8.1f}s  wall {gcc_wall:7.1f}s  (the plain build's compiles of those TUs)")
        for run in range(a.runs):
            now = compile_now(commands, Path(tmp)) if a.compile_now else None
            if now:
                print(f"gcc now  CPU {now[0]:6.1f}s  wall {now[1]:7.1f}s  (the same {len(commands)} TUs compiled "
                      f"again, one at a time: {now[0] / gcc_cpu:.2f}x the log's CPU)")
            for k, pvpass in enumerate(a.pvpass or [str(PVPASS)]):
                env = dict(os.environ, PVPASS_CACHE_DIR=str(Path(tmp) / f"cache{k}"))
                env.pop("PYTHONDONTWRITEBYTECODE", None)
                r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.perf_counter()
                p = subprocess.run([pvpass, "lint", "-j", str(a.j), "-p", str(db),
                                    *(["--no-gate"] if a.no_gate else []), *a.paths],
                                   cwd=a.build, env=env, capture_output=True, text=True)
                wall = time.perf_counter() - t0
                r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                lint_cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
                summary = [l for l in p.stderr.splitlines() if l.startswith("pvpass lint:")]
                ratio = f"lint/compile CPU {lint_cpu / gcc_cpu:.2f}x" if gcc_cpu else "no compile times matched"
                if now:
                    ratio += f", {lint_cpu / now[0]:.2f}x of now's"
                print(f"lint ({'cold' if run == 0 else 'warm'}) {pvpass if a.pvpass else ''}  CPU {lint_cpu:8.1f}s  "
                      f"wall {wall:7.1f}s  exit {p.returncode}  {ratio}")
                print("  " + (summary[-1] if summary else (p.stderr.strip()[-500:] or "pvpass lint: no findings")))


def compile_now(commands: list[tuple[str, str]], tmp: Path) -> tuple[float, float]:
    """(CPU with children, wall) of compiling each command again, its
    object written under `tmp` and no dependency file (-MD, -Wp,-MMD,...)."""
    import shlex
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    for i, (cwd, command) in enumerate(commands):
        args, out, skip = [], [], False
        for x in shlex.split(command):
            if skip:
                skip = False
            elif x in ("-o", "-MF", "-MT", "-MQ"):
                skip = True
            elif not (x.startswith(("-Wp,-MD", "-Wp,-MMD")) or x in ("-MD", "-MMD")):
                args.append(x)
        subprocess.run(args + ["-o", str(tmp / f"now{i}.o")], cwd=cwd, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), time.perf_counter() - t0


if __name__ == "__main__":
    main()
