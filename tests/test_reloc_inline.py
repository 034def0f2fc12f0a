"""Inline replacements that name symbols: the code and the relocation of
each kind (R_386_32, R_X86_64_PC32, R_X86_64_32S absolute and %gs:
per-CPU, R_X86_64_32) are GNU as's; the emit rendering, the link step and
`pvpass patch` carry them; a program patched at run time (the RIP-relative
field rebased to the site) and ahead of time writes exactly the named
memory."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pvpass.arch import get_arch
from pvpass.emit.stubs import inline_stub
from pvpass.encode import EncodeError
from pvpass.link.elfobj import ElfObject

from conftest import INCLUDE, ROOT, TESTDATA, elflint, run_pvpass

RT = ROOT / "pvpass/runtime"
CASES = [
    ("i386", "movl $0, lguest_irq_enabled"),
    ("i386", "movl $0x200, lguest_irq_enabled+4"),
    ("i386", "movl lguest_irq_enabled, %eax"),
    ("i386", "movl %eax, lguest_irq_enabled"),
    ("x86_64", "movl $0, lguest_irq_enabled(%rip)"),
    ("x86_64", "movl %edi, lguest_irq_enabled+8(%rip)"),
    ("x86_64", "movb $0, sym(%rip)"),
    ("x86_64", "movw $0, %gs:sym"),
    ("x86_64", "movl $1, %gs:sym+8"),
    ("x86_64", "movl $0, sym"),
    ("x86_64", "movl $sym, %eax"),
    ("x86_64", "movq $sym, %rax"),
    ("x86_64", "movq sym(%rip), %rax; movl $0, other"),
    # decimal numbers (keystone alone reads them as hex)
    ("x86_64", "movl $10, sym+16(%rip)"),
    ("x86_64", "movl $0, 16(,%rax,4)"),
    ("i386", "movl $512, lguest_irq_enabled+12"),
]


def gas(tmp, arch: str, text: str) -> tuple[bytes, list[tuple[int, str, str, int]]]:
    """GNU as's bytes (relocated fields zeroed) and relocations for `text`."""
    src, obj = tmp / "a.s", tmp / "a.o"
    src.write_text(f".text\n{text.replace(';', chr(10))}\n")
    subprocess.run(["as", get_arch(arch).as_flag, str(src), "-o", str(obj)], check=True)
    elf = ElfObject.read(str(obj))
    code = bytearray(elf.section_data(elf.section(".text")))
    relocs = [(r.offset, r.type_name, r.symbol.name, r.addend) for r in elf.relocations_for(".text")]
    for off, *_ in relocs:
        code[off:off + 4] = bytes(4)          # REL keeps the addend there
    return bytes(code), sorted(relocs)


@pytest.mark.parametrize("arch,text", CASES)
def test_fixups_are_gnu_as_relocations(tmp, arch, text):
    stub = inline_stub(get_arch(arch), text)
    code, relocs = gas(tmp, arch, text)
    assert stub.code == code
    assert sorted((f.offset, f.type, f.symbol, f.addend) for f in stub.fixups) == relocs


def test_memory_written_and_what_cannot_be_relocated():
    a = get_arch("x86_64")
    assert inline_stub(a, "movw $0, %gs:sym").memory_writes == ("%gs:sym",)
    assert inline_stub(a, "movl %edi, page+8(%rip)").memory_writes == ("page+8",)
    assert inline_stub(a, "movq sym(%rip), %rax").memory_writes == ()
    for text in ("call func", "movb $sym, %al"):
        with pytest.raises(EncodeError):
            inline_stub(a, text)


def _build(tmp, src, arch="x86_64"):
    m = get_arch(arch).gcc_flag
    cpp = [f"-I{INCLUDE}", f"-I{RT}"]
    obj = tmp / "prog.o"
    r = run_pvpass("cc", "--", "gcc", m, "-O2", "-fno-pie", *cpp, "-c", str(src), "-o", str(obj))
    assert r.returncode == 0, r.stderr
    subprocess.run(["gcc", m, "-O2", "-fno-pie", *cpp, "-c", str(RT / "pvpass_rt.c"), "-o", str(tmp / "rt.o")],
                   check=True)
    return obj, cpp


def _link(tmp, obj, name):
    exe = tmp / name
    subprocess.run(["gcc", "-no-pie", "-o", str(exe), str(obj), str(tmp / "rt.o"),
                    f"-Wl,-T,{RT / 'pvpass.ld'}"], check=True)
    return exe


def test_patched_program_writes_the_named_memory(tmp):
    src = TESTDATA / "pvpass/reloc.c"
    obj, cpp = _build(tmp, src)
    want = "arr 0 0 5 0\nabs 7\npcpu 0 0 9 0\naddr_abs ok\n"
    exe = _link(tmp, obj, "reloc")
    run = lambda e, mode: subprocess.run([str(e), mode], capture_output=True, text=True, check=True).stdout
    assert run(exe, "indirect") == want
    # patched at run time, then the ops table emptied: only patches write
    assert run(exe, "patched") == "patched 4 sites\n" + want
    assert run(exe, "unpatched-empty") != want          # the control: nothing lands
    aot = tmp / "aot.o"
    r = run_pvpass("patch", str(obj), "--source", str(src), "--backend", "sym_ops", "-o", str(aot), "--", *cpp)
    assert r.returncode == 0, r.stderr
    lint = elflint(aot)
    assert "No errors" in lint, lint
    # each site got the replacement's relocations, against the named symbols
    elf = ElfObject.read(str(aot))
    kinds = {(r.type_name, r.symbol.name) for sec in elf.sections if sec["sh_flags"] & 4
             for r in elf.relocations_for(sec.name)}
    assert {("R_X86_64_PC32", "reloc_arr"), ("R_X86_64_32S", "reloc_abs"),
            ("R_X86_64_32S", "reloc_pcpu"), ("R_X86_64_32", "reloc_abs")} <= kinds
    assert run(_link(tmp, aot, "aot"), "aot") == want


@pytest.mark.parametrize("arch,src", [("x86_64", "pvpass/reloc.c"), ("i386", "../pvpass/examples/systems/systems.c")])
def test_emit_asm_and_link_step_carry_the_same_relocations(tmp, arch, src):
    src = TESTDATA / src
    obj, cpp = _build(tmp, src, arch)
    linked = ElfObject.read(str(obj))
    ours = {(r.type_name, r.symbol.name, r.addend) for r in linked.relocations_for(".pvpass.code")}
    out = tmp / "emit.s"
    r = run_pvpass("emit", "--arch", arch, str(src), "--format", "asm", "-o", str(out), "--", *cpp)
    assert r.returncode == 0, r.stderr
    subprocess.run(["as", get_arch(arch).as_flag, str(out), "-o", str(tmp / "emit.o")], check=True)
    emitted = ElfObject.read(str(tmp / "emit.o"))
    theirs = {(r.type_name, r.symbol.name, r.addend) for r in emitted.relocations_for(".pvpass.code")}
    assert ours and ours == theirs
    want_kind = "R_X86_64_PC32" if arch == "x86_64" else "R_386_32"
    assert any(k == want_kind for k, *_ in ours)
    # and the JSON rendering lists them, with the memory each patch writes
    r = run_pvpass("emit", "--arch", arch, str(src), "--format", "json", "--", *cpp)
    doc = json.loads(r.stdout)
    relocs = {(x["type"], x["symbol"], x["addend"]) for b in doc["backends"] for p in b["patches"]
              for x in p.get("relocs", [])}
    assert relocs == ours
    assert any(p.get("writes_memory") for b in doc["backends"] for p in b["patches"])


def test_apply_fixups_is_what_ld_wrote(tmp):
    """Every inline patch in the program patched ahead of time holds the
    bytes apply_fixups computes for its address (ld is the oracle)."""
    from pvpass.emit.stubs import apply_fixups
    from pvpass.frontend.scan import scan
    from pvpass.patch.aot import plan_copies
    src = TESTDATA / "pvpass/reloc.c"
    obj, cpp = _build(tmp, src)
    res = scan(str(src), get_arch("x86_64"), cpp)
    r = run_pvpass("patch", str(obj), "--source", str(src), "--backend", "sym_ops", "-o", str(tmp / "aot.o"),
                   "--", *cpp)
    assert r.returncode == 0, r.stderr
    exe = ElfObject.read(str(_link(tmp, tmp / "aot.o", "aot")))
    syms = {s.name: s.value for s in exe.symbols}
    text = exe.section(".text")
    data = exe.section_data(text)
    linked = ElfObject.read(str(obj))
    checked = 0
    for pc in plan_copies(linked, res, "sym_ops"):
        p = pc.patch
        if p.inline is None or not p.inline.fixups:
            continue
        fn, off = linked.function_at(pc.copy.section, pc.copy.offset)
        at = syms[fn] + off
        got = data[at - text["sh_addr"]:at - text["sh_addr"] + len(p.code)]
        assert got == apply_fixups(p.code, p.inline.fixups, at, syms), p.inline.text
        checked += 1
    assert checked == 4
