#!/usr/bin/env python3
"""Where lint's time goes per TU (run by hand): CPU (user+sys, children
included) of each stage of `pvpass lint` on the TUs of a compile database,
in one process, in the order given, so later TUs find the headers the
earlier ones met (as a lint worker does):

    .venv/bin/python tests/bench/lint_stages.py BUILD_DIR FILE.c...

Stages: the preprocessor run (gcc -E), splitting the text into chunks, the
scan (which splits again: its figure includes a split), the checks, the
reach computation. As lint does, a TU whose object the build made from
that text skips the parse check of its functions. A compile database whose
commands start with tests/bench/timecc has it dropped.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import tempfile
from pathlib import Path

from pvpass.arch import get_arch
from pvpass.frontend import chunks
from pvpass.frontend.preprocess import preprocess
from pvpass.frontend.scan import scan_reported
from pvpass.lint.built import compiled_by_build
from pvpass.lint.checks import check_all
from pvpass.lint.reach import unreachable
from pvpass.lint.runner import from_compile_db


def cpu() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build", type=Path)
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    entries = json.loads((a.build / "compile_commands.json").read_text())
    for e in entries:
        e["command"] = re.sub(r"^\S*timecc\s+", "", e.get("command", ""))
    arch = get_arch("x86_64")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "compile_commands.json").write_text(json.dumps(entries))
        jobs = {f: (flags, d, cc, obj) for f, flags, d, cc, obj, _dep in from_compile_db(tmp, a.files)}
    os.chdir(a.build)
    for f in a.files:
        flags, d, cc, obj = jobs[str(Path(f).resolve())] if str(Path(f).resolve()) in jobs else jobs[f]
        os.chdir(d)
        t = [cpu()]
        pp = preprocess(f, arch, flags, cc)
        t.append(cpu())
        chunks.split(pp.text)
        t.append(cpu())
        res = scan_reported(pp, arch, flags, report=False, compiled=compiled_by_build(obj, pp), cc=cc)
        t.append(cpu())
        diags = check_all(res, arch)
        t.append(cpu())
        unreachable(res, diags)
        t.append(cpu())
        names = ("preprocess", "split", "scan", "checks", "reach")
        print(f"{os.path.basename(f)}: {len(pp.text) / 1e6:.1f} MB, {len(res.sources)} sites; CPU "
              + ", ".join(f"{n} {t[i + 1] - t[i]:.2f}s" for i, n in enumerate(names)))


if __name__ == "__main__":
    main()
