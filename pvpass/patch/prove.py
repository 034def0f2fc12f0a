"""Prove a patch keeps its site's clobber contract, by running it in unicorn.

The site's patch bytes run at CODE; a call goes to the trampoline (if any)
and on to a target that writes a junk value into every register its
contract lets it clobber. Every general register the site does not let the
callee change must come back unchanged, the stack pointer too, and on
x86-64 the target must see the stack aligned as a direct call from the site
would have it.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from unicorn import UC_ARCH_X86, UC_HOOK_CODE, UC_MODE_32, UC_MODE_64, Uc, UcError
from unicorn import x86_const as X

from ..arch import Arch
from ..emit.patches import Patch, allowed_writes
from ..encode import assemble
from ..model import Contract, Op, Site

CODE, TRAMP, TARGET, STACK_TOP = 0x100000, 0x200000, 0x300000, 0x480000
_CONTROL_FLOW = ("iret", "sysexit", "sysret", "swapgs")   # leave the site: not emulated


def _reg_ids(arch: Arch) -> dict[str, int]:
    return {r: getattr(X, f"UC_X86_REG_{r.upper()}") for r in arch.gprs}


@dataclass
class Proof:
    ok: bool
    problems: list[str]
    skipped: str = ""


def prove(arch: Arch, site: Site, op: Op | None, patch: Patch, contract: Contract | None) -> Proof:
    if patch.kind == "keep":
        return Proof(True, [], "the indirect call stays")
    if patch.inline is not None and any(w in patch.inline.text for w in _CONTROL_FLOW):
        return Proof(True, [], f"'{patch.inline.text}' leaves the site")
    mu = Uc(UC_ARCH_X86, UC_MODE_64 if arch.bits == 64 else UC_MODE_32)
    mu.mem_map(CODE, STACK_TOP + 0x1000 - CODE)
    code = bytearray(patch.code)
    if patch.call_offset is not None:
        dest = TRAMP if patch.trampoline is not None else TARGET
        _fix_call(code, patch.call_offset, CODE, dest)
        if patch.trampoline is not None:
            t = bytearray(patch.trampoline.code)
            _fix_call(t, patch.trampoline.call_offset, TRAMP, TARGET)
            mu.mem_write(TRAMP, bytes(t))
        clobbers = contract.clobbers if contract is not None else arch.caller_saved
        suffix = "q" if arch.bits == 64 else "l"
        junk = "; ".join(f"mov{suffix} $0x{0xdead0000 + i:x}, %{r}" for i, r in enumerate(clobbers))
        mu.mem_write(TARGET, assemble(arch, f"{junk}; ret" if junk else "ret"))
    mu.mem_write(CODE, bytes(code))
    regs = _reg_ids(arch)
    sp = "rsp" if arch.bits == 64 else "esp"
    before = {}
    for i, (r, rid) in enumerate(regs.items()):
        v = STACK_TOP if r == sp else 0x1111_0000 + i * 0x101
        if r == arch.arg_regs[0]:
            v = 0x246          # benign as EFLAGS: `push %rdi; popf` must not set TF
        mu.reg_write(rid, v)
        before[r] = v
    seen_sp: list[int] = []
    mu.hook_add(UC_HOOK_CODE, lambda uc, addr, size, _: seen_sp.append(uc.reg_read(regs[sp])),
                begin=TARGET, end=TARGET)
    try:
        mu.emu_start(CODE, CODE + len(code), timeout=1_000_000)
    except UcError as e:
        return Proof(False, [f"emulation stopped: {e}"])
    problems = []
    allowed = allowed_writes(arch, site, op)
    for r, rid in regs.items():
        after = mu.reg_read(rid)
        if r == sp:
            if after != before[r]:
                problems.append(f"%{sp} moved by {after - before[r]:+d}")
        elif r not in allowed and after != before[r]:
            problems.append(f"%{r} changed ({before[r]:#x} -> {after:#x}) but the site does not allow it")
    if seen_sp and arch.bits == 64:
        # A direct call from the site would enter the target with %rsp = site - 8.
        if (seen_sp[0] - (STACK_TOP - 8)) % 16:
            problems.append(f"the target is entered with %rsp misaligned by {(seen_sp[0] - STACK_TOP + 8) % 16}")
    return Proof(not problems, problems)


def _fix_call(buf: bytearray, off: int, base: int, dest: int) -> None:
    rel = dest - (base + off + 5)
    struct.pack_into("<i", buf, off + 1, rel)
