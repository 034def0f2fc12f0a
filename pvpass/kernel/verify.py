"""`pvpass verify` on a kernel image: run each site, patched as the kernel
patches it at boot (rules.py), with the image's real code behind it, in
unicorn from seeded random register states, and check the site's contract.

The contract is the checker's own, from the kernel source and the psABI,
never from pvpass's emitter:
- a callee-save op (arch/x86/include/asm/paravirt_types.h: PVOP_CALLEE*,
  asm outputs "=a" only) may change only %rax: its slot holds a
  PV_CALLEE_SAVE thunk (`__raw_callee_save_*`) in some typeof(pv_ops) object
  of the image, or one of the functions 6.1 declares callee-save as they are
  (__PV_IS_CALLEE_SAVE: CALLEE_SAVE_FUNCS below);
- any other op is a C call (psABI): the caller-saved registers;
- either way %rsp, the callee-saved registers and DF come back unchanged,
  the caller's frame above %rsp is not written, and a call made by the site
  is a direct call to the op's target from the site, entered with %rsp one
  word lower and the return address after the call.

Memory is mapped on first touch: the image's bytes (with every site
patched), the per-CPU area behind %gs (from `.data..percpu`), zeros
elsewhere. What unicorn cannot run faithfully (MSRs, port I/O, control
registers that change paging, descriptor tables, ...) or stops on is
counted as not emulated, by reason, never as proved.
"""
from __future__ import annotations

import random
import resource
import time
from collections import Counter
from dataclasses import dataclass, field

from capstone import CS_ARCH_X86, CS_MODE_32, CS_MODE_64, Cs
from unicorn import (UC_ARCH_X86, UC_HOOK_CODE, UC_HOOK_MEM_UNMAPPED, UC_HOOK_MEM_WRITE,
                     UC_MEM_FETCH_UNMAPPED, UC_MODE_32, UC_MODE_64, Uc, UcError)
from unicorn import x86_const as X

from ..errors import PvError
from ..verify.abi import CC_FLAGS, DF, I386_REGPARM, X86_64_SYSV, Convention
from .image import KernelImage
from .rules import SitePatch, Text, backend, patch_text

PAGE = 0x1000
CHUNK = 0x10000                         # memory is mapped on first touch, 64 KiB at a time
STACK_TOP = 0x0000_7F00_0000_0000       # far from the kernel's addresses and the random heap
STACK_SIZE = 0x4000
PERCPU = 0x0000_5000_0000_0000          # %gs base
HEAP = 1 << 40                          # random pointers land in [HEAP, HEAP + 2^40)
MAX_INSNS = 20_000
FRAME_CHECK = 256                       # bytes of the caller's frame that must stay as they were

# 6.1's __PV_IS_CALLEE_SAVE targets: functions that are callee-save as they
# are (arch/x86/kernel/paravirt.c, irqflags.S, arch/x86/xen/*.S)
CALLEE_SAVE_FUNCS = ("native_save_fl", "pv_native_irq_disable", "pv_native_irq_enable",
                     "pv_native_read_cr2", "_paravirt_ident_64", "xen_read_cr2", "xen_read_cr2_direct",
                     "xen_irq_disable_direct", "xen_irq_enable_direct", "xen_save_fl_direct")
THUNK_PREFIX = "__raw_callee_save_"

# instructions whose effect unicorn does not model as the hardware has it
# (port output, cli/sti, wbinvd, invlpg: no register effect, run as no-ops; hlt stops unicorn)
NOT_EMULATED = ("wrmsr", "rdmsr", "in", "insb", "insw", "insd", "lgdt", "lidt", "ltr", "lldt", "swapgs", "sysret", "sysretq", "iret", "iretq",
                "xsetbv", "rdpmc", "clac", "stac", "wrfsbase", "wrgsbase", "sysexit", "vmcall",
                "vmmcall", "ud2", "int3", "hlt", "mwait", "monitor", "xrstors", "xsaves",
                "rdpkru", "wrpkru", "invpcid", "serialize")


@dataclass(frozen=True)
class Target:
    """What differs between the x86-64 and the i386 kernel here."""
    conv: Convention
    callee_save: frozenset[str]   # PVOP_CALLEE*'s outputs: "=a" (x86-64), "=a", "=d" (i386)
    stack_top: int
    heap: int                     # random pointers: heap | random bits below heap_bits
    heap_bits: int
    percpu: int | None            # %gs base (x86-64); i386's %fs stays 0: its per-CPU
                                  # variables are linked at their template's addresses


TARGETS = {
    64: Target(X86_64_SYSV, frozenset({"rax"}), STACK_TOP, HEAP, 40, PERCPU),
    32: Target(I386_REGPARM, frozenset({"eax", "edx"}), 0x0E00_0000, 0x4000_0000, 28, None),
}
# unicorn 2 keeps x86-64 memory at 52-bit addresses: the kernel's
# 0xffffffff8... is mapped (and reported by its hooks) as 0x000fffff8...
UC_MASK = (1 << 52) - 1


def uc_addr(addr: int) -> int:
    return addr & UC_MASK


def full_addr(addr: int) -> int:
    """The canonical address of one unicorn reports."""
    return addr | ((-1 << 52) & (2**64 - 1)) if addr & (1 << 47) else addr


def rid(r: str) -> int:
    return getattr(X, f"UC_X86_REG_{r.upper()}")


@dataclass
class KReport:
    proved: int = 0
    failed: int = 0
    not_emulated: Counter = field(default_factory=Counter)
    lines: list[str] = field(default_factory=list)
    kinds: Counter = field(default_factory=Counter)

    def summary(self, backend: str, sites: int, cpu: float, rss_mb: float) -> str:
        ne = sum(self.not_emulated.values())
        why = ", ".join(f"{k}: {n}" for k, n in self.not_emulated.most_common())
        return (f"{sites} sites, backend {backend}: {self.proved} proved, {self.failed} failed, "
                f"not emulated: {ne}" + (f" ({why})" if why else "")
                + f"; CPU {cpu:.1f} s, peak memory {rss_mb:.0f} MB")


def callee_save_slots(img: KernelImage) -> set[int]:
    """Type numbers of the callee-save ops, from the image's ops objects."""
    n = img.pv_ops.size
    objs = [s.name for s in img.obj.symbols if s.size == n and s.kind == "STT_OBJECT"
            and (s.name == "pv_ops" or s.name.endswith("_ops"))]
    fixed = {img.symbol(f).value for f in CALLEE_SAVE_FUNCS if img.symbol(f)}
    out = set()
    for name in sorted(set(objs)):
        for i, v in enumerate(img.ops_values(name)):
            if v and (v in fixed or img.name_of(v).startswith(THUNK_PREFIX)):
                out.add(i)
    return out


class _Stop(Exception):
    pass


class Machine:
    """One unicorn: pages mapped on first touch from the patched image, the
    per-CPU area or zeros, and put back as they were after each run."""

    def __init__(self, img: KernelImage, text: Text) -> None:
        self.img, self.text = img, text
        self.t = TARGETS[img.arch.bits]
        self.mu = Uc(UC_ARCH_X86, UC_MODE_64 if img.arch.bits == 64 else UC_MODE_32)
        self.cs = Cs(CS_ARCH_X86, CS_MODE_64 if img.arch.bits == 64 else CS_MODE_32)
        self.rids = {r: rid(r) for r in self.t.conv.gprs}
        self.ip = X.UC_X86_REG_RIP if img.arch.bits == 64 else X.UC_X86_REG_EIP
        self.pristine: dict[int, bytes] = {}
        self.dirty: set[int] = set()
        self.decoded: dict[int, tuple[str, str, int]] = {}
        pc = img.obj.section(".data..percpu")
        self.percpu = img.obj.section_data(pc) if pc is not None and pc["sh_type"] != "SHT_NOBITS" else b""
        hp = img.symbol("hypercall_page")
        self.hypercalls = (hp.value, hp.value + PAGE) if hp else (0, 0)
        self.mu.mem_map(self.t.stack_top - STACK_SIZE, STACK_SIZE)
        self.mu.hook_add(UC_HOOK_MEM_UNMAPPED, self._on_unmapped)
        self.mu.hook_add(UC_HOOK_MEM_WRITE, self._on_write)
        # one code hook for the machine's life, pointed at each run's handler:
        # with a hook added and deleted per run, unicorn's translated blocks
        # skipped the new hook (calls went unseen)
        self.on_code = None
        self.mu.hook_add(UC_HOOK_CODE, lambda uc, addr, size, _: self.on_code(uc, addr, size, _))

    def _page_bytes(self, page: int) -> bytes | None:
        """A page's first contents; None where no code may be fetched."""
        if self.t.percpu is not None and PERCPU <= page < PERCPU + max(len(self.percpu), PAGE):
            off = page - PERCPU
            return self.percpu[off:off + PAGE].ljust(PAGE, b"\0")
        buf = bytearray(PAGE)
        hit = False
        a = page
        while a < page + PAGE:
            n = min(self.img.extent(a), page + PAGE - a)
            if not n:
                a += 1
                continue
            buf[a - page:a - page + n] = self.text.read(a, n, upto=True)
            hit = True
            a += n
        return bytes(buf) if hit else None

    def _on_unmapped(self, uc, access, addr, size, value, _):
        # a chunk of pages at a time: unicorn slows down (and has crashed)
        # with thousands of one-page regions
        chunk = full_addr(addr) & ~(CHUNK - 1)
        pages = [self._page_bytes(chunk + k) for k in range(0, CHUNK, PAGE)]
        if access == UC_MEM_FETCH_UNMAPPED and pages[(full_addr(addr) - chunk) // PAGE] is None:
            return False                           # code outside the image
        data = b"".join(p if p is not None else bytes(PAGE) for p in pages)
        try:
            uc.mem_map(uc_addr(chunk), CHUNK)
        except UcError:
            return False
        uc.mem_write(uc_addr(chunk), data)
        self.pristine[uc_addr(chunk)] = data
        return True

    def _on_write(self, uc, access, addr, size, value, _):
        addr = uc_addr(addr)
        self.dirty.add(addr & ~(CHUNK - 1))
        if addr + size > (addr | (CHUNK - 1)) + 1:
            self.dirty.add((addr + size - 1) & ~(CHUNK - 1))

    def restore(self) -> None:
        for p in self.dirty:
            if p in self.pristine:
                self.mu.mem_write(p, self.pristine[p])
        self.dirty.clear()

    def insn(self, addr: int) -> tuple[str, str, int]:
        d = self.decoded.get(addr)
        if d is None:
            try:
                code = bytes(self.mu.mem_read(uc_addr(addr), 15))
            except UcError:
                code = self.text.read(addr, 15, upto=True)
            i = next(self.cs.disasm(code, addr, 1), None)
            d = (i.mnemonic, i.op_str, i.size) if i else ("(bad)", "", 1)
            self.decoded[addr] = d
        return d


def _blocked(mnem: str, ops: str) -> str | None:
    """Why unicorn cannot run this instruction as the hardware would."""
    base = mnem.split()[-1]
    if base in NOT_EMULATED or base.rstrip("bwlq") in ("in", "ins"):
        return base
    if base == "mov" and ops.split(",")[0].strip() in ("cr0", "cr3", "cr4", "cr8"):
        return f"mov to %{ops.split(',')[0].strip()}"
    if base == "mov" and ops.split(",")[0].strip() in ("ds", "es", "fs", "gs", "ss"):
        return "segment load"
    return None


def run_site(m: Machine, p: SitePatch, allowed: frozenset[str], target: int | None,
             state: str) -> tuple[str, list[str] | str]:
    """('proved'|'failed'|'not emulated', problems or reason) from one state."""
    mu, rng, t, rids = m.mu, random.Random(state), m.t, m.rids
    w, spr = t.conv.word, t.conv.sp
    m.restore()
    end = p.start + len(p.after)
    sp0 = t.stack_top - 0x2000 - w * rng.randrange(0, 64)
    frame = rng.randbytes(FRAME_CHECK)
    mu.mem_write(t.stack_top - STACK_SIZE, rng.randbytes(STACK_SIZE))
    mu.mem_write(sp0, frame)
    before = {}
    for r in t.conv.gprs:
        v = sp0 if r == spr else t.heap | (rng.getrandbits(t.heap_bits - 3) << 3)
        mu.reg_write(rids[r], v)
        before[r] = v
    flags0 = 0x202 | (rng.getrandbits(16) & CC_FLAGS)
    mu.reg_write(X.UC_X86_REG_EFLAGS, flags0)
    if t.percpu is not None:
        mu.reg_write(X.UC_X86_REG_GS_BASE, t.percpu)
    st = {"n": 0, "entry": None, "entry_sp": None, "ret": None, "why": None, "done": False, "prev": None}

    def on_code(uc, addr, size, _):
        st["n"] += 1
        if st["n"] > MAX_INSNS:
            st["why"] = f"more than {MAX_INSNS} instructions"
            uc.emu_stop()
            return
        sp = uc.reg_read(rids[spr])
        if addr == end and sp == sp0:
            st["done"] = True
            uc.emu_stop()
            return
        if m.hypercalls[0] <= addr < m.hypercalls[1]:
            st["why"] = "Xen hypercall"                # the page is filled in by Xen at boot
            uc.emu_stop()
            return
        mnem, ops, _n = m.insn(addr)
        if st["entry"] is None and not p.start <= addr < end:
            prev = st["prev"]
            if prev is None or prev[1] != "call":
                st["left"] = addr                  # jumped out: never a call's stack
                uc.emu_stop()
                return
            st.update(entry=addr, entry_sp=sp, ret=int.from_bytes(uc.mem_read(sp, w), "little"))
        why = _blocked(mnem, ops)
        if why:
            st["why"] = why
            uc.emu_stop()
            return
        st["prev"] = (addr, mnem)

    m.on_code = on_code
    try:
        mu.emu_start(p.start, 0)
    except UcError as e:
        pc = mu.reg_read(m.ip)
        if not p.start <= pc < end:
            mnem = m.insn(pc)[0]
            return "not emulated", f"unicorn: {e.args[0] if e.args else e} ({mnem})"
        return "failed", [f"emulation stopped in the site at {m.img.name_of(pc)}: {e}"]
    if st.get("left") is not None:
        return "failed", [f"control leaves the site without a call, to {m.img.name_of(st['left'])}"]
    if st["why"]:
        return "not emulated", st["why"]
    if not st["done"]:
        return "failed", [f"no fall-through to {m.img.name_of(end)}"]
    problems = []
    after = {r: mu.reg_read(rids[r]) for r in t.conv.gprs}
    for r in t.conv.gprs:
        if r != spr and r not in allowed and after[r] != before[r]:
            problems.append(f"%{r} changed ({before[r]:#x} -> {after[r]:#x}), the site allows "
                            f"{', '.join(sorted(allowed)) or 'none'}")
    if (mu.reg_read(X.UC_X86_REG_EFLAGS) ^ flags0) & DF:
        problems.append("the DF flag changed")
    if bytes(mu.mem_read(sp0, FRAME_CHECK)) != frame:
        problems.append("the caller's frame above %rsp was written")
    if target is not None and st["entry"] != target:
        problems.append(f"calls {m.img.name_of(st['entry']) if st['entry'] else 'nothing'}, "
                        f"not the op's target {m.img.name_of(target)}")
    if st["entry"] is not None and (st["entry_sp"] != sp0 - w or not p.start < st["ret"] <= end):
        # a call patch, or an alternative that calls: as a direct call from the site
        problems.append(f"{m.img.name_of(st['entry'])} is entered with %{spr} {st['entry_sp'] - sp0:+d} "
                        f"and return address {st['ret']:#x}, not as a call from the site leaves them")
    return ("failed", problems) if problems else ("proved", [])


def target_of(p: SitePatch, b, img: KernelImage) -> int | None:
    """The function a call patch must reach: the op's value (or paravirt_BUG
    for NULL); None for inline code and NOPs."""
    if not p.how.startswith("call"):
        return None
    v = b.ops[p.site.type]
    return v or img.need("paravirt_BUG", "the target of a missing op").value


def verify_image(img: KernelImage, backend_name: str, seed: str, states: int) -> tuple[KReport, str]:
    t0 = time.process_time()
    b = backend(img, backend_name)
    patches, text = patch_text(img, b)
    cs_slots = callee_save_slots(img)
    m = Machine(img, text)
    rep = KReport()
    for p in patches:
        allowed = m.t.callee_save if p.site.type in cs_slots else frozenset(m.t.conv.caller_saved)
        target = target_of(p, b, img)
        rep.kinds["callee-save" if p.site.type in cs_slots else "cc"] += 1
        outcome, detail = "proved", []
        for i in range(states):
            outcome, detail = run_site(m, p, allowed, target, f"{seed}:{p.site.addr:#x}:{i}")
            if outcome != "proved":
                break
        where = f"{img.path}: {img.name_of(p.site.addr)} (type {p.site.type}, {p.how})"
        if outcome == "proved":
            rep.proved += 1
        elif outcome == "not emulated":
            rep.not_emulated[detail] += 1
            rep.lines.append(f"{where}: not emulated: {detail}")
        else:
            rep.failed += 1
            rep.lines.extend(f"{where}: {d}" for d in detail)
    cpu = time.process_time() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return rep, rep.summary(backend_name, len(patches), cpu, rss)
