"""`pvpass patch` and `pvpass show` on a kernel image: the kernel's own
boot-time patch (rules.py) written ahead of time, or shown per site."""
from __future__ import annotations

import re

from ..emit.stubs import disassemble
from ..errors import PvError
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
    return show_image(KernelImage(obj), backend_name)


def show_image(img, backend_name: str) -> str:
    """Each site (of a KernelImage or a ModuleImage) before and after."""
    patches = patch_image(img, backend(img, backend_name))
    lines = []
    for p in patches:
        s = p.site
        lines.append(f"{img.label(s.addr)}: type {s.type} (len {s.length}"
                     + (f", region {img.label(p.start)} len {len(p.after)}" if p.start != s.addr
                        or len(p.after) != s.length else "") + f"): {p.how}")
        lines.append(f"    before: {insns(img, p.before, p.start)}")
        lines.append(f"    after:  {insns(img, p.after, p.start)}")
    return "\n".join(lines) + "\n"


# Where the second layout puts each section: far enough to change every
# call's rel32, near enough to keep it in range.
SHIFT = 0x100000


def patch_module(img, backend_name: str) -> bytes:
    """The .ko with every site whose patch does not depend on where the
    module is loaded (inline alternatives, NOPs) written as the loader's
    module_finalize() writes it, and the relocations into those bytes made
    R_*_NONE (the loader refuses to relocate a field that is not zero, and
    re-patching writes the same bytes). A site the patcher turns into a call
    into the kernel (a native function, paravirt_BUG) is refused: its rel32
    depends on the load address, and a .ko can reach an unexported kernel
    function only through that (modpost refuses a relocation against it)."""
    from .module import ModuleImage
    b = backend(img, backend_name)
    patches = patch_image(img, b)
    moved = ModuleImage(img.kernel, img.mod, {img.mod.sections[i].name: a + SHIFT
                                              for i, a in img.addr_of.items()})
    fixed = {p.site.addr - SHIFT: p.after for p in patch_image(moved, b)}
    bound = [p for p in patches if fixed[p.site.addr] != p.after]
    if bound:
        p = bound[0]
        raise PvError(f"{img.path}: {len(bound)} of {len(patches)} sites become code whose bytes depend on "
                      f"where the module is loaded (first: {img.label(p.site.addr)}: {p.how}); a .ko "
                      f"can hold no such call ahead of time: nothing written (show and verify take "
                      f"--load-address)")
    out = bytearray(img.mod.data)
    regions = []
    for p in patches:
        off = img.file_offset(p.start, len(p.after))
        out[off:off + len(p.after)] = p.after
        regions.append((off, off + len(p.after)))
    _drop_relocations(img.mod, out, regions)
    return bytes(out)


def _drop_relocations(mod, out: bytearray, regions: list[tuple[int, int]]) -> None:
    """Type 0 (R_X86_64_NONE, R_386_NONE) for each relocation whose field
    lies in a written region (file offsets)."""
    from ..link.elfobj import REL_SIZE
    bits = mod.arch.bits
    for rs in mod.sections:
        if rs["sh_type"] not in ("SHT_REL", "SHT_RELA"):
            continue
        target = mod.sections[rs["sh_info"]]
        step = REL_SIZE[(bits, rs["sh_type"] == "SHT_RELA")]
        for k, (roff, _si, rt, _a) in enumerate(mod.rel_entries(rs)):
            at = target["sh_offset"] + roff
            if not any(lo <= at < hi for lo, hi in regions):
                continue
            info = rs["sh_offset"] + k * step + bits // 8
            if bits == 64:
                out[info:info + 4] = b"\0\0\0\0"                  # r_info's low word: the type
            else:
                out[info] = 0                                    # r_info's low byte: the type
