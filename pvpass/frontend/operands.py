"""What gcc prints for an asm operand, so a site can be assembled to learn
its length: memory operands of globals by code model (rip-relative,
absolute, GOT-relative), immediates by value, registers by constraint."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from pycparser import c_ast

from .. import tools
from ..arch import Arch

# A placeholder address that every encoder must write as a 32-bit field,
# the width of the relocation gcc would emit.
PLACEHOLDER = 0x10000000


@dataclass(frozen=True)
class CodeModel:
    pic: bool             # -fpic/-fPIC: data through the GOT
    pie: bool             # -fpie/-fPIE (Debian's default)


# gcc's -fpic, -fPIC, -fpie and -fPIE cancel one another, whichever comes
# last, and their -fno- forms cancel all four too (common.opt's Negative()
# cycle; opts.c then sets -fpic's flag from -fpie's): so the last of these
# eight decides the model, and only without any is it the compiler's default
# (tests/test_code_model.py holds this against gcc -dM -E).
_EXPLICIT = {"-fpic": (True, False), "-fPIC": (True, False), "-fpie": (False, True), "-fPIE": (False, True),
             "-fno-pic": (False, False), "-fno-PIC": (False, False), "-fno-pie": (False, False),
             "-fno-PIE": (False, False)}


def code_model(arch: Arch, flags: tuple[str, ...], cc: str) -> CodeModel:
    """The model the user's flags select: the last of -f[no-]pic/PIC/pie/PIE
    when they name one, else the compiler's default (a cross or distribution
    compiler may differ from gcc's), learned by asking `cc` with the flags
    that can change it (-f and -m ones: -m32, -mcmodel=kernel, ...; -specs=),
    once per compiler and flags (compilerfacts: across processes)."""
    named = next((_EXPLICIT[f] for f in reversed(flags) if f in _EXPLICIT), None)
    # gcc refuses PIC under -mcmodel=kernel and any -mcmodel with -m32 (no
    # model then, as the compile fails): with one, only "neither" is sure
    if named is not None and not (any(named) and any(f.startswith("-mcmodel=") for f in flags)):
        return CodeModel(*named)
    keep = tuple(f for f in flags if f.startswith(("-f", "-m", "-specs", "--specs", "@")))
    return _default_model(arch, keep, cc)


@lru_cache(maxsize=64)
def _default_model(arch: Arch, keep: tuple[str, ...], cc: str) -> CodeModel:
    probe = (arch.gcc_flag, *keep)

    def ask() -> dict:
        return _asked(cc, probe)
    if any(f.startswith("@") for f in keep):        # a response file: its contents may change
        return CodeModel(**ask())
    from ..compilerfacts import learned
    return CodeModel(**learned(cc, probe, ask))


def _asked(cc: str, probe: tuple[str, ...]) -> dict:
    """gcc's own answer: the macros -fpic/-fpie define (`-mcmodel=kernel`
    under a PIE default is gcc's error: neither, as the compile fails)."""
    r = tools.run([cc, *probe, "-dM", "-E", "-x", "c", "-"], input=b"", check=False)
    macros = r.stdout.decode(errors="replace")
    pie = "__PIE__" in macros or "__pie__" in macros
    pic = ("__PIC__" in macros or "__pic__" in macros) and not pie
    return {"pic": pic, "pie": pie}


def constraint_letters(c: str) -> str:
    return "".join(ch for ch in c if ch not in "=+&%*#!?,")


@dataclass
class Printed:
    text: str
    exact: bool           # the length cannot depend on register allocation


def print_operand(arch: Arch, model: CodeModel, constraint: str, modifier: str,
                  mem_offset: int | None, local_def: bool, value: int | None,
                  taken: set[str]) -> Printed:
    """AT&T text gcc would print for one operand reference."""
    letters = constraint_letters(constraint)
    for ch in letters:
        reg = arch.constraint_reg(ch)
        if reg:
            return Printed("%" + _width(arch, reg, modifier), True)
    if any(ch in letters for ch in "in") and value is not None:
        v = hex(value)     # keystone reads decimal as hex: always print hex
        return Printed(v if modifier in ("c", "P", "p", "n") else f"${v}", True)
    if "i" in letters or "s" in letters:
        return Printed(hex(PLACEHOLDER) if modifier in ("c", "P", "p") else f"${PLACEHOLDER:#x}", True)
    if "m" in letters or "o" in letters:
        if mem_offset is None:
            return Printed(f"{PLACEHOLDER:#x}(%{arch.gprs[0]})", False)
        if arch.bits == 64:
            if model.pic:
                return Printed(_reg_disp(mem_offset, "%rax"), False)
            return Printed(f"{PLACEHOLDER:#x}(%rip)", True)
        if model.pic or (model.pie and not local_def):
            return Printed(_reg_disp(mem_offset, "%eax"), False)
        if model.pie:
            return Printed(f"{PLACEHOLDER:#x}(%eax)", False)
        return Printed(hex(PLACEHOLDER), True)
    # "r", "q", "g": some general register; gcc's choice is unknown.
    for r in arch.gprs:
        if r not in taken and r not in ("esp", "rsp", "ebp", "rbp"):
            return Printed("%" + _width(arch, r, modifier), False)
    return Printed("%" + arch.gprs[0], False)


def _reg_disp(off: int, reg: str) -> str:
    return f"{off:#x}({reg})" if off else f"({reg})"


def _width(arch: Arch, reg: str, modifier: str) -> str:
    if modifier == "k" and arch.bits == 64:
        return {"rax": "eax", "rbx": "ebx", "rcx": "ecx", "rdx": "edx", "rsi": "esi",
                "rdi": "edi", "rbp": "ebp", "rsp": "esp"}.get(reg, reg + "d")
    if modifier == "q" and arch.bits == 64:
        return reg
    if modifier == "w":
        return reg[1:] if reg[0] in "er" and len(reg) == 3 else reg + "w"
    if modifier == "b":
        return {"eax": "al", "rax": "al", "ebx": "bl", "rbx": "bl", "ecx": "cl",
                "rcx": "cl", "edx": "dl", "rdx": "dl"}.get(reg, reg)
    return reg


def is_lvalue_global(expr) -> bool:
    e = expr
    while isinstance(e, (c_ast.StructRef, c_ast.ArrayRef)):
        if isinstance(e, c_ast.StructRef) and e.type != ".":
            return False
        e = e.name
    return isinstance(e, c_ast.ID)



def argument_registers(arch: Arch, a) -> set[str]:
    """The argument registers an asm statement loads: inputs with a register
    constraint ("0" follows the output it matches) and in-out outputs ("+a"
    carries argument 1 under regparm(3), "+D" under the x86-64 psABI)."""
    out: set[str] = set()
    for o in a.inputs:
        c = o.constraint
        if c.isdigit() and int(c) < len(a.outputs):
            c = a.outputs[int(c)].constraint
        out |= _arg_letter_reg(arch, c)
    for o in a.outputs:
        if "+" in o.constraint:
            out |= _arg_letter_reg(arch, o.constraint)
    return out


def _arg_letter_reg(arch: Arch, c: str) -> set[str]:
    letters = [ch for ch in c if ch.isalpha()]
    r = arch.constraint_reg(letters[0]) if len(letters) == 1 else None
    return {r} if r in arch.arg_regs else set()
