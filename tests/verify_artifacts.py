"""What the verify tests check: real builds (gcc, the link step, `pvpass
patch`, the demo's make), made once per test run and shared by the xdist
workers (conftest.shared_build). Runs pvpass in-process (pvpass.cli.main) to stay fast."""
from __future__ import annotations

import functools
import subprocess
import tempfile
from pathlib import Path

from pvpass.cli import main

from conftest import ROOT, RUN_DIR, TESTDATA, gcc_c, make_example, shared_build

RT = ROOT / "pvpass/runtime"


@functools.cache
def workdir() -> Path:
    """This process's own scratch directory (removed with the run's)."""
    return Path(tempfile.mkdtemp(prefix="verify-", dir=RUN_DIR))


def pvpass(*args: str) -> None:
    code = main(list(args))
    assert code == 0, args


# name -> (source, arch, gcc flags); the pvpass dialect and the kernel
# dialect, i386 (-fno-pie: see docs/bad-input.md) and x86-64 (gcc's default, PIE)
SOURCES = {
    "sites64": ("pvpass/sites.c", "x86_64", ["-O2"]),
    "sites32": ("pvpass/sites.c", "i386", ["-O2", "-fno-pie"]),
    "k61_64": ("kernel/k61.c", "x86_64", ["-O2"]),
    "k61_32": ("kernel/k61.c", "i386", ["-O2", "-fno-pie"]),
    "k2621": ("kernel/k2621.c", "i386", ["-O2", "-fno-pie"]),
    # inline replacements that name symbols: R_X86_64_PC32 / 32S (%gs: too) / 32
    "reloc64": ("pvpass/reloc.c", "x86_64", ["-O2", "-fno-pie", f"-I{RT}"]),
    "reloc32": ("pvpass/reloc32.c", "i386", ["-O2", "-fno-pie"]),     # R_386_32, %fs: too
    # the thread's systems (native, lguest: R_386_32 / R_X86_64_PC32, vmi, xen)
    "systems64": ("../pvpass/examples/systems/systems.c", "x86_64", ["-O2", "-fno-pie", f"-I{RT}"]),
    "systems32": ("../pvpass/examples/systems/systems.c", "i386", ["-O2", "-fno-pie", f"-I{RT}"]),
}


@functools.cache
def linked(name: str) -> Path:
    """gcc, then the link step with the built-in backends (once per test run)."""
    src, arch, flags = SOURCES[name]

    def build(d: Path) -> None:
        obj = gcc_c(TESTDATA / src, d / f"{name}.o", arch, flags)
        pvpass("link", str(obj), "--builtin", "--source", str(TESTDATA / src), "-o", str(d / f"{name}.linked.o"),
               "--", *flags[1:])
    return shared_build(f"verify-{name}", build) / f"{name}.linked.o"


@functools.cache
def aot(name: str, backend: str) -> Path:
    """A linked object patched ahead of time for one backend (once per test run)."""
    if name == "demo":
        src, obj, cpp = demo_dir() / "demo.c", demo_dir() / "demo.o", [f"-I{RT}"]
    else:
        s, _, flags = SOURCES[name]
        src, obj, cpp = TESTDATA / s, linked(name), flags[1:]
    file = f"{name}.aot.{backend}.o"
    return shared_build(f"verify-{name}-{backend}", lambda d: pvpass(
        "patch", str(obj), "--source", str(src), "--backend", backend, "-o", str(d / file), "--", *cpp)) / file


def demo_dir() -> Path:
    """The demo, built with `make CC="pvpass cc -- gcc"` (demo.o and the program)."""
    return make_example("demo", "demo")


VMI_ROM_BASE = 0x50000000       # pvpass/examples/systems/vmi_rom.h


@functools.cache
def vmi_rom(arch: str) -> Path:
    """The systems example's VMI ROM, flat code, as its Makefile builds it."""
    def build(d: Path) -> None:
        o = gcc_c(ROOT / "pvpass/examples/systems/vmi_rom.S", d / "vmi_rom.o", arch, [])
        subprocess.run(["objcopy", "-O", "binary", "-j", ".text", str(o), str(d / "vmi_rom.bin")], check=True)
    return shared_build(f"vmi-rom-{arch}", build) / "vmi_rom.bin"


@functools.cache
def declared(name: str):
    """What the artifact's source declares (`verify --source`)."""
    from pvpass.arch import get_arch
    from pvpass.verify.declared import declarations
    base = name.split(":")[0]
    if base.startswith("demo"):
        return declarations(str(demo_dir() / "demo.c"), get_arch("x86_64"), [f"-I{RT}"])
    src, arch, flags = SOURCES[base]
    return declarations(str(TESTDATA / src), get_arch(arch), flags[1:])


def maps(name: str) -> list[tuple[str, int]]:
    """What verify maps beside the file: the ROM the systems example mmaps."""
    if not name.startswith("systems"):
        return []
    return [(str(vmi_rom(SOURCES[name.split(":")[0]][1])), VMI_ROM_BASE)]


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
       "sites64:c-calls", "reloc64:sym_ops", "systems64:lguest_ops", "systems32:lguest_ops",
       "systems32:vmi_ops", "systems64:xen_ops"]
