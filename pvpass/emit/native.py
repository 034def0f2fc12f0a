"""The built-in backends: `native` (the kernel's inline replacement set,
DEF_NATIVE / PATCH_DEFAULT) and `c-calls` (every op a plain C function)."""
from __future__ import annotations

from ..arch import Arch
from ..model import Backend, Contract, OpsStruct, Target

# op name (last path component) -> replacement text
NATIVE_I386 = {
    "irq_disable": "cli",
    "irq_enable": "sti",
    "restore_fl": "push %eax; popf",
    "save_fl": "pushf; pop %eax",
    "read_cr2": "mov %cr2, %eax",
    "write_cr3": "mov %eax, %cr3",
    "read_cr3": "mov %cr3, %eax",
    "iret": "iret",
    "irq_enable_sysexit": "sti; sysexit",
    "clts": "clts",
    "read_tsc": "rdtsc",
}
# i386 arguments and results share %eax: the identity ops patch to nothing.
_IDENT_OPS = ("pte_val", "make_pte", "pgd_val", "make_pgd", "pmd_val", "make_pmd",
              "pud_val", "make_pud", "p4d_val", "make_p4d")

NATIVE_X86_64 = {
    "irq_disable": "cli",
    "irq_enable": "sti",
    "restore_fl": "pushq %rdi; popfq",
    "save_fl": "pushfq; popq %rax",
    "read_cr2": "movq %cr2, %rax",
    "read_cr3": "movq %cr3, %rax",
    "write_cr3": "movq %rdi, %cr3",
    "flush_tlb_single": "invlpg (%rdi)",
    "flush_tlb_one_user": "invlpg (%rdi)",
    "wbinvd": "wbinvd",
    "swapgs": "swapgs",
    "iret": "iretq",
    **{op: "mov %rdi, %rax" for op in _IDENT_OPS},
    "ident_32": "mov %edi, %eax",
}


def native_text(arch: Arch, op_path: str) -> str | None:
    name = op_path.rsplit(".", 1)[-1]
    if arch.bits == 32:
        if name in _IDENT_OPS:
            return ""
        return NATIVE_I386.get(name)
    return NATIVE_X86_64.get(name)


def builtin_backends(arch: Arch, ops: OpsStruct) -> list[Backend]:
    native = Backend("native", None, builtin=True)
    ccalls = Backend("c-calls", None, builtin=True)
    c = Contract("c", arch.caller_saved)
    for op in ops.ops:
        fn = "c_calls_" + op.path.replace(".", "_")
        ccalls.targets[op.path] = Target(op.path, fn, c)
        text = native_text(arch, op.path)
        if text is not None:
            native.targets[op.path] = Target(op.path, None, Contract("inline", (), text))
    return [native, ccalls]
