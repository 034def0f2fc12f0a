"""pvpass on a kernel module (.ko) over the kernel image it is loaded into
(`--kernel`): module objects built with gcc -c from testdata/kernel
(k61.c, kmod61.c) over the small image k61.img (k61.c + k61_image.c, which
defines pv_ops and the native functions). The relocations pvpass applies
are held against GNU ld's: the object linked at the same addresses with the
image's symbols (--just-symbols)."""
from __future__ import annotations

import re
import subprocess

import pytest
from elftools.elf.elffile import ELFFile

from conftest import TESTDATA, need_m32, run_pvpass

KDIR = TESTDATA / "kernel"


def gcc(*args):
    subprocess.run(["gcc", "-O2", "-fno-pie", "-fno-asynchronous-unwind-tables", "-I", str(KDIR), *map(str, args)],
                   check=True, capture_output=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The image and three modules: k61.c's sites (calls, a NULL op,
    inline alternatives, a custom text section), kmod61.c (inline and NOPs
    only, one site in .init.text), kmod61.c -DWITH_CALLS (an alternative
    whose replacement calls an image function)."""
    d = tmp_path_factory.mktemp("kmod")
    gcc("-m64", "-no-pie", "-nostdlib", "-static", "-Wl,-e,flags_twice", "-o", d / "k61.img",
        KDIR / "k61.c", KDIR / "k61_image.c")
    gcc("-c", KDIR / "k61.c", "-o", d / "k61.ko")
    gcc("-c", KDIR / "kmod61.c", "-o", d / "inline.ko")
    gcc("-c", "-DWITH_CALLS", KDIR / "kmod61.c", "-o", d / "calls.ko")
    return d


def symbols(path) -> dict[str, int]:
    with open(path, "rb") as f:
        return {s.name: s["st_value"] for s in ELFFile(f).get_section_by_name(".symtab").iter_symbols()}


def show(built, ko, *more):
    r = run_pvpass("show", str(built / ko), "--kernel", str(built / "k61.img"), "--backend", "native", *more)
    assert r.returncode == 0, r.stderr
    return r.stdout


def site(out: str, label: str) -> tuple[str, str, str]:
    """(header, before, after) of the site whose label starts the header."""
    lines = out.splitlines()
    k = next(i for i, line in enumerate(lines) if not line.startswith(" ") and label + ":" in line)
    return lines[k], lines[k + 1].split("before:")[1].strip(), lines[k + 2].split("after:")[1].strip()


LOAD = {".text": 0x600000, ".noinstr.text": 0x601000, ".altinstr_replacement": 0x602000,
        ".parainstructions": 0x603000, ".altinstructions": 0x604000}


def test_relocations_as_gnu_ld_applies_them(built, tmp):
    """The module's code sections at --load-address hold what ld writes
    there when it links the object at those addresses against the image's
    symbols: the pv_ops slots each site calls through, the tables' entries."""
    from pvpass.kernel.image import KernelImage
    from pvpass.kernel.module import ModuleImage
    from pvpass.link.elfobj import ElfObject
    linked = tmp / "k61.linked"
    subprocess.run(["ld", "-o", str(linked), "-e", "0", f"--just-symbols={built / 'k61.img'}",
                    *(f"--section-start={s}={a:#x}" for s, a in LOAD.items()), str(built / "k61.ko")],
                   check=True, capture_output=True)
    img = ModuleImage(KernelImage(ElfObject.read(str(built / "k61.img"))), ElfObject.read(str(built / "k61.ko")),
                      LOAD)
    with open(linked, "rb") as f:
        e = ELFFile(f)
        for name, addr in LOAD.items():
            sec = e.get_section_by_name(name)
            assert sec["sh_addr"] == addr
            assert img.read(addr, sec["sh_size"]) == sec.data(), name
    assert len(img.sites) == 15 and {s.addr for s in img.sites} <= set(range(0x600000, 0x602000))


def test_i386_module_relocations_and_sites(tmp):
    """i386 (REL: the addends are in the section bytes, R_386_32 and PC32):
    the relocated sections against ld -m elf_i386's, and a call site."""
    need_m32()
    from pvpass.kernel.image import KernelImage
    from pvpass.kernel.module import ModuleImage
    from pvpass.link.elfobj import ElfObject
    gcc("-m32", "-mregparm=3", "-no-pie", "-nostdlib", "-static", "-Wl,-e,flags_twice", "-o", tmp / "k32.img",
        KDIR / "k61.c", KDIR / "k61_image.c")
    gcc("-m32", "-mregparm=3", "-c", KDIR / "k61.c", "-o", tmp / "k32.ko")
    load = LOAD
    subprocess.run(["ld", "-m", "elf_i386", "-o", str(tmp / "k32.linked"), "-e", "0",
                    f"--just-symbols={tmp / 'k32.img'}", *(f"--section-start={s}={a:#x}" for s, a in load.items()),
                    str(tmp / "k32.ko")], check=True, capture_output=True)
    img = ModuleImage(KernelImage(ElfObject.read(str(tmp / "k32.img"))), ElfObject.read(str(tmp / "k32.ko")), load)
    with open(tmp / "k32.linked", "rb") as f:
        e = ELFFile(f)
        for name, addr in load.items():
            sec = e.get_section_by_name(name)
            if sec is not None:
                assert img.read(addr, sec["sh_size"]) == sec.data(), name
    r = run_pvpass("show", str(tmp / "k32.ko"), "--kernel", str(tmp / "k32.img"), "--backend", "native",
                   *(f"--load-address={s}={a:#x}" for s, a in load.items()))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    k = next(i for i, line in enumerate(lines) if line.endswith("(len 6): call native_io_delay"))
    assert lines[k + 1].strip() == "before: calll *0x%x" % symbols(tmp / "k32.img")["pv_ops"]
    after = lines[k + 2].split("after:")[1].strip()
    assert after == f"calll {symbols(tmp / 'k32.img')['native_io_delay']:#x} <native_io_delay>; nop"


def test_sites_through_relocations_and_a_missing_op(built):
    out = show(built, "k61.ko", *(f"--load-address={s}={a:#x}" for s, a in LOAD.items()))
    syms = symbols(built / "k61.img")
    head, before, after = site(out, "<io_loop+0x10>")
    assert head.endswith("type 0 (len 6): call native_io_delay")
    # the indirect call through the image's pv_ops, relocated; then the direct call
    at = LOAD[".text"] + int(re.match(r"\.text\+(0x\w+) ", head).group(1), 16)
    assert before == f"callq *-{at + 6 - syms['pv_ops']:#x}(%rip) # <pv_ops>"
    assert after == f"callq {syms['native_io_delay']:#x} <native_io_delay>; nop"
    # cpu.get_debugreg is NULL in the image: paravirt_BUG
    assert "(len 6): call paravirt_BUG (NULL op)" in out and f"callq {syms['paravirt_BUG']:#x} <paravirt_BUG>" in out
    # a site in another code section of the module
    head, _, after = site(out, ".noinstr.text+0x0 <noinstr_flags+0x0>")
    assert "alternative !XENPV" in head and after == "pushfq; popq %rax; nopl (%rax)"


def test_alternatives_relocated_and_their_call_fixed_up(built):
    out = show(built, "calls.ko")
    head, _, after = site(out, "<mod_wbinvd_call+0x0>")
    # the replacement's `call native_wbinvd`: relocated at its own place, then moved to the site
    assert "alternative !XENPV" in head
    assert after == f"callq {symbols(built / 'k61.img')['native_wbinvd']:#x} <native_wbinvd>; nop"
    _, _, after = site(out, "<mod_flags+0xf>")
    assert after == "movq %cr2, %rax; nopl (%rax)"


def test_patch_writes_inline_sites_and_refuses_calls(built, tmp):
    out = tmp / "inline.patched.ko"
    r = run_pvpass("patch", str(built / "inline.ko"), "--kernel", str(built / "k61.img"), "--backend", "native",
                   "-o", str(out))
    assert r.returncode == 0, r.stderr
    dis = subprocess.run(["objdump", "-dr", "-w", str(out)], capture_output=True, text=True, check=True).stdout
    body = re.sub(r"\s+", " ", dis)
    assert "9c pushf 1: 58 pop %rax 2: 0f 1f 40 00 nopl 0x0(%rax) 2: R_X86_64_NONE pv_ops+0x74" in body
    assert "66 0f 1f 44 00 00 nopw 0x0(%rax,%rax,1) 32: R_X86_64_NONE pv_ops+0xec" in body
    # no relocation is left to write into a patched site
    assert "R_X86_64_PC32\tpv_ops" not in dis
    for ko in ("calls.ko", "k61.ko"):
        bad = tmp / f"{ko}.out"
        r = run_pvpass("patch", str(built / ko), "--kernel", str(built / "k61.img"), "--backend", "native",
                       "-o", str(bad))
        assert r.returncode == 2 and "depend on where the module is loaded" in r.stderr, r.stderr
        assert not bad.exists() and "Traceback" not in r.stderr


def test_verify_a_module_against_the_image_and_a_mutant_thunk(built, tmp):
    r = run_pvpass("verify", str(built / "k61.ko"), "--kernel", str(built / "k61.img"), "--backend", "native",
                   "--states", "4")
    assert "15 sites, backend native: 12 proved, 0 failed, not emulated: 3 " \
           "(mov to %cr3: 1, ud2: 1, wrmsr: 1)" in r.stdout, r.stdout + r.stderr
    syms = symbols(built / "k61.img")
    with open(built / "k61.img", "rb") as f:
        text = ELFFile(f).get_section_by_name(".text")
        off = text["sh_offset"] + syms["__raw_callee_save__paravirt_ident_64"] - text["sh_addr"]
    data = bytearray((built / "k61.img").read_bytes())
    k = bytes(data[off:off + 32]).index(bytes([0x5A, 0x59, 0xC3]))      # pop %rdx; pop %rcx; ret
    data[off + k] = 0x5E                                                  # pop %rsi
    (tmp / "mutant.img").write_bytes(bytes(data))
    r = run_pvpass("verify", str(built / "k61.ko"), "--kernel", str(tmp / "mutant.img"), "--backend", "native",
                   "--states", "4")
    assert r.returncode == 1 and "11 proved, 1 failed" in r.stdout, r.stdout
    assert re.search(r"k61.ko: mm_stuff\+0x\w+ \(type 28, call __raw_callee_save__paravirt_ident_64\): "
                     r"%rsi changed", r.stderr), r.stderr


def test_a_module_of_another_kernel_is_one_clear_error(built, tmp):
    img = str(built / "k61.img")
    # its pv_ops is not the image's: a site's relocation cannot be applied
    other = tmp / "other.ko"
    subprocess.run(["objcopy", "--redefine-sym", "pv_ops=pv_ops_v2", str(built / "inline.ko"), str(other)],
                   check=True)
    # a static symbol of the image is no module's to use
    static = tmp / "static.ko"
    subprocess.run(["objcopy", "--redefine-sym", "pv_ops=x86nops", str(built / "inline.ko"), str(static)],
                   check=True)
    # an i386 module over an x86-64 image
    m32 = tmp / "m32.ko"
    gcc("-m32", "-c", KDIR / "kmod61.c", "-o", m32)
    for ko, message, cmds in (
            (other, f"other.ko: .text+0x2 <mod_flags+0x2>: a relocation against 'pv_ops_v2', "
                    f"which {img} does not define as a global symbol", ("show", "verify", "patch")),
            (static, f"static.ko: .text+0x2 <mod_flags+0x2>: a relocation against 'x86nops', "
                     f"which {img} does not define as a global symbol", ("show",)),
            (m32, f"m32.ko: an i386 module, but {img} is an x86_64 kernel", ("verify",))):
        for cmd in cmds:
            r = run_pvpass(cmd, str(ko), "--kernel", img, "--backend", "native", *(["-o", str(tmp / "o")]
                                                                                   if cmd == "patch" else []))
            assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, (cmd, r.stderr)
    assert not (tmp / "o").exists()
    # built for another release (vermagic) than the image's banner
    magic = tmp / "modinfo"
    magic.write_bytes(b"vermagic=6.1.1-pvpass SMP mod_unload \0")
    rel = tmp / "release.ko"
    subprocess.run(["objcopy", "--update-section", f".modinfo={magic}", str(built / "inline.ko"), str(rel)],
                   check=True)
    r = run_pvpass("show", str(rel), "--kernel", img, "--backend", "native")
    assert r.returncode == 2 and f"release.ko: a module of Linux 6.1.1-pvpass (vermagic), but {img} is " \
        "Linux 6.1.0-pvpass" in r.stderr, r.stderr
    # the image given is no kernel image: it has no pv_ops
    r = run_pvpass("show", str(built / "inline.ko"), "--kernel", str(built / "inline.ko"), "--backend", "native")
    assert r.returncode == 2 and "not a kernel image" in r.stderr and "which --kernel takes" in r.stderr


def test_a_module_without_kernel_is_refused(built):
    r = run_pvpass("show", str(built / "inline.ko"), "--backend", "native")
    assert r.returncode == 2
    assert "inline.ko is not a kernel image (no .parainstructions and pv_ops): give --source, " \
           "or --kernel VMLINUX for a kernel module" in r.stderr


def test_load_addresses_must_name_what_the_patcher_reads(built):
    r = run_pvpass("show", str(built / "inline.ko"), "--kernel", str(built / "k61.img"), "--backend", "native",
                   "--load-address=.text=0x600000")
    assert r.returncode == 2, r.stderr
    assert "no --load-address for .parainstructions, .altinstructions, .altinstr_replacement, .init.text " in r.stderr
    r = run_pvpass("show", str(built / "inline.ko"), "--kernel", str(built / "k61.img"), "--backend", "native",
                   "--load-address=.nosuch=0x600000")
    assert r.returncode == 2 and "--load-address names .nosuch, not an allocated section" in r.stderr
    r = run_pvpass("show", str(built / "inline.ko"), "--kernel", str(built / "k61.img"), "--backend", "native",
                   "--load-address=.text=zz")
    assert r.returncode == 2 and "--load-address takes SECTION=ADDR (e.g. .text=0xffffffffc0000000), not " \
        "'.text=zz'" in r.stderr
    r = run_pvpass("verify", str(built / "k61.img"), "--load-address=.text=0x600000")
    assert r.returncode == 2 and "--load-address places a module's sections: give --kernel VMLINUX too" in r.stderr


# --- hostile modules (issue 15): the module's own tables are checked as a
# kernel image's are (pvpass/kernel/image.py's check_sites, check_alts), at
# the module's load layout: one message naming the module and the file
# offset of the bad record, exit 2, nothing written. Fields are found with
# pyelftools (tests/fuzz/elfmut.py, kimage.py), not pvpass's reader.
import sys  # noqa: E402

from conftest import ROOT  # noqa: E402

sys.path.insert(0, str(ROOT / "tests" / "fuzz"))
import elfmut  # noqa: E402
import kimage  # noqa: E402


def _field(data: bytes, name: str) -> elfmut.Field:
    return next(f for f in elfmut.fields(data) + kimage.table_fields(data) if f.name == name)


def _set(data: bytes, name: str, value: int) -> bytes:
    return elfmut.set_field(data, _field(data, name), value)


def _sym(data: bytes, name: str) -> int:
    return elfmut.symbol_index(data, name)


def _record(data: bytes, section: str, k: int) -> int:
    """The file offset of record k of a table (16-byte sites, 12-byte alternatives)."""
    off = elfmut.find(data, f"shdr[{elfmut.section_index(data, section)}].sh_offset").value
    return off + k * (16 if section == ".parainstructions" else kimage.ALT_SIZE)


MODULE_CASES = [
    # before: show and verify reported both sites, patch wrote both; table
    # and verify without --kernel listed and passed both
    ("sites-share-bytes", lambda d: _set(d, ".rela.parainstructions[1].r_addend", 3), (".parainstructions", 1),
     (".parainstructions entry 1 at .text+0x3 overlaps entry 0 [.text+0x0, .text+0x6)",)),
    # before: patch wrote a site's call into .modinfo
    ("site-in-data", lambda d: _set(d, ".rela.parainstructions[0].r_info", _sym(d, "vermagic") << 32 | 1),
     (".parainstructions", 0), (".parainstructions entry 0: [.modinfo+0x0, .modinfo+0x6) is not inside one "
                                "executable section",)),
    # before: table listed it with 254 bytes of code, past .text's end
    ("site-past-its-section", lambda d: _set(d, "site[0].len", 0xFE), (".parainstructions", 0),
     (".parainstructions entry 0: [.text+0x0, .text+0xfe) is not inside one executable section",)),
    # a site's offset below its section's start (a negative addend)
    ("site-before-its-section", lambda d: _set(d, ".rela.parainstructions[1].r_addend", -2),
     (".parainstructions", 1), (".parainstructions entry 1: [.text-0x2, .text+0x4) is not inside one "
                                "executable section",)),
    # before: one message without an offset (the object's reader refuses it, as for any object)
    ("site-in-the-kernel", lambda d: _set(d, ".rela.parainstructions[0].r_info", _sym(d, "pv_ops") << 32 | 1),
     (".parainstructions", 0), (".parainstructions entry 0 points at symbol 'pv_ops' outside any section",)),
    ("site-too-long", lambda d: _set(d, "site[0].len", 0xFF), (".parainstructions", 0),
     (".parainstructions entry 0: a 255-byte site, longer than the kernel patches (254, MAX_PATCH_LEN)",)),
    ("alt-instr-overlap", lambda d: _set(d, "alt[0].instrlen", 12), (".altinstructions", 1),
     (".altinstructions record 1's instructions at 0x", " overlap record 0's [0x")),
    ("alt-repl-longer", lambda d: _set(d, "alt[0].repllen", 0x20), (".altinstructions", 0),
     (".altinstructions record 0: a 32-byte replacement for 6 bytes",)),
    ("alt-instr-in-data", lambda d: _set(d, ".rela.altinstructions[0].r_info", _sym(d, "vermagic") << 32 | 2),
     (".altinstructions", 0), (".altinstructions record 0's instructions: [0x", "not inside one executable")),
    ("alt-repl-in-data", lambda d: _set(d, ".rela.altinstructions[1].r_info", _sym(d, "vermagic") << 32 | 2),
     (".altinstructions", 0), (".altinstructions record 0's replacement: [0x", "not inside one executable")),
]


def _refused(ko, kernel, tmp, offset: int, message: tuple[str, ...]) -> None:
    """show, verify and patch over the kernel refuse ko; so do table and
    verify without it when the damage is in the site table, which they
    read (the alternatives are read over a kernel only)."""
    runs = [(cmd, "--kernel", str(kernel), "--backend", "native",
             *(["-o", str(tmp / "out.ko")] if cmd == "patch" else ["--states", "2"] if cmd == "verify" else []))
            for cmd in ("show", "verify", "patch")]
    if any(m.startswith(".parainstructions") for m in message):
        runs += [("table",), ("verify",)]
    for cmd, *more in runs:
        out = tmp / "out.ko"
        r = run_pvpass(cmd, str(ko), *more)
        assert r.returncode == 2, (cmd, r.returncode, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert r.stderr.startswith(f"pvpass: error: {ko}: offset {offset:#x}: "), (cmd, r.stderr)
        assert all(m in r.stderr for m in message), (cmd, r.stderr)
        assert not out.exists()


@pytest.mark.parametrize("name,mutate,record,message", MODULE_CASES, ids=[c[0] for c in MODULE_CASES])
def test_hostile_module(built, tmp, name, mutate, record, message):
    """inline.ko (which patch writes when intact) with one table field or
    relocation changed: patch must never write two overlapping patches or
    one into data, show and verify never report them."""
    bad = tmp / "bad.ko"
    bad.write_bytes(mutate((built / "inline.ko").read_bytes()))
    _refused(bad, built / "k61.img", tmp, _record(bad.read_bytes(), *record), message)


def test_hostile_i386_module(tmp):
    """i386 (REL: a site's address is its field, relocated in place): two
    sites at one address."""
    need_m32()
    gcc("-m32", "-mregparm=3", "-no-pie", "-nostdlib", "-static", "-Wl,-e,flags_twice", "-o", tmp / "k32.img",
        KDIR / "k61.c", KDIR / "k61_image.c")
    gcc("-m32", "-mregparm=3", "-c", KDIR / "kmod61.c", "-o", tmp / "m32.ko")
    data = (tmp / "m32.ko").read_bytes()
    bad = tmp / "bad32.ko"
    bad.write_bytes(_set(data, "site[1].instr", _field(data, "site[0].instr").value))
    _refused(bad, tmp / "k32.img", tmp, _record(data, ".parainstructions", 0) + 8,
             (".parainstructions entry 1 at .text+0x", " overlaps entry 0 [.text+0x"))
