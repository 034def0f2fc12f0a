"""Hostile objects (issue 11): each corrupt field gets one message naming the
object and the file offset, exit 2, no traceback, no output, bounded time
and memory. The objects are real gcc output with one field changed, the
field found with pyelftools (tests/fuzz/elfmut.py), not pvpass's reader."""
from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from conftest import ROOT, TESTDATA, gcc_c

sys.path.insert(0, str(ROOT / "tests" / "fuzz"))
import elfmut  # noqa: E402

SRC = TESTDATA / "pvpass" / "sites.c"
MEMORY = 1 << 30


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def pvpass(*args, cwd=None) -> subprocess.CompletedProcess:
    """A child with 1 GB of address space and 60 s: a blow-up fails the test."""
    return subprocess.run([sys.executable, "-m", "pvpass", *args], capture_output=True, text=True,
                          timeout=60, preexec_fn=_limits, cwd=cwd or ROOT)


@pytest.fixture(scope="module")
def objs(tmp_path_factory):
    d = tmp_path_factory.mktemp("objs")
    base = gcc_c(SRC, d / "p.o", "x86_64", ["-O2", "-fno-pie"])
    linked = d / "l.o"
    r = pvpass("link", str(base), "--source", str(SRC), "--builtin", "-o", str(linked))
    assert r.returncode == 0, r.stderr
    return base.read_bytes(), linked.read_bytes()


def _set(data: bytes, name: str, value: int) -> bytes:
    return elfmut.set_field(data, elfmut.find(data, name), value)


def _shdr(data: bytes, section: str, field: str, value: int) -> bytes:
    return _set(data, f"shdr[{elfmut.section_index(data, section)}].{field}", value)


def _sym(data: bytes, symbol: str, field: str, value: int) -> bytes:
    return _set(data, f"sym[{elfmut.symbol_index(data, symbol)}].{field}", value)


def _rel_sym(data: bytes, value: int, section: str = ".rela.text") -> bytes:
    f = elfmut.find(data, f"{section}[0].r_info")
    return elfmut.set_field(data, f, (value << 32) | (f.value & 0xFFFFFFFF))


def _record(data: bytes, field: int, value: int, symbol: str | None = None,
            to: str | None = None) -> bytes:
    """Set the addend of the relocation of pointer `field` (0 backend name,
    1 code, 2 target) of the first patch record that has one (against
    `symbol`, when named), and point it at symbol `to`, when named."""
    rels = [f for f in elfmut.fields(data) if f.name.startswith(".rela.pvpass.patches[")]
    for f in rels:
        if f.name.endswith("r_offset") and f.value % 32 == 8 * field:
            info = next(g for g in rels if g.name == f.name.replace("r_offset", "r_info"))
            if symbol is None or info.value >> 32 == _symbol(data, symbol):
                if to is not None:
                    data = elfmut.set_field(data, info, (_symbol(data, to) << 32) | (info.value & 0xFFFFFFFF))
                return _set(data, f.name.replace("r_offset", "r_addend"), value)
    raise AssertionError("no such record")


def _table_addend(data: bytes, k: int, value: int | None = None):
    """Entry k's relocation addend (its site's offset), or the object
    with it set to value."""
    f = elfmut.find(data, f".rela.parainstructions[{k}].r_addend")
    return f.value if value is None else elfmut.set_field(data, f, value)


def _table_symbol(data: bytes, k: int, section: str) -> bytes:
    """Entry k's relocation pointed at a section's symbol."""
    f = elfmut.find(data, f".rela.parainstructions[{k}].r_info")
    return elfmut.set_field(data, f, (_symbol(data, section) << 32) | (f.value & 0xFFFFFFFF))


def _size(data: bytes, section: str) -> int:
    return elfmut.find(data, f"shdr[{elfmut.section_index(data, section)}].sh_size").value


def _symbol(data: bytes, name: str) -> int:
    """A symbol's index; a section's name gives its section symbol."""
    if not name.startswith("."):
        return elfmut.symbol_index(data, name)
    sec = elfmut.section_index(data, name)
    return next(int(f.name[4:f.name.index("]")]) for f in elfmut.fields(data)
                if f.name.startswith("sym[") and f.name.endswith("st_shndx") and f.value == sec)


LINKED = ("patch", "show", "table", "verify")


# (id, which object, mutation, commands, message fragment)
CASES = [
    ("addralign-2GB", 0, lambda d: _shdr(d, ".rela.text", "sh_addralign", 0x7FFFFFFF),
     ("link", "table"), "sh_addralign 0x7fffffff is not a power of two"),
    ("addralign-1GB", 0, lambda d: _shdr(d, ".rela.text", "sh_addralign", 0x40000000),
     ("link",), "sh_addralign 0x40000000 is over 0x100000"),
    ("nobits-table", 1, lambda d: _shdr(_shdr(d, ".parainstructions", "sh_type", 8),
                                        ".parainstructions", "sh_size", 0x7FFFFFFF0000),
     ("table",), ".parainstructions is SHT_NOBITS"),
    ("shstrndx-0", 0, lambda d: _set(d, "e_shstrndx", 0), ("link", "table"),
     "e_shstrndx 0 is not a section index"),
    ("shstrndx-ffff", 0, lambda d: _set(d, "e_shstrndx", 0xFFFF), ("link", "table"),
     "e_shstrndx 65535 is not a section index"),
    ("reloc-symbol", 0, lambda d: _rel_sym(d, 0x123456), ("link",), "names symbol 1193046, past the"),
    ("func-size", 0, lambda d: _sym(d, "work", "st_size", 0xA9000045),
     ("link", "show"), "extends past its section .text"),
    ("symtab-link-self", 0, lambda d: _shdr(d, ".symtab", "sh_link", elfmut.section_index(d, ".symtab")),
     ("link", "table"), "sh_link"),
    ("arm", 0, lambda d: _set(d, "e_machine", 40), ("link", "table"), "ELF for ARM, not i386 or x86-64"),
    ("big-endian", 0, lambda d: d[:5] + b"\x02" + d[6:], ("link", "table"),
     "big-endian 64-bit ELF"),
    ("shoff-past-end", 0, lambda d: _set(d, "e_shoff", len(d) - 10), ("link", "table"),
     "past the end of the file"),
    ("not-elf", 0, lambda d: b"!<arch>\n" + d[8:], ("link", "table"), "not an ELF file"),
    # issue 15: sections no command reads are still copied (link, patch) or
    # vouched for (verify), so they are checked as well
    ("eh-frame-reloc-symbol", 1, lambda d: _rel_sym(d, 0x123456, ".rela.eh_frame"), ("link",) + LINKED,
     "relocation 0 in .rela.eh_frame names symbol 1193046, past the"),
    ("table-reloc-symbol", 1, lambda d: _rel_sym(d, 0x123456, ".rela.parainstructions"), LINKED,
     "relocation 0 in .rela.parainstructions names symbol 1193046"),
    ("record-backend-name", 1, lambda d: _record(d, 0, 0x1000), ("link",) + LINKED,
     "record 0: its backend name pointer .pvpass.strings+0x1000 is not a name in .pvpass.strings"),
    # what verify took before: the byte after the strings (padding) as the
    # backend "", and a call to .text+0x7fff0000 as "not emulated", exit 0
    ("record-backend-past-strings", 1, lambda d: _record(d, 0, _size(d, ".pvpass.strings")), LINKED,
     "its backend name pointer .pvpass.strings+0xf is not a name in .pvpass.strings"),
    ("record-call-target-unmapped", 1, lambda d: _record(d, 2, 0x7FFF0000, "c_calls_mmu_set_pte", ".text"),
     LINKED, "its call target .text+0x7fff0000 is not a place in code"),
    ("record-code", 1, lambda d: _record(d, 1, 0x7FFF0000), LINKED,
     "record 0: its code pointer .pvpass.code+0x7fff0000 (+6 bytes) is not inside .pvpass.code"),
    ("record-call-target", 1, lambda d: _record(d, 2, 0x7FFFFFFF, "c_calls_mmu_set_pte"), LINKED,
     "its call target c_calls_mmu_set_pte+0x7fffffff is not a place in code"),
    ("record-trampoline", 1, lambda d: _record(d, 2, 0x7FFFFF, ".text.pvpass"), LINKED,
     "its call target .text.pvpass+0x7fffff is not a trampoline"),
    # issue 15: an object's site table is checked as a kernel image's and a
    # module's are (tableread.check_sites). Before, each was listed, shown,
    # verified, patched and linked with exit 0: two sites over one byte,
    # a site in data, a site past or before its section.
    ("sites-overlap", 1, lambda d: _table_addend(d, 1, _table_addend(d, 0) + 1), ("link",) + LINKED,
     ".parainstructions entry 1 at .text+0x19 overlaps entry 0 [.text+0x18, .text+0x"),
    ("site-in-data", 1, lambda d: _table_symbol(d, 0, ".pvpass.strings"), ("link",) + LINKED,
     ".parainstructions entry 0: [.pvpass.strings+0x18, .pvpass.strings+0x"),
    ("site-past-its-section", 1, lambda d: _table_addend(d, 0, _size(d, ".text") - 2), ("link",) + LINKED,
     ") is not inside one executable section"),
    ("site-before-its-section", 1, lambda d: _table_addend(d, 0, -1), ("link",) + LINKED,
     ".parainstructions entry 0: [.text-0x1, .text+0x"),
]


@pytest.mark.parametrize("name,which,mutate,commands,msg", CASES, ids=[c[0] for c in CASES])
def test_corrupt_field(objs, tmp, name, which, mutate, commands, msg):
    bad = tmp / "bad.o"
    bad.write_bytes(mutate(objs[which]))
    before = bad.read_bytes()
    for cmd in commands:
        out = tmp / "out.o"
        extra = {"link": ["--source", str(SRC), "-o", str(out)],
                 "patch": ["--source", str(SRC), "--backend", "c-calls", "-o", str(out)],
                 "show": ["--source", str(SRC), "--backend", "native"],
                 "table": [], "verify": []}[cmd]
        r = pvpass(cmd, str(bad), *extra)
        assert r.returncode == 2, (cmd, r.returncode, r.stderr)
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert r.stderr.startswith(f"pvpass: error: {bad}: offset 0x"), r.stderr
        assert msg in r.stderr, r.stderr
        assert not out.exists() and bad.read_bytes() == before
    assert sorted(p.name for p in tmp.iterdir()) == ["bad.o"]


def test_link_wants_a_relocatable_object(tmp):
    exe = tmp / "a.out"
    subprocess.run(["gcc", "-O2", "-o", str(exe), "-x", "c", "-"], input=b"int main(void){return 0;}",
                   check=True, capture_output=True)
    r = pvpass("link", str(exe), "--source", str(SRC), "-o", str(tmp / "o.o"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "not a relocatable object (ET_REL)" in r.stderr or "no paravirt" in r.stderr, r.stderr
    r = pvpass("table", str(exe))                       # any linked file has a (maybe empty) table
    assert r.returncode == 0 and r.stdout.startswith(f"{exe}: 0 sites"), r.stderr


def test_symbols_past_their_section_are_clamped_in_linked_files(objs, tmp):
    """A linked file's symbols are clamped rather than refused (the linker's
    own `_end`-style symbols sit at section edges): the table still dumps."""
    exe = tmp / "a.out"
    subprocess.run(["gcc", "-O2", "-o", str(exe), "-x", "c", "-"], input=b"int main(void){return 0;}",
                   check=True, capture_output=True)
    data = _sym(exe.read_bytes(), "main", "st_size", 0xA9000045)
    exe.write_bytes(data)
    r = pvpass("table", str(exe))
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr


def test_pyelftools_and_pvpass_agree_on_a_clean_object(objs):
    """The reader's own parsing against pyelftools on real gcc output."""
    import io
    from elftools.elf.elffile import ELFFile
    from pvpass.link.elfobj import ElfObject
    for data in objs:
        ours = ElfObject("x.o", data)
        theirs = ELFFile(io.BytesIO(data))
        assert [s.name for s in ours.sections] == [s.name for s in theirs.iter_sections()]
        for a, b in zip(ours.sections, theirs.iter_sections()):
            for k in ("sh_type", "sh_flags", "sh_offset", "sh_size", "sh_link", "sh_info", "sh_addralign"):
                assert a[k] == b[k], (a.name, k)
        st = theirs.get_section_by_name(".symtab")
        assert [(s.name, s["st_value"], s["st_size"]) for s in st.iter_symbols()] == \
            [(s.name, s.value, s.size) for s in ours.symbols]


@pytest.mark.parametrize("path,msg", [("/dev/zero", "not a regular file"), ("/", "Is a directory")])
def test_objects_that_are_not_files(path, msg):
    r = pvpass("table", path)                   # /dev/zero was read until memory ran out
    assert r.returncode == 2 and r.stderr.strip() == f"pvpass: error: {path}: {msg}", r.stderr


# pvpass cc reads the compiler's object with the same checks (a compiler
# wrapper, a cache or a disk can hand it a corrupt one): the relocatable
# cases, foreign machines aside (cc keeps those as the compiler made them)
CC_CASES = [c for c in CASES if c[0] not in ("arm", "big-endian")]


@pytest.mark.parametrize("name,which,mutate,commands,msg", CC_CASES, ids=[c[0] for c in CC_CASES])
def test_cc_checks_the_compilers_object(objs, tmp, name, which, mutate, commands, msg):
    """The "compiler" writes the corrupt object (gcc's with one field
    changed); the preprocessor run is gcc's own. Before, cc took a corrupt
    relocation of .rela.eh_frame or a corrupt patch record and exited 0."""
    bad = tmp / "bad.o"
    bad.write_bytes(mutate(objs[which]))
    fake = tmp / "fakecc"
    fake.write_text('#!/bin/sh\nfor a; do [ "$a" = -E ] && exec gcc "$@"; done\n'
                    'for a; do [ "$p" = -o ] && o=$a; p=$a; done\n'
                    f'cp {bad} "$o"\n')
    fake.chmod(0o755)
    out = tmp / "out.o"
    r = subprocess.run([sys.executable, "-m", "pvpass", "cc", "--", str(fake), "-m64", "-O2", "-fno-pie",
                        "-I", str(ROOT / "pvpass" / "include"), "-c", str(SRC), "-o", str(out)],
                       capture_output=True, text=True, timeout=60, preexec_fn=_limits, cwd=tmp,
                       env={**__import__("os").environ, "PVPASS_CACHE": "0"})
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith(f"pvpass: error: {out}: offset 0x") or "not an ELF file" in r.stderr, r.stderr
    assert msg in r.stderr, r.stderr
    assert sorted(p.name for p in tmp.iterdir()) == ["bad.o", "fakecc"]


@pytest.mark.parametrize("arch", ["x86_64", "i386"])
@pytest.mark.parametrize("what", ["symbol", "offset"])
def test_unread_relocations_are_checked_on_both_arches(tmp, arch, what):
    """The relocations of .eh_frame, which no command reads, are checked by
    column (elfobj._rels_in_bounds) on x86-64's RELA and i386's REL: a bad
    symbol index or an offset past the section is still the exact message."""
    rel = ".rela.eh_frame" if arch == "x86_64" else ".rel.eh_frame"
    data = gcc_c(SRC, tmp / "a.o", arch, ["-O2", "-fno-pie"]).read_bytes()
    k = len([f for f in elfmut.fields(data) if f.name.startswith(rel) and f.name.endswith("r_offset")]) - 1
    info = elfmut.find(data, f"{rel}[{k}].r_info")
    if what == "symbol":
        shift = 32 if arch == "x86_64" else 8
        data = elfmut.set_field(data, info, (0x1234 << shift) | (info.value & ((1 << shift) - 1)))
        msg = f"relocation {k} in {rel} names symbol 4660, past the"
    else:
        size = _size(data, ".eh_frame")
        data = _set(data, f"{rel}[{k}].r_offset", size - 2)
        msg = f"relocation {k} in {rel} at {size - 2:#x} is outside .eh_frame"
    bad = tmp / "bad.o"
    bad.write_bytes(data)
    r = pvpass("table", str(bad))
    assert r.returncode == 2 and r.stderr.startswith(f"pvpass: error: {bad}: offset 0x"), r.stderr
    assert msg in r.stderr, r.stderr
