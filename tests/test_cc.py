"""`pvpass cc -- gcc ...`: compile + link step for -c, everything else passes
through; compiler diagnostics and exit codes are the compiler's."""
from __future__ import annotations

import subprocess

from pvpass.link.elfobj import ElfObject
from pvpass.link.tableread import read_entries
from pvpass import table

from conftest import INCLUDE, TESTDATA, run_pvpass


def test_compile_runs_the_link_step(tmp):
    out = tmp / "s.o"
    r = run_pvpass("cc", "--", "gcc", "-O2", "-I", str(INCLUDE), "-c", str(TESTDATA / "pvpass/sites.c"), "-o", str(out))
    assert r.returncode == 0, r.stderr
    o = ElfObject.read(str(out))
    assert read_entries(o) and o.section(table.PATCH_SECTION) is not None


def test_no_sites_means_the_compilers_object(tmp):
    src = tmp / "plain.c"
    src.write_text("int f(int x) { return x * 3; }\n")
    r = run_pvpass("cc", "--", "gcc", "-O2", "-c", str(src), "-o", str(tmp / "a.o"))
    assert r.returncode == 0
    subprocess.run(["gcc", "-O2", "-c", str(src), "-o", str(tmp / "b.o")], check=True)
    assert (tmp / "a.o").read_bytes() == (tmp / "b.o").read_bytes()


def test_pass_through(tmp):
    src = TESTDATA / "pvpass/sites.c"
    r = run_pvpass("cc", "--", "gcc", "-E", "-I", str(INCLUDE), str(src))
    assert r.returncode == 0 and "pvpass: site" in r.stdout
    r = run_pvpass("cc", "--", "gcc", "-M", "-I", str(INCLUDE), str(src))
    assert r.returncode == 0 and "ops.h" in r.stdout
    bad = tmp / "bad.c"
    bad.write_text("int f( {\n")
    r = run_pvpass("cc", "--", "gcc", "-c", str(bad), "-o", str(tmp / "bad.o"))
    assert r.returncode == 1 and "error:" in r.stderr and not (tmp / "bad.o").exists()


def test_pvpass_error_removes_the_object(tmp):
    src = tmp / "u.c"
    src.write_text((TESTDATA / "bad/unknown_op.c").read_text().replace("../pvpass/ops.h",
                                                                        str(TESTDATA / "pvpass/ops.h")))
    r = run_pvpass("cc", "--", "gcc", "-I", str(INCLUDE), "-c", str(src), "-o", str(tmp / "u.o"))
    assert r.returncode == 2 and "[PV005]" in r.stderr and not (tmp / "u.o").exists()


def test_lto_sites_are_named_not_silently_lost(tmp):
    """-flto leaves GIMPLE in the object and makes the code at link time, so
    pvpass cannot table the sites: the object is gcc's and a warning says
    so. The kernel dialect gets no warning: its table comes from the asm,
    which the link-time compile emits."""
    src = str(TESTDATA / "pvpass/sites.c")
    env = {"PVPASS_CACHE": "0"}
    r = run_pvpass("cc", "--", "gcc", "-O2", "-flto", "-I", str(INCLUDE), "-c", src, "-o", str(tmp / "a.o"),
                   env=env)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("warning: -flto: the 9 pvpass sites of this source cannot be tabled") == 1, r.stderr
    assert "-fno-lto" in r.stderr, r.stderr
    assert r.stderr.startswith(f"{src}: warning:"), r.stderr
    names = [s.name for s in ElfObject.read(str(tmp / "a.o")).sections]
    assert any(n.startswith(".gnu.lto_") for n in names) and not any("pvpass" in n for n in names), names
    r = run_pvpass("cc", "--", "gcc", "-m32", "-fno-pie", "-O2", "-flto", "-c", str(TESTDATA / "kernel/k61.c"),
                   "-o", str(tmp / "k.o"), env=env)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_response_files(tmp):
    """`gcc @FILE` (CMake and ninja on long command lines): the compile in
    FILE gets its table as if written out, nested files and quoting too."""
    src = tmp / "dir with space" / "sites.c"
    src.parent.mkdir()
    src.write_text((TESTDATA / "pvpass/sites.c").read_text())
    (tmp / "inner.rsp").write_text(f'-I "{INCLUDE}" -I "{TESTDATA / "pvpass"}"\n')
    (tmp / "outer.rsp").write_text(f'-O2 @{tmp / "inner.rsp"} -c "{src}"\n-o {tmp / "r.o"}\n')
    r = run_pvpass("cc", "--", "gcc", f"@{tmp / 'outer.rsp'}", env={"PVPASS_CACHE": "0"})
    assert r.returncode == 0, r.stderr
    r = run_pvpass("cc", "--", "gcc", "-O2", "-I", str(INCLUDE), "-I", str(TESTDATA / "pvpass"), "-c", str(src),
                   "-o", str(tmp / "w.o"), env={"PVPASS_CACHE": "0"})
    assert r.returncode == 0, r.stderr
    assert read_entries(ElfObject.read(str(tmp / "r.o")))
    assert (tmp / "r.o").read_bytes() == (tmp / "w.o").read_bytes()


def test_x32_object_is_left_as_the_compiler_made_it(tmp):
    """pvpass tables i386 and x86-64 objects: an x32 compile (gcc -mx32) of
    a source with sites keeps gcc's object and says why in one warning; one
    without sites gets no word. `pvpass table` on it is still an error."""
    src = str(TESTDATA / "pvpass/sites.c")
    env = {"PVPASS_CACHE": "0"}
    r = run_pvpass("cc", "--", "gcc", "-mx32", "-O2", "-I", str(INCLUDE), "-c", src, "-o", str(tmp / "a.o"),
                   env=env)
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith(f"{src}: warning: x32 object: the 9 pvpass sites") and r.stderr.count("\n") == 1
    subprocess.run(["gcc", "-mx32", "-O2", "-I", str(INCLUDE), "-c", src, "-o", str(tmp / "b.o")], check=True)
    assert (tmp / "a.o").read_bytes() == (tmp / "b.o").read_bytes()
    plain = tmp / "plain.c"
    plain.write_text("int f(int x) { return x * 3; }\n")
    r = run_pvpass("cc", "--", "gcc", "-mx32", "-O2", "-c", str(plain), "-o", str(tmp / "p.o"), env=env)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    r = run_pvpass("table", str(tmp / "b.o"))
    assert r.returncode == 2 and "x32 is not supported" in r.stderr and "Traceback" not in r.stderr


def test_several_sources_in_one_compile(tmp):
    """`gcc -c a.c b.c plain.c` writes a.o, b.o and plain.o: each gets what
    its own compile would get."""
    for n in ("a", "b"):
        (tmp / f"{n}.c").write_text((TESTDATA / "pvpass/sites.c").read_text())
    (tmp / "plain.c").write_text("int f(int x) { return x * 3; }\n")
    flags = ["-O2", "-I", str(INCLUDE), "-I", str(TESTDATA / "pvpass")]
    env = {"PVPASS_CACHE": "0"}
    r = run_pvpass("cc", "--", "gcc", *flags, "-c", "a.c", "b.c", "plain.c", cwd=tmp, env=env)
    assert r.returncode == 0, r.stderr
    for n in ("a", "b", "plain"):
        r = run_pvpass("cc", "--", "gcc", *flags, "-c", f"{n}.c", "-o", f"one-{n}.o", cwd=tmp, env=env)
        assert r.returncode == 0, r.stderr
        assert (tmp / f"{n}.o").read_bytes() == (tmp / f"one-{n}.o").read_bytes(), n
    assert read_entries(ElfObject.read(str(tmp / "a.o")))
