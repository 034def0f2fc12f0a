"""PV010: site copies gcc keeps that no table can hold.

Whether gcc reaches the ops object through a register is its choice, made
per copy, so only the compiled object says: a TU whose pvpass-dialect
sites leave gcc that choice (an "m" call operand, or PIC code, which
reaches the object through the GOT) is compiled once with the same flags,
and the link step's finder (pvpass/link/regcalls.py) names each such
copy. A site called through a bare "i" operand (pvpass.h's macros outside
PIC code) has no choice to make, so a TU of only those pays nothing."""
from __future__ import annotations

import os
import tempfile

from ..arch import Arch
from .. import tools
from ..diag import Diagnostic
from ..frontend.operands import code_model, constraint_letters
from ..frontend.preprocess import _argv, compiler_error, default_cc
from ..frontend.scan import ScanResult


def needs_object(res: ScanResult, arch: Arch, cppflags: list[str], cc: str | None) -> bool:
    """Whether some pvpass-dialect site's call leaves gcc the address form."""
    sites = [s for s in res.sources if s.site.dialect == "pvpass"]
    if not sites:
        return False
    if any(s.call_operand is None or "m" in constraint_letters(s.call_operand.constraint)
           or "o" in constraint_letters(s.call_operand.constraint) for s in sites):
        return True
    m = code_model(arch, tuple(cppflags), cc or default_cc())
    return m.pic or (m.pie and arch.bits == 32)


def check_kept(res: ScanResult, arch: Arch, cppflags: list[str], cc: str | None) -> list[Diagnostic]:
    if not needs_object(res, arch, cppflags, cc):
        return []
    from ..link.elfobj import ElfObject
    from ..link.regcalls import site_losses
    from ..link.step import loss_message
    src = res.pp.main_file
    with tempfile.TemporaryDirectory(prefix="pvpass-lint-") as d:
        out = os.path.join(d, "o.o")
        r = tools.run(_argv("-c", src, arch, cppflags, cc) + ["-o", out], check=False)
        if r.returncode != 0:
            raise compiler_error(r.stderr, f"compiling {src} failed")
        with open(out, "rb") as f:
            obj = ElfObject(os.path.splitext(os.path.basename(src))[0] + ".o", f.read())
    inv = res.inventory
    return [Diagnostic(inv.sites[l.site].loc, "error", loss_message(obj, inv, l), "PV010")
            for l in site_losses(obj, inv, res.sources)]
