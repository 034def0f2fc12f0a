#!/usr/bin/env python3
"""Where `pvpass cc` spends its CPU, stage by stage (run by hand, not by
pytest): the compile runs in this process with a CPU clock around each
stage's function (its own time, stages inside it apart), the compiler and
preprocessor runs counted from the children's rusage, the rest as "other".

    nice -n 10 .venv/bin/python tests/bench/cc_stages.py [--sites 10000] [--per-function N] [--cflags "-O2 -fno-pie"]

The source is tests/test_scale.py's generator (N sites per function, all in
one by default); the cache is off. Each row: CPU seconds and microseconds
per site.

Under PYTHONDONTWRITEBYTECODE the script compiles pvpass's bytecode and
runs itself again without it, so the imports are those of an installed
pvpass (pip compiles its modules): compiled from source on each run, they
cost ~0.1 s more.
"""
from __future__ import annotations

import argparse
import functools
import importlib
import os
import resource
import shlex
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from test_scale import source  # noqa: E402

# (module, function, stage): each stage's own time, stages inside it apart
STAGES = [
    ("pvpass.driver", "_preprocess", "preprocessed text read"),
    ("pvpass.frontend.chunks", "split", "top-level chunks"),
    ("pvpass.frontend.cparse", "ChunkParser.asm", "asm statements read"),
    ("pvpass.frontend.cparse", "ChunkParser.parse", "whole chunks parsed (pycparser)"),
    ("pvpass.frontend.stmtsites", "StatementSites._parse", "function heads + new statements parsed"),
    ("pvpass.frontend.sites", "SiteBuilder.sites_of", "new statements analysed (template, encode)"),
    ("pvpass.frontend.stmtsites", "StatementSites.function_sites", "sites of known statements"),
    ("pvpass.frontend.scan", "_annotations", "annotations"),
    ("pvpass.frontend.scan", "scan_reported", "rest of the front end"),
    ("pvpass.link.regcalls", "site_losses", "register-reached calls"),
    ("pvpass.link.step", "name_losses", "their warnings"),
    ("pvpass.link.copies", "find_copies", "copies matched"),
    ("pvpass.link.step", "_table_section", "table"),
    ("pvpass.link.step", "_stub_sections", "patch records, stubs"),
    ("pvpass.link.step", "plan_link", "rest of the link step"),
    ("pvpass.driver", "_add_sections", "object written"),
]


def _wrap(spent: dict, stack: list, modname: str, qual: str, label: str) -> None:
    owner = importlib.import_module(modname)
    *path, name = qual.split(".")
    for p in path:
        owner = getattr(owner, p)
    f = getattr(owner, name)

    @functools.wraps(f)
    def timed(*a, **k):
        stack.append(0.0)
        t = time.process_time()
        try:
            return f(*a, **k)
        finally:
            d = time.process_time() - t
            inner = stack.pop()
            spent[label] = spent.get(label, 0.0) + d - inner
            if stack:
                stack[-1] += d
    setattr(owner, name, timed)
    for mod in list(sys.modules.values()):     # `from .copies import find_copies` took it before
        if getattr(mod, "__name__", "").startswith("pvpass") and getattr(mod, name, None) is f:
            setattr(mod, name, timed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=int, default=10000)
    ap.add_argument("--per-function", type=int, default=0, help="sites per function (0: all in one)")
    ap.add_argument("--cflags", default="-O2 -fno-pie")
    a = ap.parse_args()
    if sys.flags.dont_write_bytecode:        # as installed: run again from cached bytecode
        import compileall
        import subprocess
        compileall.compile_dir(str(ROOT / "pvpass"), quiet=1)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        sys.exit(subprocess.run([sys.executable, *sys.argv], env=env).returncode)
    os.environ["PVPASS_CACHE"] = "0"
    import pvpass.cli
    import pvpass.link.step               # noqa: F401  (every stage's module, before wrapping)
    import pvpass.frontend.stmtsites      # noqa: F401
    spent: dict[str, float] = {}
    stack: list[float] = []
    for m, q, label in STAGES:
        _wrap(spent, stack, m, q, label)
    start = time.process_time()             # the interpreter, the imports of every stage
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "s.c"
        src.write_text(source(a.sites, a.per_function or a.sites))
        argv = ["cc", "--", "gcc", *shlex.split(a.cflags), f"-I{ROOT / 'pvpass/include'}", "-c", str(src),
                "-o", str(Path(d) / "s.o")]
        t0 = time.process_time()
        err = os.dup(2)
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)            # the warnings: counted, not shown
            try:
                rc = pvpass.cli.main(argv)
            finally:
                os.dup2(err, 2)
        total = time.process_time() - t0
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    children = ru.ru_utime + ru.ru_stime
    rows = [("python start, imports", start),
            ("compiler and preprocessor (children)", children)]
    rows += list(spent.items())
    rows.append(("other (driver, result cache, ELF reads)", total - sum(spent.values())))
    print(f"pvpass cc, {a.sites} sites, {a.per_function or a.sites} per function, {a.cflags}: exit {rc}")
    print(f"{'stage':42} {'CPU s':>7} {'us/site':>8}")
    for label, s in rows:
        print(f"{label:42} {s:7.3f} {s * 1e6 / a.sites:8.1f}")
    whole = start + total + children
    print(f"{'total':42} {whole:7.3f} {whole * 1e6 / a.sites:8.1f}")


if __name__ == "__main__":
    main()
