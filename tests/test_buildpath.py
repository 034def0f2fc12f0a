"""The build path (`pvpass cc`) does only what an object needs, and what it
produces equals the full analysis (scan + link). gcc is the oracle for what
a compile writes: objects, warnings and dependency files."""
from __future__ import annotations

import os
import subprocess

import pytest

from pvpass import table
from pvpass.arch import get_arch
from pvpass.diag import PvError
from pvpass.driver import parse_compile as parse
from pvpass.frontend.scan import scan
from pvpass.link.copies import find_copies
from pvpass.link.elfobj import ElfObject
from pvpass.link.tablecheck import check_table, may_hold_sites
from pvpass.link.tableread import read_entries

from conftest import INCLUDE, TESTDATA, run_pvpass

M = {"i386": "-m32", "x86_64": "-m64"}
KERNEL = [("kernel/k61.c", "x86_64"), ("kernel/k61.c", "i386"), ("kernel/k2621.c", "i386")]


def gcc(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(["gcc", *args], capture_output=True, text=True, cwd=cwd)


def cc(tmp, *args, env=None) -> subprocess.CompletedProcess:
    e = {"PVPASS_CACHE_DIR": str(tmp / "cache")}
    e.update(env or {})
    return run_pvpass("cc", "--", "gcc", *args, env=e)


@pytest.mark.parametrize("src,arch", KERNEL)
def test_kernel_dialect_object_is_gccs(tmp, src, arch):
    """A compiler-made table is checked and nothing is added: the object,
    the warnings and the dependency file are byte for byte gcc's."""
    flags = [M[arch], "-O2", "-g", "-Wall", "-Wextra", "-fno-pie", "-c", str(TESTDATA / src)]
    g = gcc(*flags, "-o", str(tmp / "g.o"), "-MD", "-MF", str(tmp / "g.d"))
    p = cc(tmp, *flags, "-o", str(tmp / "p.o"), "-MD", "-MF", str(tmp / "p.d"))
    assert g.returncode == p.returncode == 0, p.stderr
    assert (tmp / "g.o").read_bytes() == (tmp / "p.o").read_bytes()
    assert g.stderr == p.stderr
    assert (tmp / "g.d").read_text().replace("g.o", "p.o") == (tmp / "p.d").read_text()
    # the check costs less than a cache lookup would: no entry is made or asked for
    p = cc(tmp, *flags, "-o", str(tmp / "q.o"), "-MD", "-MF", str(tmp / "q.d"))
    assert p.returncode == 0 and (tmp / "q.o").read_bytes() == (tmp / "g.o").read_bytes()
    st = run_pvpass("cache", "--stats", env={"PVPASS_CACHE_DIR": str(tmp / "cache")}).stdout
    assert "result entries  0" in st and "hits            0" in st and "misses          0" in st, st


@pytest.mark.parametrize("src,arch", KERNEL)
@pytest.mark.parametrize("opt", ["-O0", "-O2"])
def test_object_check_equals_full_analysis(tmp, src, arch, opt):
    """What the object-only check accepts is what the full analysis finds:
    every copy of every site, with the type, length and clobbers the source
    says."""
    obj = tmp / "k.o"
    flags = [opt, "-fno-pie"]
    assert gcc(M[arch], *flags, "-c", str(TESTDATA / src), "-o", str(obj)).returncode == 0
    o = ElfObject.read(str(obj))
    checked = check_table(o)
    res = scan(str(TESTDATA / src), get_arch(arch), flags)
    copies, strays = find_copies(o, res.inventory, res.sources)
    assert not strays and checked
    assert sorted((c.entry.section, c.entry.offset, c.entry.type, c.entry.length, c.entry.clobbers)
                  for c in checked) == \
        sorted((c.section, c.offset, c.type, c.length, c.clobbers) for c in copies)
    for c in checked:   # the op the object calls is the op the source names
        site = next(s for s in res.inventory.sites if s.type_number == c.entry.type)
        ops = res.inventory.ops_struct_for(site.ops_object)
        assert ops.op(site.op).offset == c.offset


@pytest.mark.parametrize("src,arch", KERNEL)
@pytest.mark.parametrize("opt", ["-O0", "-O2", "-Os"])
def test_plain_call_shortcut_equals_capstone(tmp, src, arch, opt):
    """The decoder-free check of a 6-byte `call *disp32` entry gives what
    capstone's decoding gives, entry for entry; and it is the common case."""
    from pvpass.link.tablecheck import _decoded_call, _plain_call
    obj = tmp / "k.o"
    assert gcc(M[arch], opt, "-fno-pie", "-c", str(TESTDATA / src), "-o", str(obj)).returncode == 0
    o = ElfObject.read(str(obj))
    short = 0
    for e in read_entries(o):
        rels = o.relocations_for(e.section)
        offs = [r.offset for r in rels]
        data = o.section_data(o.section(e.section))
        fast = _plain_call(o, data, e, rels, offs)
        assert fast in (None, _decoded_call(o, data, e, rels, offs, "here"))
        short += fast is not None
    assert short > 0


def test_plain_call_shortcut_takes_only_its_shape(tmp):
    """A prefixed call, or one through a register, is left to capstone."""
    from pvpass.link.tablecheck import _plain_call
    (tmp / "s.s").write_text(
        ".data\n.globl ops\nops: .quad 0, 0\n.text\n"
        "1: call *ops+8(%rip)\n"          # the shape: FF 15 disp32
        "2: notrack call *ops+8(%rip)\n"  # 3E FF 15: 7 bytes
        "3: call *ops+8(,%rax,8)\n"       # FF 14 C5 disp32: SIB
        ".section .parainstructions,\"a\"\n"
        ".quad 1b; .byte 1, 6; .short 0; .long 0\n.quad 2b; .byte 1, 7; .short 0; .long 0\n"
        ".quad 3b; .byte 1, 7; .short 0; .long 0\n")
    assert gcc("-c", str(tmp / "s.s"), "-o", str(tmp / "s.o")).returncode == 0
    o = ElfObject.read(str(tmp / "s.o"))
    rels = o.relocations_for(".text")
    data = o.section_data(o.section(".text"))
    got = [_plain_call(o, data, e, rels, [r.offset for r in rels]) for e in read_entries(o)]
    assert got == [("ops", 8), None, None]
    assert [c.offset for c in check_table(o)] == [8, 8, 8]


@pytest.mark.parametrize("code,expect", [
    ("movl $-1, %edx\nmovl sym, %eax\n", False),     # BA FF FF FF FF | A1 abs32: no jmp *sym(%ecx)
    ("movl $-1, %edx\ncall *sym\n", True),
    ("movl $-1, %edx\njmp *sym\n", True),
    ("movl $-1, %edx\njmp *sym(%ecx)\n", False),     # a base register: an array of ops, no site
    ("movl $-1, %edx\ncall *sym(,%ecx,4)\n", False),
    ("movl $-1, %ecx\nadcl $sym, %eax\n", False)])   # B9 FF FF FF FF | 15 imm32: decoded
def test_may_hold_sites_decodes_its_candidates(tmp, code, expect):
    """On i386 the byte pattern of a relocated `jmp *disp32(%ecx)` (FF A1)
    also ends every `mov sym, %eax` after a 0xFF byte; only a real indirect
    call or jump makes an object a candidate (gas is the oracle)."""
    (tmp / "f.s").write_text(f".data\n.globl sym\nsym: .long 0\n.text\n.globl f\n.type f, @function\n"
                             f"f:\n{code}ret\n.size f, .-f\n")
    assert gcc("-m32", "-c", str(tmp / "f.s"), "-o", str(tmp / "f.o")).returncode == 0
    assert may_hold_sites(ElfObject.read(str(tmp / "f.o"))) is expect


def _edit_entry(o: ElfObject, i: int, field: int, value: int) -> ElfObject:
    """A copy of the object with one byte of table entry i changed
    (field 0: type, 1: length)."""
    sec = o.section(table.SECTION)
    data = bytearray(o.data)
    data[sec["sh_offset"] + i * o.arch.entry_size + o.arch.ptr_size + field] = value
    return ElfObject(o.path, bytes(data))


@pytest.mark.parametrize("arch", ["x86_64", "i386"])
def test_object_check_refuses_a_wrong_table(tmp, arch):
    obj = tmp / "k.o"
    assert gcc(M[arch], "-O2", "-fno-pie", "-c", str(TESTDATA / "kernel/k61.c"), "-o", str(obj)).returncode == 0
    o = ElfObject.read(str(obj))
    e = read_entries(o)[0]
    with pytest.raises(PvError, match=r"entry 0 .*type"):
        check_table(_edit_entry(o, 0, 0, e.type + 1))
    with pytest.raises(PvError, match=r"entry 0 .*(boundary|past|no call)"):
        check_table(_edit_entry(o, 0, 1, e.length - 1))
    with pytest.raises(PvError, match=r"entry 0 .*(boundary|past|no call)"):
        check_table(_edit_entry(o, 0, 1, 0))


def test_records_on_request_equal_the_link_step(tmp):
    """--records adds a kernel object the records `pvpass link` writes."""
    src = str(TESTDATA / "kernel/k61.c")
    flags = ["-O2", "-fno-pie", "-c", src]
    assert gcc(*flags, "-o", str(tmp / "g.o")).returncode == 0
    r = run_pvpass("link", str(tmp / "g.o"), "--source", src, "-o", str(tmp / "l.o"), "--", "-O2", "-fno-pie")
    assert r.returncode == 0, r.stderr
    r = run_pvpass("cc", "--records", "native", "--", "gcc", *flags, "-o", str(tmp / "p.o"),
                   env={"PVPASS_CACHE_DIR": str(tmp / "cache")})
    assert r.returncode == 0, r.stderr
    assert (tmp / "p.o").read_bytes() == (tmp / "l.o").read_bytes()
    assert ElfObject.read(str(tmp / "p.o")).section(table.PATCH_SECTION) is not None
    r = run_pvpass("cc", "--", "gcc", *flags, "-o", str(tmp / "e.o"), env={"PVPASS_RECORDS": "native"})
    assert r.returncode == 0 and (tmp / "e.o").read_bytes() == (tmp / "l.o").read_bytes()


@pytest.mark.parametrize("arch", ["x86_64", "i386"])
@pytest.mark.parametrize("opt", ["-O0", "-O2"])
def test_pvpass_dialect_equals_full_analysis(tmp, arch, opt):
    """Table, patch records and stubs from `pvpass cc` (cold and from the
    cache) are byte for byte those of gcc + `pvpass link`."""
    src = str(TESTDATA / "pvpass/sites.c")
    flags = [M[arch], opt, "-fno-pie", "-I", str(INCLUDE), "-c", src]
    assert gcc(*flags, "-o", str(tmp / "g.o")).returncode == 0
    r = run_pvpass("link", str(tmp / "g.o"), "--source", src, "-o", str(tmp / "l.o"),
                   "--", M[arch], opt, "-fno-pie", "-I", str(INCLUDE))
    assert r.returncode == 0, r.stderr
    want = (tmp / "l.o").read_bytes()
    for name in ("cold.o", "warm.o"):
        r = cc(tmp, *flags, "-o", str(tmp / name))
        assert r.returncode == 0, r.stderr
        assert (tmp / name).read_bytes() == want, name


def test_no_site_copy_leaves_the_object_alone(tmp):
    """Sites only in static inline functions nobody calls: gcc emits no copy,
    so the object stays gcc's (as init/version.o in a kernel build)."""
    src = tmp / "unused.c"
    src.write_text(f'#include "{TESTDATA / "pvpass/ops.h"}"\n'
                   "static inline void io_delay(void) { PV_VCALL0(cpu.io_delay); }\n"
                   "int plain(int x) { return x * 3; }\n")
    flags = ["-O2", "-I", str(INCLUDE), "-c", str(src)]
    assert gcc(*flags, "-o", str(tmp / "g.o")).returncode == 0
    r = cc(tmp, *flags, "-o", str(tmp / "p.o"))
    assert r.returncode == 0, r.stderr
    assert (tmp / "g.o").read_bytes() == (tmp / "p.o").read_bytes()


@pytest.mark.parametrize("src", ["empty.c", str(TESTDATA / "kernel/k61.c")])
def test_output_that_is_no_regular_file_is_left_alone(tmp, src):
    """kbuild probes with `-c -x c /dev/null -o /dev/null`: the output is a
    device, so there is nothing to add and nothing to remove (pvpass once
    unlinked /dev/null, run as root). A symlink to it stands in here, so a
    regression costs the link, not the machine's /dev/null."""
    out = tmp / "out.o"
    out.symlink_to("/dev/null")
    (tmp / "empty.c").write_text("")
    r = cc(tmp, "-O2", "-fno-pie", "-c", "-x", "c", str(tmp / src), "-o", str(out))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert out.is_symlink() and os.readlink(out) == "/dev/null"


def test_which_objects_may_hold_sites(tmp):
    src = tmp / "a.c"
    src.write_text("struct o { void (*f)(void); } ops;\nint g(int x) { return x + 1; }\n"
                   "void h(void) { ops.f(); ops.f(); }\n")
    for body, want in (("int g(int x) { return x + 1; }\n", False),
                       (src.read_text(), True)):
        src.write_text(body)
        for arch in M:
            assert gcc(M[arch], "-O2", "-fno-pie", "-c", str(src), "-o", str(tmp / "a.o")).returncode == 0
            assert may_hold_sites(ElfObject.read(str(tmp / "a.o"))) is want, (arch, body)


def test_analysed_text_is_what_gcc_compiled(tmp):
    """The preprocessor run has the user's flags and nothing else: its text
    is the .i gcc itself compiles (-save-temps), and the compile's own
    dependency file is left alone."""
    src = str(TESTDATA / "pvpass/sites.c")
    args = ["-O2", "-DEXTRA=1", "-I", str(INCLUDE), "-Wp,-MMD," + str(tmp / "dep.d"), "-c", src,
            "-o", str(tmp / "s.o"), "-MD", "-MF", str(tmp / "s.d")]
    c = parse(["gcc", *args])
    assert c.compile_only and c.sources == [src]
    argv = c.cpp_argv()
    assert "-D__PVPASS__=1" not in argv and str(tmp / "s.o") not in argv
    mine = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    (tmp / "st").mkdir()
    assert gcc("-O2", "-DEXTRA=1", "-I", str(INCLUDE), "-save-temps", "-c", src, "-o", "s.o",
               cwd=tmp / "st").returncode == 0
    assert (tmp / "st" / "s.i").read_text() == mine
    before = {p.name for p in tmp.iterdir()}
    subprocess.run(argv, capture_output=True, check=True)
    assert {p.name for p in tmp.iterdir()} == before      # no dependency file written


def test_why_the_source_is_compiled_as_written(tmp):
    """gcc on the .i (-fpreprocessed) loses warnings and moves debug info;
    `pvpass cc` keeps gcc's own diagnostics."""
    src = tmp / "w.c"
    src.write_text("#define DECL int unused_in_macro = 3\n"
                   "int f(int a) {\n  DECL;\n  if (a)\n    a++;\n    a--;\n  return a;\n}\n")
    flags = ["-O2", "-Wall", "-c"]
    g = gcc(*flags, str(src), "-o", str(tmp / "g.o"))
    assert "misleading-indentation" in g.stderr and "in expansion of macro" in g.stderr
    assert gcc("-E", str(src), "-o", str(tmp / "w.i")).returncode == 0
    f = gcc(*flags, "-fpreprocessed", str(tmp / "w.i"), "-o", str(tmp / "f.o"))
    assert "misleading-indentation" not in f.stderr
    p = cc(tmp, *flags, str(src), "-o", str(tmp / "p.o"))
    assert p.returncode == 0 and p.stderr == g.stderr


def test_parse_takes_the_compile_apart():
    c = parse(["ccache", "gcc", "-O2", "-c", "-x", "c", "foo.in", "-o", "o/foo.o", "-MF", "x.d"])
    assert c.compiler == ["ccache", "gcc"] and c.sources == ["foo.in"] and c.object == "o/foo.o"
    assert c.cache_args() == ["-O2", "-c", "-x", "c", "foo.in"]
    assert c.cpp_argv() == ["gcc", "-E", "-O2", "-x", "c", "foo.in"]
    assert not parse(["gcc", "-c", "a.S"]).compile_only
    two = parse(["gcc", "-c", "a.c", "-O2", "b.c"])       # gcc writes a.o and b.o
    assert two.compile_only and [(u.sources, u.object, u.args) for u in two.each()] == [
        (["a.c"], "a.o", ["-c", "a.c", "-O2"]), (["b.c"], "b.o", ["-c", "-O2", "b.c"])]
    assert not parse(["gcc", "-c", "a.c", "b.c", "-o", "x.o"]).compile_only
    assert not parse(["gcc", "-c", "a.c", "d/a.c"]).compile_only    # both would be a.o
    assert not parse(["gcc", "-E", "a.c"]).compile_only
    assert not parse(["gcc", "-c", "a.c", "-o", "-"]).compile_only
    assert parse(["gcc", "-c", "a.c"]).object == "a.o"
    assert parse(["gcc", "-m32", "-c", "a.c"]).arch_name() == "i386"


def test_warnings_and_errors_pass_through(tmp):
    bad = tmp / "bad.c"
    bad.write_text("int f(void) { return undefined_name; }\n")
    g = gcc("-c", str(bad), "-o", str(tmp / "g.o"))
    p = cc(tmp, "-c", str(bad), "-o", str(tmp / "p.o"))
    assert p.returncode == g.returncode == 1 and p.stderr == g.stderr
    assert not (tmp / "p.o").exists()


@pytest.mark.skipif(not os.environ.get("PVPASS_KERNEL_TUS"), reason="set PVPASS_KERNEL_TUS (tests/bench/kernel_tus.sh)")
def test_kernel_tus_object_check(tmp):
    """Opt-in: each real kernel TU's table passes the object-only check and
    agrees with the full analysis."""
    from pathlib import Path
    for tu in sorted(Path(os.environ["PVPASS_KERNEL_TUS"]).glob("*.i")):
        flags = tu.with_suffix(".flags").read_text().split()
        obj = tmp / "k.o"
        assert gcc(*flags, "-c", str(tu), "-o", str(obj)).returncode == 0
        o = ElfObject.read(str(obj))
        checked = check_table(o)
        res = scan(str(tu), get_arch("x86_64"), flags)
        copies, _ = find_copies(o, res.inventory, res.sources)
        assert {(c.entry.section, c.entry.offset) for c in checked} == {(c.section, c.offset) for c in copies}


def test_records_fragment_places_the_records(tmp):
    """`pvpass ldscript --records`: a program whose own rules place
    .parainstructions gets the records bracketed by __pvpass_patches."""
    src = str(TESTDATA / "kernel/k61.c")
    r = run_pvpass("cc", "--records", "native", "--", "gcc", "-O2", "-fno-pie", "-c", src, "-o", str(tmp / "k.o"),
                   env={"PVPASS_CACHE_DIR": str(tmp / "cache")})
    assert r.returncode == 0, r.stderr
    ld = run_pvpass("ldscript", "--records", "--path").stdout.strip()
    assert ".parainstructions" not in open(ld).read().split("*/", 1)[1]
    g = gcc("-nostdlib", "-no-pie", "-Wl,-e,0", "-Wl,--unresolved-symbols=ignore-all", str(tmp / "k.o"),
            f"-Wl,-T,{ld}", "-o", str(tmp / "prog"))
    assert g.returncode == 0, g.stderr
    nm = subprocess.run(["nm", str(tmp / "prog")], capture_output=True, text=True, check=True).stdout
    syms = {l.split()[2]: int(l.split()[0], 16) for l in nm.splitlines() if len(l.split()) == 3}
    size = len(ElfObject.read(str(tmp / "k.o")).section_data(
        ElfObject.read(str(tmp / "k.o")).section(table.PATCH_SECTION)))
    assert size and syms["__pvpass_patches_end"] - syms["__pvpass_patches"] == size


def test_indirect_calls_without_annotations_leave_the_object_alone(tmp, monkeypatch):
    """A relocated `call *` makes the build path look at the source; with no
    annotation there, the object stays gcc's, and the next compile is a hit."""
    src = tmp / "calls.c"
    src.write_text("struct o { void (*f)(void); } ops;\nvoid h(void) { ops.f(); ops.f(); }\n")
    flags = ["-O2", "-fno-pie", "-c", str(src)]
    assert gcc(*flags, "-o", str(tmp / "g.o")).returncode == 0
    assert may_hold_sites(ElfObject.read(str(tmp / "g.o")))
    for name in ("a.o", "b.o"):
        r = cc(tmp, *flags, "-o", str(tmp / name))
        assert r.returncode == 0, r.stderr
        assert (tmp / name).read_bytes() == (tmp / "g.o").read_bytes()
    st = run_pvpass("cache", "--stats", env={"PVPASS_CACHE_DIR": str(tmp / "cache")}).stdout
    assert "hits            1" in st



def test_register_bytes_without_a_call_need_no_source(tmp):
    """The bytes of a relocated load into %rax and of an immediate that reads
    like `call *(%rax)` (FF 10) make an object a register-call candidate.
    The server's verdict (cheap: capstone is loaded there) decodes it, finds
    no such call and keeps gcc's object, rather than handing it to the
    Python path, which would preprocess the source (a Linux build has ~300
    such objects); a real register-reached call is still handed over."""
    from pvpass.driver import Undecided, finish, start_temp
    from pvpass.link.regcalls import may_call_through_register, reg_calls
    for asm, settled in (("mov $0x10ff, %%edx", True), ("call *(%%rax)", False)):
        src = tmp / "imm.c"
        src.write_text("long tbl[4];\nvoid f(void) { asm volatile(\"lea tbl(%%rip), %%rax\\n\\t"
                       f"{asm}\" ::: \"rax\", \"rdx\"); }}\n")
        flags = ["-O2", "-fno-pie", "-c", str(src)]
        assert gcc(*flags, "-o", str(tmp / "g.o")).returncode == 0
        g = ElfObject.read(str(tmp / "g.o"))
        assert may_call_through_register(g) and (reg_calls(g) == []) is settled
        obj = str(tmp / "a.o")
        u = parse(["gcc", *flags, "-o", obj]).each()[0]
        u.work = start_temp(obj)
        assert gcc(*u.temp_args(u.work)).returncode == 0
        if settled:
            assert finish(u, 0, None, obj, cheap=True) == 0
            assert (tmp / "a.o").read_bytes() == (tmp / "g.o").read_bytes()
        else:
            with pytest.raises(Undecided):
                finish(u, 0, None, obj, cheap=True)
            os.unlink(u.work)
