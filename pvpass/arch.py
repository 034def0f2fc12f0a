"""Target ABIs: register files, clobber-mask bits, calling conventions.

Everything that differs between i386 and x86-64 lives here, so the other
modules ask an `Arch` instead of testing the name.
"""
from __future__ import annotations

import os
from collections import namedtuple

from .errors import PvError

# The records every `pvpass cc` loads (Arch here, table.Entry, the ELF
# reader's symbols and relocations) are named tuples, not dataclasses:
# importing `dataclasses` (it pulls in `inspect`) costs ~10 ms per compile.


class Arch(namedtuple("Arch", [
        "name", "bits", "ptr_size",
        "clobber_bits",     # ((reg, bit), ...) in the kernel's order (CLBR_EAX=1, CLBR_ECX=2, ...)
        "caller_saved",     # registers a plain C function may change (System V caller-saved GPRs)
        "ret_reg", "arg_regs",
        "constraint_regs",  # ((letter, reg), ...): gcc's single-letter register constraints
        "gcc_flag", "as_flag", "elf_class", "elf_machine", "abs_reloc", "entry_size",
        "stack_align"])):   # the stack alignment the ABI requires at a call instruction
    __slots__ = ()

    @property
    def gprs(self) -> tuple[str, ...]:
        return _GPRS[self.name]

    @property
    def caller_saved_in_mask_order(self) -> tuple[str, ...]:
        return tuple(r for r, _ in self.clobber_bits if r in self.caller_saved)

    def mask(self, regs) -> int:
        bits = dict(self.clobber_bits)
        m = 0
        for r in regs:
            m |= bits.get(r, 0)
        return m

    def regs_of_mask(self, mask: int) -> tuple[str, ...]:
        return tuple(r for r, b in self.clobber_bits if mask & b)

    def canon_reg(self, name: str) -> str | None:
        """Map any spelling of a GPR ('%eax', 'ax', 'al', 'r8d') to the arch's
        full-width name; None if it is not a general register."""
        n = name.strip().lstrip("%").lower()
        return _ALIAS[self.name].get(n)

    def constraint_reg(self, letter: str) -> str | None:
        return dict(self.constraint_regs).get(letter)


def _aliases(bits: int) -> dict[str, str]:
    out: dict[str, str] = {}
    legacy = {"a": "ax", "b": "bx", "c": "cx", "d": "dx"}
    for k, x in legacy.items():
        full = ("r" if bits == 64 else "e") + x
        for alias in (x, "e" + x, k + "l", k + "h") + (("r" + x,) if bits == 64 else ()):
            out[alias] = full
    for x in ("si", "di", "bp", "sp"):
        full = ("r" if bits == 64 else "e") + x
        for alias in (x, "e" + x) + (("r" + x, x + "l") if bits == 64 else ()):
            out[alias] = full
    if bits == 64:
        for i in range(8, 16):
            for suf in ("", "d", "w", "b", "l"):
                out[f"r{i}{suf}"] = f"r{i}"
    return out


_GPRS = {
    "i386": ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"),
    "x86_64": ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
               "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"),
}
_ALIAS = {"i386": _aliases(32), "x86_64": _aliases(64)}

I386 = Arch(
    name="i386", bits=32, ptr_size=4,
    clobber_bits=(("eax", 1), ("ecx", 2), ("edx", 4), ("edi", 8)),
    caller_saved=("eax", "ecx", "edx"),
    ret_reg="eax",
    # The kernel's i386 convention is regparm(3): eax, edx, ecx.
    arg_regs=("eax", "edx", "ecx"),
    constraint_regs=(("a", "eax"), ("b", "ebx"), ("c", "ecx"), ("d", "edx"),
                     ("S", "esi"), ("D", "edi")),
    gcc_flag="-m32", as_flag="--32", elf_class=32, elf_machine="EM_386",
    abs_reloc="R_386_32", entry_size=8, stack_align=4,
)

X86_64 = Arch(
    name="x86_64", bits=64, ptr_size=8,
    clobber_bits=(("rax", 1), ("rcx", 2), ("rdx", 4), ("rdi", 8), ("rsi", 16),
                  ("r8", 32), ("r9", 64), ("r10", 128), ("r11", 256)),
    caller_saved=("rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11"),
    ret_reg="rax",
    arg_regs=("rdi", "rsi", "rdx", "rcx", "r8", "r9"),
    constraint_regs=(("a", "rax"), ("b", "rbx"), ("c", "rcx"), ("d", "rdx"),
                     ("S", "rsi"), ("D", "rdi")),
    gcc_flag="-m64", as_flag="--64", elf_class=64, elf_machine="EM_X86_64",
    abs_reloc="R_X86_64_64", entry_size=16, stack_align=16,
)

ARCHES = {"i386": I386, "x86_64": X86_64}


def host_arch_name() -> str:
    m = os.uname().machine.lower()     # what platform.machine() reads, without importing it
    return "i386" if m in ("i386", "i486", "i586", "i686", "x86") else "x86_64"


def get_arch(name: str | None) -> Arch:
    name = name or host_arch_name()
    aliases = {"x86-64": "x86_64", "amd64": "x86_64", "x86": "i386", "ia32": "i386"}
    name = aliases.get(name, name)
    if name not in ARCHES:
        raise PvError(f"unknown architecture '{name}' (expected i386 or x86_64)")
    return ARCHES[name]
