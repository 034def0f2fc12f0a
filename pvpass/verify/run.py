"""The verify pipeline: read the file, choose each (site copy, backend)'s
code as it would run, prove it, report."""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from capstone import CS_AC_WRITE
from capstone import x86_const as CX

from ..diag import PvError, ToolMissing
from .cfi import CfiCount, Frames, checked as cfi_checked
from .artifact import TRAMP_PREFIX, Artifact, Record, SiteCopy, disasm, holds_indirect_call, read
from .declared import Declarations, Declared, replacement
from .liveness import Caller, live_masked
from .emulate import Expect, Machine, Named, Outcome, accessed, prove

IN_FILE = "(in the file)"      # an ahead-of-time patched site: its bytes are what runs


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)     # one per failure / not emulated
    notes: list[str] = field(default_factory=list)
    proved: int = 0
    failed: int = 0
    kept: int = 0
    not_emulated: int = 0
    sites: int = 0
    backends: list[str] = field(default_factory=list)
    wide_masks: int = 0       # site copies whose mask the caller contradicts (counted in `failed` too)
    cfi: CfiCount = field(default_factory=CfiCount)

    def summary(self) -> str:
        wide = f", {self.wide_masks} site copies with a clobber mask the caller contradicts" \
            if self.wide_masks else ""
        return (f"{self.proved} (site copy, backend) pairs proved, {self.failed - self.wide_masks} failed, "
                f"{self.not_emulated} not emulated, {self.kept} kept as indirect calls{wide} "
                f"({self.sites} site copies; backends: {', '.join(self.backends) or 'none'})\n"
                f"{self.cfi.summary()}")


def runtime_code(art: Artifact, site: SiteCopy, rec: Record) -> bytes:
    """What pvpass_apply writes over the site: the record's code with the
    call's rel32 computed for the site's address (and a RIP-relative disp32
    moved by the distance from the code to the site)."""
    code = bytearray(rec.code)
    if rec.call_off is not None:
        if rec.call_off + 5 > site.length:
            raise _Bad(f"the record's call at offset {rec.call_off} does not fit the site")
        rel = rec.target - (site.addr + rec.call_off + 5)
        if not -2**31 <= rel < 2**31:
            raise _Bad(f"the target {rec.target:#x} is out of rel32 range")
        struct.pack_into("<i", code, rec.call_off + 1, rel)
    if rec.pcrel_off is not None:
        if rec.pcrel_off + 4 > site.length:
            raise _Bad(f"the record's pc-relative fixup at {rec.pcrel_off} does not fit the site")
        disp = struct.unpack_from("<i", code, rec.pcrel_off)[0] + rec.code_addr - site.addr
        struct.pack_into("<i", code, rec.pcrel_off, disp)
    return bytes(code)


class _Bad(Exception):
    pass


def _aot_backend(art: Artifact, sites: list[SiteCopy], wanted: str | None) -> str | None:
    """The backend an ahead-of-time patched file was patched for: named, or
    the one whose records agree with the most of its sites."""
    if wanted or not sites:
        return wanted
    score = {b: sum(_agrees(art, s, art.find(b, s)) for s in sites) for b in art.backends()}
    best = max(score.values(), default=0)
    winners = [b for b, n in score.items() if n == best]
    if best == 0 or len(winners) > 1:
        raise PvError(f"{art.path}: patched ahead of time, but for which backend? name it with --backend "
                      f"(have: {', '.join(art.backends()) or 'no patch records'})")
    return winners[0]


def _agrees(art: Artifact, s: SiteCopy, rec: Record | None) -> bool:
    if rec is None:
        return False
    if rec.call_off is None:
        try:
            return s.code == runtime_code(art, s, rec)
        except _Bad:
            return False
    c = s.code[rec.call_off:rec.call_off + 5]
    return len(c) == 5 and c[0] == 0xE8 and \
        s.addr + rec.call_off + 5 + struct.unpack_from("<i", c, 1)[0] == rec.target


def _differs_from_runtime(art: Artifact, s: SiteCopy, rec: Record | None) -> str | None:
    """Patched ahead of time, a site holds what pvpass_apply would have
    written there from the backend's record (same bytes, relocated fields
    resolved for the site): an immediate or address that differs is caught
    even where no store shows it."""
    if rec is None:
        return None
    try:
        want = runtime_code(art, s, rec)
    except _Bad as e:
        return str(e)
    k = next((i for i, (x, y) in enumerate(zip(s.code, want)) if x != y), None)
    if k is None:
        return None
    return (f"byte {k} of the site ({s.code[k]:#04x}) differs from the record's code as the runtime "
            f"would write it ({want[k]:#04x})")


def _expect(art: Artifact, backend: str, site: SiteCopy, rec: Record | None,
            named: tuple[Named, ...], decl: Declared | None, kept: frozenset[str] = frozenset()) -> Expect:
    target = art.ops_object_target(backend, site.type) if backend != IN_FILE else None
    if target is None and decl is not None and decl.function:
        target = art.image.address_of(decl.function)
    kind = rec.kind if rec is not None else "file"
    if target is None and rec is not None and rec.kind == "call":
        target = rec.target
    if target is None and rec is not None and rec.kind == "trampoline":
        target = _trampoline_target(art, rec.target)
    # a patch that calls nothing stands for the function, when it runs here
    reference = target if kind in ("inline", "nop", "file") and target is not None \
        and target not in art.image.standins else None
    return Expect(kind, target, inline=kind in ("inline", "file"), loads_flags=_pops_flags(art, target),
                  named=named, reference=reference, returns=decl.returns if decl else None,
                  noreturn=_jumps(art.bits, site.code), kept=kept)


def _jumps(bits: int, code: bytes) -> bool:
    """The site as gcc built it jumps through the op (the kernel's iret and
    irq_enable_sysexit sites): the op does not return."""
    return any(i.mnemonic == "jmp" and i.operands and i.operands[0].type != CX.X86_OP_IMM
               for i in disasm(bits, code))


def _differs_from_declared(art: Artifact, site: SiteCopy, code: bytes, decl: Declared | None) -> str | None:
    """An inline patch is the backend's declared text, as GNU as and ld
    build it at the site (symbols at the file's addresses), then NOPs."""
    if decl is None or decl.kind != "inline" or not decl.text:
        return None
    try:
        want = replacement(art.bits, decl.text, site.addr, art.image.address_of)
    except ToolMissing:
        raise
    except PvError as e:      # GNU as refuses what the backend declared, or names what the file lacks
        return e.message
    if len(want) > len(code):
        return f"the declared replacement '{decl.text}' is {len(want)} bytes, the site {len(code)}"
    k = next((i for i, (x, y) in enumerate(zip(code, want)) if x != y), None)
    if k is not None:
        return (f"the patch ({code[:len(want)].hex()}) is not the declared replacement '{decl.text}' "
                f"({want.hex()} by GNU as and ld at the site): byte {k} differs")
    pad = disasm(art.bits, code[len(want):], site.addr + len(want))
    if sum(i.size for i in pad) != len(code) - len(want) or any(i.mnemonic != "nop" for i in pad):
        return f"after the declared replacement '{decl.text}', the site holds more than NOPs"
    return None


def _pops_flags(art: Artifact, target: int | None) -> bool:
    """The target loads the flags register from its argument (restore_fl):
    random arguments must then not set TF, and DF is the target's to set."""
    if target is None:
        return False
    size = next((n for a, n, _ in art.image.symbols if a == target and n), 64)
    try:
        code = art.image.read(target, size)
    except PvError:
        return False
    return any(i.mnemonic.startswith("popf") for i in disasm(art.bits, code, target))


def named_memory(art: Artifact, home: bytes, home_addr: int) -> tuple[list[Named], list[str]]:
    """The memory an inline patch's code names, read from the code where the
    file holds it (the record's code in `.pvpass.code`, relocated as the
    linker or `image.py` did, or the site's own bytes): every load or store
    at an absolute, RIP-relative or segment-relative address. Each must lie
    in a data symbol of the file; the code copied to a site must then
    access the same address (a RIP-relative field rebased by the runtime)."""
    named, problems = [], []
    for i in disasm(art.bits, home, home_addr):
        for op in i.operands:
            if op.type != CX.X86_OP_MEM or not op.access or op.mem.index or i.mnemonic in ("lea", "nop"):
                continue
            if op.mem.base not in (0, CX.X86_REG_RIP):
                continue
            addr = op.mem.disp + (i.address + i.size if op.mem.base else 0)
            addr &= (1 << art.bits) - 1
            seg = i.reg_name(op.mem.segment) if op.mem.segment in (CX.X86_REG_GS, CX.X86_REG_FS) else ""
            # %gs: names a per-CPU offset (a symbol's address, as in the
            # kernel); %fs: a TLS variable below the thread pointer
            held = (addr + art.image.tp) & ((1 << art.bits) - 1) if seg == "fs" and art.image.tp else addr
            sym = art.image.holder(held, op.size)
            shown = f"{seg + ':' if seg else ''}{addr:#x}"
            verb = "writes" if op.access & CS_AC_WRITE else "reads"
            if sym is None:
                problems.append(f"'{i.mnemonic} {i.op_str}' at {art.image.where(i.address)} {verb} {op.size} "
                                f"bytes at {shown}, which no data symbol of the file holds")
                continue
            named.append(Named(i.address - home_addr, seg, addr, op.size, f"{seg + ':' if seg else ''}{sym}"))
    return named, problems


def _trampoline_target(art: Artifact, addr: int) -> int | None:
    """The function a trampoline exists for, from its symbol's name
    (__pvpass_tramp_<target>_<mask of saved registers>)."""
    name = art.image.symbol_at(addr)
    if not name or not name.startswith(TRAMP_PREFIX):
        return None
    return art.image.address_of(name[len(TRAMP_PREFIX):].rsplit("_", 1)[0])


def _named_by_target(m: Machine, art: Artifact, backend: str, site: SiteCopy, named: list[Named],
                     seed: str) -> list[str]:
    """An inline replacement stands for the function its backend's ops
    object holds for the op: the memory it names must be memory that
    function accesses (run from two random states). Unknown when the ops
    object is not in the file or the function does not run on its own."""
    target = art.ops_object_target(backend, site.type) if named and backend != IN_FILE else None
    if target is None or target in art.image.standins:      # a stand-in runs no code of the op
        return []
    seen: set[tuple[int, int]] = set()
    for i in range(2):
        got = accessed(m, target, f"{seed}:target:{i}")
        if got is None:
            return []
        base, more = got
        seen |= more
    return [f"the inline replacement's access at +{n.offset} names {n.symbol}, which "
            f"{art.image.where(target)} (what {backend} holds for the op) never accesses"
            for n in named if not any(a < base[n.segment] + n.addr + n.size and base[n.segment] + n.addr < a + k
                                      for a, k in seen)]


def verify(path: str, backend: str | None, seed: str, states: int, arch: str | None = None,
           maps: list[tuple[str, int]] = (), declared: Declarations | None = None) -> Report:
    art = read(path)
    for blob, addr in maps:
        try:
            with open(blob, "rb") as f:
                data = f.read()
        except OSError as e:
            raise PvError(f"{blob}: {e.strerror}") from None
        art.image.add_blob(blob, addr, data)
    if arch is not None and arch != art.arch:
        raise PvError(f"{path}: an {art.arch} file, not {arch}")
    rep = Report(sites=len(art.sites))
    if backend is not None and backend not in art.backends():
        raise PvError(f"{path}: no patch records for backend '{backend}' "
                      f"(have: {', '.join(art.backends()) or 'none'})")
    selected = [backend] if backend else art.backends()
    aot = [s for s in art.sites if not holds_indirect_call(art.bits, s.code) and not _jumps(art.bits, s.code)]
    aot_backend = _aot_backend(art, aot, backend) if aot else None
    rep.backends = selected if len(aot) < len(art.sites) else [aot_backend or IN_FILE]
    if art.image.unsupported:
        rep.notes.append(f"{path}: note: {len(art.image.unsupported)} relocations not applied "
                         f"(code reached through them is not run as linked), first: {art.image.unsupported[0]}")
    machine = Machine(art)
    caller = Caller(art)
    frames = Frames(art)
    stood_in: set[int] = set()
    patched_in_file = set(aot)
    for site in art.sites:
        live, kept = live_masked(caller, site)
        if live:
            rep.failed += 1
            rep.wide_masks += 1
            written = f" (the site is written at {declared.site_lines(site.type)})" \
                if declared and declared.site_lines(site.type) else ""
            rep.lines.extend(f"{path}: {site.where}: {p}{written}" for p in live)
        if site in patched_in_file:
            rec = art.find(aot_backend, site) if aot_backend else None
            pairs = [(aot_backend or IN_FILE, site.code, rec)]
            differs = _differs_from_runtime(art, site, rec)
            if differs:
                rep.failed += 1
                rep.lines.append(f"{path}: {site.where}: backend {aot_backend}: {differs}")
                continue
        else:
            pairs = []
            rep.kept += not selected          # no patch records at all: the call stays
            for b in selected:
                rec = art.find(b, site)
                if rec is None:
                    if any(r.backend == b and r.type == site.type for r in art.records):
                        rep.failed += 1
                        rep.lines.append(f"{path}: {site.where}: backend {b}: no patch record for this "
                                         f"site (type {site.type}, len {site.length}, clobbers "
                                         f"{site.clobbers:#x}), though the backend patches type {site.type}")
                    else:
                        rep.kept += 1
                    continue
                try:
                    pairs.append((b, runtime_code(art, site, rec), rec))
                except _Bad as e:
                    rep.failed += 1
                    rep.lines.append(f"{path}: {site.where}: backend {b}: {e}")
        for b, code, rec in pairs:
            if rec is not None and rec.kind == "trampoline" and not art.in_trampoline(rec.target):
                rep.failed += 1
                rep.lines.append(f"{path}: {site.where}: backend {b}: the trampoline record's target "
                                 f"{art.image.where(rec.target)} is not a trampoline")
                continue
            home, home_addr = (rec.code, rec.code_addr) if rec is not None else (code, site.addr)
            named, bad = named_memory(art, home, home_addr) if rec is None or rec.kind == "inline" \
                else ([], [])
            decl = (declared or {}).get((b, site.type))
            inline = rec.kind == "inline" if rec is not None else not any(
                i.mnemonic == "call" for i in disasm(art.bits, code))
            declared_differs = _differs_from_declared(art, site, code, decl) if inline else None
            bad = bad or ([declared_differs] if declared_differs else []) \
                or _named_by_target(machine, art, b, site, named, f"{seed}:{b}:{site.addr:#x}")
            if bad:
                rep.failed += 1
                rep.lines.extend(f"{path}: {site.where}: backend {b}: {p}" for p in bad)
                continue
            out: Outcome = prove(machine, site, code, _expect(art, b, site, rec, tuple(named), decl, kept),
                                 f"{seed}:{b}", states)
            out = cfi_checked(machine, frames, site, code, f"{seed}:{b}", rep.cfi, out)
            _count(rep, path, site, b, rec, out)
            stood_in |= out.stood_in
    if stood_in:
        rep.notes.append(f"{path}: note: stood in for targets that faulted or did not return on random "
                         f"arguments: {', '.join(sorted(art.image.where(a) for a in stood_in))}")
    return rep


def _count(rep: Report, path: str, site: SiteCopy, b: str, rec: Record | None, out: Outcome) -> None:
    what = f"{path}: {site.where}: backend {b} ({rec.kind if rec else 'as patched'})"
    if out.status == "proved":
        rep.proved += 1
    elif out.status == "not emulated":
        rep.not_emulated += 1
        rep.lines.append(f"{what}: not emulated: {out.reason}")
    else:
        rep.failed += 1
        rep.lines.extend(f"{what}: {p}" for p in out.problems)
