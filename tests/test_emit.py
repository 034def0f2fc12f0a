"""Emit: table bytes equal gcc's, stubs equal GNU as, trampolines save
exactly the right registers, patches never outgrow their sites."""
from __future__ import annotations

import subprocess

import pytest
from elftools.elf.elffile import ELFFile

from pvpass.arch import get_arch
from pvpass.emit.native import NATIVE_I386, NATIVE_X86_64
from pvpass.emit.nops import K8, P6, GENERIC32, nop_fill
from pvpass.emit.plan import make_plan
from pvpass.emit.render import render_asm, render_c, render_h, render_json
from pvpass.emit.stubs import disassemble, inline_stub, trampoline
from pvpass.encode import assemble
from pvpass.frontend.scan import scan
from pvpass.link.elfobj import ElfObject
from pvpass import table

from conftest import TESTDATA, gcc_c, run_pvpass

AS_FLAG = {"i386": "--32", "x86_64": "--64"}
SOURCES = [("kernel/k61.c", "x86_64"), ("kernel/k61.c", "i386"), ("kernel/k2621.c", "i386"),
           ("pvpass/sites.c", "x86_64"), ("pvpass/sites.c", "i386")]


def gas(tmp, arch: str, text: str) -> ElfObject:
    s = tmp / "x.s"
    s.write_text(text)
    r = subprocess.run(["as", AS_FLAG[arch], "--fatal-warnings", str(s), "-o", str(tmp / "x.o")],
                       capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr, r.stderr
    return ElfObject.read(str(tmp / "x.o"))


def gas_bytes(tmp, arch: str, text: str) -> bytes:
    o = gas(tmp, arch, f"\t.text\n{text}\n")
    return o.section_data(o.section(".text"))


def plan_for(src, arch, flags=("-O2", "-fno-pie")):
    a = get_arch(arch)
    return make_plan(a, scan(str(TESTDATA / src), a, list(flags)).inventory)


@pytest.mark.parametrize("src,arch", SOURCES)
def test_asm_assembles_without_warnings(tmp, src, arch):
    plan = plan_for(src, arch)
    assert not plan.diagnostics
    obj = gas(tmp, arch, render_asm(plan))
    assert obj.section(table.SECTION) is not None


@pytest.mark.parametrize("src,arch", [c for c in SOURCES if c[0].startswith("kernel")])
def test_table_bytes_equal_gcc(tmp, src, arch):
    a = get_arch(arch)
    plan = plan_for(src, arch)
    ours = gas(tmp, arch, render_asm(plan))
    theirs = ElfObject.read(str(gcc_c(TESTDATA / src, tmp / "g.o", arch, ["-O2", "-fno-pie"])))

    def entries(o):
        data = o.section_data(o.section(table.SECTION))
        size = a.entry_size
        # skip the instr field: it is a relocation (and REL keeps the addend there)
        return [data[i + a.ptr_size:i + size] for i in range(0, len(data), size)]

    mine = set(entries(ours))
    for e in entries(theirs):
        assert e in mine
    assert ours.section(table.SECTION)["sh_addralign"] == a.ptr_size
    assert [r.type_name for r in ours.relocations_for(table.SECTION)] == [a.abs_reloc] * len(plan.rows)


@pytest.mark.parametrize("arch,texts", [("i386", NATIVE_I386), ("x86_64", NATIVE_X86_64)])
def test_native_replacements_equal_gas(tmp, arch, texts):
    a = get_arch(arch)
    for name, text in texts.items():
        assert assemble(a, text) == gas_bytes(tmp, arch, text.replace(";", "\n")), name


def test_native_writes():
    a = get_arch("x86_64")
    assert inline_stub(a, "pushfq; popq %rax").writes == ("rax",)
    assert inline_stub(a, "pushq %rdi; popfq").writes == ()
    assert inline_stub(get_arch("i386"), "rdtsc").writes == ("eax", "edx")


@pytest.mark.parametrize("arch", ["i386", "x86_64"])
def test_nop_tables(tmp, arch):
    # GNU as spellings of the kernel's tables ({disp32} forces the long forms)
    p6 = ["nop", "xchg %ax,%ax", "nopl (%eax)", "{disp8} nopl 0(%eax)", "{disp8} nopl 0(%eax,%eax,1)",
          "{disp8} nopw 0(%eax,%eax,1)", "{disp32} nopl 0(%eax)", "{disp32} nopl 0(%eax,%eax,1)"]
    if arch == "x86_64":
        p6 = [s.replace("%eax", "%rax") for s in p6]
    for n, text in enumerate(p6, 1):
        assert P6[n] == gas_bytes(tmp, arch, text), n
    for n in range(1, 9):
        assert len(K8[n]) == n and len(GENERIC32[n]) == n and len(P6[n]) == n
        assert len(disassemble(get_arch(arch), P6[n])) == 1
    assert GENERIC32[3] == gas_bytes(tmp, "i386", "{disp8} lea 0(%esi),%esi")
    assert nop_fill(11) == P6[8] + P6[3]


@pytest.mark.parametrize("arch", ["i386", "x86_64"])
def test_trampolines_save_exactly_the_extra_registers(arch):
    a = get_arch(arch)
    for saved in [(), ("ecx",), ("ecx", "edx")] if arch == "i386" else \
            [("rcx",), ("rcx", "rdx"), ("rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11")]:
        t = trampoline(a, "target_fn", saved)
        ins = [text for _, _, text in disassemble(a, t.code)]
        pushes = [x.split()[1].lstrip("%") for x in ins if x.startswith("push")]
        pops = [x.split()[1].lstrip("%") for x in ins if x.startswith("pop")]
        assert pushes == list(saved) and pops == list(reversed(saved))
        assert ins[-1].startswith("ret") and t.code[t.call_offset] == 0xE8
        if arch == "x86_64":
            # return address + pushes + padding keep %rsp 16-byte aligned at the call
            pad = sum(8 for x in ins[:ins.index(next(i for i in ins if i.startswith("call")))] if x.startswith("lea"))
            assert (8 + 8 * len(saved) + pad) % 16 == 0


def test_2621_c_function_is_called_between_the_sites_own_saves(tmp):
    """The thread's 10-byte site saves %ecx and %edx itself: a C function
    (which clobbers them) needs no trampoline, only the site's call is
    patched. The bytes are GNU as's for the same instructions (the call's
    rel32 left zero, as in every call patch)."""
    plan = plan_for("kernel/k2621.c", "i386")
    i = next(i for i, s in enumerate(plan.sites) if s.function == "__raw_local_save_flags")
    p = plan.patches[(i, "c-calls")]
    assert p.kind == "call" and p.trampoline is None and p.call_offset == 2
    obj = tmp / "want.o"
    subprocess.run(["as", "--32", "-o", str(obj)], input=".text\npush %ecx\npush %edx\n.byte 0xe8\n.long 0\n"
                   "nop\npop %edx\npop %ecx\n", check=True, capture_output=True, text=True)
    with open(obj, "rb") as f:
        assert p.code == ELFFile(f).get_section_by_name(".text").data()
    # a site that does not save what the function clobbers still gets a trampoline
    j = next(j for j, s in enumerate(plan.sites) if s.length == 12 and s.clobbers == ("eax",))
    assert plan.patches[(j, "c-calls")].kind == "trampoline"
    n = plan.patches[(i, "native")]
    assert n.kind == "inline" and n.code[:2] == bytes([0x9C, 0x58]) and len(n.code) == 10


@pytest.mark.parametrize("src,arch", SOURCES)
def test_patches_never_longer_than_the_site(src, arch):
    plan = plan_for(src, arch)
    for (i, b), p in plan.patches.items():
        assert p.kind == "keep" or len(p.code) == plan.sites[i].length, (b, p.note)


def test_json_and_c_outputs(tmp):
    plan = plan_for("pvpass/sites.c", "x86_64")
    j = render_json(plan)
    assert j["kind"] == "emit" and len(j["table"]) == len(plan.sites)
    assert {b["name"] for b in j["backends"]} >= {"native", "c-calls"}
    c = tmp / "t.c"
    c.write_text(render_c(plan))
    subprocess.run(["gcc", "-m64", "-c", str(c), "-o", str(tmp / "t.o")], check=True)
    h = tmp / "t.h"
    h.write_text(render_h(plan))
    (tmp / "u.c").write_text('#include "t.h"\n_Static_assert(PVPASS_OP_MMU_PTE_VAL == 8, "enum");\n')
    subprocess.run(["gcc", "-m64", "-c", str(tmp / "u.c"), "-o", str(tmp / "u.o")], check=True)


def test_emit_cli_deterministic(tmp):
    outs = []
    for n in range(2):
        out = tmp / f"e{n}.s"
        r = run_pvpass("emit", str(TESTDATA / "pvpass/sites.c"), "--format", "asm", "-o", str(out), "--", "-O2")
        assert r.returncode == 0, r.stderr
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


@pytest.mark.parametrize("arch", ["i386", "x86_64"])
def test_trampolines_equal_gas(tmp, arch):
    a = get_arch(arch)
    saved = ("ecx", "edx") if arch == "i386" else ("rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11")
    t = trampoline(a, "target_fn", saved)
    ours = bytearray(t.code)
    theirs = bytearray(gas_bytes(tmp, arch, "\n".join(t.lines)))
    # the call's rel32 is a relocation in both: compare around it
    for buf in (ours, theirs):
        buf[t.call_offset + 1:t.call_offset + 5] = b"\0\0\0\0"
    assert ours == theirs


def test_failing_user_backend_is_a_diagnostic(tmp):
    r = run_pvpass("emit", "--arch", "x86_64", str(TESTDATA / "lint/pv004_fire.c"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    first = r.stderr.splitlines()[0]
    assert "pv004_fire.c:15:9: error:" in first and "backend inline_ops" in first and "save_fl" in first
    assert "(site in flags)" in first
