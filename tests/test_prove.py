"""Every patch pvpass emits keeps its site's clobber contract when run
(unicorn): trampolines save exactly enough, inline replacements write only
what they may, the stack comes back where it was and stays aligned."""
from __future__ import annotations

from dataclasses import replace

import pytest

from pvpass.arch import get_arch
from pvpass.emit.patches import Patch
from pvpass.emit.plan import make_plan
from pvpass.emit.stubs import trampoline
from pvpass.frontend.scan import scan
from pvpass.model import Contract
from pvpass.patch.prove import prove

from conftest import TESTDATA

SOURCES = [("kernel/k61.c", "x86_64"), ("kernel/k2621.c", "i386"),
           ("pvpass/sites.c", "x86_64"), ("pvpass/sites.c", "i386")]


@pytest.mark.parametrize("src,arch", SOURCES)
def test_every_patch_keeps_its_contract(src, arch):
    a = get_arch(arch)
    inv = scan(str(TESTDATA / src), a, ["-O2", "-fno-pie"]).inventory
    plan = make_plan(a, inv)
    proved = 0
    for (i, bname), p in plan.patches.items():
        site = plan.sites[i]
        op = inv.ops_struct_for(site.ops_object).op(site.op)
        target = next(b for b in plan.backends if b.name == bname).targets.get(site.op)
        res = prove(a, site, op, p, target.contract if target else None)
        assert res.ok, (bname, site.op, res.problems)
        proved += not res.skipped
    assert proved >= len(plan.sites)


def test_a_broken_trampoline_is_caught():
    a = get_arch("x86_64")
    inv = scan(str(TESTDATA / "pvpass/sites.c"), a, ["-O2"]).inventory
    site = next(s for s in inv.sites if s.op == "irq.save_fl")       # clobbers rax only
    t = trampoline(a, "c_fn", ("rcx", "rdx"))                          # forgets rsi, rdi, r8-r11
    code = bytes([0xE8, 0, 0, 0, 0]) + b"\x90"
    p = Patch("trampoline", code, 0, t.name, t, None, "")
    res = prove(a, site, None, p, Contract("c", a.caller_saved))
    assert not res.ok and any("%rsi" in x for x in res.problems)
    # and a direct call to a C function from a callee-save site is caught too
    res = prove(a, site, None, replace(p, kind="call", trampoline=None), Contract("c", a.caller_saved))
    assert not res.ok


def test_verify_command():
    from conftest import run_pvpass
    r = run_pvpass("verify", "--arch", "i386", str(TESTDATA / "kernel/k2621.c"), "--", "-fno-pie")
    assert r.returncode == 0 and r.stdout.startswith("13 patches proved, 0 failed"), r.stdout + r.stderr
