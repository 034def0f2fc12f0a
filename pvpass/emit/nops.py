"""NOP padding from the kernel's tables (arch/x86/include/asm/nops.h and the
older K8/P6 tables). Raw bytes, not keystone: keystone 0.9.2 mis-encodes the
multi-byte `nopw`/`nopl` forms; tests check every table against GNU as."""
from __future__ import annotations

# P6: the `nopl` family, the kernel's x86-64 table (and 2.6's P6_NOPs).
P6 = {
    1: bytes([0x90]),
    2: bytes([0x66, 0x90]),
    3: bytes([0x0f, 0x1f, 0x00]),
    4: bytes([0x0f, 0x1f, 0x40, 0x00]),
    5: bytes([0x0f, 0x1f, 0x44, 0x00, 0x00]),
    6: bytes([0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00]),
    7: bytes([0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00]),
    8: bytes([0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00]),
}

# K8: operand-size prefixes on 0x90 (2.6's K8_NOPs; 5..8 are two instructions).
_K = {1: bytes([0x90]), 2: bytes([0x66, 0x90]), 3: bytes([0x66, 0x66, 0x90]),
      4: bytes([0x66, 0x66, 0x66, 0x90])}
K8 = {**_K, 5: _K[3] + _K[2], 6: _K[3] + _K[3], 7: _K[4] + _K[3], 8: _K[4] + _K[4]}

# Generic i386 (lea-based; the kernel's 32-bit table).
GENERIC32 = {
    1: bytes([0x90]),
    2: bytes([0x89, 0xf6]),
    3: bytes([0x8d, 0x76, 0x00]),
    4: bytes([0x8d, 0x74, 0x26, 0x00]),
    5: bytes([0x3e, 0x8d, 0x74, 0x26, 0x00]),
    6: bytes([0x8d, 0xb6, 0x00, 0x00, 0x00, 0x00]),
    7: bytes([0x8d, 0xb4, 0x26, 0x00, 0x00, 0x00, 0x00]),
    8: bytes([0x3e, 0x8d, 0xb4, 0x26, 0x00, 0x00, 0x00, 0x00]),
}

TABLES = {"p6": P6, "k8": K8, "generic": GENERIC32}
MAX_NOP = 8
# `generic` is the kernel's i386 table: on x86-64 its `lea 0(%esi),%esi` and
# `mov %esi,%esi` write %esi, which zeroes the upper half of %rsi.
TABLES_FOR_BITS = {32: ("p6", "k8", "generic"), 64: ("p6", "k8")}


def check_table(bits: int, table: str) -> None:
    """Refuse a NOP table that is not a no-op on the arch."""
    if table not in TABLES_FOR_BITS[bits]:
        from ..diag import PvError
        raise PvError(f"--nops {table}: not a no-op table for {bits}-bit code (it writes %esi, "
                      f"zeroing the upper half of %rsi); use {' or '.join(TABLES_FOR_BITS[bits])}")


def nop_fill(n: int, table: str = "p6") -> bytes:
    """`n` bytes of padding, longest NOPs first."""
    t = TABLES[table]
    out = bytearray()
    while n > 0:
        k = min(n, MAX_NOP)
        out += t[k]
        n -= k
    return bytes(out)
