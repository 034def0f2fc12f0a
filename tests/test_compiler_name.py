"""The compiler a build names is the one pvpass asks: a cross compiler
(`x86_64-linux-gnu-gcc-12`, here real gcc under another name on a PATH with
no `gcc`) builds and lints through pvpass, and the code model that sets a
site's length is that compiler's own default, not plain gcc's."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import INCLUDE, TESTDATA, run_pvpass
from pvpass.link.elfobj import ElfObject
from pvpass.link.tableread import read_entries

SITES = TESTDATA / "pvpass/sites.c"


@pytest.fixture
def cross(tmp) -> dict:
    """An environment whose PATH holds the compiler as `cross-gcc`, the
    binutils gcc runs, and no `gcc`."""
    bindir = tmp / "bin"
    bindir.mkdir()
    real = os.path.realpath(shutil.which("gcc"))
    os.symlink(real, bindir / "cross-gcc")
    for tool in ("as", "ld"):
        os.symlink(shutil.which(tool), bindir / tool)
    return {"PATH": str(bindir), "PVPASS_CACHE": "0"}


def test_cc_builds_with_a_compiler_not_named_gcc(tmp, cross):
    subprocess.run(["gcc", "-O2", "-I", str(INCLUDE), "-c", str(SITES), "-o", str(tmp / "g.o")], check=True)
    r = run_pvpass("link", str(tmp / "g.o"), "--source", str(SITES), "-o", str(tmp / "ref.o"),
                   "--", "-O2", "-I", str(INCLUDE))
    assert r.returncode == 0, r.stderr
    r = run_pvpass("cc", "--", "cross-gcc", "-O2", "-I", str(INCLUDE), "-c", str(SITES),
                   "-o", str(tmp / "x.o"), env=cross)
    assert r.returncode == 0, r.stderr
    assert (tmp / "x.o").read_bytes() == (tmp / "ref.o").read_bytes()
    # the kernel dialect's full analysis (records asked for) too
    r = run_pvpass("cc", "--records", "native", "--", "cross-gcc", "-m32", "-fno-pie", "-O2", "-c",
                   str(TESTDATA / "kernel/k61.c"), "-o", str(tmp / "k.o"), env=cross)
    assert r.returncode == 0, r.stderr
    assert read_entries(ElfObject.read(str(tmp / "k.o")))


def test_lint_uses_the_compile_databases_compiler(tmp, cross):
    lint = TESTDATA / "lint"
    for name in ("pv002_fire.c", "lintops.h"):
        shutil.copy(lint / name, tmp / name)
    db = [{"directory": str(tmp), "file": "pv002_fire.c",
           "arguments": ["ccache", "cross-gcc", "-I", str(INCLUDE), "-O2", "-c", "pv002_fire.c"]}]
    (tmp / "compile_commands.json").write_text(json.dumps(db))
    r = run_pvpass("lint", "--arch", "x86_64", "-p", str(tmp), "--format", "json", env=cross)
    assert "Traceback" not in r.stderr and "not found" not in r.stderr, r.stderr
    diags = json.loads(r.stdout)["diagnostics"]
    assert [(d["rule"], d["line"]) for d in diags] == [("PV002", 6)]


def test_code_model_is_the_compilers_default(tmp):
    """A compiler built to make PIC by default (a wrapper that adds -fPIC to
    real gcc) gives the sites gcc gives with -fPIC: x86-64's `call *` through
    a register is shorter than the rip-relative one."""
    bindir = tmp / "bin"
    bindir.mkdir()
    (bindir / "pic-gcc").write_text(f'#!/bin/sh\nexec {shutil.which("gcc")} -fPIC "$@"\n')
    (bindir / "pic-gcc").chmod(0o755)
    src = str(TESTDATA / "kernel/k61.c")

    def scan(cc: str, *flags: str) -> str:
        env = {"PATH": f"{bindir}:{os.environ['PATH']}", "PVPASS_CPP_CC": cc, "PVPASS_CACHE": "0"}
        r = run_pvpass("scan", "--arch", "x86_64", src, "--format", "text", "--", *flags, env=env)
        assert r.returncode == 0, r.stderr
        return r.stdout

    pic = scan("pic-gcc")
    assert pic == scan("gcc", "-fPIC")
    assert pic != scan("gcc")
