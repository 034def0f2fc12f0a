"""The patch-site table: the kernel's `struct paravirt_patch_site` layout.

    i386:   u32 instr; u8 type; u8 len; u16 clobbers;               8 bytes
    x86-64: u64 instr; u8 type; u8 len; u16 clobbers; 4 pad bytes  16 bytes
"""
from __future__ import annotations

import struct
from collections import namedtuple

from .arch import Arch

SECTION = ".parainstructions"
ALT_SECTION = ".altinstructions"      # the kernel's alternatives: read in kernel images and modules


class Entry(namedtuple("Entry", "section offset type length clobbers")):
    """One table entry. section: where the site is (object), or "" in a
    linked file, where offset is then its address; ordered by place."""
    __slots__ = ()


def _fmt(arch: Arch) -> str:
    return "<IBBH" if arch.bits == 32 else "<QBBHI"


def pack(arch: Arch, instr: int, type_: int, length: int, clobbers: int) -> bytes:
    if not 0 <= type_ < 256:
        raise ValueError(f"type number {type_} does not fit the table's byte")
    if not 0 <= length < 256:
        raise ValueError(f"site length {length} does not fit the table's byte")
    vals = (instr, type_, length, clobbers & 0xFFFF) + ((0,) if arch.bits == 64 else ())
    return struct.pack(_fmt(arch), *vals)


def unpack(arch: Arch, data: bytes) -> list[tuple[int, int, int, int]]:
    """(instr field, type, len, clobbers) per entry."""
    size = arch.entry_size
    if len(data) % size:
        raise ValueError(f"{len(data)} bytes is not a whole number of {size}-byte entries")
    f = _fmt(arch)
    return [struct.unpack_from(f, data, i)[:4] for i in range(0, len(data), size)]


# --- per-backend patch records (pvpass's runtime ABI, runtime/pvpass_rt.h) ---
#   const char *backend; const u8 *code; void *target;
#   u8 type; u8 len; u16 clobbers; u8 call_off (0xff: none); u8 kind;
#   u8 pcrel_off (0xff: none); u8 pad2;
PATCH_SECTION = ".pvpass.patches"
TRAMP_SECTION = ".text.pvpass"          # the generated trampolines
TRAMP_PREFIX = "__pvpass_tramp_"        # their symbols: __pvpass_tramp_<target>_<mask>
CODE_SECTION = ".pvpass.code"
STRINGS_SECTION = ".pvpass.strings"
NO_CALL = 0xFF
KINDS = {"inline": 1, "call": 2, "trampoline": 3, "nop": 4}


def pack_patch(arch: Arch, type_: int, length: int, clobbers: int, call_off: int | None,
               kind: str, pcrel_off: int | None = None) -> bytes:
    """A record with its three pointers zero (they are relocated)."""
    ptrs = bytes(3 * arch.ptr_size)
    return ptrs + struct.pack("<BBHBBBB", type_, length, clobbers & 0xFFFF,
                              NO_CALL if call_off is None else call_off, KINDS[kind],
                              NO_CALL if pcrel_off is None else pcrel_off, 0)


class PatchRecord(namedtuple("PatchRecord", "backend code target type length clobbers call_off kind pcrel_off")):
    """One record. backend, code, target: the three pointers, as relocated or
    linked; call_off: None for no call; pcrel_off: a RIP-relative disp32
    inside the code (None: 0 or 0xff)."""
    __slots__ = ()


def patch_size(arch: Arch) -> int:
    return 3 * arch.ptr_size + 8


def unpack_patch(arch: Arch, data: bytes) -> list[PatchRecord]:
    """Decode `.pvpass.patches` (the runtime's struct pvpass_patch)."""
    size = patch_size(arch)
    if len(data) % size:
        raise ValueError(f"{len(data)} bytes is not a whole number of {size}-byte patch records")
    ptr = "<QQQ" if arch.bits == 64 else "<III"
    names = {v: k for k, v in KINDS.items()}
    out = []
    for i in range(0, len(data), size):
        b, c, t = struct.unpack_from(ptr, data, i)
        typ, ln, clob, call, kind, pcrel, _ = struct.unpack_from("<BBHBBBB", data, i + 3 * arch.ptr_size)
        out.append(PatchRecord(b, c, t, typ, ln, clob, None if call == NO_CALL else call,
                               names.get(kind, f"kind {kind}"), None if pcrel in (0, 0xFF) else pcrel))
    return out
