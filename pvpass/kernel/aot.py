"""`pvpass patch` and `pvpass show` on a kernel image: the kernel's own
boot-time patch (rules.py) written ahead of time, or shown per site."""
from __future__ import annotations

import re

from ..emit.stubs import disassemble
from ..link.elfobj import ElfObject
from .image import KernelImage
from .rules import SitePatch, backend, patch_image


def plan(obj: ElfObject, backend_name: str) -> tuple[KernelImage, list[SitePatch]]:
    img = KernelImage(obj)
    return img, patch_image(img, backend(img, backend_name))


def patch_bytes(obj: ElfObject, backend_name: str) -> bytes:
    """The image with every site's region as the kernel leaves it at boot.
    Only those bytes change: the table, the records and the rest stay, so
    the image can still be read (and booted: the kernel re-patching a patched
    site writes the same bytes again)."""
    img, patches = plan(obj, backend_name)
    out = bytearray(obj.data)
    for p in patches:
        off = img.file_offset(p.start, len(p.after))
        out[off:off + len(p.after)] = p.after
    return bytes(out)


_TARGET = re.compile(r"^(call|jmp|j[a-z]+)[lq]? (0x[0-9a-f]+)$")
_RIPREL = re.compile(r"(-?0x[0-9a-f]+)\(%rip\)")


def insns(img: KernelImage, code: bytes, addr: int) -> str:
    """The instructions as objdump names their targets: `call 0x... <sym>`,
    a %rip-relative operand followed by `# <sym+off>`."""
    parts, done = [], 0
    for off, size, t in disassemble(img.arch, code, addr):
        done = off + size
        m = _TARGET.match(t)
        if m:
            t = f"{t} <{img.name_of(int(m.group(2), 16))}>"
        else:
            r = _RIPREL.search(t)
            if r:
                t = f"{t} # <{img.name_of(addr + done + int(r.group(1), 16))}>"
        parts.append(t)
    if done < len(code):
        parts.append(f"(bytes {code[done:].hex()})")
    return "; ".join(parts)


def show(obj: ElfObject, backend_name: str) -> str:
    img, patches = plan(obj, backend_name)
    lines = []
    for p in patches:
        s = p.site
        lines.append(f"{img.name_of(s.addr)}: type {s.type} (len {s.length}"
                     + (f", region {img.name_of(p.start)} len {len(p.after)}" if p.start != s.addr
                        or len(p.after) != s.length else "") + f"): {p.how}")
        lines.append(f"    before: {insns(img, p.before, p.start)}")
        lines.append(f"    after:  {insns(img, p.after, p.start)}")
    return "\n".join(lines) + "\n"
