"""The lint rules: id, default level, one-line summary, and the full text
`pvpass lint --explain` prints (what, why it is a bug, example, fix)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    level: str
    summary: str
    doc: str


RULES: dict[str, Rule] = {r.id: r for r in [
    Rule("PV001", "unpatchable-call", "warning",
         "call through an ops object that is not an annotated site",
         """A call through the ops object that no site annotation wraps: a plain C
call (pv_ops.irq.save_fl()) or an asm `call *` on an ops member with no
pvpass annotation and no .parainstructions entry.

Why: the pass cannot see it as a site, so it is never recorded in the
table and never patched. It stays an indirect call (slow, and through a
retpoline on affected CPUs) whatever backend the system runs.

Example:
    unsigned long f = pv_ops.irq.save_fl();
Fix:
    unsigned long f = PV_CALLEE0(unsigned long, irq.save_fl);
or, when the call is meant to stay indirect (early boot code), suppress it:
    /* pvpass-lint: allow PV001 runs before patching */"""),
    Rule("PV002", "clobber-mismatch", "error",
         "the site's clobber set disagrees with the asm statement's constraints",
         """The annotation's clobber set says which registers a patched-in target may
change. The asm statement tells gcc which registers the statement changes:
its outputs ("=a", "+D", "=d" ...) and its clobber list ("ecx", "r8"...).

Error: a register the annotation lets the callee clobber is neither an
output nor in the clobber list. gcc may keep a live value there across the
site; a backend that uses the register corrupts it -- the boot-time
register corruption the 2007 thread was about.
Warning: the asm statement declares a register clobbered that the
annotation does not let the callee touch. gcc saves and reloads around
the site for nothing: a lost optimisation.

Example (x86-64):
    asm volatile("# pvpass: site irq.save_fl clobbers(rax, rdx)\\n\\t"
                 "call *%[pv_op]" : "=a" (f) : [pv_op] "m" (pv_ops.irq.save_fl));
Fix: declare %rdx as an output or clobber ("=d" (scratch) or : "rdx"), or
drop it from clobbers(...)."""),
    Rule("PV003", "site-too-short", "error",
         "the site is too short for what will be patched into it",
         """A direct call needs 5 bytes (e8 rel32); an inline replacement needs its own
length. A site shorter than that cannot take the patch.

Error: the site is shorter than 5 bytes, so no call can be patched in.
Warning: the site is shorter than a backend's inline replacement for its
op; that backend falls back to a call (the note names the backend).

Fix: make the site longer (a `call *mem` is 6 bytes or more), or shorten
the replacement."""),
    Rule("PV004", "no-trampoline", "error",
         "a target clobbers registers the site does not allow and no trampoline fits",
         """A backend's target for the op has a contract (plain C: every caller-saved
register) that clobbers registers the site does not allow. pvpass bridges
that with a trampoline that saves exactly those registers, but it cannot
when the site is too short for a call, or the register is the one the
op returns its value in.

Fix: give the site the clobbers the target needs, or make the target
callee-save (PV_CALLEE_SAVE / the kernel's PV_CALLEE_SAVE_REGS_THUNK)."""),
    Rule("PV005", "bad-op", "error",
         "unknown op, a type number that does not fit the table, or two ops sharing one",
         """The op a site names must be a function-pointer member of the ops struct.
Its type number (offset / pointer size) must fit the table's one-byte type
field, and no two ops may share a type number (members of a union do), or
the patcher cannot tell them apart.

Fix: name an existing op; split a struct of more than 256 pointers; do not
put ops in unions."""),
    Rule("PV006", "op-unset", "warning",
         "a backend leaves an op unset (a NULL call at run time)",
         """A backend initializer of the ops struct that does not set an op leaves a
NULL pointer: the first unpatched call through it jumps to address 0.

Fix: set the op, or declare the absence intentional with
    PV_ABSENT(backend, op);"""),
    Rule("PV007", "signature-mismatch", "error",
         "the site passes a different number of arguments than the op takes, or reads a void op's result",
         """The site loads arguments into the argument registers the op's prototype
expects. Passing fewer leaves garbage in the missing ones; passing more
hides a prototype change; reading a result from a void op reads whatever
the callee left in the return register.

Fix: use the PV_CALLn / PV_VCALLn variant that matches the prototype."""),
    Rule("PV008", "malformed-annotation", "error",
         "a pvpass annotation that does not parse",
         """A `pvpass:` comment inside an asm template must follow the annotation
grammar (grammar/annotation.lark), for instance
    # pvpass: site irq.save_fl clobbers(rax)
The caret points at the first character that does not fit, inside the C
string literal.

Fix: correct the annotation; registers are the arch's general registers
(or `any`), separated by commas."""),
    Rule("PV009", "unused-suppression", "warning",
         "a suppression comment that suppresses nothing",
         """A `pvpass-lint: allow PVnnn reason` comment on a line (or the line before)
where rule PVnnn does not fire. Stale suppressions hide the next real
finding at that place.

Fix: remove it."""),
    Rule("PV010", "untabled-copy", "error",
         "gcc reached the ops object through a register in a copy of the site: no table holds it",
         """gcc prints an "m" operand of a global as `disp(%reg)` once it holds the
object's address in a register (a loop, several sites in one function,
-O1), and PIC code loads the address from the GOT. No relocation marks
such a call, so the copy is left out of the table: it stays an indirect
call that no backend ever patches, and it is shorter than the 6-byte
`call *disp32` a patch was planned for (`call *0x4(%edx)` is 3 bytes).
Lint compiles the translation unit once with the given flags to see which
copies gcc made so (only when some site leaves gcc the choice).

Example (i386, -O1):
    asm volatile(PVPASS_SITE(irq.irq_disable, "eax") "pushl %%ecx; pushl %%edx; "
                 PVPASS_CALL "; popl %%edx; popl %%ecx"
                 : : [pv_op] "m" (pv_ops.irq.irq_disable) : "eax", "memory", "cc");
Fix: an "i" operand printed bare, which is always `call *disp32`:
    ... "call *%c[pv_op]" ... : [pv_op] "i" (&pv_ops.irq.irq_disable) ...
(pvpass.h: PVPASS_OP(op) with PVPASS_OPCALL; on x86-64 `call *%c[pv_op](%%rip)`).
PIC code: build with -fno-pic (i386: -fno-pie), or, on x86-64, give the ops
object hidden visibility."""),
]}


def explain(rule_id: str) -> str:
    r = RULES.get(rule_id.upper())
    if r is None:
        return ""
    return f"{r.id} {r.name} (default: {r.level})\n{r.summary}\n\n{r.doc}\n"
