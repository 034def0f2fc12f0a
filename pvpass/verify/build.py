"""`pvpass verify SRC.c`, a convenience: compile the source with gcc (the
arch's flag, -O2, -fno-pie) and run the link step with the built-in
backends, in a temporary directory; the result is verified like any object."""
from __future__ import annotations

import contextlib
import os

from ..arch import Arch
from ..atomicio import temp_dir
from .. import tools
from ..diag import PvError
from ..frontend.preprocess import default_cc, include_dir


def is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError as e:
        raise PvError(f"{path}: {e.strerror}") from None


@contextlib.contextmanager
def build_for_verify(source: str, arch: Arch, cpp: list[str]):
    """Yields the linked object's path, or None when the source's sites
    cannot be tabled or patched as declared (the diagnostics are printed,
    as `emit` prints them)."""
    from ..diag import emit
    from ..emit.plan import make_plan
    from ..frontend.scan import scan
    from ..link.elfobj import ElfObject
    from ..link.step import link_object
    res = scan(source, arch, ["-fno-pie", *cpp])
    diags = make_plan(arch, res.inventory).diagnostics
    for dg in diags:
        emit(dg)
    if any(dg.level == "error" for dg in diags):
        yield None
        return
    # removed on exit, by SIGTERM/SIGINT/SIGHUP (cli's guard), and after a
    # SIGKILL by the next run
    with temp_dir("verify") as d:
        obj = os.path.join(d, "site.o")
        cc = default_cc()
        cmd = [cc, arch.gcc_flag, "-O2", "-fno-pie", "-c", source, "-o", obj, "-I", str(include_dir()), *cpp]
        tools.run(cmd, what=f"{source}: {cc}")
        out = os.path.join(d, "linked.o")
        with open(out, "wb") as f:
            f.write(link_object(ElfObject.read(obj), res, True).data)
        yield out
