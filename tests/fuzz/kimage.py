"""The `kimage` target's model of a kernel-form image, from pyelftools (not
pvpass's reader): where the fields of `.parainstructions` entries and
`.altinstructions` records are, for mutating them, and which bytes the
kernel's patcher may write (the sites and the alternatives overlapping
them), for checking `pvpass patch`'s output."""
from __future__ import annotations

import io
import struct

from elftools.elf.elffile import ELFFile

from elfmut import Field, _get

# struct paravirt_patch_site: instr (pointer), type, len (u8 each)
_SITE = {64: [("instr", 0, 8), ("type", 8, 1), ("len", 9, 1)], 32: [("instr", 0, 4), ("type", 4, 1), ("len", 5, 1)]}
_SITE_SIZE = {64: 16, 32: 8}
# 6.1's struct alt_instr, __packed: instr_offset, repl_offset (s32), cpuid (u16), instrlen, replacementlen (u8)
_ALT = [("instr_offset", 0, 4), ("repl_offset", 4, 4), ("cpuid", 8, 2), ("instrlen", 10, 1), ("repllen", 11, 1)]
ALT_SIZE = 12


def _first(elf: ELFFile, name: str):
    """The first section of that name (as pvpass takes it; pyelftools' own
    lookup keeps the last)."""
    return next((s for s in elf.iter_sections() if s.name == name), None)


def table_fields(data: bytes) -> list[Field]:
    elf = ELFFile(io.BytesIO(data))
    bits = elf.elfclass
    out = []
    sec = _first(elf, ".parainstructions")
    if sec is not None:
        for k in range(sec["sh_size"] // _SITE_SIZE[bits]):
            o = sec["sh_offset"] + k * _SITE_SIZE[bits]
            out += [Field(f"site[{k}].{n}", o + at, s, _get(data, o + at, s)) for n, at, s in _SITE[bits]]
    sec = _first(elf, ".altinstructions")
    if sec is not None:
        for k in range(sec["sh_size"] // ALT_SIZE):
            o = sec["sh_offset"] + k * ALT_SIZE
            out += [Field(f"alt[{k}].{n}", o + at, s, _get(data, o + at, s)) for n, at, s in _ALT]
    return out


def writable(data: bytes) -> set[int]:
    """File offsets the patcher may write: each site's bytes and those of
    every alternative overlapping a site, where they lie in an executable
    section's contents."""
    elf = ELFFile(io.BytesIO(data))
    bits = elf.elfclass
    secs = [(s["sh_addr"], s["sh_size"], s["sh_offset"]) for s in elf.iter_sections()
            if s["sh_flags"] & 4 and s["sh_type"] == "SHT_PROGBITS"]

    def offsets(addr: int, n: int) -> set[int]:
        for a, size, off in secs:
            if a <= addr and addr + n <= a + size:
                return set(range(off + addr - a, off + addr - a + n))
        return set()
    sites = []
    sec = _first(elf, ".parainstructions")
    if sec is not None:
        d, step = sec.data(), _SITE_SIZE[bits]
        fmt = "<QBB" if bits == 64 else "<IBB"
        sites = [struct.unpack_from(fmt, d, i)[::2] for i in range(0, len(d) - step + 1, step)]
    out = set()
    for a, n in sites:
        out |= offsets(a, n)
    sec = _first(elf, ".altinstructions")
    if sec is not None:
        d, base = sec.data(), sec["sh_addr"]
        for i in range(0, len(d) - ALT_SIZE + 1, ALT_SIZE):
            io_, _, _, il, _ = struct.unpack_from("<iiHBB", d, i)
            a = base + i + io_
            if any(s < a + il and a < s + n for s, n in sites):
                out |= offsets(a, il)
    return out


MAX_PATCH_LEN = 254         # arch/x86/kernel/alternative.c: a longer site or record is a BUG at boot


def is_kernel_form(elf: ELFFile) -> bool:
    """What pvpass treats as a kernel image: a linked file with a table, no
    pvpass patch records, and pv_ops and _paravirt_nop among its symbols, or
    no symbol table at all (stripped) in an executable."""
    if elf["e_type"] == "ET_REL" or _first(elf, ".parainstructions") is None or _first(elf, ".pvpass.patches"):
        return False
    tabs = [s for s in elf.iter_sections() if s["sh_type"] == "SHT_SYMTAB"]
    if not tabs:
        return elf["e_type"] == "ET_EXEC"
    names = {s.name for s in tabs[0].iter_symbols()}
    return {"pv_ops", "_paravirt_nop"} <= names


def faults(data: bytes) -> list[str]:
    """What the kernel's patcher assumes of a kernel-form image's tables and
    this image breaks (nothing for any other file, or one these readers
    cannot make out): a site or an alternative outside every allocated
    executable SHT_PROGBITS section, longer than MAX_PATCH_LEN, sites
    sharing bytes, a replacement longer than its original, alternatives
    partly over one another. A command that takes the image (exit 0 or 1)
    must have refused it instead."""
    try:
        elf = ELFFile(io.BytesIO(data))
        if not is_kernel_form(elf):
            return []
        code = [(s["sh_addr"], s["sh_addr"] + s["sh_size"]) for s in elf.iter_sections()
                if s["sh_flags"] & 6 == 6 and s["sh_type"] == "SHT_PROGBITS" and s["sh_size"]]
        bits = elf.elfclass
        sec = _first(elf, ".parainstructions")
        d, step = sec.data(), _SITE_SIZE[bits]
        if sec["sh_type"] != "SHT_PROGBITS" or len(d) % step:
            return []
        fmt = "<QBB" if bits == 64 else "<IBB"
        sites = [struct.unpack_from(fmt, d, i)[::2] for i in range(0, len(d), step)]
        alts = []
        sec = _first(elf, ".altinstructions")
        if sec is not None:
            d, base = sec.data(), sec["sh_addr"]
            if sec["sh_type"] != "SHT_PROGBITS" or len(d) % ALT_SIZE:
                return []
            for i in range(0, len(d), ALT_SIZE):
                io_, ro, _, il, rl = struct.unpack_from("<iiHBB", d, i)
                alts.append((base + i + io_, il, base + i + 4 + ro, rl))
    except Exception:           # a file pyelftools cannot read: no verdict
        return []

    def in_code(a: int, n: int) -> bool:
        return any(lo <= a and a + n <= hi for lo, hi in code)
    out = []
    for k, (a, n) in enumerate(sites):
        if n > MAX_PATCH_LEN or not in_code(a, n):
            out.append(f"site {k} [{a:#x}, {a + n:#x}) is not code or too long")
    srt = sorted(sites)
    out += [f"sites at {a:#x} and {b:#x} share bytes" for (a, n), (b, _) in zip(srt, srt[1:]) if b < a + n]
    for k, (a, il, r, rl) in enumerate(alts):
        if il > MAX_PATCH_LEN or rl > il or not in_code(a, il) or (rl and not in_code(r, rl)):
            out.append(f"alternative {k} at {a:#x} is not code, or too long")
    srt = sorted((a, il) for a, il, _, _ in alts)
    out += [f"alternatives at {a:#x} and {b:#x} overlap" for (a, n), (b, m) in zip(srt, srt[1:])
            if b < a + n and (a, n) != (b, m)]
    return out


def object_faults(data: bytes) -> list[str]:
    """What a patcher assumes of a relocatable object's site table (a
    module's, a compiler's, one pvpass linked) and this object breaks, each
    entry placed by its relocation as section+offset: a site outside one
    executable SHT_PROGBITS section, longer than the patcher writes
    (MAX_PATCH_LEN in the kernel's form, without pvpass patch records),
    two sites sharing bytes. Sections are found by name, the first of a
    name, as pvpass's readers take them. Nothing for any other file or
    one these readers cannot make out: a command that reads the table
    (exit 0 or 1) must have refused it instead."""
    try:
        elf = ELFFile(io.BytesIO(data))
        sec = _first(elf, ".parainstructions")
        if elf["e_type"] != "ET_REL" or sec is None or sec["sh_type"] != "SHT_PROGBITS":
            return []
        bits, d = elf.elfclass, sec.data()
        step = _SITE_SIZE[bits]
        if len(d) % step:
            return []
        index = next(i for i, s in enumerate(elf.iter_sections()) if s.name == sec.name)
        rels = [s for s in elf.iter_sections() if s["sh_type"] in ("SHT_REL", "SHT_RELA")
                and s["sh_info"] == index]
        if len(rels) != 1:
            return []
        symtab = elf.get_section(rels[0]["sh_link"])
        relocs = {r["r_offset"]: r for r in rels[0].iter_relocations()}
        limit = MAX_PATCH_LEN if _first(elf, ".pvpass.patches") is None else 255
        sites = []
        for k in range(len(d) // step):
            r = relocs.get(k * step)
            if r is None:
                return []
            sym = symtab.get_symbol(r["r_info_sym"])
            if not isinstance(sym["st_shndx"], int) or not 0 < sym["st_shndx"] < elf.num_sections():
                return []
            name = elf.get_section(sym["st_shndx"]).name
            target = _first(elf, name)
            addend = r["r_addend"] if r.is_RELA() else int.from_bytes(d[k * step:k * step + 4], "little",
                                                                       signed=True)
            off = (0 if sym["st_info"]["type"] == "STT_SECTION" else sym["st_value"]) + addend
            sites.append((name, off, d[k * step + bits // 8 + 1], target))
    except Exception:           # a file pyelftools cannot read: no verdict
        return []
    out = []
    for k, (name, off, n, target) in enumerate(sites):
        if n > limit or not (target["sh_flags"] & 4 and target["sh_type"] == "SHT_PROGBITS"
                             and 0 <= off and off + n <= target["sh_size"]):
            out.append(f"site {k} [{name}{off:+#x}, +{n}) is not code or too long")
    srt = sorted((name, off, n) for name, off, n, _ in sites)
    out += [f"sites at {a}{x:+#x} and {b}{y:+#x} share bytes" for (a, x, n), (b, y, _) in zip(srt, srt[1:])
            if a == b and y < x + n]
    return out
