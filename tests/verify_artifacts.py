"""What the verify tests check: real builds (gcc, the link step, `pvpass
patch`, the demo's make), made once per test session in a temporary
directory. Runs pvpass in-process (pvpass.cli.main) to stay fast."""
from __future__ import annotations

import atexit
import functools
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pvpass.cli import main

from conftest import ROOT, TESTDATA, gcc_c

RT = ROOT / "pvpass/runtime"


@functools.cache
def workdir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="pvpass-verify-tests-"))
    atexit.register(shutil.rmtree, d, True)
    return d


def pvpass(*args: str) -> None:
    code = main(list(args))
    assert code == 0, args


# name -> (source, arch, gcc flags); the pvpass dialect and the kernel
# dialect, i386 (-fno-pie: see README) and x86-64 (gcc's default, PIE)
SOURCES = {
    "sites64": ("pvpass/sites.c", "x86_64", ["-O2"]),
    "sites32": ("pvpass/sites.c", "i386", ["-O2", "-fno-pie"]),
    "k61_64": ("kernel/k61.c", "x86_64", ["-O2"]),
    "k61_32": ("kernel/k61.c", "i386", ["-O2", "-fno-pie"]),
    "k2621": ("kernel/k2621.c", "i386", ["-O2", "-fno-pie"]),
}


@functools.cache
def linked(name: str) -> Path:
    """gcc, then the link step with the built-in backends."""
    src, arch, flags = SOURCES[name]
    d = workdir()
    obj = gcc_c(TESTDATA / src, d / f"{name}.o", arch, flags)
    out = d / f"{name}.linked.o"
    pvpass("link", str(obj), "--builtin", "--source", str(TESTDATA / src), "-o", str(out),
           "--", *flags[1:])
    return out


@functools.cache
def aot(name: str, backend: str) -> Path:
    """A linked object patched ahead of time for one backend."""
    if name == "demo":
        src, obj, cpp = demo_dir() / "demo.c", demo_dir() / "demo.o", [f"-I{RT}"]
    else:
        s, _, flags = SOURCES[name]
        src, obj, cpp = TESTDATA / s, linked(name), flags[1:]
    out = workdir() / f"{name}.aot.{backend}.o"
    pvpass("patch", str(obj), "--source", str(src), "--backend", backend, "-o", str(out), "--", *cpp)
    return out


@functools.cache
def demo_dir() -> Path:
    """The demo, built with `make CC="pvpass cc -- gcc"` (demo.o and the program)."""
    d = workdir() / "demo"
    shutil.copytree(ROOT / "pvpass/examples/demo", d)
    pv = f"{sys.executable} -m pvpass"
    subprocess.run(["make", "-C", str(d), f"PVPASS={pv}", f"CC={pv} cc -- gcc"], check=True,
                   capture_output=True, cwd=ROOT)
    return d


def artifact(name: str) -> Path:
    """Every artifact verify must prove, by name."""
    if name in SOURCES:
        return linked(name)
    if name == "demo.o":
        return demo_dir() / "demo.o"
    if name == "demo":
        return demo_dir() / "demo"
    base, backend = name.split(":")
    return aot(base, backend)


ALL = [*SOURCES, "demo.o", "demo", "demo:native_ops", "demo:c_ops", "k2621:c-calls", "k2621:native",
       "sites64:c-calls"]
