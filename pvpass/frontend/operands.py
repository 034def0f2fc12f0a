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


def code_model(arch: Arch, flags: tuple[str, ...], cc: str) -> CodeModel:
    """Ask the compiler `cc` which model the user's flags select (its own
    default counts: a cross or distribution compiler may differ from gcc's)."""
    # keyed on the flags that can change it: a lint over a build's TUs,
    # whose -D/-I differ per file, asks once per set of -f/-m/-O flags
    return _code_model(arch, tuple(f for f in flags if f.startswith(("-f", "-m", "-O"))), cc)


@lru_cache(maxsize=64)
def _code_model(arch: Arch, keep: tuple[str, ...], cc: str) -> CodeModel:
    r = tools.run([cc, arch.gcc_flag, *keep, "-dM", "-E", "-x", "c", "-"],
                  input=b"", check=False)
    macros = r.stdout.decode(errors="replace")
    pie = "__PIE__" in macros or "__pie__" in macros
    pic = ("__PIC__" in macros or "__pic__" in macros) and not pie
    return CodeModel(pic=pic, pie=pie)


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
