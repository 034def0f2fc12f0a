"""Assembling with keystone-engine (one engine per arch, results cached).

Keystone quirks worked around in pvpass:
- it has no symbols: operands are substituted with placeholder addresses of
  the width gcc's relocation would use (see frontend/operands.py);
- it mis-encodes the multi-byte NOP forms (`nopw 0x0(%rax,%rax,1)` comes out
  as 66 0f 18 24 00, a prefetch): NOP padding uses the kernel's byte tables
  (emit/nops.py), checked against GNU as in the tests;
- it is not safe on hostile text (probed with keystone 0.9.2): it spins
  forever on a statement that starts with punctuation (`,`, `)`, `|`, `:`,
  `=`, ...; also after a label or a prefix such as `lock`), on a directive
  operand list with an empty or punctuation-led operand (`.byte 1,,2`,
  `.long ,`) and on `% -1`; it dies of SIGFPE on `$0x8000000000000000/-1`
  and `.balign 1<<28`, of SIGSEGV on a big `.rept`; `.fill`/`.skip`/`.zero`
  allocate or loop as told, and `.incbin` reads any file. So text is checked
  first (`_refuse_unsafe`): every statement starts with a mnemonic, a label
  or a data directive (`.byte` ... `.quad`, nothing else: replacement code
  is at most 255 bytes), no `/` (a comment character on i386 in GNU as) and
  no `%` other than a register's. Every call also runs on a worker thread
  with a time limit, the backstop for shapes not listed (ctypes releases the
  GIL, so the caller can give up on a stuck engine).
"""
from __future__ import annotations

import queue
import re
import threading
from dataclasses import dataclass
from functools import lru_cache

from keystone import KS_ARCH_X86, KS_MODE_32, KS_MODE_64, KS_OPT_SYNTAX_ATT, Ks

from .arch import Arch
from .textsplit import split_commas

# Far above any real statement's time (microseconds), so it only fires on a hang.
KEYSTONE_TIMEOUT = 5.0


class EncodeError(Exception):
    pass


@lru_cache(maxsize=2)
def _engine(bits: int) -> Ks:
    ks = Ks(KS_ARCH_X86, KS_MODE_64 if bits == 64 else KS_MODE_32)
    ks.syntax = KS_OPT_SYNTAX_ATT
    return ks


_LABEL = re.compile(r"\s*(?:[A-Za-z_.$][\w.$]*|\d+)\s*:(?!:)")
_PREFIXES = {"lock", "rep", "repe", "repz", "repne", "repnz", "notrack", "data16", "data32",
             "addr16", "addr32", "rex", "rex64", "xacquire", "xrelease", "bnd",
             "cs", "ds", "es", "fs", "gs", "ss"}
# characters no operand of a directive starts with (keystone hangs on them)
_BAD_LEAD = set(",)]:=<>|^&!~\\/?`'\"[%*")


_DATA = {".byte", ".short", ".word", ".value", ".2byte", ".long", ".int", ".4byte", ".quad", ".8byte"}
_BAD_PERCENT = re.compile(r"%(?![A-Za-z])")


def _refuse_unsafe(text: str) -> None:
    """Raise EncodeError for text keystone cannot be trusted with (above)."""
    if "/" in text:
        raise EncodeError(f"cannot assemble '{text}': '/' (division, or a comment on i386) "
                          f"is not accepted")
    if _BAD_PERCENT.search(text):
        raise EncodeError(f"cannot assemble '{text}': '%' must start a register name")
    for stmt in re.split(r"[;\n]", text):
        s = stmt
        while True:
            m = _LABEL.match(s)
            if not m:
                break
            s = s[m.end():]
        s = s.strip()
        while s:
            if not (s[0].isalpha() or s[0] in "._"):
                raise EncodeError(f"cannot assemble '{text}': statement '{stmt.strip()}' "
                                  f"does not start with a mnemonic or directive")
            word, rest = (s.split(None, 1) + [""])[:2]
            if word.lower() in _PREFIXES and rest.strip():
                s = rest.strip()
                continue
            if word.startswith(".") and word.lower() not in _DATA:
                raise EncodeError(f"cannot assemble '{text}': directive '{word}' is not accepted "
                                  f"(only data directives: {', '.join(sorted(_DATA))})")
            if word.startswith(".") and rest.strip():
                for operand in split_commas(rest, "([", ")]"):
                    o = operand.strip()
                    if not o or o[0] in _BAD_LEAD:
                        raise EncodeError(f"cannot assemble '{text}': directive '{stmt.strip()}' "
                                          f"has an empty or malformed operand")
            break


class _Worker:
    """One daemon thread that runs keystone calls; a caller waits at most
    KEYSTONE_TIMEOUT and then abandons the thread (and its engine) for good.
    A persistent thread costs a queue round trip per call, not a thread start."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._run, name="keystone", daemon=True).start()

    def _run(self) -> None:
        while True:
            bits, text, addr, box, done = self.jobs.get()
            try:
                box["out"] = _engine(bits).asm(text, addr)
            except Exception as e:          # noqa: BLE001 - handed to the caller
                box["err"] = e
            finally:
                done.set()


_worker: _Worker | None = None


def _asm_guarded(bits: int, text: str, addr: int):
    global _worker
    if _worker is None:
        _worker = _Worker()
    box: dict = {}
    done = threading.Event()
    _worker.jobs.put((bits, text, addr, box, done))
    if not done.wait(KEYSTONE_TIMEOUT):
        _worker = None                 # stuck: the next call gets a new thread
        _engine.cache_clear()          # and a new engine
        raise EncodeError(f"cannot assemble '{text}': keystone did not finish in "
                          f"{KEYSTONE_TIMEOUT:g} s (malformed statement)")
    if "err" in box:
        raise EncodeError(f"cannot assemble '{text}': {box['err']}")
    return box["out"]


@lru_cache(maxsize=65536)
def _assemble(bits: int, text: str, addr: int) -> bytes | EncodeError:
    """The code, or the error: failures are cached too (a text that times
    out is asked for once per site and backend)."""
    try:
        _refuse_unsafe(text)
        enc, _ = _asm_guarded(bits, text, addr)
    except EncodeError as e:
        return e
    return bytes(enc or b"")


def assemble(arch: Arch, text: str, addr: int = 0) -> bytes:
    """Machine code for AT&T `text` (statements separated by ';')."""
    if not text.strip():
        return b""
    out = _assemble(arch.bits, text, addr)
    if isinstance(out, EncodeError):
        raise EncodeError(str(out))
    return out


# --- replacements that name symbols (relocatable inline patches) ---------------
#
# Keystone resolves no symbols (given a resolver it gets RIP-relative fields
# wrong and drops addends), so each symbol is replaced by a placeholder
# address, the text assembled again with that placeholder moved, and the
# 4-byte field that moved is the symbol's field (emit/stubs.py says which
# relocation it needs). Keystone quirk: on x86-64 it encodes a bare absolute
# address (`movl $0, 0x1000`, `%gs:0x1000`) RIP-relative; `(,%riz,1)` gives
# GNU as's SIB form, so the placeholder gets it.

_SYM_PREFIXES = {"lock", "rep", "repe", "repz", "repne", "repnz"}
_SYM_RE = re.compile(r"(?<![%\w.])([A-Za-z_.][\w.$]*)")
_BASE, _STEP, _MOVE = 0x10000000, 0x01000000, 0x01010101


@dataclass(frozen=True)
class SymField:
    offset: int          # of the 4-byte field in the code
    symbol: str
    value: int           # what the field held minus the symbol's placeholder


def _split_operands(s: str) -> list[str]:
    parts = split_commas(s)
    return parts if parts[-1].strip() else parts[:-1]


def _statements(text: str) -> list[tuple[str, list[str]]]:
    """(mnemonic with its prefixes, operands) per statement."""
    out = []
    for st in re.split(r"[;\n]", text):
        words = st.strip().split(None, 1)
        pre = []
        while words and words[0].lower() in _SYM_PREFIXES:
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
