"""Assembling with keystone-engine (one engine per arch, results cached).

Keystone quirks worked around in pvpass:
- it has no symbols: operands are substituted with placeholder addresses of
  the width gcc's relocation would use (see frontend/operands.py);
- it mis-encodes the multi-byte NOP forms (`nopw 0x0(%rax,%rax,1)` comes out
  as 66 0f 18 24 00, a prefetch): NOP padding uses the kernel's byte tables
  (emit/nops.py), checked against GNU as in the tests.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from keystone import KS_ARCH_X86, KS_MODE_32, KS_MODE_64, KS_OPT_SYNTAX_ATT, Ks, KsError

from .arch import Arch


class EncodeError(Exception):
    pass


@lru_cache(maxsize=2)
def _engine(bits: int) -> Ks:
    ks = Ks(KS_ARCH_X86, KS_MODE_64 if bits == 64 else KS_MODE_32)
    ks.syntax = KS_OPT_SYNTAX_ATT
    return ks


@lru_cache(maxsize=65536)
def _assemble(bits: int, text: str, addr: int) -> bytes:
    try:
        enc, _ = _engine(bits).asm(text, addr)
    except KsError as e:
        raise EncodeError(f"cannot assemble '{text}': {e}") from None
    return bytes(enc or b"")


def assemble(arch: Arch, text: str, addr: int = 0) -> bytes:
    """Machine code for AT&T `text` (statements separated by ';')."""
    if not text.strip():
        return b""
    return _assemble(arch.bits, text, addr)


# --- replacements that name symbols (relocatable inline patches) ---------------
#
# Keystone resolves no symbols (given a resolver it gets RIP-relative fields
# wrong and drops addends), so each symbol is replaced by a placeholder
# address, the text assembled again with that placeholder moved, and the
# 4-byte field that moved is the symbol's field (emit/stubs.py says which
# relocation it needs). Keystone quirk: on x86-64 it encodes a bare absolute
# address (`movl $0, 0x1000`, `%gs:0x1000`) RIP-relative; `(,%riz,1)` gives
# GNU as's SIB form, so the placeholder gets it.

_PREFIXES = {"lock", "rep", "repe", "repz", "repne", "repnz"}
_SYM_RE = re.compile(r"(?<![%\w.])([A-Za-z_.][\w.$]*)")
_BASE, _STEP, _MOVE = 0x10000000, 0x01000000, 0x01010101


@dataclass(frozen=True)
class SymField:
    offset: int          # of the 4-byte field in the code
    symbol: str
    value: int           # what the field held minus the symbol's placeholder


def _split_operands(s: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur += ch
    return out + [cur] if cur.strip() else out


def _statements(text: str) -> list[tuple[str, list[str]]]:
    """(mnemonic with its prefixes, operands) per statement."""
    out = []
    for st in re.split(r"[;\n]", text):
        words = st.strip().split(None, 1)
        pre = []
        while words and words[0].lower() in _PREFIXES:
            pre.append(words[0])
            words = words[1].split(None, 1) if len(words) > 1 else []
        if words:
            out.append((" ".join(pre + words[:1]), _split_operands(words[1]) if len(words) > 1 else []))
    return out


def symbols_in(text: str) -> tuple[str, ...]:
    """The symbols an instruction text names, in order of first use."""
    seen: dict[str, None] = {}
    for _, ops in _statements(text):
        for o in ops:
            for m in _SYM_RE.finditer(o):
                seen.setdefault(m.group(1))
    return tuple(seen)


def _substitute(arch: Arch, text: str, values: dict[str, int]) -> str:
    stmts = []
    for mnem, ops in _statements(text):
        new = []
        for o in ops:
            o2 = _SYM_RE.sub(lambda m: hex(values.get(m.group(1), 0)), o)
            bare = o2.strip()
            if bare.startswith("%") and ":" in bare:
                bare = bare.split(":", 1)[1].strip()
            if (arch.bits == 64 and o2 != o and "(" not in o2
                    and not bare.startswith(("$", "%", "*")) and not mnem.lower().startswith(("call", "j"))):
                o2 = o2.rstrip() + "(,%riz,1)"
            new.append(o2)
        stmts.append(f"{mnem} {','.join(new)}".strip())
    return "; ".join(stmts)


_DECIMAL = re.compile(r"(?<![\w.%])(?<![\w.]\$)(\d+)(?![\w.])")


def hex_literals(text: str) -> str:
    """Decimal numbers as hex: keystone reads `$10` and `16(,%rax,4)` as hex
    (GNU as reads decimal), so a user's text is normalised first."""
    return _DECIMAL.sub(lambda m: hex(int(m.group(1))), text)


def assemble_symbolic(arch: Arch, text: str) -> tuple[bytes, tuple[SymField, ...]]:
    """Machine code for `text`, which may name symbols: the code with every
    symbol's 32-bit field zeroed, and the fields."""
    text = hex_literals(text)
    syms = symbols_in(text)
    if not syms:
        return assemble(arch, text), ()
    if len(syms) > 15:
        raise EncodeError(f"'{text}' names {len(syms)} symbols: at most 15")
    base = {s: _BASE + i * _STEP for i, s in enumerate(syms)}
    code = assemble(arch, _substitute(arch, text, base))
    buf = bytearray(code)
    out = []
    for s in syms:
        moved = assemble(arch, _substitute(arch, text, {**base, s: base[s] + _MOVE}))
        if len(moved) != len(code):
            raise EncodeError(f"'{text}': the encoding of {s} depends on its address")
        diff = {i for i in range(len(code)) if code[i] != moved[i]}
        for start in sorted(i for i in diff if i - 1 not in diff):
            if {i for i in diff if start <= i < start + 8} != set(range(start, start + 4)):
                raise EncodeError(f"'{text}': {s} is not in a 32-bit field (name it as an "
                                  f"address or a 32-bit immediate)")
            field = int.from_bytes(code[start:start + 4], "little", signed=True)
            out.append(SymField(start, s, field - base[s]))
            buf[start:start + 4] = bytes(4)
    return bytes(buf), tuple(sorted(out, key=lambda f: f.offset))
