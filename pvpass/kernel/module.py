"""A kernel module (`.ko`) as the kernel's module loader leaves it before
module_finalize() patches it: its sections at load addresses, the
relocations of the sections the patcher reads applied as
apply_relocate_add() applies them (arch/x86/kernel/module.c), its undefined
symbols (pv_ops, the functions its code calls) taken from the kernel image
it is loaded into.

module_finalize() runs apply_paravirt() and apply_alternatives() on the
module's own `.parainstructions` and `.altinstructions`, in the order
alternative_instructions() runs them at boot, with the kernel's pv_ops and
NOPs: so rules.py applies unchanged to a ModuleImage, which reads like a
KernelImage (bytes by address, the tables, names) and answers every
question about the kernel (symbols, pv_ops, ops objects) from the image.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from .. import table
from ..errors import PvError
from ..link.elfobj import ElfObject, Symbol
from .image import (ALT_SECTION, Alt, KernelImage, Placed, Site, check_alts, check_sites, kernel_image,
                    parse_alts, parse_sites)

SHF_ALLOC = 2
PAGE = 0x1000

# apply_relocate_add() (6.1 arch/x86/kernel/module.c): type -> (width, pc-relative, signed range)
_RELOCS = {
    "x86_64": {0: (0, False, None), 1: (8, False, None), 10: (4, False, False), 11: (4, False, True),
               2: (4, True, True), 4: (4, True, True), 24: (8, True, None)},
    "i386": {0: (0, False, None), 1: (4, False, None), 2: (4, True, None), 4: (4, True, None)},
}


def is_module(obj: ElfObject) -> bool:
    """A relocatable object with kernel sites: a .ko (or one of its objects)."""
    return obj.is_relocatable and obj.section(table.SECTION) is not None


def parse_addresses(specs: list[str]) -> dict[str, int]:
    """--load-address SECTION=ADDR, as /sys/module/NAME/sections/SECTION gives it."""
    out = {}
    for spec in specs:
        name, _, addr = spec.rpartition("=")
        try:
            if name:
                out[name] = int(addr, 16 if not addr.startswith("0x") else 0)
                continue
        except ValueError:
            pass
        raise PvError(f"--load-address takes SECTION=ADDR (e.g. .text=0xffffffffc0000000), not '{spec}'")
    return out


@dataclass(frozen=True)
class Unresolved:
    addr: int
    width: int
    why: str


class ModuleImage:
    """The module's sections at load addresses over the kernel image."""

    def __init__(self, kernel: KernelImage, mod: ElfObject, load: dict[str, int] | None = None) -> None:
        if mod.arch.name != kernel.arch.name:
            raise PvError(f"{mod.path}: an {mod.arch.name} module, but {kernel.path} is an "
                          f"{kernel.arch.name} kernel")
        self.kernel, self.mod = kernel, mod
        self.obj, self.arch, self.path = kernel.obj, mod.arch, mod.path
        self._check_release()
        self.read_secs = self._read_sections()
        self.addr_of = self._layout(load or {})
        secs = [(a, s) for s in mod.sections if (a := self.addr_of.get(s.index)) is not None]
        self.placed = Placed(secs)
        self.unresolved: list[Unresolved] = []
        self._bytes = {s.index: self._relocated(s) if s.index in self.read_secs else
                       bytes(mod.section_data(s)).ljust(s["sh_size"], b"\0") for _, s in secs}

    # --- which module, where ----------------------------------------------
    def _check_release(self) -> None:
        """vermagic against the image's banner, where both are there."""
        mi, banner = self.mod.section(".modinfo"), self.kernel.symbol("linux_banner")
        if mi is None or banner is None:
            return
        magic = next((f[9:] for f in self.mod.section_data(mi).split(b"\0") if f.startswith(b"vermagic=")), None)
        words = self.kernel.read_upto(banner.value, 128).split(b" ")
        if magic is None or len(words) < 3 or words[:2] != [b"Linux", b"version"]:
            return
        ours, theirs = magic.split(b" ")[0].decode(errors="replace"), words[2].decode(errors="replace")
        if ours != theirs:
            raise PvError(f"{self.mod.path}: a module of Linux {ours} (vermagic), but {self.kernel.path} "
                          f"is Linux {theirs}")

    def _read_sections(self) -> set[int]:
        """The sections the patcher reads: the two tables, the sections their
        relocations name (the sites' code, the replacements)."""
        out = set()
        for name in (table.SECTION, ALT_SECTION):
            sec = self.mod.section(name)
            if sec is None:
                continue
            out.add(sec.index)
            for r in self.mod.relocations_for(name):
                if isinstance(r.symbol.shndx, int) and r.symbol.shndx:
                    out.add(r.symbol.shndx)
        return out

    def _layout(self, load: dict[str, int]) -> dict[int, int]:
        """Each allocated section's address: given, or laid out from the
        first page past the image (and past every given section)."""
        alloc = [s for s in self.mod.sections if s["sh_flags"] & SHF_ALLOC and s["sh_size"]]
        names = {s.name for s in alloc}
        unknown = sorted(set(load) - names)
        if unknown:
            raise PvError(f"{self.mod.path}: --load-address names {', '.join(unknown)}, not an allocated "
                          f"section of the module")
        if load:
            missing = [self.mod.sections[i].name for i in sorted(self.read_secs)
                       if self.mod.sections[i].name not in load]
            if missing:
                raise PvError(f"{self.mod.path}: no --load-address for {', '.join(missing)} (the patcher "
                              f"reads them; /sys/module/NAME/sections/ lists each)")
        top = max([self.kernel.placed.end] + [load[s.name] + s["sh_size"] for s in alloc if s.name in load])
        at = -(-top // PAGE) * PAGE
        out = {}
        for s in alloc:
            if s.name in load:
                out[s.index] = load[s.name]
            else:
                align = max(1, s["sh_addralign"])
                at = -(-at // align) * align
                out[s.index] = at
                at += s["sh_size"]
        return out

    def _resolve(self, sym: Symbol) -> int | None:
        if isinstance(sym.shndx, int) and sym.shndx:
            base = self.addr_of.get(sym.shndx)
            return None if base is None else base + sym.value
        if sym.shndx == "SHN_ABS":
            return sym.value
        if sym.shndx == "SHN_UNDEF" and sym.name:
            k = self.kernel.global_symbol(sym.name)
            return None if k is None else k.value
        return None

    def _relocated(self, sec) -> bytes:
        """apply_relocate_add() on one section the patcher reads."""
        data = bytearray(self.mod.section_data(sec))
        base = self.addr_of[sec.index]
        kinds = _RELOCS[self.arch.name]
        for r in self.mod.relocations_for(sec.name):
            at = base + r.offset
            kind = kinds.get(r.type)
            if kind is None:
                self.unresolved.append(Unresolved(at, 4, f"a {r.type_name} relocation, which the "
                                                         f"module loader does not apply"))
                continue
            width, pcrel, signed = kind
            if not width:
                continue
            s = self._resolve(r.symbol)
            if s is None:
                self.unresolved.append(Unresolved(at, width, f"a relocation against '{r.symbol.name}', which "
                                                             f"{self.kernel.path} does not define as a global symbol"))
                continue
            v = s + r.addend - (at if pcrel else 0)
            bits = 8 * width
            if signed is True:
                fits = -(1 << (bits - 1)) <= _signed64(v) < 1 << (bits - 1)
            else:
                fits = signed is None or 0 <= v < 1 << bits
            if not fits:
                raise PvError(f"{self.mod.path}: {self.label(at)}: {r.type_name} against "
                              f"'{r.symbol.name or self.mod.sections[r.symbol.shndx].name}' overflows "
                              f"at this layout (value {v & (1 << 64) - 1:#x})")
            data[r.offset:r.offset + width] = (v & ((1 << bits) - 1)).to_bytes(width, "little")
        return bytes(data)

    # --- bytes by address -------------------------------------------------
    def _sec_at(self, addr: int):
        return self.placed.at(addr)

    def extent(self, addr: int) -> int:
        w = self._sec_at(addr)
        return self.kernel.extent(addr) if w is None else w[0]["sh_size"] - w[1]

    def read(self, addr: int, n: int) -> bytes:
        """Bytes the patch depends on: refused where a relocation the module
        loader would apply cannot be (a symbol the image lacks)."""
        w = self._sec_at(addr)
        if w is None:
            return self.kernel.read(addr, n)
        for u in self.unresolved:
            if u.addr < addr + n and addr < u.addr + u.width:
                raise PvError(f"{self.mod.path}: {self.label(u.addr)}: {u.why}")
        return self.read_upto(addr, n) if n <= self.extent(addr) else self._short(addr, n)

    def _short(self, addr: int, n: int) -> bytes:
        raise PvError(f"{self.mod.path}: {n} bytes at {self.label(addr)} are not in one section")

    def read_upto(self, addr: int, n: int) -> bytes:
        w = self._sec_at(addr)
        if w is None:
            return self.kernel.read_upto(addr, n)
        s, off = w
        return self._bytes[s.index][off:off + n]

    def file_offset(self, addr: int, n: int) -> int:
        w = self._sec_at(addr)
        if w is None or w[1] + n > w[0]["sh_size"] or w[0]["sh_type"] == "SHT_NOBITS":
            raise PvError(f"{self.mod.path}: {n} bytes at {addr:#x} are not in one section of the file")
        return w[0]["sh_offset"] + w[1]

    def ptr(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, self.arch.ptr_size), "little")

    # --- names --------------------------------------------------------------
    def _names(self, addr: int) -> tuple[str, tuple[str, int] | None] | None:
        """(section+offset, the covering symbol and the offset into it)."""
        w = self._sec_at(addr)
        return None if w is None else (f"{w[0].name}+{w[1]:#x}", self.mod.function_at(w[0].name, w[1]))

    def name_of(self, addr: int) -> str:
        n = self._names(addr)
        if n is None:
            return self.kernel.name_of(addr)
        where, f = n
        return where if f is None else f[0] if not f[1] else f"{f[0]}+{f[1]:#x}"

    def label(self, addr: int) -> str:
        """section+offset <symbol+offset>, as `pvpass table` names a site."""
        n = self._names(addr)
        if n is None:
            return self.kernel.name_of(addr)
        where, f = n
        return where + (f" <{f[0]}+{f[1]:#x}>" if f else "")

    # --- the kernel's answers -------------------------------------------------
    def symbol(self, name: str) -> Symbol | None:
        return self.kernel.symbol(name)

    def need(self, name: str, why: str) -> Symbol:
        return self.kernel.need(name, why)

    def ops_values(self, name: str) -> list[int]:
        return self.kernel.ops_values(name)

    def object_bytes(self, name: str, why: str):
        return self.kernel.object_bytes(name, why)

    @property
    def pv_ops(self) -> Symbol:
        return self.kernel.pv_ops

    # --- the module's tables --------------------------------------------------
    def _table(self, name: str) -> tuple[bytes, int] | None:
        sec = self.mod.section(name)
        if sec is None or not sec["sh_size"]:
            return None
        a = self.addr_of[sec.index]
        return self.read(a, sec["sh_size"]), a

    @cached_property
    def sites(self) -> list[Site]:
        """The entries, checked as a kernel image's are (check_sites) at
        the module's load layout: in its own code, none overlapping."""
        t = self._table(table.SECTION)
        if t is None:
            return []
        sites = parse_sites(self.path, self.arch, t[0])
        check_sites(self.mod, sites, self.mod.section(table.SECTION)["sh_offset"], self._sec_at)
        return sites

    @cached_property
    def alts(self) -> list[Alt]:
        """The records, checked as a kernel image's are (check_alts)."""
        t = self._table(ALT_SECTION)
        if t is None:
            return []
        alts = parse_alts(self.path, *t)
        check_alts(self.mod, alts, self.mod.section(ALT_SECTION)["sh_offset"], self._sec_at)
        return alts

    def in_init(self, addr: int) -> bool:
        """In the module's init sections, freed once its init returns."""
        w = self._sec_at(addr)
        return w is not None and w[0].name.startswith(".init")


def _signed64(v: int) -> int:
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >> 63 else v


def open_module(mod: ElfObject, kernel_path: str, load: dict[str, int] | None = None) -> ModuleImage:
    """The module over the kernel image at kernel_path, both checked."""
    from ..link.tableread import read_checked
    kimg = kernel_image(read_checked(kernel_path))
    if kimg is None:
        raise PvError(f"{kernel_path}: not a kernel image (a linked file with .parainstructions, "
                      f"pv_ops and _paravirt_nop), which --kernel takes")
    if not is_module(mod):
        raise PvError(f"{mod.path}: not a kernel module (a relocatable object with "
                      f"{table.SECTION}), which --kernel is for")
    return ModuleImage(kimg, mod, load)
