"""Assembling with keystone-engine (one engine per arch, results cached).

Keystone quirks worked around in pvpass:
- it has no symbols: operands are substituted with placeholder addresses of
  the width gcc's relocation would use (see frontend/operands.py);
- it mis-encodes the multi-byte NOP forms (`nopw 0x0(%rax,%rax,1)` comes out
  as 66 0f 18 24 00, a prefetch): NOP padding uses the kernel's byte tables
  (emit/nops.py), checked against GNU as in the tests.
"""
from __future__ import annotations

from functools import lru_cache

from keystone import KS_ARCH_X86, KS_MODE_32, KS_MODE_64, KS_OPT_SYNTAX_ATT, Ks, KsError

from .arch import Arch


class EncodeError(Exception):
    pass


@lru_cache(maxsize=2)
def _engine(bits: int) -> Ks:
    ks = Ks(KS_ARCH_X86, KS_MODE_64 if bits == 64 else KS_MODE_32)
    ks.syntax = KS_OPT_SYNTAX_ATT
    return ks


@lru_cache(maxsize=65536)
def _assemble(bits: int, text: str, addr: int) -> bytes:
    try:
        enc, _ = _engine(bits).asm(text, addr)
    except KsError as e:
        raise EncodeError(f"cannot assemble '{text}': {e}") from None
    return bytes(enc or b"")


def assemble(arch: Arch, text: str, addr: int = 0) -> bytes:
    """Machine code for AT&T `text` (statements separated by ';')."""
    if not text.strip():
        return b""
    return _assemble(arch.bits, text, addr)
