"""`pvpass cc -- gcc ARGS...`: a drop-in compiler. Runs the compiler as asked;
for each `-c` compile of a C source it runs the front end with the same
preprocessor flags and the link step on the object, in place. Anything else
(linking, -E, -S, -M/-MM) passes through untouched."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .arch import get_arch, host_arch_name
from .diag import PvError
from . import tools

# Options that take a separate argument, and which of them matter to cpp.
_WITH_ARG = {"-o", "-I", "-D", "-U", "-include", "-imacros", "-isystem", "-iquote",
             "-idirafter", "-MF", "-MT", "-MQ", "-x", "-Xlinker", "-Xassembler",
             "-Xpreprocessor", "-L", "-l", "-T", "--param", "-aux-info"}
_CPP_WITH_ARG = {"-I", "-D", "-U", "-include", "-imacros", "-isystem", "-iquote", "-idirafter"}
_CPP_PREFIX = ("-I", "-D", "-U", "-std=", "-m", "-f", "-O", "--sysroot", "-nostdinc", "-iprefix")
_NO_LINK_STEP = {"-E", "-S", "-M", "-MM"}


def parse(args: list[str]) -> tuple[list[str], list[str], str | None, bool]:
    """(C sources, cpp flags, -o output, is a compile-only run)."""
    sources, cpp, out = [], [], None
    compile_only = "-c" in args and not (_NO_LINK_STEP & set(args))
    i = 0
    while i < len(args):
        a = args[i]
        if a in _WITH_ARG and i + 1 < len(args):
            if a == "-o":
                out = args[i + 1]
            elif a in _CPP_WITH_ARG:
                cpp += [a, args[i + 1]]
            i += 2
            continue
        if a.startswith(_CPP_PREFIX) and not a.startswith(("-MF", "-MT", "-MQ")):
            cpp.append(a)
        elif not a.startswith("-") and a.endswith((".c", ".i")):
            sources.append(a)
        i += 1
    return sources, cpp, out, compile_only


def run_cc(argv: list[str]) -> int:
    if not argv:
        raise PvError("pvpass cc: expected a compiler command after '--'")
    compiler, args = argv[0], argv[1:]
    tools.which(compiler)
    sources, cpp, out, compile_only = parse(args)
    # The compiler and the front end do not depend on each other: scan while
    # gcc compiles, so a build waits only for the link step.
    proc = subprocess.Popen([compiler, *args])
    scans = {}
    if compile_only:
        arch = get_arch("i386" if "-m32" in args else ("x86_64" if "-m64" in args else host_arch_name()))
        for src in sources:
            try:
                scans[src] = _scan(src, arch, cpp)
            except PvError as e:
                scans[src] = e
    rc = proc.wait()
    if rc != 0:
        return rc            # the compiler's diagnostics were the ones that mattered
    for src, res in scans.items():
        obj = out if (out and len(sources) == 1) else Path(src).with_suffix(".o").name
        try:
            if isinstance(res, PvError):
                raise res
            _link_one(res, obj)
        except PvError:
            _remove(obj)            # like a failed compile: no object
            raise
    return 0


def _scan(src: str, arch, cpp: list[str]):
    from .frontend.scan import scan
    return scan(src, arch, cpp)


def _link_one(res, obj: str) -> None:
    from .atomicio import write_atomic
    from .link.elfobj import ElfObject
    from .link.step import link_object
    if not res.inventory.sites:
        return
    result = link_object(ElfObject.read(obj), res)
    if result.changed:
        write_atomic(obj, result.data)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
