"""The unwind info of the code a patch runs, checked against its execution.

The file's `.eh_frame` is decoded with pyelftools' DWARF CFI decoder (not
with pvpass's encoder, emit/cfi.py), from the bytes as they sit in memory
(relocated as the linker would, verify/image.py). The site copy runs in
unicorn as patched, with every call out of the site and its trampolines
returned from at once; before each instruction the CFA and the address of
the return-address slot are computed from the FDE that covers it and
compared with what the run shows:

- in a trampoline (entered by a call): the CFA is the stack pointer at its
  entry plus a word, and the return address is at the CFA minus a word,
  which is where the call put it;
- in the site (patched code in the caller's function): the caller's frame
  does not change, so both must be what they were at the site's first
  instruction. A site in code without unwind info is counted apart, as is
  a rule the checker does not evaluate (a DWARF expression), and a site
  whose code pushes where the caller's CFA is %sp-based (kernel-style code
  without a frame pointer: an inline `pushf; pop`, the eax-clobber site's
  saves): gcc's rule cannot see an asm's pushes, the unwind info is off by
  exactly those words until they are popped. Any other difference fails.
"""
from __future__ import annotations

import io
import random
from bisect import bisect_right
from dataclasses import dataclass, field
from functools import cached_property

from elftools.dwarf.callframe import FDE, CallFrameInfo
from elftools.dwarf.structs import DWARFStructs
from unicorn import UC_HOOK_CODE, UC_HOOK_MEM_UNMAPPED, UC_HOOK_MEM_WRITE, UcError

from .artifact import Artifact, SiteCopy
from .emulate import PERCPU_BASE, STACK_LO, STACK_SIZE, Machine, Outcome, map_on_touch, release, set_segments

# DWARF register numbers: x86-64 psABI 3.6.2 (figure 3.36), i386 psABI 2.5 (SVR4 numbering)
_DWARF = {64: ("rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp",
               "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip"),
          32: ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip")}
MAX_STEPS = 4_000


@dataclass
class CfiCount:
    instructions: int = 0            # instructions whose CFA and return-address slot were checked
    trampolines: set[int] = field(default_factory=set)
    sites: int = 0                   # site copies checked
    uncovered: int = 0               # site copies in code no FDE covers
    unevaluated: int = 0             # site copies whose CFA rule is a DWARF expression
    drifted: int = 0                 # site copies whose own pushes an %sp-based CFA rule misses

    def summary(self) -> str:
        return (f"CFI checked at {self.instructions} instructions ({self.sites} patched site copies, "
                f"{len(self.trampolines)} trampolines); {self.uncovered} site copies have no unwind "
                f"info, {self.unevaluated} a CFA expression not evaluated, {self.drifted} push where "
                f"the caller's CFA is %sp-based (off by those words until they are popped)")


@dataclass(frozen=True)
class _Rule:
    reg: str | None          # None: a DWARF expression the checker does not evaluate
    offset: int
    ra: int | None           # offset of the return-address slot from the CFA
    expr: tuple = ()         # DW_OP_bregN k [DW_OP_deref] (gcc's rule for a realigned frame)


DW_OP_deref, DW_OP_breg0, DW_OP_breg31 = 0x06, 0x70, 0x8F


def _breg_deref(expr) -> tuple | None:
    """(register number, offset, deref) for `DW_OP_bregN k [DW_OP_deref]`."""
    b = list(expr)
    if not b or not DW_OP_breg0 <= b[0] <= DW_OP_breg31:
        return None
    v, shift, k = 0, 0, 1
    while True:
        if k >= len(b):
            return None
        v |= (b[k] & 0x7F) << shift
        shift += 7
        k += 1
        if not b[k - 1] & 0x80:
            break
    if b[k - 1] & 0x40:
        v -= 1 << shift
    rest = b[k:]
    if rest not in ([], [DW_OP_deref]):
        return None
    return b[0] - DW_OP_breg0, v, bool(rest)


class Frames:
    """The file's FDEs, by address."""

    def __init__(self, art: Artifact) -> None:
        self.art = art
        self.error = ""

    @cached_property
    def _fdes(self) -> list[tuple[int, int, list]]:
        art = self.art
        sec = art.image.sections.get(".eh_frame")
        if sec is None or not sec.size:
            return []
        data = art.image.read(sec.addr, sec.size)
        structs = DWARFStructs(little_endian=True, dwarf_format=32, address_size=art.bits // 8)
        try:
            entries = CallFrameInfo(io.BytesIO(data), len(data), sec.addr, structs,
                                    for_eh_frame=True).get_entries()
            out = []
            for e in entries:
                if isinstance(e, FDE):
                    lo = e.header.initial_location
                    out.append((lo, lo + e.header.address_range, e.get_decoded().table))
        except Exception as ex:      # noqa: BLE001 -- pyelftools raises anything (even AssertionError) on corrupt bytes
            self.error = f".eh_frame cannot be decoded: {ex}"
            return []
        return sorted(out, key=lambda t: t[0])

    def rule(self, pc: int) -> _Rule | None:
        fdes = self._fdes
        k = bisect_right([lo for lo, _, _ in fdes], pc) - 1
        if k < 0 or not fdes[k][0] <= pc < fdes[k][1]:
            return None
        rows = [r for r in fdes[k][2] if r["pc"] <= pc]
        if not rows:
            return None
        row = rows[-1]
        cfa = row["cfa"]
        names = _DWARF[self.art.bits]
        ra_rule = row.get(len(names) - 1)
        ra = ra_rule.arg if ra_rule is not None and ra_rule.type == "OFFSET" else None
        if cfa.expr is not None:
            e = _breg_deref(cfa.expr)
            if e is None or e[0] >= len(names) - 1:
                return _Rule(None, 0, ra)
            return _Rule(names[e[0]], e[1], ra, (e[2],))
        if cfa.reg is None or cfa.reg >= len(names) - 1:
            return _Rule(None, 0, ra)
        return _Rule(names[cfa.reg], cfa.offset, ra)


def checked(m: Machine, frames: Frames, site: SiteCopy, code: bytes, seed: str, count: CfiCount,
            out: Outcome) -> Outcome:
    """verify's hook: a proved pair whose unwind info is wrong fails."""
    if out.status != "proved":
        return out
    problems = check(m, frames, site, code, seed, count)
    return Outcome("failed", problems, stood_in=out.stood_in) if problems else out


def check(m: Machine, frames: Frames, site: SiteCopy, code: bytes, seed: str,
          count: CfiCount) -> list[str]:
    """Problems with the unwind info while `code` runs at the site."""
    art, mu, conv = m.art, m.mu, m.conv
    w, end = conv.word, site.addr + site.length
    where = art.image.where
    rng = random.Random(f"{seed}:cfi:{site.addr:#x}")
    m.reset()
    mu.mem_write(site.addr, code)
    m.dirty.append((site.addr, site.length))
    sp0 = STACK_LO + STACK_SIZE - 0x2000 - 16 * rng.randrange(0, 32)
    fp = conv.gprs[5]                                # %rbp / %ebp: a frame pointer above %sp
    for r, rid in m.rids.items():
        v = sp0 if r == conv.sp else sp0 + 16 * rng.randrange(4, 32) if r == fp else rng.getrandbits(art.bits)
        mu.reg_write(rid, v)
    mu.reg_write(m.flags, 0x202)
    set_segments(m, PERCPU_BASE)
    mapped: list[int] = []         # data the patch reaches through random registers (emulate.py checks it)
    problems: list[str] = []
    base = frames.rule(site.addr)
    st = {"base": None, "sp": None, "tramp_sp": None, "checked": 0, "steps": 0, "drift": False}
    if base is None:
        count.uncovered += 1
    elif base.reg is None:
        count.unevaluated += 1
        base = None

    def value(rule: _Rule) -> tuple[int, int | None]:
        cfa = (mu.reg_read(m.rids[rule.reg]) + rule.offset) & ((1 << art.bits) - 1)
        if rule.expr and rule.expr[0]:
            try:
                cfa = int.from_bytes(mu.mem_read(cfa, w), "little")
            except UcError:
                return -1, None                       # unreadable: differs from any CFA
        return cfa, None if rule.ra is None else cfa + rule.ra

    def on_code(uc, addr, size, _):
        st["steps"] += 1
        if addr == end or st["steps"] > MAX_STEPS or not (site.addr <= addr < end or art.in_trampoline(addr)):
            uc.emu_stop()
            return
        sp = uc.reg_read(m.rids[conv.sp])
        if site.addr <= addr < end:
            st["tramp_sp"] = None
            if base is None:
                return
            rule = base if addr == site.addr else frames.rule(addr)
            if rule is None or rule.reg is None:
                problems.append(f"at {where(addr)} " + ("no unwind info covers the site" if rule is None
                                                        else "the CFA becomes a DWARF expression"))
                return
            got = value(rule)
            if addr == site.addr:
                st["base"], st["sp"] = got, sp
            elif got != st["base"] and rule.reg == conv.sp and not rule.expr \
                    and got[0] - st["base"][0] == sp - st["sp"]:
                st["drift"] = True        # the site's own push, which an %sp-based rule cannot see
            elif got != st["base"]:
                problems.append(f"at {where(addr)} the unwind info gives the caller's CFA {_show(got)}, "
                                f"not {_show(st['base'])} as at the site's start")
            st["checked"] += 1
            return
        if st["tramp_sp"] is None:
            st["tramp_sp"] = sp                       # entered by the site's call
            count.trampolines.add(addr)
        rule = frames.rule(addr)
        want = (st["tramp_sp"] + w, st["tramp_sp"])
        if rule is None:
            problems.append(f"no unwind info covers the trampoline code at {where(addr)}")
        elif rule.reg is None:
            problems.append(f"at {where(addr)} the CFA is a DWARF expression, not %{conv.sp} + offset")
        elif value(rule) != want:
            problems.append(f"at {where(addr)} the unwind info gives CFA {_show(value(rule))}, the run "
                            f"shows {_show(want)} (%{conv.sp} at the trampoline's entry + {w})")
        st["checked"] += 1

    hooks = [mu.hook_add(UC_HOOK_CODE, on_code), mu.hook_add(UC_HOOK_MEM_UNMAPPED, map_on_touch(mapped)),
             mu.hook_add(UC_HOOK_MEM_WRITE, lambda uc, acc, addr, size, v, _: m.written(addr, size))]
    pc = site.addr
    try:
        while not problems and st["steps"] <= MAX_STEPS:
            try:
                mu.emu_start(pc, 0)
            except UcError:
                pass                                  # a call into a stand-in: returned from below
            pc = mu.reg_read(m.ip)
            if pc == end:
                break
            sp = mu.reg_read(m.rids[conv.sp])
            ret = int.from_bytes(mu.mem_read(sp, w), "little")
            if not (site.addr <= ret <= end or art.in_trampoline(ret)):
                problems.append(f"the run reaches {where(pc)}, not by a call from the site or a trampoline")
                break
            mu.reg_write(m.rids[conv.sp], sp + w)     # the target returns at once
            pc = ret
    finally:
        release(mu, hooks, mapped)
    if st["steps"] > MAX_STEPS and not problems:
        problems.append(f"no fall-through to {where(end)} within {MAX_STEPS} instructions")
    count.instructions += st["checked"]
    count.sites += 1
    count.drifted += st["drift"] and not problems
    if frames.error:
        problems.insert(0, frames.error)
    return problems[:1]


def _show(v: tuple[int, int | None]) -> str:
    cfa, ra = v
    return f"{cfa:#x} (return address at {ra:#x})" if ra is not None else f"{cfa:#x} (no return-address rule)"
