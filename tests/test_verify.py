"""`pvpass verify OBJ` proves what was built: every (site copy, backend) of
the pvpass- and kernel-dialect test sources (both arches), the demo
object and program, and ahead-of-time patched objects."""
from __future__ import annotations

import pytest

from pvpass.verify.run import verify

from conftest import TESTDATA, run_pvpass
from verify_artifacts import ALL, artifact, declared, maps


@pytest.mark.parametrize("name", ALL)
def test_every_copy_of_every_backend_is_proved(name):
    """With the source's declarations: the declared texts, the functions
    the initializers name, and the callers' registers agree too."""
    rep = verify(str(artifact(name)), None, "pvpass", 32, maps=maps(name), declared=declared(name))
    assert rep.failed == 0, "\n".join(rep.lines)
    assert rep.proved >= rep.sites > 0, rep.summary()
    assert rep.not_emulated == 0


def test_runtime_and_program_agree():
    """The demo object and the program linked from it hold the same proofs."""
    a, b = verify(str(artifact("demo.o")), None, "s", 8), verify(str(artifact("demo")), None, "s", 8)
    assert (a.proved, a.kept, a.backends) == (b.proved, b.kept, b.backends) == (16, 5, ["c_ops", "native", "native_ops"])


def test_command_exit_codes_and_determinism(tmp):
    obj = str(artifact("sites64"))
    r1 = run_pvpass("verify", obj)
    r2 = run_pvpass("verify", obj)
    assert r1.returncode == 0 and r1.stdout == r2.stdout, r1.stderr
    assert r1.stdout.startswith("22 (site copy, backend) pairs proved, 0 failed"), r1.stdout
    # gcc's kernel-dialect object before the link step: a table, no patch
    # records: every call stays; a pvpass-dialect one has no table yet
    r = run_pvpass("verify", str(artifact("k61_64")).replace(".linked.o", ".o"))
    assert r.returncode == 0 and "0 failed, 0 not emulated, 15 kept" in r.stdout, r.stdout + r.stderr
    r = run_pvpass("verify", obj.replace(".linked.o", ".o"))
    assert r.returncode == 2 and "no .parainstructions section" in r.stderr
    r = run_pvpass("verify", obj, "--backend", "native")
    assert r.returncode == 0 and "backends: native)" in r.stdout
    r = run_pvpass("verify", obj, "--backend", "xen")
    assert r.returncode == 2 and "no patch records for backend 'xen'" in r.stderr
    plain = tmp / "plain.o"
    plain.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(57))
    r = run_pvpass("verify", str(plain))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    r = run_pvpass("verify", str(tmp / "missing.o"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    for spec, msg in ((str(tmp / "no.bin") + "@0x50000000", "No such file"), ("rom.bin", "takes FILE@ADDR"),
                      (f"{obj}@0x5000000x", "takes FILE@ADDR"), (str(tmp) + "@0x50000000", "Is a directory")):
        r = run_pvpass("verify", obj, "--map", spec)
        assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_verify_source_builds_then_verifies():
    r = run_pvpass("verify", "--arch", "i386", str(TESTDATA / "kernel/k2621.c"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("19 (site copy, backend) pairs proved, 0 failed"), r.stdout


@pytest.mark.parametrize("name,kinds", [
    ("reloc64", {("R_X86_64_PC32", "reloc_arr+0x8"), ("R_X86_64_32S", "reloc_abs+0x0"),
                 ("R_X86_64_32S", "gs:reloc_pcpu+0x0")}),
    ("systems64", {("R_X86_64_PC32", "lguest_irq_enabled+0x0")}),
    ("systems32", {("R_386_32", "lguest_irq_enabled+0x0")}),
])
def test_each_relocation_kind_names_the_memory_verify_checks(name, kinds):
    """Per relocation kind in `.pvpass.code` (read by pyelftools), the
    memory verify holds the copied code to: the symbol the fixup names."""
    from pvpass.link.elfobj import ElfObject
    from pvpass.verify.artifact import read
    from pvpass.verify.run import named_memory
    art = read(str(artifact(name)))
    elf = ElfObject.read(str(artifact(name)))
    fixups = {art.image.sections[".pvpass.code"].addr + r.offset: r.type_name
              for r in elf.relocations_for(".pvpass.code")}
    got = set()
    for rec in art.records:
        if rec.kind != "inline":
            continue
        named, bad = named_memory(art, rec.code, rec.code_addr)
        assert not bad, bad
        for n in named:
            kind = next(t for a, t in fixups.items() if rec.code_addr + n.offset <= a < rec.code_addr + rec.length)
            got.add((kind, n.symbol))
    assert got == kinds


@pytest.mark.parametrize("name", ["systems64", "systems32"])
def test_thread_local_state_of_a_target_is_linked(name):
    """systems.c's Xen functions read a __thread CPU number (%fs:
    R_X86_64_TPOFF32, %gs: R_386_TLS_LE): applied, so they run as linked,
    none stood in."""
    rep = verify(str(artifact(name)), "xen_ops", "pvpass", 8, maps=maps(name))
    assert rep.failed == 0 and rep.proved == rep.sites == 8 and rep.notes == [], rep.notes + rep.lines


EXTERN_DATUM = r"""#define PVPASS_OPS ext_pv
#include <pvpass.h>
struct ext_ops_t { void (PVPASS_REGPARM *set)(unsigned long); };
struct ext_ops_t ext_pv;
extern unsigned int ext_flag;                   /* defined elsewhere */
void PVPASS_REGPARM ext_set(unsigned long);
PV_CALLEE_SAVE(ext_set, "");
static const struct ext_ops_t ext_ops = { .set = ext_set };
PV_INLINE(ext_ops, set, STORE, "");
void set(unsigned long v) { PV_VCALLEE1(set, v); }
"""


@pytest.mark.parametrize("arch,store", [("x86_64", "movl %edi, ext_flag(%rip)"), ("i386", "movl %eax, ext_flag")])
def test_an_undefined_datum_gets_a_stand_in_the_patch_must_store_to(tmp, arch, store):
    from pvpass.verify.artifact import read
    from pvpass.verify.run import named_memory
    from conftest import gcc_c
    src = tmp / "ext.c"
    src.write_text(EXTERN_DATUM.replace("STORE", f'"{store}"'))
    obj = gcc_c(src, tmp / "ext.o", arch, ["-O2", "-fno-pie"])
    linked = tmp / "ext.linked.o"
    r = run_pvpass("link", str(obj), "--source", str(src), "-o", str(linked), "--", "-fno-pie")
    assert r.returncode == 0, r.stderr
    rep = verify(str(linked), "ext_ops", "pvpass", 16)
    assert rep.failed == 0 and rep.proved == rep.sites >= 1, rep.lines
    art = read(str(linked))
    rec = next(r for r in art.records if r.kind == "inline")
    named, bad = named_memory(art, rec.code, rec.code_addr)
    assert not bad and [n.symbol for n in named] == ["ext_flag+0x0"]
    assert art.image.address_of("ext_flag") in art.image.standins


def test_a_program_record_is_read_only_inside_its_section(tmp):
    """A linked program's record is checked as an object's is (issue 15):
    a backend name pointer into .text is one error, exit 2, not a backend
    named by whatever bytes are there. Found with pyelftools, not pvpass."""
    import io

    from elftools.elf.elffile import ELFFile
    data = bytearray(artifact("demo").read_bytes())
    elf = ELFFile(io.BytesIO(bytes(data)))
    sec = elf.get_section_by_name(".pvpass.patches")
    first = elf.get_section_by_name(".symtab").get_symbol_by_name("__pvpass_patches")[0]["st_value"]
    at = sec["sh_offset"] + first - sec["sh_addr"]
    text = elf.get_section_by_name(".text")["sh_addr"]
    data[at:at + 8] = text.to_bytes(8, "little")       # record 0's backend name pointer
    bad = tmp / "demo"
    bad.write_bytes(bytes(data))
    r = run_pvpass("verify", str(bad))
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert f"{bad}: offset {at:#x}: .pvpass.patches record 0: its backend name pointer .text+0x0 " \
           f"is not a name in .pvpass.strings" in r.stderr, r.stderr
