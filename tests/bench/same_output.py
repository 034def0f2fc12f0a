#!/usr/bin/env python3
"""`pvpass cc` and `pvpass scan` of this tree against another commit's, on
the same inputs: the objects, the exit codes, stderr and `scan --format
json` must be byte-identical (a speed change must not change a result;
run by hand, not by pytest).

    git archive COMMIT | tar -x -C /tmp/before
    nice -n 10 .venv/bin/python tests/bench/same_output.py --before /tmp/before [--scale] [EXTRA.c ...]

Inputs: every testdata/ and example source, the EXTRA sources, and with
--scale tests/test_scale.py's shapes (2,000 sites in one function, 2,000
one-site functions, 5,000 sites ten to a function). Each goes through
`pvpass cc -- gcc -fno-pie` at -O0, -O2 and -m32 -O2 (cache off) and
`pvpass scan --format json`. Prints each difference and exits 1 if any.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from test_scale import source  # noqa: E402

FLAGS = (["-O0"], ["-O2"], ["-m32", "-O2"])
SITE_PACKAGES = next(p for p in sys.path if p.endswith("site-packages"))


def pvpass(tree: Path | None) -> list[str]:
    """The pvpass of `tree` (None: this one), with this venv's packages."""
    if tree is None:
        return [sys.executable, "-m", "pvpass"]
    return [sys.executable, "-S", "-c", "import sys; sys.path[:0] = sys.argv[1:3]; del sys.argv[1:3]; "
            "from pvpass.cli import main; raise SystemExit(main(sys.argv[1:]))", str(tree), SITE_PACKAGES]


def run(cmd: list[str], obj: Path | None) -> tuple[int, bytes, bytes, bytes]:
    """(exit code, stdout, stderr, the object's bytes or b"")."""
    if obj is not None and obj.exists():
        obj.unlink()
    r = subprocess.run(cmd, capture_output=True, cwd=ROOT, env={**os.environ, "PVPASS_CACHE": "0"})
    return r.returncode, r.stdout, r.stderr, obj.read_bytes() if obj is not None and obj.exists() else b""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, required=True, help="a tree of the other commit")
    ap.add_argument("--scale", action="store_true", help="tests/test_scale.py's shapes too")
    ap.add_argument("extra", nargs="*", type=Path)
    a = ap.parse_args()
    inc = ROOT / "pvpass/include"
    sources = sorted(ROOT.glob("testdata/**/*.c")) + sorted(ROOT.glob("pvpass/examples/**/*.c"))
    sources += [p.resolve() for p in a.extra]
    differ = compared = 0
    with tempfile.TemporaryDirectory() as d:
        if a.scale:
            for name, sites, per in (("one", 2000, 2000), ("many", 2000, 1), ("spread", 5000, 10)):
                p = Path(d) / f"{name}.c"
                p.write_text(source(sites, per))
                sources.append(p)
        obj = Path(d) / "out.o"
        for src in sources:
            cmds = [(["cc", "--", "gcc", "-fno-pie", *f, f"-I{inc}", "-c", str(src), "-o", str(obj)], obj)
                    for f in FLAGS]
            cmds.append((["scan", str(src), "--format", "json", "--", f"-I{inc}"], None))
            for argv, o in cmds:
                before = run(pvpass(a.before) + argv, o)
                after = run(pvpass(None) + argv, o)
                compared += 1
                if before != after:
                    differ += 1
                    what = [n for n, x, y in zip(("exit", "stdout", "stderr", "object"), before, after) if x != y]
                    print(f"DIFFERS ({', '.join(what)}): pvpass {' '.join(argv)}", flush=True)
                    if "stderr" in what:
                        print(f"  before: {before[2][-600:]!r}\n  after:  {after[2][-600:]!r}")
    print(f"{compared} runs compared over {len(sources)} sources: {differ} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
