"""Unwind info for the trampolines: the `.eh_frame` entries the link step
writes are the bytes GNU as writes for the `.cfi_*` directives emit
renders; readelf, eu-elflint and pyelftools accept the linked object, with
or without an `.eh_frame` of the compiler's; and verify catches one wrong
CFA offset, in a trampoline and in a site's own asm."""
from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from elftools.dwarf.callframe import CIE, FDE, CallFrameInfo
from elftools.dwarf.structs import DWARFStructs
from elftools.elf.elffile import ELFFile

from pvpass.arch import get_arch
from pvpass.emit.cfi import Frame, eh_frame
from pvpass.emit.render import trampolines_asm
from pvpass.emit.stubs import trampoline
from pvpass.verify.run import verify

from conftest import ARCH_FLAG, INCLUDE, ROOT

SRC = ROOT / "testdata" / "unwind" / "unwind.c"
RT = ROOT / "pvpass" / "runtime"
SAVES = {"x86_64": [(), ("rcx",), ("rcx", "rdx"), ("rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11")],
         "i386": [(), ("ecx",), ("ecx", "edx"), ("ecx", "edx", "edi")]}


def _section(path: Path, name: str):
    elf = ELFFile(io.BytesIO(path.read_bytes()))
    sec = elf.get_section_by_name(name)
    rel = next((s for s in elf.iter_sections() if s.name in (".rela" + name, ".rel" + name)), None)
    relocs = sorted((r["r_offset"], r["r_info_type"]) for r in rel.iter_relocations()) if rel else []
    return elf, sec, relocs


@pytest.mark.parametrize("arch", ["x86_64", "i386"])
def test_eh_frame_bytes_are_what_gnu_as_writes_for_the_directives(arch, tmp_path):
    a = get_arch(arch)
    tramps = [trampoline(a, "target", s) for s in SAVES[arch]]
    asm = tmp_path / "t.s"
    asm.write_text("\n".join(trampolines_asm(SimpleNamespace(arch=a, trampolines=tramps))) + "\n")
    assert asm.read_text().count(".cfi_adjust_cfa_offset") == sum(2 * len(t.saved) for t in tramps) + \
        2 * sum(1 for t in tramps if any(ln.startswith("lea") for ln in t.lines))
    obj = tmp_path / "t.o"
    subprocess.run(["as", "--64" if a.bits == 64 else "--32", str(asm), "-o", str(obj)], check=True)
    _, sec, relocs = _section(obj, ".eh_frame")
    ours, fields = eh_frame(a, [Frame(0, len(t.code), t.cfi) for t in tramps])
    assert sec.data() == ours
    assert relocs == [(at, 2) for at, _ in fields]          # R_X86_64_PC32 / R_386_PC32


@pytest.fixture(scope="module", params=["x86_64", "i386"])
def linked(request, tmp_path_factory):
    """arch, {variant: object}: unwind.c through `pvpass cc`, with gcc's
    unwind tables and without them."""
    arch = request.param
    d = tmp_path_factory.mktemp(f"cfi_{arch}")
    out = {}
    for name, extra in (("tables", []), ("none", ["-fno-asynchronous-unwind-tables", "-DUW_NO_CFI"])):
        obj = d / f"{name}.o"
        subprocess.run([sys.executable, "-m", "pvpass", "cc", "--", "gcc", ARCH_FLAG[arch], "-O2", "-fno-pie",
                        *extra, f"-I{INCLUDE}", f"-I{RT}", "-c", str(SRC), "-o", str(obj)],
                       check=True, capture_output=True)
        out[name] = obj
    return arch, out


def _fdes(path: Path) -> list:
    """The CIEs and FDEs of an object's .eh_frame, decoded by pyelftools."""
    elf, sec, _ = _section(path, ".eh_frame")
    structs = DWARFStructs(little_endian=True, dwarf_format=32, address_size=elf.elfclass // 8)
    entries = CallFrameInfo(io.BytesIO(sec.data()), sec.data_size, 0, structs, for_eh_frame=True).get_entries()
    return entries


def test_linked_objects_unwind_info_is_accepted(linked):
    arch, objs = linked
    for name, obj in objs.items():
        r = subprocess.run(["readelf", "--debug-dump=frames", str(obj)], capture_output=True, text=True)
        assert r.returncode == 0 and "Warning" not in r.stderr and "rror" not in r.stderr, r.stderr
        lint = subprocess.run(["eu-elflint", "--gnu-ld", str(obj)], capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout + lint.stderr
        elf = ELFFile(io.BytesIO(obj.read_bytes()))
        tramps = sorted((s["st_value"], s["st_size"]) for s in elf.get_section_by_name(".symtab").iter_symbols()
                        if s.name.startswith("__pvpass_tramp_"))
        assert tramps
        entries = _fdes(obj)
        cies = [e for e in entries if isinstance(e, CIE)]
        ours = entries[entries.index(cies[-1]) + 1:]      # appended after the compiler's own
        assert [isinstance(e, FDE) for e in ours] == [True] * len(tramps)
        assert [e.header.address_range for e in ours] == [size for _, size in tramps]
        # the CFA offset at the inner call keeps it 16-byte aligned, as the site's call was
        w = 8 if arch == "x86_64" else 4
        for e in ours:
            table = e.get_decoded().table
            assert table[0]["cfa"].offset == w and max(row["cfa"].offset for row in table) % 16 == 0
        if name == "none":
            assert len(cies) == 1 and len(entries) == 1 + len(tramps)


def _ours(path: Path) -> list[FDE]:
    entries = _fdes(path)
    cies = [e for e in entries if isinstance(e, CIE)]
    return entries[entries.index(cies[-1]) + 1:]


def test_verify_checks_the_trampolines_cfi_and_catches_one_wrong_offset(linked, tmp_path):
    arch, objs = linked
    obj = objs["tables"]
    rep = verify(str(obj), "c_ops", "cfi", 4)
    assert rep.failed == 0 and len(rep.cfi.trampolines) >= 1 and rep.cfi.instructions > 0, rep.lines
    assert re.search(r"CFI checked at [1-9]\d* instructions", rep.summary())
    # one wrong .cfi_adjust_cfa_offset: the first push of the first trampoline counted twice
    elf, sec, _ = _section(obj, ".eh_frame")
    fde = _ours(obj)[0]
    at = sec["sh_offset"] + fde.offset + 17          # length, CIE pointer, pc_begin, range, aug. length
    data = bytearray(obj.read_bytes())
    assert data[at] & 0xC0 == 0x40 and data[at + 1] == 0x0E     # advance_loc, def_cfa_offset
    w = 8 if arch == "x86_64" else 4
    assert data[at + 2] == 2 * w
    data[at + 2] = 3 * w
    bad = tmp_path / "bad.o"
    bad.write_bytes(bytes(data))
    rep = verify(str(bad), "c_ops", "cfi", 4)
    assert rep.failed >= 1 and any("__pvpass_tramp_" in ln and "unwind info gives CFA" in ln
                                   for ln in rep.lines), rep.lines


def test_verify_catches_a_wrong_cfa_offset_in_a_sites_asm(tmp_path):
    """The eax-clobber site's call with a `.cfi_adjust_cfa_offset 8` around
    it: the caller's CFA moves inside the site, unpatched and patched."""
    src = tmp_path / "bad.c"
    src.write_text(SRC.read_text().replace(
        "#include <pvpass_rt.h>\n",
        "#include <pvpass_rt.h>\n#undef PVPASS_OPCALL\n#define PVPASS_OPCALL "
        "\".cfi_adjust_cfa_offset 8\\n\\tcall *%c[pv_op]\\n\\t.cfi_adjust_cfa_offset -8\"\n", 1))
    objs = {}
    for name, s in (("good", SRC), ("bad", src)):
        objs[name] = tmp_path / f"{name}.o"
        subprocess.run([sys.executable, "-m", "pvpass", "cc", "--", "gcc", "-m32", "-O2", "-fno-pie",
                        f"-I{INCLUDE}", f"-I{RT}", "-c", str(s), "-o", str(objs[name])],
                       check=True, capture_output=True)
    assert verify(str(objs["good"]), "c_ops", "cfi", 4).failed == 0
    rep = verify(str(objs["bad"]), "c_ops", "cfi", 4)
    assert rep.failed >= 1 and any("the unwind info gives the caller's CFA" in ln for ln in rep.lines), rep.lines


def test_an_eh_frame_the_link_step_cannot_extend_is_one_error(tmp_path):
    """An .eh_frame whose size is not a multiple of the entries' alignment:
    exit 2 naming it, and no output."""
    obj, out = tmp_path / "u.o", tmp_path / "out.o"
    subprocess.run(["gcc", "-O2", "-fno-pie", f"-I{INCLUDE}", f"-I{RT}", "-c", str(SRC), "-o", str(obj)],
                   check=True)
    data = bytearray(obj.read_bytes())
    elf = ELFFile(io.BytesIO(bytes(data)))
    k = next(i for i, s in enumerate(elf.iter_sections()) if s.name == ".eh_frame")
    at = elf["e_shoff"] + k * elf["e_shentsize"] + 0x20                  # sh_size (ELF64)
    data[at:at + 8] = (elf.get_section(k)["sh_size"] - 4).to_bytes(8, "little")
    obj.write_bytes(bytes(data))
    r = subprocess.run([sys.executable, "-m", "pvpass", "link", str(obj), "--source", str(SRC), "-o", str(out),
                        "--", f"-I{INCLUDE}", f"-I{RT}"], capture_output=True, text=True)
    assert r.returncode == 2 and "section .eh_frame" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not out.exists()
