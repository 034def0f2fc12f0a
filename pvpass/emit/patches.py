"""What a site becomes for one backend (pure decisions, no output):

1. the target's inline replacement, when it fits the site and writes no
   register outside the site's clobber set (plus the result register);
2. else `call target` when the target's contract fits the clobber set, or
   fits it with the registers the site itself saves around its call (the
   i386 eax-clobber site `push %ecx; push %edx; call; pop; pop`): then only
   the inner call is patched and the site's own pushes and pops stay;
3. else `call trampoline`, the trampoline saving exactly the extra registers;
4. a no-op target patches to NOPs only; an unset op keeps the indirect call.
The rest of the site is NOP padding.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..arch import Arch
from ..encode import EncodeError, assemble
from ..model import Backend, Op, Site, Target
from .nops import nop_fill
from .stubs import Inline, Trampoline, inline_stub, trampoline

CALL_LEN = 5


@dataclass(frozen=True)
class Patch:
    kind: str                    # inline | call | trampoline | nop | keep
    code: bytes                  # site-length bytes (a call's rel32 is zero)
    call_offset: int | None      # where the e8 opcode is
    call_target: str | None      # the symbol the call goes to
    trampoline: Trampoline | None
    inline: Inline | None
    note: str


class PatchError(Exception):
    """A backend/op/site combination that cannot be patched as declared."""


def site_clobbers(arch: Arch, site: Site) -> set[str]:
    """The registers a site really lets the callee change. The kernel's masks
    mean "any register the platform has": i386 CLBR_ANY is (1 << 4) - 1 with
    the %edi bit, yet no C-convention callee changes %edi and the kernel's asm
    does not clobber it. So in the kernel dialect a mask bit for a register
    the C convention preserves is no licence to change it."""
    regs = set(site.clobbers)
    if site.dialect == "kernel":
        regs &= set(arch.caller_saved)
    return regs


def allowed_writes(arch: Arch, site: Site, op: Op | None) -> set[str]:
    allowed = site_clobbers(arch, site)
    if (op is not None and op.returns) or site.returns:
        allowed.add(arch.ret_reg)
    return allowed


def decide(arch: Arch, site: Site, op: Op | None, backend: Backend, nops: str = "p6") -> Patch:
    target: Target | None = backend.targets.get(site.op)
    if target is None:
        return Patch("keep", b"", None, None, None, None,
                     f"backend {backend.name} leaves {site.op} unset: the indirect call stays")
    c = target.contract
    if c.kind == "nop":
        return Patch("nop", nop_fill(site.length, nops), None, None, None, None, "no-op: NOPs only")
    allowed = allowed_writes(arch, site, op)
    reason = ""
    if c.kind == "inline" and c.text is not None:
        try:
            stub = inline_stub(arch, c.text)
        except EncodeError as e:
            raise PatchError(f"inline replacement for {site.op} in backend {backend.name} "
                             f"does not assemble: {e}") from None
        if sum(f.pcrel for f in stub.fixups) > 1:
            raise PatchError(f"inline replacement for {site.op} in backend {backend.name} has "
                             f"more than one RIP-relative operand: the runtime rebases one")
        extra = [r for r in stub.writes if r not in allowed]
        if len(stub.code) <= site.length and not extra:
            pad = site.length - len(stub.code)
            mem = f"; writes {', '.join(stub.memory_writes)}" if stub.memory_writes else ""
            return Patch("inline", stub.code + nop_fill(pad, nops), None, None, None, stub,
                         f"inline '{c.text}' ({len(stub.code)} bytes) + {pad} bytes of NOPs{mem}")
        reason = (f"'{c.text}' is {len(stub.code)} bytes, the site {site.length}"
                  if len(stub.code) > site.length else
                  f"'{c.text}' writes {', '.join(extra)}, outside the site's clobber set")
        if target.function is None:
            raise PatchError(f"inline replacement for {site.op} in backend {backend.name} "
                             f"cannot be used: {reason}, and there is no function to call")
    if target.function is None:
        raise PatchError(f"backend {backend.name} gives {site.op} no function to call")
    if site.length < CALL_LEN:
        raise PatchError(f"site is {site.length} bytes, too short for a call to {target.function}")
    extra = tuple(r for r in arch.gprs if r in c.clobbers and r not in allowed)
    pad = nop_fill(site.length - CALL_LEN, nops)
    call = bytes([0xE8, 0, 0, 0, 0])
    why = f" ({reason})" if reason else ""
    if not extra:
        return Patch("call", call + pad, 0, target.function, None, None,
                     f"call {target.function}{why}")
    saved = _saved_around(arch, site)
    if saved is not None and set(extra) <= set(saved[2]):
        pre, post, regs = saved
        inner = site.length - len(pre) - len(post)
        return Patch("call", pre + call + nop_fill(inner - CALL_LEN, nops) + post, len(pre), target.function,
                     None, None, f"call {target.function} inside the site's own saves of {', '.join(regs)}{why}")
    t = trampoline(arch, target.function, extra)
    return Patch("trampoline", call + pad, 0, t.name, t, None,
                 f"call {t.name}: saves {', '.join(extra)} around {target.function}{why}")


_PUSH_POP = re.compile(r"^(push|pop)[lq]?\s+%(\w+)$")


def _saved_around(arch: Arch, site: Site) -> tuple[bytes, bytes, tuple[str, ...]] | None:
    """For a site that is pushes of registers, its one call, and the pops
    of the same registers in reverse: (the pushes' bytes, the pops' bytes,
    the registers), when the call between them is long enough for a direct
    one. Any other shape: None."""
    ins = [i.strip() for i in site.instructions]
    calls = [k for k, i in enumerate(ins) if i.split()[0].startswith("call")]
    if len(calls) != 1 or calls[0] == 0:
        return None
    k = calls[0]
    pushes = [_PUSH_POP.match(i) for i in ins[:k]]
    pops = [_PUSH_POP.match(i) for i in ins[k + 1:]]
    if not all(m and m.group(1) == "push" and m.group(2) in arch.gprs for m in pushes) or \
            not all(m and m.group(1) == "pop" for m in pops):
        return None
    regs = tuple(m.group(2) for m in pushes)
    if tuple(m.group(2) for m in reversed(pops)) != regs:
        return None
    try:
        pre, post = assemble(arch, "; ".join(ins[:k])), assemble(arch, "; ".join(ins[k + 1:]))
    except EncodeError:
        return None
    if site.length - len(pre) - len(post) < CALL_LEN:
        return None
    return pre, post, regs


def pcrel_offset(p: Patch) -> int | None:
    """Where the RIP-relative field of an inline patch is (the runtime
    rebases it from the patch's code to the site), or None."""
    return next((f.offset for f in p.inline.fixups if f.pcrel), None) if p.inline else None
