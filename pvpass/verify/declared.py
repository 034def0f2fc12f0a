"""What the source declares each backend gives for each op (`--source`):
the function its initializer names and its inline replacement text, read
by the front end (the declarations are the spec, not the generator's
output). An inline replacement is assembled here by GNU as and placed by
ld at the site's address, so the bytes that run can be held against the
text without pvpass's encoder (keystone) or its relocation code.
Built-in backends (`native`, `c-calls`) are pvpass's own tables: not read."""
from __future__ import annotations

import functools
import io
import os
import tempfile
from dataclasses import dataclass

from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection

from .. import tools
from ..diag import PvError


@dataclass(frozen=True)
class Declared:
    op: str
    function: str | None      # the initializer's function for the op
    kind: str                 # c | callee-save | inline | nop
    text: str | None          # the inline replacement, as written
    returns: bool | None      # the op's prototype returns a value


@dataclass(frozen=True)
class Declarations:
    targets: dict[tuple[str, int], Declared]     # (backend, type number) -> what it gives
    sites: dict[int, tuple[str, ...]]            # type number -> where its sites are written

    def get(self, key: tuple[str, int]) -> Declared | None:
        return self.targets.get(key)

    def site_lines(self, type_: int) -> str:
        return " or ".join(self.sites.get(type_, ()))


def declarations(source: str, arch, cpp: list[str]) -> Declarations:
    """`arch`: the front end's description of the target (the command line
    gives it): type numbers depend on the pointer size."""
    from ..frontend.scan import scan
    inv = scan(source, arch, ["-fno-pie", *cpp], report=False).inventory
    types = {op.path: (op.type_number, op.returns) for s in inv.ops for op in s.ops}
    out: dict[tuple[str, int], Declared] = {}
    for b in inv.backends:
        if b.builtin:
            continue
        for t in b.targets.values():
            if t.op in types:
                n, returns = types[t.op]
                out[(b.name, n)] = Declared(t.op, t.function, t.contract.kind, t.contract.text, returns)
    sites: dict[int, list[str]] = {}
    for s in inv.sites:
        where = f"{s.loc.file}:{s.loc.line}:{s.loc.col}"
        if where not in sites.setdefault(s.type_number, []):
            sites[s.type_number].append(where)
    return Declarations(out, {t: tuple(w) for t, w in sites.items()})


@functools.lru_cache(maxsize=256)
def _assembled(bits: int, text: str) -> tuple[bytes, bytes | None]:
    """(the object GNU as makes of `text`, its .text bytes when it has no
    relocation, else None)."""
    with tempfile.TemporaryDirectory(prefix="pvpass-verify-as-") as d:
        s, o = os.path.join(d, "r.s"), os.path.join(d, "r.o")
        with open(s, "w") as f:
            f.write(f".text\n{text}\n")
        tools.run(["as", "--64" if bits == 64 else "--32", "-o", o, s], what=f"as on '{text}'")
        with open(o, "rb") as f:
            obj = f.read()
    elf = ELFFile(io.BytesIO(obj))
    relocated = any(isinstance(s, RelocationSection) and s.num_relocations() for s in elf.iter_sections())
    return obj, None if relocated else elf.get_section_by_name(".text").data()


def _undefined(obj: bytes) -> list[str]:
    syms = ELFFile(io.BytesIO(obj)).get_section_by_name(".symtab")
    return sorted({s.name for s in syms.iter_symbols() if s.name and s["st_shndx"] == "SHN_UNDEF"})


@functools.lru_cache(maxsize=1024)
def _linked(bits: int, text: str, at: int, values: tuple[tuple[str, int], ...]) -> bytes:
    obj, _ = _assembled(bits, text)
    with tempfile.TemporaryDirectory(prefix="pvpass-verify-ld-") as d:
        o, out, b = os.path.join(d, "r.o"), os.path.join(d, "r"), os.path.join(d, "r.bin")
        with open(o, "wb") as f:
            f.write(obj)
        defs = [f"--defsym={n}={v:#x}" for n, v in values]
        tools.run(["ld", "-m", "elf_x86_64" if bits == 64 else "elf_i386", f"-Ttext={at:#x}", "-e", "0",
                   "--no-warn-rwx-segments", *defs, "-o", out, o], what=f"ld on '{text}'")
        tools.run(["objcopy", "-O", "binary", "-j", ".text", out, b], what="objcopy")
        with open(b, "rb") as f:
            return f.read()


def replacement(bits: int, text: str, at: int, address_of) -> bytes:
    """`text` as GNU as assembles it and ld places it at `at`, each symbol
    it names at the file's address for it (`address_of(name)`)."""
    obj, flat = _assembled(bits, text)
    if flat is not None:
        return flat
    values = []
    for name in _undefined(obj):
        v = address_of(name)
        if v is None:
            raise PvError(f"the declared replacement '{text}' names {name}, which the file does not hold")
        values.append((name, v))
    return _linked(bits, text, at, tuple(values))


def elf_arch(path: str) -> str:
    """The arch of an ELF file, to read its source for (before verify reads it)."""
    from ..link.elfobj import ElfObject
    return ElfObject.read(path).arch.name
