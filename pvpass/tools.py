"""External tools (gcc, as, ld, objcopy): found once, run with clear errors."""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from .diag import PvError, ToolMissing


def which(tool: str) -> str:
    path = shutil.which(tool)
    if not path:
        raise ToolMissing(tool)
    return path


@dataclass
class Result:
    returncode: int
    stdout: bytes
    stderr: bytes


def run(argv: list[str], *, input: bytes | None = None, check: bool = True,
        what: str | None = None) -> Result:
    """Run a tool; a missing binary is exit 3, a failure is exit 2 with its
    own stderr quoted."""
    exe = which(argv[0]) if os.sep not in argv[0] else argv[0]
    try:
        p = subprocess.run([exe, *argv[1:]], input=input, capture_output=True)
    except OSError as e:
        raise ToolMissing(argv[0], str(e)) from None
    if check and p.returncode != 0:
        msg = p.stderr.decode(errors="replace").strip()
        raise PvError(f"{what or argv[0]} failed (exit {p.returncode})"
                      + (f":\n{msg}" if msg else ""))
    return Result(p.returncode, p.stdout, p.stderr)
