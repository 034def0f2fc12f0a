"""The link step on real gcc objects: copies found at every optimisation
level, tables equal gcc's, eu-elflint clean, idempotent, atomic, linkable."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest

from pvpass.link.elfobj import ElfObject
from pvpass.link.tableread import read_entries
from pvpass import table

from conftest import ARCH_FLAG, INCLUDE, TESTDATA, elflint, gcc_c, run_pvpass
from opscalls import ops_calls

KERNEL = [("kernel/k61.c", "x86_64"), ("kernel/k61.c", "i386"), ("kernel/k2621.c", "i386")]
FLAGS = [["-O0"], ["-O2"], ["-Os"], ["-O2", "-ffunction-sections"]]


def strip_table(obj, out, arch):
    rel = ".rela" if arch == "x86_64" else ".rel"
    subprocess.run(["objcopy", "-R", table.SECTION, "-R", rel + table.SECTION, str(obj), str(out)],
                   check=True)
    return out


def link(tmp, obj, src, out, *flags, extra=()):
    r = run_pvpass("link", str(obj), "--source", str(TESTDATA / src), "-o", str(out), *extra,
                   "--", *flags)
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.parametrize("src,arch", KERNEL)
@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: " ".join(f))
def test_regenerated_table_equals_gcc(tmp, src, arch, flags):
    flags = flags + ["-fno-pie"]
    obj = gcc_c(TESTDATA / src, tmp / "k.o", arch, flags)
    gcc = read_entries(ElfObject.read(str(obj)))
    stripped = strip_table(obj, tmp / "s.o", arch)
    assert read_entries(ElfObject.read(str(stripped))) == []
    out = link(tmp, stripped, src, tmp / "l.o", *flags)
    ours = read_entries(ElfObject.read(str(out)))
    assert sorted(ours) == sorted(gcc)      # same entries; gcc orders them by emission
    if src == "kernel/k61.c":
        assert ".noinstr.text" in {e.section for e in ours}
    assert elflint(out) == elflint(stripped)
    for tool in (["readelf", "-a", "-W"], ["objdump", "-d", "-r"]):
        r = subprocess.run([*tool, str(out)], capture_output=True, text=True)
        assert r.returncode == 0 and not r.stderr, r.stderr
    # the compiler's own table is checked, not replaced
    out2 = link(tmp, obj, src, tmp / "l2.o", *flags)
    assert read_entries(ElfObject.read(str(out2))) == gcc


@pytest.mark.parametrize("arch", ["x86_64", "i386"])
@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: " ".join(f))
def test_pvpass_dialect_copies(tmp, arch, flags):
    src = "pvpass/sites.c"
    if arch == "i386":
        flags = flags + ["-fno-pie"]     # i386 PIC reaches the ops object through the GOT
    obj = gcc_c(TESTDATA / src, tmp / "p.o", arch, flags)
    out = link(tmp, obj, src, tmp / "l.o", *flags, extra=("--builtin",))
    lo = ElfObject.read(str(out))
    entries = read_entries(lo)
    # every site copy is a 6-byte indirect call through pv_ops
    assert entries and all(e.length == 6 for e in entries)
    text = {e.section: lo.section_data(lo.section(e.section)) for e in entries}
    for e in entries:
        code = text[e.section][e.offset:e.offset + e.length]
        assert code[:2] == b"\xff\x15"
    if flags[:1] == ["-O2"] and len(flags) <= 2 and "-ffunction-sections" not in flags:
        # save_fl is inlined into work() and more(): two copies of one site
        types = [e.type for e in entries]
        assert types.count(5) == 2
    assert "No errors" in elflint(out) or elflint(out) == elflint(obj)
    # ld -r and a final (relocatable) link accept it
    subprocess.run(["ld", "-r", "-m", "elf_x86_64" if arch == "x86_64" else "elf_i386",
                    str(out), "-o", str(tmp / "r.o")], check=True)
    assert read_entries(ElfObject.read(str(tmp / "r.o"))) == entries


def test_idempotent_and_in_place(tmp):
    obj = gcc_c(TESTDATA / "pvpass/sites.c", tmp / "p.o", "x86_64", ["-O2"])
    once = link(tmp, obj, "pvpass/sites.c", tmp / "once.o", "-O2")
    twice = link(tmp, once, "pvpass/sites.c", tmp / "twice.o", "-O2")
    assert once.read_bytes() == twice.read_bytes()
    # in place is refused, as gcc refuses an output that is an input
    shutil.copy(obj, tmp / "inplace.o")
    r = run_pvpass("link", str(tmp / "inplace.o"), "--source", str(TESTDATA / "pvpass/sites.c"),
                   "-o", str(tmp / "inplace.o"), "--", "-O2")
    assert r.returncode == 2 and "is the same as output file" in r.stderr, r.stderr
    assert (tmp / "inplace.o").read_bytes() == obj.read_bytes()
    again = link(tmp, obj, "pvpass/sites.c", tmp / "again.o", "-O2")
    assert again.read_bytes() == once.read_bytes()        # deterministic


def test_killed_mid_write_leaves_input_intact(tmp):
    obj = gcc_c(TESTDATA / "pvpass/sites.c", tmp / "p.o", "x86_64", ["-O2"])
    before = obj.read_bytes()
    env = dict(os.environ, PVPASS_TEST_WRITE_DELAY="30")
    import sys
    out = tmp / "out.o"
    out.write_bytes(b"an older output")
    p = subprocess.Popen([sys.executable, "-m", "pvpass", "link", str(obj), "--source",
                          str(TESTDATA / "pvpass/sites.c"), "-o", str(out), "--", "-O2"],
                         env=env, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and not any(f.name.endswith(".tmp") for f in tmp.iterdir()):
        time.sleep(0.05)
    tmpfile = next(f for f in tmp.iterdir() if f.name.endswith(".tmp"))
    assert 0 < tmpfile.stat().st_size
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert obj.read_bytes() == before and out.read_bytes() == b"an older output"


BAD = [
    ("not-elf", lambda o, t: (t / "x.o").write_bytes(b"hello world"), "not an ELF file"),
    ("truncated", lambda o, t: (t / "x.o").write_bytes(o.read_bytes()[:600]), "truncated"),
    ("machine", lambda o, t: (t / "x.o").write_bytes(o.read_bytes()[:18] + b"\x28\x00" + o.read_bytes()[20:]),
     "not i386 or x86-64"),
]


@pytest.mark.parametrize("name,make,msg", BAD, ids=[b[0] for b in BAD])
def test_bad_objects(tmp, name, make, msg):
    obj = gcc_c(TESTDATA / "pvpass/sites.c", tmp / "p.o", "x86_64", ["-O2"])
    make(obj, tmp)
    before = (tmp / "x.o").read_bytes()
    r = run_pvpass("link", str(tmp / "x.o"), "--source", str(TESTDATA / "pvpass/sites.c"),
                   "-o", str(tmp / "out.o"))
    assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp / "out.o").exists() and (tmp / "x.o").read_bytes() == before


def test_object_from_another_source(tmp):
    obj = gcc_c(TESTDATA / "kernel/k61.c", tmp / "k.o", "x86_64", ["-O2", "-fno-pie"])
    r = run_pvpass("link", str(obj), "--source", str(TESTDATA / "pvpass/sites.c"), "-o", str(tmp / "o.o"))
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_source_without_sites(tmp):
    src = tmp / "plain.c"
    src.write_text("int f(int x) { return x + 1; }\n")
    obj = tmp / "plain.o"
    subprocess.run(["gcc", "-c", str(src), "-o", str(obj)], check=True)
    r = run_pvpass("link", str(obj), "--source", str(src), "-o", str(tmp / "o.o"))
    assert r.returncode == 2 and "no paravirt sites" in r.stderr


def test_stray_indirect_call_is_reported(tmp):
    src = tmp / "stray.c"
    src.write_text('#include "%s"\nvoid f(void) { pv_ops.cpu.io_delay(); }\n'
                   'void g(void) { PV_VCALL0(cpu.io_delay); }\n' % (TESTDATA / "pvpass/ops.h"))
    obj = tmp / "stray.o"
    subprocess.run(["gcc", "-O2", "-I", str(INCLUDE), "-c", str(src), "-o", str(obj)], check=True)
    r = run_pvpass("link", str(obj), "--source", str(src), "-o", str(tmp / "o.o"))
    assert r.returncode == 2 and "matches no annotated site" in r.stderr, r.stderr


@pytest.mark.parametrize("arch,flags,advice", [("i386", ["-fpie"], "-fno-pie"), ("i386", ["-fPIC"], "-fno-pie"),
                                                ("x86_64", ["-fPIC"], "hidden visibility")])
def test_pic_is_refused_clearly_and_cc_says_so(tmp, arch, flags, advice):
    """PIC code loads the ops object's address from the GOT, then calls
    through a register: no relocation marks the call. `link` refuses it,
    `pvpass cc` keeps gcc's object and warns at each kept copy's site
    (an error with -Werror); on x86-64 a hidden ops object is reached
    RIP-relative again and gets its table."""
    src = str(TESTDATA / "pvpass/sites.c")
    obj = gcc_c(TESTDATA / "pvpass/sites.c", tmp / "p.o", arch, ["-O2", *flags])
    kept = len(ops_calls(obj))          # capstone, apart from pvpass's finders
    assert kept
    r = run_pvpass("link", str(obj), "--source", src, "-o", str(tmp / "o.o"), "--", "-O2", *flags)
    assert r.returncode == 2 and "from the GOT" in r.stderr and advice in r.stderr, r.stderr
    assert f"(and {kept - 1} more)" in r.stderr, r.stderr
    assert not (tmp / "o.o").exists()
    cc = ["gcc", ARCH_FLAG[arch], "-O2", *flags, "-I", str(INCLUDE), "-c", src]
    r = run_pvpass("cc", "--", *cc, "-o", str(tmp / "c.o"), env={"PVPASS_CACHE": "0"})
    assert r.returncode == 0, r.stderr
    warnings = [l for l in r.stderr.splitlines() if ": warning: " in l]
    assert len(warnings) == kept and all("from the GOT" in w and advice in w for w in warnings), r.stderr
    assert (tmp / "c.o").read_bytes() == obj.read_bytes()
    r = run_pvpass("cc", "--", *cc, "-Werror", "-o", str(tmp / "e.o"), env={"PVPASS_CACHE": "0"})
    assert r.returncode == 2 and ": error: " in r.stderr and not (tmp / "e.o").exists(), r.stderr
    if arch == "x86_64":
        (tmp / "hidden.h").write_text("#pragma GCC visibility push(hidden)\n")
        r = run_pvpass("cc", "--", *cc, "-include", str(tmp / "hidden.h"), "-o", str(tmp / "h.o"),
                       env={"PVPASS_CACHE": "0"})
        assert r.returncode == 0 and r.stderr == "", r.stderr
        assert len(read_entries(ElfObject.read(str(tmp / "h.o")))) == 14


def test_table_dump(tmp):
    obj = gcc_c(TESTDATA / "kernel/k61.c", tmp / "k.o", "x86_64", ["-O2", "-fno-pie"])
    r = run_pvpass("table", str(obj), "--format", "json", "--source", str(TESTDATA / "kernel/k61.c"))
    assert r.returncode == 0, r.stderr
    import json
    d = json.loads(r.stdout)
    e = next(x for x in d["entries"] if x["op"] == "irq.save_fl")
    assert e["function"] == "flags_twice" and e["len"] == 6 and e["clobber_regs"] == ["rax"]
    assert e["disassembly"][0].startswith("call")


def test_function_names_memo_is_function_names():
    """copies._names_finder (each function's names made once) against
    _function_names for every address, with aliases sharing a start and
    ending apart, functions inside others, gaps and empty lists."""
    import random
    from pvpass.link.copies import _function_names, _names_finder
    rng = random.Random(19)
    for _ in range(200):
        funcs = []
        for _ in range(rng.randrange(0, 8)):
            lo = rng.randrange(0, 60)
            funcs.append((lo, lo + rng.randrange(1, 30), rng.choice("fghk")))
            if rng.random() < 0.3:
                funcs.append((lo, lo + rng.randrange(1, 30), rng.choice("xyz")))     # an alias
        funcs.sort()
        names = _names_finder(funcs)
        for addr in rng.sample(range(-2, 100), 102):
            assert set(names(addr)) == _function_names(funcs, addr), (funcs, addr)
