"""The clobber set against the compiled caller: every register a site's
mask lets a patch change must be dead after the site in the function gcc
compiled around it (written before it is read on every path to the
function's return, where the psABI's callee-saved registers are live).
gcc keeps a value in a register across an asm statement only when the
asm's constraints leave it alone, so a mask wider than what gcc was told
shows up as a read of a masked register after the site, whatever the
annotation says.

Read from the machine code only (capstone's register accesses); paths are
followed through direct jumps. What cannot be followed is taken as
reading nothing the site may change: an indirect jump, a call (its
arguments are not known; it writes every caller-saved register), a tail
call, code past the function's symbol. The result registers are the
site's outputs and are not checked."""
from __future__ import annotations

import bisect
from dataclasses import dataclass

from capstone import x86_const as CX

from . import abi
from ..diag import PvError
from .artifact import Artifact, SiteCopy, disasm
from .emulate import conv_reg

MAX_STEPS = 50_000          # instructions visited per (site, register): a bound, not a tuning
MAX_FUNCTION = 1 << 20      # a function larger is not decoded (its sites are not checked), as on the build path
_ENDS = ("ret", "iret", "ud2", "hlt", "sysret", "sysexit")     # no instruction after these runs
_ZERO_IDIOMS = ("xor", "sub", "sbb", "pxor")


@dataclass(frozen=True)
class Insn:
    addr: int
    size: int
    text: str
    reads: frozenset[str]
    kills: frozenset[str]      # full-width writes: the old value is dead
    succ: tuple[int, ...]      # addresses execution continues at
    end: bool                  # a return: the callee-saved registers are read there


class Caller:
    """The functions of a file, decoded on demand, once."""

    def __init__(self, art: Artifact) -> None:
        self.art = art
        self.conv = abi.OP_CONVENTION[art.arch]
        self.insns: dict[int, Insn] = {}
        self.decoded: set[int] = set()
        self.funcs = sorted((a, a + n) for a, n, _ in art.image.symbols
                            if n and (s := art.image.section_at(a)) is not None and s.exec)
        self.starts = {a for a, _ in self.funcs}
        self.sites = {s.addr: s for s in art.sites}

    def function_of(self, addr: int) -> tuple[int, int] | None:
        """The innermost function symbol holding addr (the nearest start
        below it that reaches it)."""
        k = bisect.bisect_right(self.funcs, (addr, 1 << 64))
        while k > 0:
            k -= 1
            lo, hi = self.funcs[k]
            if addr < hi:
                return lo, hi
            if lo < addr - MAX_FUNCTION:
                return None
        return None

    def insn(self, addr: int) -> Insn | None:
        if addr not in self.decoded:
            self._decode(addr)
        return self.insns.get(addr)

    def _decode(self, addr: int) -> None:
        fn = self.function_of(addr)
        lo, hi = fn if fn else (addr, addr)
        if fn is None or lo in self.decoded or hi - lo > MAX_FUNCTION:
            self.decoded.add(addr)
            return
        self.decoded.add(lo)
        try:
            code = self.art.image.read(lo, hi - lo)
        except PvError:         # outside the image: nothing to follow
            return
        for i in disasm(self.art.bits, code, lo):
            self.insns[i.address] = self._insn(i, hi)
            self.decoded.add(i.address)

    def _insn(self, i, hi: int) -> Insn:
        conv = self.conv
        reads, writes = i.regs_access()
        r = {conv_reg(conv, i.reg_name(x)) for x in reads}
        kills = set()
        for x in writes:
            name = i.reg_name(x)
            full = conv_reg(conv, name)
            if full is None:
                continue
            if name == full or (conv.bits == 64 and name.startswith("e")) or name.endswith("d"):
                kills.add(full)           # a 32-bit write zero-extends on x86-64
            else:
                r.add(full)               # a partial write keeps the other bits
        ops = i.operands
        if i.mnemonic in _ZERO_IDIOMS and len(ops) == 2 and all(o.type == CX.X86_OP_REG for o in ops) \
                and ops[0].reg == ops[1].reg:
            r.discard(conv_reg(conv, i.reg_name(ops[0].reg)))
        if i.mnemonic == "call":      # reads its operand's registers; the callee may change the rest
            kills |= set(conv.caller_saved)
        r.discard(None)
        kills.discard(conv.sp)
        nxt = i.address + i.size
        succ: tuple[int, ...] = ()
        end = i.mnemonic.startswith("ret")
        if i.mnemonic == "jmp" or i.mnemonic.startswith("j"):
            tgt = ops[0].imm if ops and ops[0].type == CX.X86_OP_IMM else None
            follow = (tgt,) if tgt is not None and tgt not in self.starts else ()
            succ = follow if i.mnemonic == "jmp" else (*follow, nxt)
        elif not i.mnemonic.startswith(_ENDS) and nxt < hi:
            succ = (nxt,)
        return Insn(i.address, i.size, f"{i.mnemonic} {i.op_str}".strip(), frozenset(r), frozenset(kills),
                    succ, end)

    def first_read(self, start: int, reg: str) -> Insn | None:
        """The first instruction on some path from `start` that reads `reg`
        before writing it (a return, where `reg` is callee-saved), or None."""
        saved = reg not in self.conv.caller_saved
        seen, todo, steps = set(), [start], 0
        while todo and steps < MAX_STEPS:
            a = todo.pop()
            if a in seen:
                continue
            seen.add(a)
            steps += 1
            other = self.sites.get(a)
            if other is not None:         # another site: it changes its mask (its own saves are no use)
                if reg not in self.conv.regs_of_mask(other.clobbers):
                    todo.append(a + other.length)
                continue
            ins = self.insn(a)
            if ins is None:
                continue
            if reg in ins.reads or (ins.end and saved):
                return ins
            if reg in ins.kills:
                continue
            todo.extend(ins.succ)
        return None


def live_masked(c: Caller, site: SiteCopy) -> tuple[list[str], frozenset[str]]:
    """(problems, kept): each caller-saved register the site's mask allows
    that the caller still reads after the site is a problem; a callee-saved
    one (the i386 %edi bit of the kernel's CLBR_ANY, which gcc's constraints
    for a C call never name) is kept: no patch may change it."""
    conv = c.conv
    if c.function_of(site.addr) is None:
        return [], frozenset()
    out, kept = [], set()
    for reg in sorted(conv.regs_of_mask(site.clobbers) - set(conv.ret_regs), key=conv.gprs.index):
        ins = c.first_read(site.addr + site.length, reg)
        if ins is not None and reg not in conv.caller_saved:
            kept.add(reg)
        elif ins is not None:
            how = "returns with it (callee-saved)" if reg not in ins.reads else f"'{ins.text}' reads it"
            out.append(f"the clobber mask {site.clobbers:#x} lets a patch change %{reg}, but the caller still "
                       f"needs it after the site: at {c.art.image.where(ins.addr)} {how} before any write "
                       f"(gcc was not told the site changes %{reg})")
    return out, frozenset(kept)
