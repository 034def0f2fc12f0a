"""The checker's own calling conventions, written from the documents, not
imported from the generator (pvpass.arch / pvpass.emit), so a change there
cannot change what verify accepts.

- i386 System V psABI (Intel386 supplement, 4th ed., 2.2.3 "Registers and
  the Stack Frame"): %eax, %ecx, %edx belong to the caller; %ebx, %esi,
  %edi, %ebp, %esp to the callee; a result in %eax (64-bit: %edx:%eax).
- Linux i386 kernel, built with -mregparm=3 (arch/x86/Makefile): the first
  three integer arguments in %eax, %edx, %ecx; same caller-saved set.
- x86-64 System V psABI 1.0, 3.2.1-3.2.3: %rax %rcx %rdx %rsi %rdi %r8-%r11
  are caller-saved; integer arguments in %rdi %rsi %rdx %rcx %r8 %r9; the
  result in %rax (%rdx:%rax); %rsp + 8 is a multiple of 16 at function
  entry, i.e. the stack is 16-byte aligned at the call; DF is clear on
  entry and on return.
- Clobber-mask bits: the kernel's CLBR_* (arch/x86/include/asm/paravirt_types.h):
  i386 EAX=1 ECX=2 EDX=4 EDI=8; x86-64 RAX=1 RCX=2 RDX=4 RDI=8 RSI=16
  R8=32 R9=64 R10=128 R11=256.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Convention:
    name: str
    bits: int
    gprs: tuple[str, ...]           # every general register, full width
    sp: str
    caller_saved: tuple[str, ...]   # a C function may change these
    arg_regs: tuple[str, ...]       # integer arguments, in order
    ret_regs: tuple[str, ...]       # result (low, high)
    clobber_bits: tuple[tuple[str, int], ...]
    call_align: int                 # stack alignment at a call instruction

    @property
    def word(self) -> int:
        return self.bits // 8

    def regs_of_mask(self, mask: int) -> frozenset[str]:
        return frozenset(r for r, b in self.clobber_bits if mask & b)


I386_GPRS = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
X86_64_GPRS = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
               "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")

# The kernel's i386 convention (regparm(3)): what pvpass's i386 ops use.
I386_REGPARM = Convention(
    "i386 regparm(3)", 32, I386_GPRS, "esp",
    caller_saved=("eax", "ecx", "edx"), arg_regs=("eax", "edx", "ecx"), ret_regs=("eax", "edx"),
    clobber_bits=(("eax", 1), ("ecx", 2), ("edx", 4), ("edi", 8)), call_align=4)

# Plain i386 SysV (cdecl): arguments on the stack.
I386_CDECL = Convention(
    "i386 cdecl", 32, I386_GPRS, "esp",
    caller_saved=("eax", "ecx", "edx"), arg_regs=(), ret_regs=("eax", "edx"),
    clobber_bits=I386_REGPARM.clobber_bits, call_align=4)

X86_64_SYSV = Convention(
    "x86-64 SysV", 64, X86_64_GPRS, "rsp",
    caller_saved=("rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11"),
    arg_regs=("rdi", "rsi", "rdx", "rcx", "r8", "r9"), ret_regs=("rax", "rdx"),
    clobber_bits=(("rax", 1), ("rcx", 2), ("rdx", 4), ("rdi", 8), ("rsi", 16),
                  ("r8", 32), ("r9", 64), ("r10", 128), ("r11", 256)),
    call_align=16)

# What an op of each arch is called with (pvpass's PVPASS_REGPARM, the kernel's -mregparm=3).
OP_CONVENTION = {"i386": I386_REGPARM, "x86_64": X86_64_SYSV}

# EFLAGS bits. cc = the arithmetic flags; DF must be clear across a call
# (psABI) and TF must never be left set by a patch.
CC_FLAGS = 0x8D5          # CF PF AF ZF SF OF
DF, TF, IF = 0x400, 0x100, 0x200
