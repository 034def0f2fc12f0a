"""Run one site copy, as it would run, in unicorn, from seeded random
full-width register states, and check it against the oracle (`abi.py`).

The code at the site runs until it falls through to the byte after the
site. The first code it reaches outside the site and the trampolines is
the target: its arguments and stack pointer are recorded at entry, its
result at its return. A target the file holds runs as real code; a
function the file does not define (and a target that cannot run on random
arguments) is stood in for: the stand-in writes a random value into every
register the target's convention lets it change, and the arithmetic flags.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from unicorn import (UC_ARCH_X86, UC_HOOK_CODE, UC_HOOK_MEM_READ, UC_HOOK_MEM_UNMAPPED, UC_HOOK_MEM_WRITE,
                     UC_MEM_FETCH_UNMAPPED, UC_MEM_WRITE, UC_MODE_32, UC_MODE_64, Uc, UcError)
from unicorn import x86_const as X
from capstone.x86_const import X86_OP_MEM

from . import abi
from ..diag import PvError
from .artifact import Artifact, SiteCopy, disasm

PAGE = 0x1000
STACK_LO, STACK_SIZE = 0x0E00_0000, 0x10000
PERCPU_BASE = 0x2000_0000   # x86-64 %gs base: this + 4 KiB x a random CPU number
TLS_BASE = 0x3000_0000      # x86-64 %fs base when the file has no TLS block
KERNEL_GS_AREA = 0x2800_0000  # x86-64 KERNEL_GS_BASE: this + 4 KiB x a random number
MAX_INSNS = 20_000
LEAVES = ("iret", "sysret", "sysexit")     # leave the site for good: only an op that does not return may
UNREPEATABLE = ("rdtsc", "rdrand", "rdseed")    # two runs read two values: not compared with the function
KERNEL_GS_BASE = 0xC000_0102                # the MSR swapgs exchanges with the GS base (Intel SDM vol. 4)


@dataclass(frozen=True)
class Named:
    """Memory an inline replacement names: its instruction's offset in the
    site, the address (for %gs:/%fs: forms, the offset from the segment
    base) and width, and the symbol that holds it."""
    offset: int
    segment: str              # "", "gs" or "fs"
    addr: int
    size: int
    symbol: str


@dataclass(frozen=True)
class Expect:
    kind: str                 # the record's kind, or "file" (ahead of time, no record)
    target: int | None        # the function the site must reach, when known
    inline: bool              # explicit memory operands of the site's code are its own writes
    loads_flags: bool = False  # the code pops the flags register (restore_fl): DF/TF are its to set
    named: tuple[Named, ...] = ()   # the only place each of these instructions may access
    reference: int | None = None    # a function the file holds that the patch stands for (inline, nop)
    returns: bool | None = None     # the op returns a value (declared); None when unknown
    noreturn: bool = False    # the site as gcc built it jumps (the kernel's iret, irq_enable_sysexit)
    kept: frozenset[str] = frozenset()  # in the mask, but the caller still needs them (liveness.py)


@dataclass
class Outcome:
    status: str               # proved | failed | not emulated
    problems: list[str] = field(default_factory=list)
    reason: str = ""
    stood_in: set[int] = field(default_factory=set)


def _rid(r: str) -> int:
    return getattr(X, f"UC_X86_REG_{r.upper()}")


class _Outside(Exception):
    """The site calls an address the file does not hold."""


class Machine:
    """One unicorn with the file's image mapped, reused for every run."""

    def __init__(self, art: Artifact) -> None:
        self.art = art
        self.conv = abi.OP_CONVENTION[art.arch]
        self.mu = Uc(UC_ARCH_X86, UC_MODE_64 if art.bits == 64 else UC_MODE_32)
        self.rids = {r: _rid(r) for r in self.conv.gprs}
        self.ip = X.UC_X86_REG_RIP if art.bits == 64 else X.UC_X86_REG_EIP
        self.flags = X.UC_X86_REG_EFLAGS
        self.dirty: list[tuple[int, int]] | None = None
        try:
            self._map()
        except UcError as e:
            raise PvError(f"{art.path}: its sections cannot be mapped for emulation "
                          f"(they overlap the emulator's stack or stand-ins?): {e}") from None

    def _map(self) -> None:
        art = self.art
        pages: set[int] = set()
        for start, buf in art.image.chunks.items():
            pages.update(range(start // PAGE, (start + len(buf) + PAGE - 1) // PAGE))
        for lo, hi in _runs(sorted(pages)):
            self.mu.mem_map(lo * PAGE, (hi - lo) * PAGE)
        self.mu.mem_map(STACK_LO, STACK_SIZE)
        self.reset()

    def reset(self) -> None:
        """The whole image (once), then only what runs wrote: cheap per run."""
        if self.dirty is None:
            for start, buf in self.art.image.chunks.items():
                self.mu.mem_write(start, bytes(buf))
        else:
            for a, n in self.dirty:
                self.mu.mem_write(a, self.art.image.read(a, n))
        self.dirty = []

    def written(self, addr: int, size: int) -> None:
        if any(s <= addr < s + len(b) for s, b in self.art.image.chunks.items()):
            self.dirty.append((addr, size))


def _runs(pages: list[int]):
    i = 0
    while i < len(pages):
        j = i
        while j + 1 < len(pages) and pages[j + 1] == pages[j] + 1:
            j += 1
        yield pages[i], pages[j] + 1
        i = j + 1


def map_on_touch(mapped: list[int]):
    """A UC_HOOK_MEM_UNMAPPED hook: a page of zeros where code reads or
    writes data no page holds (not where it fetches), listed in `mapped`
    for the caller to unmap."""
    def on_unmapped(uc, access, addr, size, value, _):
        if access == UC_MEM_FETCH_UNMAPPED:
            return False
        try:
            uc.mem_map(addr & ~(PAGE - 1), PAGE)
        except UcError:
            return False
        mapped.append(addr & ~(PAGE - 1))
        return True
    return on_unmapped


def release(mu, hooks: list, mapped: list[int]) -> None:
    """Remove a run's hooks and the pages map_on_touch added."""
    for h in hooks:
        mu.hook_del(h)
    for p in mapped:
        mu.mem_unmap(p, PAGE)


def leaves_site(bits: int, code: bytes) -> str | None:
    for ins in disasm(bits, code):
        if ins.mnemonic.startswith(LEAVES):
            return ins.mnemonic
    return None


def prove(m: Machine, site: SiteCopy, code: bytes, expect: Expect, seed: str, states: int) -> Outcome:
    gone = leaves_site(m.art.bits, code)
    if gone and expect.noreturn:
        return Outcome("not emulated", reason=f"'{gone}' leaves the site, as the op does (its site jumps); "
                                              f"unicorn cannot follow it back")
    if gone:
        return Outcome("failed", problems=[f"'{gone}' leaves the site: the op returns (its site calls), "
                                           f"so control must reach the byte after it"])
    if not expect.loads_flags and any(i.mnemonic.startswith("popf") for i in disasm(m.art.bits, code)):
        expect = replace(expect, loads_flags=True)
    out = Outcome("proved")
    for i in range(states):
        state = f"{seed}:{site.addr:#x}:{i}"
        try:
            problems = _run(m, site, code, expect, state, out.stood_in)
            if problems is None:          # the target could not run: stood in, run again
                problems = _run(m, site, code, expect, state, out.stood_in) or []
        except _Outside as e:
            return Outcome("not emulated", reason=f"it calls {e.args[0]:#x}, which the file does not hold "
                                                  f"(code mapped at run time? give it with --map FILE@ADDR)")
        if problems:
            out.status = "failed"
            out.problems = [f"{p} (start state {state!r})" for p in problems]
            return out
    return out


def _run(m: Machine, site: SiteCopy, code: bytes, expect: Expect, state: str,
         stood_in: set[int]) -> list[str] | None:
    """Problems found from one start state; None when a real target faulted
    or did not return (it is then added to `stood_in`)."""
    conv, mu, art = m.conv, m.mu, m.art
    rng = random.Random(state)
    w = conv.word
    m.reset()
    mu.mem_write(site.addr, code)
    m.dirty.append((site.addr, site.length))
    end = site.addr + site.length
    insns = disasm(art.bits, code, site.addr)
    mem_insns = [i for i in insns if i.mnemonic != "nop" and any(op.type == X86_OP_MEM for op in i.operands)]
    # an inline replacement may store through the pointers it is given (its
    # argument registers); what it names is checked by `named_at`, the rest
    # must stay below the stack pointer
    through_args = {i.address for i in mem_insns if _through_args(conv, i)} if expect.inline else set()
    bases = {conv_reg(conv, i.reg_name(r)) for i in mem_insns for op in i.operands
             if op.type == X86_OP_MEM for r in (op.mem.base, op.mem.index) if r}
    # a random full-width start state; registers an inline replacement uses
    # as addresses point at memory that exists
    sp0 = STACK_LO + STACK_SIZE - 0x2000 - 8 * rng.randrange(0, 64)
    frames = rng.randbytes(0x2000)
    mu.mem_write(sp0 - 0x1800, frames)     # the frames in use, and the caller's
    before: dict[str, int] = {}
    for r, rid in m.rids.items():
        if r == conv.sp:
            v = sp0
        elif r in bases:
            v = (rng.getrandbits(36) << 4) | (1 << 40) if art.bits == 64 else 0x8000_0000 | rng.getrandbits(30)
        else:
            v = rng.getrandbits(art.bits)
        if expect.loads_flags and r in conv.arg_regs:
            v &= ~abi.TF          # a flags value with TF set would trap at the next instruction
        mu.reg_write(rid, v)
        before[r] = v
    flags0 = 0x202 | (rng.getrandbits(16) & abi.CC_FLAGS)
    mu.reg_write(m.flags, flags0)
    seg_base = set_segments(m, PERCPU_BASE + PAGE * rng.randrange(256), KERNEL_GS_AREA + PAGE * rng.randrange(256))
    named_at = {site.addr + n.offset: n for n in expect.named}
    mapped: list[int] = []
    st = {"count": 0, "entry": None, "ret": None, "args": None, "result": None, "in": False,
          "problems": [], "fault_in_target": False, "done": False, "prev": None, "mem": {}}

    def in_ours(a: int) -> bool:
        return site.addr <= a < end or art.in_trampoline(a)

    def on_code(uc, addr, size, _):
        st["count"] += 1
        if st["count"] > MAX_INSNS:
            st["fault_in_target"] = st["in"]
            st["problems"].append(f"no fall-through to {art.image.where(end)} within {MAX_INSNS} instructions")
            uc.emu_stop()
            return
        if addr == end and not st["in"]:
            st["done"] = True
            uc.emu_stop()
            return
        if site.addr <= addr < end and addr + size > end:
            st["problems"].append(f"the instruction at {art.image.where(addr)} runs past the site's end "
                                  f"({site.length} bytes)")
            uc.emu_stop()
            return
        sp = uc.reg_read(m.rids[conv.sp])
        if st["in"] and addr == st["ret"] and sp == st["entry_sp"] + w:
            st["in"] = False
            st["result"] = {r: uc.reg_read(m.rids[r]) for r in conv.ret_regs}
        prev, st["prev"] = st["prev"], (addr + size, sp)
        called = prev is not None and addr != prev[0] and sp == prev[1] - w \
            and int.from_bytes(uc.mem_read(sp, w), "little") == prev[0]
        if not st["in"] and ((called and not art.in_trampoline(addr)) or not in_ours(addr)):
            # the site or a trampoline called out (into the target), or jumped away
            if st["entry"] is not None or not called:
                again = " again" if st["entry"] is not None else " without a call"
                st["problems"].append(f"execution leaves the site{again}, to {art.image.where(addr)}")
                uc.emu_stop()
                return
            st.update(entry=addr, ret=prev[0], entry_sp=sp, **{"in": True})
            st["args"] = {r: uc.reg_read(m.rids[r]) for r in conv.arg_regs}
        if st["in"] and (addr in art.image.standins or addr in stood_in):
            _stand_in(m, uc, rng, sp)

    def off_named(pc: int, addr: int, size: int, verb: str) -> bool:
        """Checked an access of an instruction that names its memory."""
        n = named_at.get(pc)
        if n is None:
            return False
        want = seg_base[n.segment] + n.addr
        if not (want <= addr and addr + size <= want + n.size):
            st["problems"].append(f"{art.image.where(pc)} {verb} {size} bytes at {addr:#x}, not at the "
                                  f"address it names, {n.symbol} ({want:#x})")
        return True

    def on_read(uc, access, addr, size, value, _):
        if not st["in"]:
            off_named(uc.reg_read(m.ip), addr, size, "reads")

    def on_write(uc, access, addr, size, value, _):
        m.written(addr, size)
        if st["in"]:
            return
        _store(st["mem"], addr, size, value)
        pc = uc.reg_read(m.ip)
        if off_named(pc, addr, size, "writes"):
            return
        if pc in through_args or sp0 - 0x1000 <= addr and addr + size <= sp0:
            return
        st["problems"].append(f"{art.image.where(pc)} writes {size} bytes at {addr:#x}, "
                              f"not below the stack pointer ({sp0:#x})")

    def on_unmapped(uc, access, addr, size, value, _):
        if access == UC_MEM_FETCH_UNMAPPED:
            prev, sp = st["prev"], uc.reg_read(m.rids[conv.sp])
            if not st["in"] and prev is not None and sp == prev[1] - w and in_ours(prev[0] - 1) \
                    and int.from_bytes(uc.mem_read(sp, w), "little") == prev[0]:
                st["outside"] = addr      # called: a target the file does not hold
                return False
            if not st["in"]:
                st["problems"].append(f"control reaches {addr:#x}, outside the file's code "
                                      f"(an unbalanced stack returns to a register's value)")
            return False
        page = addr & ~(PAGE - 1)
        try:
            uc.mem_map(page, PAGE)
        except UcError:
            return False
        mapped.append(page)
        return True

    hooks = [mu.hook_add(UC_HOOK_CODE, on_code), mu.hook_add(UC_HOOK_MEM_WRITE, on_write),
             *([mu.hook_add(UC_HOOK_MEM_READ, on_read)] if named_at else []),
             mu.hook_add(UC_HOOK_MEM_UNMAPPED, on_unmapped)]
    try:
        mu.emu_start(site.addr, 0)
    except UcError as e:
        if st.get("outside") is not None:
            raise _Outside(st["outside"]) from None
        if st["in"]:
            st["fault_in_target"] = True
        else:
            st["problems"].append(f"emulation stopped at {art.image.where(mu.reg_read(m.ip))}: {e}")
    finally:
        release(mu, hooks, mapped)
    if st["fault_in_target"] and st["entry"] is not None and st["entry"] not in stood_in \
            and st["entry"] not in art.image.standins:
        stood_in.add(st["entry"])
        return None
    problems = st["problems"]
    if problems or not st["done"]:
        return problems or [f"no fall-through to {art.image.where(end)}"]
    problems = _check(m, site, expect, before, flags0, st, _saves_around_call(art.bits, code, site, expect))
    if problems or expect.reference is None or st["entry"] is not None \
            or any(i.mnemonic.startswith(UNREPEATABLE) for i in insns):
        return problems
    # the patch made no call: it must do what the function it stands for does
    after = {r: mu.reg_read(rid) for r, rid in m.rids.items()}, st["mem"], system_state(m)
    ref = reference_run(m, expect.reference, before, flags0, seg_base, (sp0 - 0x1800, frames))
    return [] if ref is None else _differences(m, site, expect, after, ref)


def _pushes_popped_around_call(insns) -> tuple[str, ...] | None:
    """The registers `push`ed right before the code's one call and `pop`ped
    right after it (NOPs aside) in reverse order; None for any other shape."""
    calls = [k for k, i in enumerate(insns) if i.mnemonic == "call"]
    if len(calls) != 1:
        return None
    k = calls[0]
    pushed = [i.op_str for i in insns[:k] if i.mnemonic == "push"]
    popped = [i.op_str for i in insns[k + 1:] if i.mnemonic == "pop"]
    rest = [i for i in insns[:k] + insns[k + 1:] if i.mnemonic not in ("push", "pop", "nop")]
    if rest or len(pushed) != k or pushed != popped[::-1]:
        return None
    return tuple(pushed)


def _saves_around_call(bits: int, code: bytes, site: SiteCopy, expect: Expect) -> int:
    """How many registers the site saves around its call, by its own code:
    the 2007 i386 eax-clobber site (`push %ecx; push %edx; call; pop; pop`)
    calls with %esp that many words lower, and so does the patch that keeps
    those pushes and replaces only the call. Runtime records are checked
    against the site as gcc built it; an ahead-of-time file, whose site is
    the patch, is taken as it is (docs/verify.md: stack arguments behind saved
    registers are not checked, as behind a trampoline)."""
    saves = _pushes_popped_around_call(disasm(bits, code))
    if not saves:
        return 0
    if expect.kind != "file" and _pushes_popped_around_call(disasm(bits, site.code)) != saves:
        return 0
    return len(saves)


def _through_args(conv: abi.Convention, ins) -> bool:
    """Every memory operand of the instruction is addressed by argument registers."""
    for op in ins.operands:
        if op.type == X86_OP_MEM:
            regs = [conv_reg(conv, ins.reg_name(r)) for r in (op.mem.base, op.mem.index) if r]
            if not regs or any(r not in conv.arg_regs for r in regs):
                return False
    return True


def conv_reg(conv: abi.Convention, name: str | None) -> str | None:
    """Full-width name of a register capstone names (eax, r8d, ...)."""
    if not name:
        return None
    if conv.bits == 64 and name.startswith("e") and "r" + name[1:] in conv.gprs:
        return "r" + name[1:]
    if name.startswith("r") and name[-1] in "dwb" and name[:-1] in conv.gprs:
        return name[:-1]
    return name if name in conv.gprs else None


def set_segments(m: Machine, gs: int, kernel_gs: int = 0) -> dict[str, int]:
    """Segment bases by prefix: on x86-64 %gs is a per-CPU area (at `gs`),
    %fs the end of the file's TLS block, and the base swapgs brings in
    `kernel_gs`; unicorn keeps i386 bases at 0."""
    if m.art.bits != 64:
        return {"": 0, "gs": 0, "fs": 0, "kernel_gs": 0}
    fs = m.art.image.tp or TLS_BASE
    m.mu.reg_write(X.UC_X86_REG_GS_BASE, gs)
    m.mu.reg_write(X.UC_X86_REG_FS_BASE, fs)
    m.mu.msr_write(KERNEL_GS_BASE, kernel_gs)
    return {"": 0, "gs": gs, "fs": fs, "kernel_gs": kernel_gs}


def system_state(m: Machine) -> dict[str, int]:
    """What a patch may change only as the function it stands for does:
    the interrupt flag, and on x86-64 the GS, FS and KERNEL_GS bases."""
    out = {"the interrupt flag (IF)": m.mu.reg_read(m.flags) & abi.IF}
    if m.art.bits == 64:
        out.update({"the GS base": m.mu.reg_read(X.UC_X86_REG_GS_BASE),
                    "the FS base": m.mu.reg_read(X.UC_X86_REG_FS_BASE),
                    "KERNEL_GS_BASE": m.mu.msr_read(KERNEL_GS_BASE)})
    return out


def _store(mem: dict[int, int], addr: int, size: int, value: int) -> None:
    """Memory outside the emulator's stack, byte by byte as last written."""
    if STACK_LO <= addr < STACK_LO + STACK_SIZE:
        return
    for k in range(size):
        mem[addr + k] = (value >> (8 * k)) & 0xFF


Effects = tuple[dict[str, int], dict[int, int], dict[str, int]]     # registers, memory, system state


def reference_run(m: Machine, target: int, before: dict[str, int], flags0: int, seg: dict[str, int],
                  frames: tuple[int, bytes]) -> Effects | None:
    """The function a patch stands for, called from the start state the
    patch ran from (the same registers, flags, segment bases and frames):
    what the unpatched site would do with the backend installed. None
    when it faults or does not return."""
    conv, mu = m.conv, m.mu
    m.reset()
    mu.mem_write(*frames)
    ret = STACK_LO + 0x10                 # emulation stops when the function returns here
    sp = (before[conv.sp] & -conv.call_align) - conv.word
    mu.mem_write(sp, ret.to_bytes(conv.word, "little"))
    for r, rid in m.rids.items():
        mu.reg_write(rid, sp if r == conv.sp else before[r])
    mu.reg_write(m.flags, flags0)
    set_segments(m, seg["gs"], seg["kernel_gs"])
    mem: dict[int, int] = {}
    mapped: list[int] = []

    def on_write(uc, access, addr, size, value, _):
        m.written(addr, size)
        _store(mem, addr, size, value)

    hooks = [mu.hook_add(UC_HOOK_MEM_WRITE, on_write), mu.hook_add(UC_HOOK_MEM_UNMAPPED, map_on_touch(mapped))]
    try:
        mu.emu_start(target, ret, count=MAX_INSNS)
        done = mu.reg_read(m.ip) == ret and mu.reg_read(m.rids[conv.sp]) == sp + conv.word
    except UcError:
        done = False
    finally:
        release(mu, hooks, mapped)
    if not done:
        return None
    return {r: mu.reg_read(rid) for r, rid in m.rids.items()}, mem, system_state(m)


def _differences(m: Machine, site: SiteCopy, expect: Expect, got: Effects, want: Effects) -> list[str]:
    """The patch against the function it stands for, from one start state:
    the result register (when the op returns one and the site lets it
    change), every byte written outside the stack, the system state."""
    img, conv = m.art.image, m.conv
    fn = img.where(expect.reference)
    out = []
    r = conv.ret_regs[0]
    if expect.returns is not False and r in conv.regs_of_mask(site.clobbers) and got[0][r] != want[0][r]:
        out.append(f"result %{r} is {got[0][r]:#x}, where {fn} (what the patch stands for) returns "
                   f"{want[0][r]:#x}")
    for a in sorted(got[1].keys() | want[1].keys()):
        if got[1].get(a) != want[1].get(a):
            g, w = got[1].get(a), want[1].get(a)
            out.append(f"memory at {a:#x}: the patch leaves {'nothing written' if g is None else f'{g:#04x}'}, "
                       f"{fn} {'writes nothing' if w is None else f'writes {w:#04x}'} there")
            break
    for k in got[2]:
        if got[2][k] != want[2][k]:
            out.append(f"{k} is {got[2][k]:#x} after the patch, {want[2][k]:#x} after {fn}")
    return out


def accessed(m: Machine, target: int, state: str) -> tuple[dict[str, int], set[tuple[int, int]]] | None:
    """The segment bases and the memory (address, size) outside the stack
    that the function at `target` reads or writes, called from a random
    state with %gs at PERCPU_BASE; None when it faults or does not return."""
    conv, mu = m.conv, m.mu
    rng = random.Random(state)
    m.reset()
    ret = STACK_LO + 0x10                 # emulation stops when the function returns here
    sp = STACK_LO + STACK_SIZE - 0x2000 - conv.word
    mu.mem_write(sp, ret.to_bytes(conv.word, "little"))
    for r, rid in m.rids.items():
        mu.reg_write(rid, sp if r == conv.sp else rng.getrandbits(conv.bits) & ~abi.TF)
    mu.reg_write(m.flags, 0x202)
    bases = set_segments(m, PERCPU_BASE)
    seen: set[tuple[int, int]] = set()

    def on_access(uc, access, addr, size, value, _):
        if access == UC_MEM_WRITE:
            m.written(addr, size)
        if not STACK_LO <= addr < STACK_LO + STACK_SIZE:
            seen.add((addr, size))

    hooks = [mu.hook_add(UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, on_access)]
    try:
        mu.emu_start(target, ret, count=MAX_INSNS)
        done = mu.reg_read(m.ip) == ret
    except UcError:
        done = False
    finally:
        for h in hooks:
            mu.hook_del(h)
    return (bases, seen) if done else None


def _stand_in(m: Machine, uc, rng: random.Random, sp: int) -> None:
    """A C function of the convention: scramble what it may, return."""
    w = m.conv.word
    for r in m.conv.caller_saved:
        uc.reg_write(m.rids[r], rng.getrandbits(m.conv.bits))
    f = uc.reg_read(m.flags)
    uc.reg_write(m.flags, (f & ~abi.CC_FLAGS) | (rng.getrandbits(16) & abi.CC_FLAGS))
    ret = int.from_bytes(uc.mem_read(sp, w), "little")
    uc.reg_write(m.rids[m.conv.sp], sp + w)
    uc.reg_write(m.ip, ret)


def _check(m: Machine, site: SiteCopy, expect: Expect, before: dict[str, int], flags0: int,
           st: dict, saves: int = 0) -> list[str]:
    conv, mu, img = m.conv, m.mu, m.art.image
    allowed = conv.regs_of_mask(site.clobbers) - expect.kept
    problems = []
    after = {r: mu.reg_read(rid) for r, rid in m.rids.items()}
    if after[conv.sp] != before[conv.sp]:
        problems.append(f"%{conv.sp} moved by {after[conv.sp] - before[conv.sp]:+d}")
    for r in conv.gprs:
        if r != conv.sp and r not in allowed and after[r] != before[r]:
            problems.append(f"%{r} changed ({before[r]:#x} -> {after[r]:#x}) outside the clobber set"
                            + (" (in the mask, but the caller still needs it)" if r in expect.kept else ""))
    flags = mu.reg_read(m.flags)
    for bit, name in ((abi.DF, "DF"), (abi.TF, "TF")):
        if (flags ^ flags0) & bit and not expect.loads_flags:
            problems.append(f"the {name} flag changed")
    entry = st["entry"]
    calls = expect.kind in ("call", "trampoline")
    if calls and entry is None:
        problems.append("the target is never called")
    elif expect.kind in ("inline", "nop") and entry is not None:
        problems.append(f"an {expect.kind} patch calls {img.where(entry)}")
    if entry is not None:
        if expect.target is not None and entry != expect.target:
            problems.append(f"calls {img.where(entry)}, not the target {img.where(expect.target)}")
        for r, v in st["args"].items():
            if v != before[r]:
                problems.append(f"argument %{r} reaches the target as {v:#x}, not {before[r]:#x}")
        from_site = site.addr < st["ret"] <= site.addr + site.length
        if from_site and st["entry_sp"] != before[conv.sp] - conv.word * (1 + saves):
            problems.append(f"the site calls with %{conv.sp} moved by "
                            f"{st['entry_sp'] + conv.word - before[conv.sp]:+d}: arguments on the "
                            f"stack are not where the caller put them")
        elif (st["entry_sp"] - (before[conv.sp] - conv.word)) % conv.call_align:
            problems.append(f"the target is entered with %{conv.sp} {st['entry_sp']:#x}: not aligned "
                            f"as a direct call from the site would leave it ({conv.call_align} bytes)")
        if st["result"] is None:
            problems.append("the target does not return to the site")
        else:
            for r, v in st["result"].items():
                if r in allowed and after[r] != v:
                    problems.append(f"result %{r} is {after[r]:#x}, the target returned {v:#x}")
    return problems
