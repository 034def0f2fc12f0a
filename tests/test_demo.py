"""The demo program: built with `make CC="pvpass cc -- gcc"`, linked with the
linker-script fragment, patched at run time for each backend; the result
must equal the unpatched run."""
from __future__ import annotations

import shutil
import subprocess
import sys

from pvpass.link.elfobj import ElfObject
from pvpass.link.tableread import read_entries

from conftest import ROOT, run_pvpass


def test_demo_builds_patches_and_agrees(tmp):
    shutil.copytree(ROOT / "pvpass/examples/demo", tmp / "demo")
    d = tmp / "demo"
    pv = f"{sys.executable} -m pvpass"
    r = subprocess.run(["make", "-j2", "-C", str(d), f"PVPASS={pv}", f"CC={pv} cc -- gcc"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "warning" not in (r.stdout + r.stderr).lower()
    entries = read_entries(ElfObject.read(str(d / "demo.o")))
    assert len(entries) == 7          # mix is inlined twice? no: one copy per use
    results = {}
    for backend in ("none", "native_ops", "c_ops"):
        out = subprocess.run([str(d / "demo"), backend, "20000"], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        results[backend] = lines[-1]
        if backend != "none":
            assert lines[0] == f"patched 7 sites for {backend} (0 left as indirect calls)"
    assert len(set(results.values())) == 1 and results["none"].startswith("result 0x")
    # the linked program's table is readable too
    r = run_pvpass("table", str(d / "demo"))
    assert r.returncode == 0 and "7 sites" in r.stdout, r.stderr
