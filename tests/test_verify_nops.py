"""Every NOP sequence of every table pvpass may pad with, for each arch it
may pad for, is a no-op: capstone decodes it into whole instructions of
the right length, and unicorn, run from random full-width states, finds
every register, the flags and memory unchanged. `generic` (the kernel's
i386 table) is refused on x86-64, where it is not a no-op."""
from __future__ import annotations

import random

import pytest
from capstone import CS_ARCH_X86, CS_MODE_32, CS_MODE_64, Cs
from unicorn import UC_ARCH_X86, UC_MODE_32, UC_MODE_64, Uc
from unicorn import x86_const as X

from pvpass.emit.nops import MAX_NOP, TABLES, TABLES_FOR_BITS, nop_fill

from conftest import TESTDATA, run_pvpass

GPRS = {32: ("EAX", "ECX", "EDX", "EBX", "EBP", "ESI", "EDI"),
        64: ("RAX", "RCX", "RDX", "RBX", "RBP", "RSI", "RDI", "R8", "R9", "R10", "R11", "R12", "R13",
             "R14", "R15")}
CODE, STACK = 0x10000, 0x20000


def runs_as_noop(bits: int, code: bytes, seed: int) -> list[str]:
    mu = Uc(UC_ARCH_X86, UC_MODE_64 if bits == 64 else UC_MODE_32)
    mu.mem_map(CODE, 0x1000)
    mu.mem_map(STACK, 0x1000)
    mu.mem_write(CODE, code)
    rng = random.Random(seed)
    stack = rng.randbytes(0x1000)
    mu.mem_write(STACK, stack)
    before = {}
    for r in GPRS[bits]:
        before[r] = rng.getrandbits(bits)
        mu.reg_write(getattr(X, f"UC_X86_REG_{r}"), before[r])
    sp = "RSP" if bits == 64 else "ESP"
    mu.reg_write(getattr(X, f"UC_X86_REG_{sp}"), STACK + 0x800)
    mu.reg_write(X.UC_X86_REG_EFLAGS, 0x202 | (rng.getrandbits(12) & 0x8D5))
    flags = mu.reg_read(X.UC_X86_REG_EFLAGS)
    mu.emu_start(CODE, CODE + len(code))
    bad = [r for r in GPRS[bits] if mu.reg_read(getattr(X, f"UC_X86_REG_{r}")) != before[r]]
    if mu.reg_read(getattr(X, f"UC_X86_REG_{sp}")) != STACK + 0x800:
        bad.append(sp)
    if mu.reg_read(X.UC_X86_REG_EFLAGS) != flags:
        bad.append("EFLAGS")
    if bytes(mu.mem_read(STACK, 0x1000)) != stack:
        bad.append("memory")
    return bad


@pytest.mark.parametrize("bits", [32, 64])
def test_every_nop_sequence_is_a_noop(bits):
    cs = Cs(CS_ARCH_X86, CS_MODE_64 if bits == 64 else CS_MODE_32)
    for name in TABLES_FOR_BITS[bits]:
        for n in range(1, 3 * MAX_NOP + 1):
            code = TABLES[name][n] if n <= MAX_NOP else nop_fill(n, name)
            assert len(code) == n
            insns = list(cs.disasm(code, 0))
            assert sum(i.size for i in insns) == n, (name, n, code.hex())
            assert all(i.mnemonic in ("nop", "lea", "mov") for i in insns), (name, n)
            for seed in range(4):
                assert runs_as_noop(bits, code, seed) == [], (name, n, code.hex())


def test_generic_is_not_a_noop_on_x86_64_and_is_refused():
    assert "generic" not in TABLES_FOR_BITS[64]
    assert "RSI" in runs_as_noop(64, TABLES["generic"][2], 0)       # mov %esi,%esi
    r = run_pvpass("emit", "--arch", "x86_64", "--nops", "generic", str(TESTDATA / "pvpass/sites.c"))
    assert r.returncode == 2 and "--nops generic: not a no-op table for 64-bit code" in r.stderr
    r = run_pvpass("emit", "--arch", "i386", "--nops", "generic", str(TESTDATA / "pvpass/sites.c"),
                   "--", "-fno-pie")
    assert r.returncode == 0, r.stderr
