"""Call-frame information for the code pvpass adds (the trampolines).

The rules come from the code itself: each push, pop and `lea k(%sp), %sp`
moves the CFA offset, a push also records where the register is saved, a
pop restores its rule. They are kept as GNU as `.cfi_*` directives (what
`pvpass emit --format asm` writes, for real as to assemble) and encoded
into `.eh_frame` entries byte for byte as GNU as encodes those directives
(tests/test_cfi.py assembles the directives with as and compares), for the
link step, which writes the object directly.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from capstone.x86 import X86_INS_CALL, X86_INS_LEA, X86_INS_POP, X86_INS_PUSH, X86_INS_RET, X86_OP_REG

from ..arch import Arch

# DWARF register numbers (x86-64 psABI 3.6.2, i386 psABI / gcc's dbx_register_map for SVR4)
DWARF_REGS = {
    64: {"rax": 0, "rdx": 1, "rcx": 2, "rbx": 3, "rsi": 4, "rdi": 5, "rbp": 6, "rsp": 7,
         **{f"r{i}": i for i in range(8, 16)}},
    32: {"eax": 0, "ecx": 1, "edx": 2, "ebx": 3, "esp": 4, "ebp": 5, "esi": 6, "edi": 7},
}
RA_COLUMN = {64: 16, 32: 8}
DW_CFA_advance_loc, DW_CFA_offset, DW_CFA_restore = 0x40, 0x80, 0xC0
DW_CFA_advance_loc1, DW_CFA_advance_loc2, DW_CFA_advance_loc4 = 0x02, 0x03, 0x04
DW_CFA_def_cfa, DW_CFA_def_cfa_offset = 0x0C, 0x0E
DW_EH_PE_pcrel_sdata4 = 0x1B


@dataclass(frozen=True)
class Cfi:
    """One directive, placed after the instruction that ends at `at`."""
    at: int
    kind: str            # adjust | save | restore
    value: int = 0       # adjust: bytes the CFA offset grows by
    reg: str = ""

    def text(self) -> str:
        if self.kind == "adjust":
            return f".cfi_adjust_cfa_offset {self.value}"
        if self.kind == "save":
            return f".cfi_rel_offset %{self.reg}, 0"
        return f".cfi_restore %{self.reg}"


def code_cfi(arch: Arch, insns) -> tuple[Cfi, ...]:
    """The directives for straight-line code entered by a call (capstone
    instructions, with details): what each stack-pointer move does to the
    CFA offset."""
    sp = "rsp" if arch.bits == 64 else "esp"
    w = arch.bits // 8
    out: list[Cfi] = []
    for ins in insns:
        end = ins.address + ins.size
        ops = ins.operands
        reg = ops[0].type == X86_OP_REG if ops else False
        if ins.id == X86_INS_PUSH and reg:
            out += [Cfi(end, "adjust", w), Cfi(end, "save", reg=ins.reg_name(ops[0].reg))]
        elif ins.id == X86_INS_POP and reg:
            out += [Cfi(end, "adjust", -w), Cfi(end, "restore", reg=ins.reg_name(ops[0].reg))]
        elif ins.id == X86_INS_LEA and ins.reg_name(ops[1].reg) == sp and \
                ins.reg_name(ops[0].mem.base) == sp and not ops[0].mem.index:
            out.append(Cfi(end, "adjust", -ops[0].mem.disp))      # AT&T order: source first
        elif ins.id not in (X86_INS_CALL, X86_INS_RET) and \
                sp in {ins.reg_name(r) for r in ins.regs_access()[1]}:
            raise ValueError(f"no CFI rule for '{ins.mnemonic} {ins.op_str}', which moves %{sp}")
    return tuple(out)


def _uleb(v: int) -> bytes:
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _sleb(v: int) -> bytes:
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        done = (v == 0 and not b & 0x40) or (v == -1 and b & 0x40)
        out.append(b | (0 if done else 0x80))
        if done:
            return bytes(out)


def _pad(entry: bytearray, align: int, at: int = 0) -> bytes:
    """DW_CFA_nop until the entry, placed at `at`, ends aligned (GNU as: 4
    bytes, the last entry of the section to its 8-byte alignment on x86-64)."""
    while (at + len(entry) + 4) % align:
        entry.append(0)
    return struct.pack("<I", len(entry)) + bytes(entry)


def cie(arch: Arch) -> bytes:
    """The CIE GNU as writes for `.cfi_startproc`: augmentation "zR",
    pc-relative 4-byte addresses, CFA = %sp + word, return address at CFA - word."""
    w = arch.bits // 8
    sp = DWARF_REGS[arch.bits]["rsp" if w == 8 else "esp"]
    ra = RA_COLUMN[arch.bits]
    body = bytearray(struct.pack("<I", 0) + b"\x01zR\0" + _uleb(1) + _sleb(-w) + bytes([ra])
                     + _uleb(1) + bytes([DW_EH_PE_pcrel_sdata4])
                     + bytes([DW_CFA_def_cfa]) + _uleb(sp) + _uleb(w)
                     + bytes([DW_CFA_offset | ra]) + _uleb(1))
    return _pad(body, 4)


def _advance(delta: int) -> bytes:
    if delta < 0x40:
        return bytes([DW_CFA_advance_loc | delta])
    if delta < 0x100:
        return bytes([DW_CFA_advance_loc1, delta])
    if delta < 0x10000:
        return bytes([DW_CFA_advance_loc2]) + struct.pack("<H", delta)
    return bytes([DW_CFA_advance_loc4]) + struct.pack("<I", delta)


def instructions(arch: Arch, cfi: tuple[Cfi, ...]) -> bytes:
    w = arch.bits // 8
    regs = DWARF_REGS[arch.bits]
    out, loc, cfa = bytearray(), 0, w
    for c in cfi:
        if c.at != loc:
            out += _advance(c.at - loc)
            loc = c.at
        if c.kind == "adjust":
            cfa += c.value
            out += bytes([DW_CFA_def_cfa_offset]) + _uleb(cfa)
        elif c.kind == "save":
            out += bytes([DW_CFA_offset | regs[c.reg]]) + _uleb(cfa // w)
        else:
            out += bytes([DW_CFA_restore | regs[c.reg]])
    return bytes(out)


@dataclass(frozen=True)
class Frame:
    """One FDE to write: code at `offset` in its section, `size` bytes."""
    offset: int
    size: int
    cfi: tuple[Cfi, ...]


def eh_frame(arch: Arch, frames: list[Frame]) -> tuple[bytes, list[tuple[int, int]]]:
    """A CIE and one FDE per frame, to be placed anywhere in `.eh_frame`
    (the FDEs point at the CIE relatively). Returns the bytes and, per
    frame, the offset of its pc_begin field and the code offset it must be relocated to
    (R_X86_64_PC32 / R_386_PC32 against the code's section)."""
    w = arch.bits // 8
    out = bytearray(cie(arch))
    fields = []
    for k, f in enumerate(frames):
        here = len(out)
        body = bytearray(struct.pack("<I", here + 4) + struct.pack("<i", 0) + struct.pack("<I", f.size)
                         + _uleb(0) + instructions(arch, f.cfi))
        fields.append((here + 8, f.offset))
        out += _pad(body, w if k == len(frames) - 1 else 4, here)
    return bytes(out), fields
