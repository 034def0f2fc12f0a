"""Run the system C preprocessor with the user's flags."""
from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path

from ..arch import Arch
from ..diag import Loc, PvError
from .. import tools
from .pptext import PPText

PREPROCESSED_SUFFIXES = (".i",)
_GCC_DIAG = re.compile(r'^(.+?):(\d+):(?:(\d+):)? (fatal error|error): (.*)$')


def include_dir() -> str:
    return str(resources.files("pvpass") / "include")


def default_cc() -> str:
    """The compiler the commands run when no build names one."""
    return os.environ.get("PVPASS_CPP_CC", "gcc")


def preprocess(src: str, arch: Arch, cppflags: list[str], cc: str | None = None) -> PPText:
    """Preprocess `src` (or read it if it is already preprocessed)."""
    path = Path(src)
    if path.is_dir():
        raise PvError(f"{src}: is a directory, not a C source")
    if not path.is_file():
        raise PvError(f"{src}: no such file")
    if path.suffix in PREPROCESSED_SUFFIXES:
        try:
            return PPText(path.read_text(errors="replace"), src)
        except OSError as e:
            raise PvError(f"{src}: {e.strerror}") from None
    r = tools.run(_argv("-E", src, arch, cppflags, cc), check=False)
    if r.returncode != 0:
        raise compiler_error(r.stderr, f"preprocessing {src} failed")
    return PPText(r.stdout.decode(errors="replace"), src)


def compiler_error(stderr: bytes, fallback: str) -> PvError:
    """The compiler's first error as ours: its message at its location (one
    location, one message: not gcc's line inside ours)."""
    first = _first_error(stderr.decode(errors="replace"))
    m = _GCC_DIAG.match(first)
    if m:
        return PvError(m.group(5), Loc(m.group(1), int(m.group(2)), int(m.group(3) or 0)))
    return PvError(first or fallback, None)


def _argv(mode: str, src: str, arch: Arch, cppflags: list[str], cc: str | None = None) -> list[str]:
    return [cc or default_cc(), mode, arch.gcc_flag, "-D__PVPASS__=1", "-I", include_dir(), *cppflags, src]


def compiler_verdict(src: str, arch: Arch, cppflags: list[str], cc: str | None = None
                     ) -> tuple[bool, PvError | None]:
    """(accepts, its first error) of the compiler on `src` as C
    (`-fsyntax-only`); a crash (an internal compiler error, which very deep
    nesting gives) is no error of the C's: (False, None). Asked only when
    the front end cannot parse it, to tell broken C from C it cannot follow."""
    r = tools.run(_argv("-fsyntax-only", src, arch, cppflags, cc), check=False)
    if r.returncode == 0:
        return True, None
    if r.returncode < 0 or b"internal compiler error" in r.stderr:
        return False, None
    return False, compiler_error(r.stderr, f"{src}: the compiler rejects it")


def _first_error(stderr: str) -> str:
    """The compiler's first real error line, kept in its own gcc format."""
    for line in stderr.splitlines():
        if ": error:" in line or ": fatal error:" in line:
            return line.strip()
    lines = [l for l in stderr.splitlines() if l.strip()]
    return lines[0].strip() if lines else ""
