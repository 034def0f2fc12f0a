"""Build the bench harness for one arch the way a user builds a pvpass
program: `pvpass cc -- gcc` compiles it (the pass links the table, patch
records and trampolines into the object), gcc compiles the runtime, and the
final link adds the linker-script fragment."""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .. import tools
from ..diag import EXIT_NO_TOOL, PvError

# -O2 as the thread's argument is about optimised callers. i386: -fno-pie so
# the ops are reached without the GOT (docs/bad-input.md, Limits). x86-64: the kernel's
# -mno-red-zone, since an asm `call` pushes its return address over the red
# zone of a function gcc believes to be a leaf. Both as the kernel builds:
# PVPASS_NO_RED_ZONE drops pvpass.h's red-zone and alignment steps (the i386
# harness's hand-written eax-clobber sites have none), so the numbers are
# those of the conventions themselves.
ARCH_FLAGS = {"x86_64": ["-m64", "-mno-red-zone", "-DPVPASS_NO_RED_ZONE"],
              "i386": ["-m32", "-fno-pie", "-DPVPASS_NO_RED_ZONE"]}
CFLAGS = ["-O2", "-Wall"]


@dataclass(frozen=True)
class Harness:
    arch: str
    exe: Path          # the linked program
    obj: Path          # harness.o after the link step (what the callers are read from)
    cflags: tuple[str, ...]


def harness_source() -> Path:
    return Path(str(resources.files("pvpass.bench") / "harness.c"))


def build(arch: str, workdir: Path) -> Harness:
    from ..driver import run_cc
    from ..frontend.preprocess import include_dir
    rt = Path(str(resources.files("pvpass") / "runtime"))
    ldscript = rt / "pvpass.ld"
    flags = [*ARCH_FLAGS[arch], *CFLAGS]
    inc = [f"-I{include_dir()}", f"-I{rt}"]
    obj, rt_obj, exe = workdir / "harness.o", workdir / "pvpass_rt.o", workdir / "harness"
    _check_target(arch, workdir)
    rc = run_cc(["gcc", *flags, *inc, "-c", str(harness_source()), "-o", str(obj)])
    if rc != 0:
        raise PvError(f"pvpass bench: compiling the {arch} harness failed (gcc exit {rc})")
    tools.run(["gcc", *flags, *inc, "-c", str(rt / "pvpass_rt.c"), "-o", str(rt_obj)],
              what=f"gcc ({arch} runtime)")
    tools.run(["gcc", *ARCH_FLAGS[arch], "-no-pie", "-o", str(exe), str(obj), str(rt_obj),
               f"-Wl,-T,{ldscript}"], what=f"gcc ({arch} link)")
    return Harness(arch, exe, obj, tuple(flags))


def _check_target(arch: str, workdir: Path) -> None:
    """gcc must build and link programs for the arch (i386 needs gcc-multilib):
    say so once instead of quoting a linker error."""
    probe = workdir / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    r = tools.run(["gcc", *ARCH_FLAGS[arch], "-no-pie", "-o", str(workdir / "probe"), str(probe)],
                  check=False)
    if r.returncode != 0:
        why = r.stderr.decode(errors="replace").strip().splitlines()
        raise PvError(f"gcc cannot build {arch} programs here"
                      + (" (install gcc-multilib)" if arch == "i386" else "")
                      + (f": {why[-1]}" if why else ""), code=EXIT_NO_TOOL)
