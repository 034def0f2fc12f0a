"""The kernel's own boot-time patch rules (Linux 6.1 x86), in one place:
what `alternative_instructions()` writes into the sites of an image.

  paravirt_set_cap()     X86_FEATURE_PVUNLOCK / VCPUPREEMPT when the lock ops
                         are not the native thunks (paravirt-spinlocks.c)
  apply_paravirt()       per `.parainstructions` entry: paravirt_patch() then
                         add_nops() (alternative.c, paravirt.c)
  apply_alternatives()   per `.altinstructions` record, in table order: the
                         replacement, its CALL fixed up, a JMP recomputed,
                         0x90 padding, then optimize_nops() (alternative.c)

Everything is read from the image: the ops' pointers, `_paravirt_nop`,
`paravirt_BUG`, the NOP forms (`x86_nops[]`), the records and their
replacement bytes. 6.1.y has no apply_relocation(): a replacement is
relocated only by the CALL fixup and recompute_jump(), as here.
"""
from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

from ..errors import PvError
from .image import Alt, KernelImage, Site

ASM_NOP_MAX = 8
CALL, JMP32, JMP8, NOP1 = 0xE8, 0xE9, 0xEB, 0x90
# arch/x86/include/asm/cpufeatures.h
X86_FEATURE_ALWAYS = 3 * 32 + 21
X86_FEATURE_XENPV = 8 * 32 + 16
X86_FEATURE_PVUNLOCK = 8 * 32 + 20
X86_FEATURE_VCPUPREEMPT = 8 * 32 + 21
FEATURE_NAMES = {X86_FEATURE_ALWAYS: "ALWAYS", X86_FEATURE_XENPV: "XENPV",
                 X86_FEATURE_PVUNLOCK: "PVUNLOCK", X86_FEATURE_VCPUPREEMPT: "VCPUPREEMPT"}
# paravirt_set_cap(): feature forced when this slot holds something else
_SET_CAP = (("__raw_callee_save___native_queued_spin_unlock", X86_FEATURE_PVUNLOCK),
            ("__raw_callee_save___native_vcpu_is_preempted", X86_FEATURE_VCPUPREEMPT))


@dataclass(frozen=True)
class Backend:
    """The pv_ops values at patch time and the boot CPU's features that the
    alternatives in the sites test (the only ones modelled)."""
    name: str
    ops: tuple[int, ...]
    features: frozenset[int]


@dataclass
class Text:
    """The image's bytes with the writes of the patcher on top."""
    img: KernelImage
    writes: dict[int, int] = field(default_factory=dict)

    def read(self, addr: int, n: int, upto: bool = False) -> bytes:
        base = bytearray(self.img.read_upto(addr, n) if upto else self.img.read(addr, n))
        for i in range(len(base)):
            b = self.writes.get(addr + i)
            if b is not None:
                base[i] = b
        return bytes(base)

    def poke(self, addr: int, data: bytes) -> None:        # text_poke_early
        for i, b in enumerate(data):
            self.writes[addr + i] = b


@dataclass(frozen=True)
class SitePatch:
    """One site as the kernel leaves it: the bytes of its region (the site and
    every alternative overlapping it) before and after, and why."""
    site: Site
    start: int
    before: bytes
    after: bytes
    how: str


def kernel_nops(img: KernelImage) -> list[bytes]:
    """x86_nops[k]: the kernel's k-byte NOP (index 0 unused)."""
    n = img.arch.ptr_size
    s, data = img.object_bytes("x86_nops", "the kernel's NOP table")
    if s.size != (ASM_NOP_MAX + 1) * n:
        raise img.obj.bad(img.obj.symbol_offset(s), f"x86_nops has {s.size} bytes, not "
                          f"{ASM_NOP_MAX + 1} pointers")
    out = [b""]
    for k in range(1, ASM_NOP_MAX + 1):
        p = int.from_bytes(data[k * n:(k + 1) * n], "little")
        if img.extent(p) < k:
            raise img.obj.bad(img.obj.symbol_offset(s), f"x86_nops[{k}] points at {p:#x}, not at "
                              f"{k} bytes in one section of the image")
        out.append(img.read(p, k))
    return out


def add_nops(nops: list[bytes], n: int) -> bytes:
    out = b""
    while n > 0:
        k = min(n, ASM_NOP_MAX)
        out += nops[k]
        n -= k
    return out


def rel32(value: int) -> bytes:
    return (value & 0xFFFFFFFF).to_bytes(4, "little")


def s32(b: bytes) -> int:
    return int.from_bytes(b, "little", signed=True)


def paravirt_patch(opfunc: int, addr: int, nop_func: int, bug_func: int) -> bytes:
    """paravirt_patch(): the bytes written at the site's start (the rest of
    the site is add_nops)."""
    if opfunc == 0:
        opfunc = bug_func                         # a missing op: call paravirt_BUG
    elif opfunc == nop_func:
        return b""
    return bytes([CALL]) + rel32(opfunc - (addr + 5))


def backend(img: KernelImage, name: str) -> Backend:
    """native: pv_ops as the image initialises it. Another name: a static
    typeof(pv_ops) object of the image, its non-NULL pointers over pv_ops'
    (what xen_start_kernel() does with xen_irq_ops etc.); the image then runs
    as a Xen PV guest, so X86_FEATURE_XENPV is set."""
    native = img.ops_values("pv_ops")
    if name in ("native", "pv_ops"):
        ops, feats = native, {X86_FEATURE_ALWAYS}
    else:
        if img.symbol(name) is None:
            raise PvError(f"{img.path}: no backend '{name}' (give native or the symbol of a "
                          f"typeof(pv_ops) object of the image, e.g. xen_irq_ops)")
        ops = [o or n for o, n in zip(img.ops_values(name), native)]
        feats = {X86_FEATURE_ALWAYS, X86_FEATURE_XENPV}
    for sym, feat in _SET_CAP:                    # paravirt_set_cap()
        s = img.symbol(sym)
        if s is None:
            continue
        slots = [i for i, v in enumerate(native) if v == s.value]
        if slots and any(ops[i] != s.value for i in slots):
            feats.add(feat)
    return Backend(name, tuple(ops), frozenset(feats))


def apply_paravirt(img: KernelImage, text: Text, b: Backend, nops: list[bytes]) -> dict[int, str]:
    """Each site's patch; returns site address -> what was written."""
    nop_func = img.need("_paravirt_nop", "the ops' no-op target").value
    bug_func = img.need("paravirt_BUG", "the target of a missing op").value
    how = {}
    for s in img.sites:
        if s.type >= len(b.ops):
            raise PvError(f"{img.path}: .parainstructions entry {s.index} at {s.addr:#x}: "
                          f"type {s.type} past pv_ops' {len(b.ops)} pointers")
        used = paravirt_patch(b.ops[s.type], s.addr, nop_func, bug_func)
        if len(used) > s.length:
            raise PvError(f"{img.path}: site {img.name_of(s.addr)} is {s.length} bytes, "
                          f"shorter than a call")
        text.poke(s.addr, used + add_nops(nops, s.length - len(used)))
        op = b.ops[s.type]
        how[s.addr] = ("nops (_paravirt_nop)" if not used else
                       "call paravirt_BUG (NULL op)" if op == 0 else f"call {img.name_of(op)}")
    return how


def _decode_len(img: KernelImage, code: bytes) -> int:
    from ..emit.stubs import _cs
    for ins in _cs(img.arch.bits).disasm(code, 0, 1):
        return ins.size
    return 0


def optimize_nops(img: KernelImage, text: Text, addr: int, length: int, nops: list[bytes]) -> None:
    """Runs of 0x90 after the decoded instructions become the longest NOPs."""
    i = 0
    while True:
        n = _decode_len(img, text.read(addr + i, 15, upto=True))
        if not n:
            return
        if n == 1 and text.read(addr + i, 1)[0] == NOP1:
            j = i
            while j < length and text.read(addr + j, 1)[0] == NOP1:
                j += 1
            if j - i > 1:
                text.poke(addr + i, add_nops(nops, j - i))
            i += j - i
        else:
            i += n
        if i >= length:
            return


def recompute_jump(a: Alt, buf: bytearray, nops: list[bytes]) -> None:
    if a.repllen != 5:
        return
    tgt = a.repl + a.repllen + s32(buf[1:5])
    n = tgt - a.addr
    if (n >= 0 and n - 2 <= 127) or (n < 0 and ((n - 2) & 0xFF) == n - 2):
        buf[0:5] = bytes([JMP8, (n - 2) & 0xFF]) + add_nops(nops, 3)
    else:
        buf[0:5] = bytes([JMP32]) + rel32(n - 5)


def apply_alternative(img: KernelImage, text: Text, a: Alt, b: Backend, nops: list[bytes]) -> bool:
    """One record of apply_alternatives(); True when its replacement went in."""
    if a.feature not in FEATURE_NAMES:
        raise PvError(f"{img.path}: .altinstructions record {a.index} at {img.name_of(a.addr)} "
                      f"tests CPU feature {a.feature >> 5}*32+{a.feature & 31}, which pvpass "
                      f"does not model (modelled: {', '.join(sorted(FEATURE_NAMES.values()))})")
    applied = (a.feature in b.features) != a.inverted
    if applied:
        buf = bytearray(img.read(a.repl, a.repllen))
        if a.repllen == 5 and buf[0] == CALL:
            buf[1:5] = rel32(s32(buf[1:5]) + a.repl - a.addr)
        if a.repllen and buf[0] in (JMP8, JMP32):
            recompute_jump(a, buf, nops)
        buf += bytes([NOP1]) * (a.instrlen - len(buf))
        text.poke(a.addr, bytes(buf))
    optimize_nops(img, text, a.addr, a.instrlen, nops)
    return applied


def patch_image(img: KernelImage, b: Backend) -> list[SitePatch]:
    """Every site of the image as alternative_instructions() leaves it."""
    return patch_text(img, b)[0]


def patch_text(img: KernelImage, b: Backend) -> tuple[list[SitePatch], Text]:
    """The sites as the kernel leaves them, and the image's text with every
    write of the patcher (code a site calls runs patched too)."""
    nops = kernel_nops(img)
    text = Text(img)
    how = apply_paravirt(img, text, b, nops)
    regions = _regions(img)
    touched: dict[int, list[str]] = {}
    for a in img.alts:                           # table order: a later record may overwrite
        sites = regions["alt"].get(a.index)
        if not sites:
            continue
        if apply_alternative(img, text, a, b, nops):
            for s in sites:
                touched.setdefault(s, []).append(
                    f"alternative {'!' if a.inverted else ''}{FEATURE_NAMES[a.feature]}")
    out = []
    for s in img.sites:
        start, end = regions["site"][s.addr]
        alt = touched.get(s.addr)
        out.append(SitePatch(s, start, img.read(start, end - start), text.read(start, end - start),
                             ", ".join(alt) if alt else how[s.addr]))
    return out, text


def _regions(img: KernelImage) -> dict:
    """Each site's region (the site and every alternative overlapping it),
    and for each alternative the sites it overlaps."""
    sites = sorted(img.sites, key=lambda s: s.addr)
    starts = [s.addr for s in sites]
    site_reg = {s.addr: (s.addr, s.addr + s.length) for s in sites}
    alt_sites: dict[int, list[int]] = {}
    for a in img.alts:
        lo, hi = a.addr, a.addr + a.instrlen
        k = bisect_left(starts, lo)
        while k > 0 and sites[k - 1].addr + sites[k - 1].length > lo:
            k -= 1
        hits = []
        while k < len(sites) and sites[k].addr < hi:
            s = sites[k]
            if s.addr + s.length > lo:
                hits.append(s.addr)
                r = site_reg[s.addr]
                site_reg[s.addr] = (min(r[0], lo), max(r[1], hi))
            k += 1
        if hits:
            alt_sites[a.index] = hits
    return {"site": site_reg, "alt": alt_sites}
