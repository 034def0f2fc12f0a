"""verify's calling conventions (pvpass/verify/abi.py, written from the
psABI documents) and the generator's (pvpass/arch.py) must agree; verify
never imports the generator's. A generator change (say, r11 dropped from
the x86-64 caller-saved set) fails here, and its trampolines fail verify."""
from __future__ import annotations

import ast

import pytest

from pvpass.arch import get_arch
from pvpass.verify import abi

from conftest import ROOT


@pytest.mark.parametrize("name", ["i386", "x86_64"])
def test_generator_and_oracle_agree(name):
    gen, ora = get_arch(name), abi.OP_CONVENTION[name]
    assert set(gen.caller_saved) == set(ora.caller_saved)
    assert gen.arg_regs == ora.arg_regs
    assert gen.ret_reg == ora.ret_regs[0]
    assert tuple(gen.gprs) == ora.gprs
    assert gen.clobber_bits == ora.clobber_bits
    assert gen.stack_align == ora.call_align


def test_oracle_is_the_psabi():
    """Spot values from the documents, so the two tables cannot drift together."""
    x = abi.X86_64_SYSV
    assert "r11" in x.caller_saved and "rbx" not in x.caller_saved and len(x.caller_saved) == 9
    assert x.arg_regs[:2] == ("rdi", "rsi") and x.call_align == 16
    assert abi.I386_REGPARM.arg_regs == ("eax", "edx", "ecx") and abi.I386_CDECL.arg_regs == ()
    assert x.regs_of_mask(511) == frozenset(x.caller_saved)


def test_verify_imports_nothing_of_the_generator():
    """(build.py is `verify SRC.c`'s builder: it runs the generator by design.)"""
    for f in (ROOT / "pvpass/verify").glob("*.py"):
        if f.name == "build.py":
            continue
        tree = ast.parse(f.read_text())
        mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        for m in mods | names:
            assert not m.startswith(("arch", "emit", "encode")), f"{f.name} imports {m}"
        assert "..arch" not in f.read_text() and "..emit" not in f.read_text(), f.name
