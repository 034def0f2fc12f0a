"""Run the system C preprocessor with the user's flags."""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from ..arch import Arch
from ..diag import PvError
from .. import tools
from .pptext import PPText

PREPROCESSED_SUFFIXES = (".i",)


def include_dir() -> str:
    return str(resources.files("pvpass") / "include")


def preprocess(src: str, arch: Arch, cppflags: list[str], cc: str | None = None) -> PPText:
    """Preprocess `src` (or read it if it is already preprocessed)."""
    path = Path(src)
    if not path.is_file():
        raise PvError(f"{src}: no such file")
    if path.suffix in PREPROCESSED_SUFFIXES:
        try:
            return PPText(path.read_text(errors="replace"), src)
        except OSError as e:
            raise PvError(f"{src}: {e.strerror}") from None
    cc = cc or os.environ.get("PVPASS_CPP_CC", "gcc")
    argv = [cc, "-E", arch.gcc_flag, "-D__PVPASS__=1", "-I", include_dir(),
            *cppflags, src]
    r = tools.run(argv, check=False)
    if r.returncode != 0:
        first = _first_error(r.stderr.decode(errors="replace"))
        raise PvError(first or f"preprocessing {src} failed", None)
    return PPText(r.stdout.decode(errors="replace"), src)


def _first_error(stderr: str) -> str:
    """The compiler's first real error line, kept in its own gcc format."""
    for line in stderr.splitlines():
        if ": error:" in line or ": fatal error:" in line:
            return line.strip()
    lines = [l for l in stderr.splitlines() if l.strip()]
    return lines[0].strip() if lines else ""
