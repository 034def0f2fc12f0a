"""Which registers an asm statement tells gcc it changes (rule PV002's
input), for the constraint forms kernels use."""
from __future__ import annotations

import pytest

from pvpass.arch import get_arch
from pvpass.frontend.asmstmt import find_asm
from pvpass.lint.constraints import effects


def eff(arch: str, stmt: str):
    text = f"void f(void) {{ {stmt}; }}"
    (a,) = find_asm(text, 0, len(text), lambda off: None)
    return effects(get_arch(arch), a)


@pytest.mark.parametrize("arch,stmt,written,inputs", [
    ("x86_64", 'asm("" : "=a" (r))', {"rax"}, set()),
    ("x86_64", 'asm("" : "=d" (r), "+D" (p))', {"rdx", "rdi"}, {"rdi"}),
    ("x86_64", 'asm("" : "=a" (r) : "0" (x))', {"rax"}, {"rax"}),
    ("x86_64", 'asm("" : "=r" (r) : "S" (x))', set(), {"rsi"}),
    ("x86_64", 'asm("" : "=&c" (r) : : "r8", "%r11", "cc", "memory")', {"rcx", "r8", "r11"}, set()),
    ("x86_64", 'asm("" : "=A" (r))', {"rax", "rdx"}, set()),
    ("x86_64", 'asm("" : [o] "=ad" (r))', set(), set()),        # gcc's choice of two: neither for sure
    ("i386", 'asm("" : "=a" (r), "=d" (d) : : "ecx", "%eax", "ax")', {"eax", "edx", "ecx"}, set()),
    ("i386", 'asm("" : "=q" (r) : "b" (x) : "edi")', {"edi"}, {"ebx"}),
])
def test_effects(arch, stmt, written, inputs):
    e = eff(arch, stmt)
    assert set(e.written) == written and set(e.inputs) == inputs
