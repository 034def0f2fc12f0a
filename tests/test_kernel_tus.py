"""Opt-in: real preprocessed Linux 6.1 translation units.

    tests/bench/kernel_tus.sh out/kernel
    PVPASS_KERNEL_TUS=out/kernel/tus .venv/bin/python -m pytest tests/test_kernel_tus.py

For each TU: every entry gcc writes to .parainstructions is a site pvpass
found; lint reports no errors on the kernel's own sites; and a copy of the
TU with %r11 dropped from one site's clobber list is caught."""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from pvpass.link.elfobj import ElfObject
from pvpass.link.tableread import read_entries

from conftest import run_pvpass

TUS = sorted(Path(os.environ["PVPASS_KERNEL_TUS"]).glob("*.i")) if os.environ.get("PVPASS_KERNEL_TUS") else []
pytestmark = pytest.mark.skipif(not TUS, reason="set PVPASS_KERNEL_TUS (see tests/bench/kernel_tus.sh)")


def flags_of(tu: Path) -> list[str]:
    f = tu.with_suffix(".flags")
    return f.read_text().split() if f.exists() else ["-O2"]


@pytest.mark.parametrize("tu", TUS, ids=lambda p: p.stem)
def test_scan_matches_gcc(tmp, tu):
    obj = tmp / "k.o"
    subprocess.run(["gcc", *flags_of(tu), "-c", str(tu), "-o", str(obj)], check=True)
    r = run_pvpass("scan", str(tu))
    assert r.returncode == 0, r.stderr
    ours = {(s["type"], s["length"], s["mask"]) for s in json.loads(r.stdout)["sites"]}
    theirs = {(e.type, e.length, e.clobbers) for e in read_entries(ElfObject.read(str(obj)))}
    assert theirs and theirs <= ours


@pytest.mark.parametrize("tu", TUS, ids=lambda p: p.stem)
def test_lint_clean_and_catches_a_dropped_register(tmp, tu):
    r = run_pvpass("lint", "--format", "json", str(tu))
    diags = json.loads(r.stdout)["diagnostics"]
    assert r.returncode == 0 and not [d for d in diags if d["level"] == "error"], r.stderr
    text = tu.read_text()
    m = re.search(r'"r10", "r11"\s*\)', text)
    assert m
    broken = tmp / tu.name
    broken.write_text(text[:m.start()] + '"r10")' + text[m.end():])
    r = run_pvpass("lint", "--format", "json", str(broken))
    errs = [d for d in json.loads(r.stdout)["diagnostics"] if d["rule"] == "PV002" and d["level"] == "error"]
    assert r.returncode == 1 and len(errs) == 1 and "%r11" in errs[0]["message"]
