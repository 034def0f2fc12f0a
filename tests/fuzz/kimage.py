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


def table_fields(data: bytes) -> list[Field]:
    elf = ELFFile(io.BytesIO(data))
    bits = elf.elfclass
    out = []
    sec = elf.get_section_by_name(".parainstructions")
    if sec is not None:
        for k in range(sec["sh_size"] // _SITE_SIZE[bits]):
            o = sec["sh_offset"] + k * _SITE_SIZE[bits]
            out += [Field(f"site[{k}].{n}", o + at, s, _get(data, o + at, s)) for n, at, s in _SITE[bits]]
    sec = elf.get_section_by_name(".altinstructions")
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
    sec = elf.get_section_by_name(".parainstructions")
    if sec is not None:
        d, step = sec.data(), _SITE_SIZE[bits]
        fmt = "<QBB" if bits == 64 else "<IBB"
        sites = [struct.unpack_from(fmt, d, i)[::2] for i in range(0, len(d) - step + 1, step)]
    out = set()
    for a, n in sites:
        out |= offsets(a, n)
    sec = elf.get_section_by_name(".altinstructions")
    if sec is not None:
        d, base = sec.data(), sec["sh_addr"]
        for i in range(0, len(d) - ALT_SIZE + 1, ALT_SIZE):
            io_, _, _, il, _ = struct.unpack_from("<iiHBB", d, i)
            a = base + i + io_
            if any(s < a + il and a < s + n for s, n in sites):
                out |= offsets(a, il)
    return out
