"""Stubs, assembled with keystone: inline replacements (with the registers
they write and the memory they name, read back from the bytes by capstone)
and trampolines that save exactly the registers a target clobbers beyond
what its sites allow."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import capstone

from ..arch import Arch
from ..table import TRAMP_PREFIX
from ..encode import EncodeError, SymField, assemble, assemble_symbolic
from .cfi import Cfi, code_cfi


@dataclass(frozen=True)
class Fixup:
    """A symbol's 32-bit field in an inline replacement, and the relocation
    GNU as writes for it."""
    offset: int          # of the field in the code (which holds zero)
    type: str            # R_386_32 | R_X86_64_PC32 | R_X86_64_32S | R_X86_64_32
    symbol: str
    addend: int          # RELA addend (i386 REL: the link step stores it in the field)
    value: int           # the address named is segment:symbol + value
    writes: bool         # the instruction stores to that memory
    segment: str = ""    # "gs", "fs" for per-CPU / thread-local memory

    @property
    def pcrel(self) -> bool:
        return self.type.endswith("PC32")


@dataclass(frozen=True)
class Inline:
    text: str
    code: bytes
    writes: tuple[str, ...]     # general registers written (stack pointer excluded)
    fixups: tuple[Fixup, ...] = ()

    @property
    def memory_writes(self) -> tuple[str, ...]:
        """What memory the replacement stores to, as `sym+addend` text."""
        return tuple((f"%{f.segment}:" if f.segment else "") + f.symbol + (f"{f.value:+d}" if f.value else "")
                     for f in self.fixups if f.writes)


@dataclass(frozen=True)
class Trampoline:
    name: str
    target: str
    saved: tuple[str, ...]       # pushed in this order, popped in reverse
    lines: tuple[str, ...]       # AT&T text, `call TARGET` symbolic
    code: bytes                  # the call's rel32 is zero: it gets a relocation
    call_offset: int             # offset of the e8 opcode in `code`
    cfi: tuple[Cfi, ...] = ()    # its unwind rules (emit/cfi.py)


@lru_cache(maxsize=2)
def _cs(bits: int) -> capstone.Cs:
    cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64 if bits == 64 else capstone.CS_MODE_32)
    cs.detail = True
    cs.syntax = capstone.CS_OPT_SYNTAX_ATT
    return cs


def disassemble(arch: Arch, code: bytes, addr: int = 0) -> list[tuple[int, int, str]]:
    """(offset, size, 'mnemonic operands') per instruction."""
    return [(i.address - addr, i.size, f"{i.mnemonic} {i.op_str}".strip())
            for i in _cs(arch.bits).disasm(code, addr)]


def written_gprs(arch: Arch, code: bytes) -> tuple[str, ...]:
    cs = _cs(arch.bits)
    out: set[str] = set()
    n = 0
    for ins in cs.disasm(code, 0):
        n += ins.size
        _, writes = ins.regs_access()
        for r in writes:
            name = arch.canon_reg(ins.reg_name(r) or "")
            if name and name not in ("esp", "rsp"):
                out.add(name)
    if n != len(code):
        raise EncodeError(f"capstone cannot decode {code[n:].hex()}")
    return tuple(r for r in arch.gprs if r in out)


@lru_cache(maxsize=4096)
def inline_stub(arch: Arch, text: str) -> Inline:
    code, fields = assemble_symbolic(arch, text)
    return Inline(text, code, written_gprs(arch, code), tuple(_fixup(arch, text, code, f) for f in fields))


def apply_fixups(code: bytes, fixups: tuple[Fixup, ...], at: int, addresses: dict[str, int]) -> bytes:
    """The bytes a linker writes for `code` placed at address `at`, with the
    named symbols at `addresses` (S + A, or S + A - P for PC32)."""
    buf = bytearray(code)
    for f in fixups:
        v = addresses[f.symbol] + f.addend - ((at + f.offset) if f.pcrel else 0)
        buf[f.offset:f.offset + 4] = (v & 0xFFFFFFFF).to_bytes(4, "little")
    return bytes(buf)


def _fixup(arch: Arch, text: str, code: bytes, f: SymField) -> Fixup:
    """Which relocation GNU as writes for a symbol's field."""
    for ins in _cs(arch.bits).disasm(code, 0):
        if not ins.address <= f.offset < ins.address + ins.size:
            continue
        if any(g in ins.groups for g in (capstone.CS_GRP_CALL, capstone.CS_GRP_JUMP, capstone.CS_GRP_RET)):
            raise EncodeError(f"'{text}': a branch to {f.symbol} in an inline replacement: "
                              f"make {f.symbol} the backend's target instead")
        mem = [o for o in ins.operands if o.type == capstone.x86.X86_OP_MEM]
        writes = bool(mem) and bool(mem[0].access & capstone.CS_AC_WRITE)
        seg = ins.reg_name(mem[0].mem.segment) if mem and mem[0].mem.segment else ""
        if mem and mem[0].mem.base == capstone.x86.X86_REG_RIP:
            # keystone kept the literal displacement; as counts from the field's end
            end = ins.address + ins.size
            return Fixup(f.offset, "R_X86_64_PC32", f.symbol, f.value - (end - f.offset), f.value, writes, seg)
        if arch.bits == 32:
            return Fixup(f.offset, "R_386_32", f.symbol, f.value, f.value, writes, seg)
        # an address, or an immediate sign-extended to 64 bits: 32S; else zero-extended
        wide = bool(mem) or any(o.size == 8 for o in ins.operands)
        return Fixup(f.offset, "R_X86_64_32S" if wide else "R_X86_64_32", f.symbol, f.value, f.value, writes, seg)
    raise EncodeError(f"'{text}': no instruction holds the field of {f.symbol}")


def trampoline_name(target: str, arch: Arch, saved: tuple[str, ...]) -> str:
    return f"{TRAMP_PREFIX}{target}_{arch.mask(saved):x}"


@lru_cache(maxsize=4096)
def trampoline(arch: Arch, target: str, saved: tuple[str, ...]) -> Trampoline:
    """push saved; [realign]; call target; [undo]; pop saved; ret.

    The return address plus the pushes must keep the stack 16-byte aligned
    at the inner call, as the caller's own call would have had it (the
    x86-64 psABI, and the i386 one gcc follows on Linux): on x86-64 one
    8-byte slot with an even number of pushes, on i386 0-3 4-byte slots."""
    suffix = "q" if arch.bits == 64 else "l"
    sp = "%rsp" if arch.bits == 64 else "%esp"
    pre = [f"push{suffix} %{r}" for r in saved]
    post = [f"pop{suffix} %{r}" for r in reversed(saved)]
    w = arch.bits // 8
    pad = -(w + w * len(saved)) % 16
    if pad:
        pre.append(f"lea -{pad}({sp}), {sp}")
        post.insert(0, f"lea {pad}({sp}), {sp}")
    head = assemble(arch, "; ".join(pre)) if pre else b""
    tail = assemble(arch, "; ".join(post + ["ret"]))
    call = bytes([0xE8, 0, 0, 0, 0])
    lines = tuple(pre + [f"call {target}"] + post + ["ret"])
    code = head + call + tail
    return Trampoline(trampoline_name(target, arch, saved), target, saved, lines,
                      code, len(head), code_cfi(arch, _cs(arch.bits).disasm(code, 0)))
