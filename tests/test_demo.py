"""The demo program: built with `make CC="pvpass cc -- gcc"`, linked with the
linker-script fragment, patched at run time for each backend; the result
must equal the unpatched run."""
from __future__ import annotations

import subprocess

from pvpass.arch import get_arch
from pvpass.frontend.scan import scan
from pvpass.link.copies import find_copies
from pvpass.link.elfobj import ElfObject
from pvpass.link.tableread import read_entries

from conftest import ROOT, elflint, make_example, run_pvpass


def test_demo_builds_patches_and_agrees():
    d = make_example("demo", "demo")
    assert "warning" not in (d / "make.log").read_text().lower()
    # make -j2 through the fast path: of its 3 `pvpass cc` commands only demo.c's
    # (sites: the table) starts Python; pvpass_rt.c's and the link's do not
    assert "python starts: 1\n" in (d / "make.log").read_text()
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


def test_demo_patched_ahead_of_time(tmp):
    d = make_example("demo", "demo")
    rt = ["--", f"-I{ROOT / 'pvpass/runtime'}"]
    want = subprocess.run([str(d / "demo"), "none", "5000"], capture_output=True, text=True).stdout
    ld = ROOT / "pvpass/runtime/pvpass.ld"
    for backend in ("native_ops", "c_ops"):
        out = tmp / f"aot_{backend}.o"
        r = run_pvpass("patch", str(d / "demo.o"), "--source", str(d / "demo.c"), "--backend", backend,
                       "-o", str(out), *rt)
        assert r.returncode == 0, r.stderr
        assert "No errors" in elflint(out)
        # no indirect call through pv_ops is left in the patched text
        res = scan(str(d / "demo.c"), get_arch("x86_64"), rt[1:])
        assert find_copies(ElfObject.read(str(out)), res.inventory, res.sources) == ([], [])
        exe = tmp / f"aot_{backend}"
        subprocess.run(["gcc", "-no-pie", "-o", str(exe), str(out), str(d / "pvpass_rt.o"), f"-Wl,-T,{ld}"],
                       check=True)
        got = subprocess.run([str(exe), "none", "5000"], capture_output=True, text=True).stdout
        assert got == want
    r = run_pvpass("show", str(d / "demo.o"), "--source", str(d / "demo.c"), "--backend", "c_ops", *rt)
    assert r.returncode == 0 and "after:  call __pvpass_tramp_c_save_fl_1fe" in r.stdout
