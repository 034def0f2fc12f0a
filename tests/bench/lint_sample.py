#!/usr/bin/env python3
"""What a cold `pvpass lint -p` can cost per TU, on a random sample of a
compile database's TUs (run by hand, not by pytest):

    .venv/bin/python tests/bench/lint_sample.py /work/kbench/bench-plain \\
        /work/kbench/bench-plain.times [--sample 200] [--seed 19]

For each TU of the sample with a logged compile (the per-compile log
kernel_build.py writes through tests/bench/timecc): the CPU (user+sys,
children included) of lint's preprocessor run (gcc -E with lint's flags
alone, and with its output read through the pipe into lint's text), of
the object gate's look at the TU (pvpass/lint/gate.py: its object,
dependency file and headers; the headers' marks are remembered across the
sample, as in a lint worker), and whether the gate could decide it (before the ops names are learned: an
object that names pv_ops still needs the full lint). Prints the sums
beside the logged compiles' CPU. A compile database whose commands start
with tests/bench/timecc has it dropped.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import tempfile
from pathlib import Path

from pvpass.arch import get_arch
from pvpass.frontend.preprocess import preprocess
from pvpass.lint import gate
from pvpass.lint.runner import from_compile_db


def cpu(who=None) -> float:
    if who is not None:
        r = resource.getrusage(who)
        return r.ru_utime + r.ru_stime
    return cpu(resource.RUSAGE_SELF) + cpu(resource.RUSAGE_CHILDREN)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build", type=Path)
    ap.add_argument("times", type=Path)
    ap.add_argument("--sample", type=int, default=200)
    ap.add_argument("--seed", type=int, default=19)
    a = ap.parse_args()
    entries = json.loads((a.build / "compile_commands.json").read_text())
    for e in entries:
        e["command"] = re.sub(r"^\S*timecc\s+", "", e.get("command", ""))
    logged = {}
    for line in a.times.read_text().splitlines():
        p = line.split()
        if len(p) == 4:
            logged[p[3].removeprefix("./")] = float(p[0]) + float(p[1])
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "compile_commands.json").write_text(json.dumps(entries))
        jobs = from_compile_db(tmp)
    arch = get_arch("x86_64")
    n, compiled, pre, gcc, looked, open_ = 0, 0.0, 0.0, 0.0, 0.0, 0
    for f, flags, d, cc, obj, dep in random.Random(a.seed).sample(jobs, a.sample):
        c = logged.get(os.path.relpath(obj, d)) if obj else None
        if c is None:
            continue
        os.chdir(d)
        t0, g0 = cpu(), cpu(resource.RUSAGE_CHILDREN)
        preprocess(f, arch, flags, cc)
        t1 = cpu()
        gcc += cpu(resource.RUSAGE_CHILDREN) - g0
        facts = gate.facts((f, arch.name, tuple(flags), (), d, cc, obj, dep))
        t2 = cpu()
        n += 1
        compiled += c
        pre += t1 - t0
        looked += t2 - t1
        open_ += not facts.why and "pv_ops" not in {s.partition(".")[0] for s in facts.symbols}
    print(f"TUs of the sample with a compile logged: {n} (--sample {a.sample} --seed {a.seed})")
    print(f"compile (log)  CPU {compiled:7.1f}s  {1000 * compiled / n:5.0f} ms a TU")
    print(f"gcc -E alone   CPU {gcc:7.1f}s  {1000 * gcc / n:5.0f} ms a TU  {gcc / compiled:.2f}x the compile")
    print(f"preprocess()   CPU {pre:7.1f}s  {1000 * pre / n:5.0f} ms a TU  {pre / compiled:.2f}x the compile "
          f"(gcc -E, reading its output, the text)")
    print(f"gate's look    CPU {looked:7.1f}s  {1000 * looked / n:5.1f} ms a TU  {looked / compiled:.3f}x the compile")
    print(f"decided from the object (no pv_ops symbol): {open_} of {n}")


if __name__ == "__main__":
    main()
