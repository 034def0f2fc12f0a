"""The systems example (native, lguest, vmi, xen) on x86-64 and i386: built
with `pvpass cc`, run through the ops table, patched at run time and ahead
of time; every run must print the unpatched result, with each backend's own
interrupt state right at every step ("bad 0")."""
from __future__ import annotations

import json
import subprocess

import pytest

from pvpass.link.elfobj import ElfObject

from conftest import ROOT, make_example, run_pvpass

BACKENDS = ("native", "lguest", "vmi", "xen")


@pytest.fixture(scope="module", params=["x86_64", "i386"])
def built(request):
    d = make_example("systems", f"systems-{request.param}", f"ARCH={request.param}")
    assert "warning" not in (d / "make.log").read_text().lower()
    # make -j2 through the fast path: the link and vmi_rom.S pass through
    # without Python; systems.c holds sites (the Python path adds its table)
    assert "python starts: 1\n" in (d / "make.log").read_text()
    return request.param, d


def run(exe, *args):
    r = subprocess.run([str(exe), *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.splitlines()


def test_every_backend_agrees_unpatched_runtime_and_ahead_of_time(built):
    arch, d = built
    results = set()
    for b in BACKENDS:
        results.add(run(d / "systems", b, "indirect", "3000")[-1])
        out = run(d / "systems", b, "patched", "3000")
        assert out[0] == f"patched 8 sites for {b}_ops (0 left as indirect calls)"
        results.add(out[-1])
        results.add(run(d / f"systems_aot_{b}", b, "indirect", "3000")[-1])
    assert len(results) == 1 and results.pop().endswith(" bad 0")


def test_verify_proves_every_built_program_and_object(built):
    """`pvpass verify` on what make built: the program (run-time patching:
    every backend's records) and each ahead-of-time program and object,
    with the VMI ROM mapped where the program maps it. Without the ROM the
    VMI calls cannot run: not emulated, said so."""
    arch, d = built
    rom = f"{d / 'vmi_rom.bin'}@0x50000000"
    files = ["systems", "systems.o", *(f"systems_aot_{b}{ext}" for b in BACKENDS for ext in ("", ".o"))]
    for f in files:
        r = run_pvpass("verify", str(d / f), "--map", rom, "--states", "16")
        assert r.returncode == 0, r.stdout + r.stderr
        assert ", 0 failed, 0 not emulated," in r.stdout, r.stdout + r.stderr
    r = run_pvpass("verify", str(d / "systems"), "--backend", "vmi_ops")
    assert r.returncode == 0 and r.stdout.startswith("0 (site copy, backend) pairs proved, 0 failed, 8 not "
                                                     "emulated"), r.stdout
    assert "which the file does not hold (code mapped at run time? give it with --map FILE@ADDR)" in r.stderr
    text = 0x400000 if arch == "x86_64" else 0x8048000      # ld's non-PIE default
    r = run_pvpass("verify", str(d / "systems"), "--map", f"{d / 'vmi_rom.bin'}@{text:#x}")
    assert r.returncode == 2 and "overlaps the file's memory" in r.stderr, r.stderr


def _text(exe):
    r = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(exe)], capture_output=True, text=True, check=True)
    return r.stdout


def test_each_system_patches_as_its_kind(built):
    """The ahead-of-time programs hold what each system is about."""
    arch, d = built
    elf = ElfObject.read(str(d / "systems_aot_lguest"))
    page = next(s.value for s in elf.symbols if s.name == "lguest_irq_enabled")
    lguest = _text(d / "systems_aot_lguest")
    # inline stores to the shared page, relocated to its address
    if arch == "i386":
        assert f"movl   $0x0,{page:#x}" in lguest and f"movl   $0x200,{page:#x}" in lguest
    else:
        assert f"mov    %edi,0x" in lguest and f"# {page:x} <lguest_irq_enabled>" in lguest
    # direct calls into the ROM's fixed addresses
    vmi = _text(d / "systems_aot_vmi")
    assert "call   50000000" in vmi and "call   500000c0" in vmi
    # trampolines around the C functions
    xen = _text(d / "systems_aot_xen")
    assert "<__pvpass_tramp_xen_save_fl_" in xen
    # `pvpass show` names the memory each inline store writes
    r = run_pvpass("show", str(d / "systems.o"), "--source", str(d / "systems.c"), "--backend", "lguest_ops",
                   "--", f"-I{ROOT / 'pvpass/include'}", f"-I{ROOT / 'pvpass/runtime'}")
    assert r.returncode == 0, r.stderr
    assert "; writes lguest_irq_enabled" in r.stdout and "<lguest_irq_enabled>" in r.stdout
    if arch == "i386":
        assert "after:  movl $0x200, 0 <lguest_irq_enabled>" in r.stdout


EAX_SITE = """#define PVPASS_OPS pv_ops
#include <pvpass.h>
struct ops { struct { void (PVPASS_REGPARM *irq_disable)(void);
                      unsigned long (PVPASS_REGPARM *mix)(unsigned long, unsigned long); } irq; };
struct ops pv_ops;
unsigned long irq_enabled;
void PVPASS_REGPARM lg_irq_disable(void);
PV_CALLEE_SAVE(lg_irq_disable, "");
static const struct ops lguest_ops = { .irq = { .irq_disable = lg_irq_disable, .mix = 0 } };
PV_ABSENT(lguest_ops, irq.mix);
PV_INLINE(lguest_ops, irq.irq_disable, "INSNS", "");
void cli(void) { PV_VEAXCALL0(irq.irq_disable); }
unsigned long mix(unsigned long a, unsigned long b) { return PV_EAXCALL2(unsigned long, irq.mix, a, b); }
"""


@pytest.mark.parametrize("insns,fits", [("movl $0, irq_enabled", True), ("movl $0, irq_enabled; nop", False)])
def test_eax_clobber_site_is_ten_bytes_and_pv003_says_what_does_not_fit(tmp, insns, fits):
    src = tmp / "eax.c"
    src.write_text(EAX_SITE.replace("INSNS", insns))
    obj = tmp / "eax.o"
    r = subprocess.run(["gcc", "-m32", "-O2", "-fno-pie", f"-I{ROOT / 'pvpass/include'}", "-c", str(src),
                        "-o", str(obj)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # GNU objdump, not pvpass, reads the site: push/push/call/pop/pop, 10 bytes
    dis = subprocess.run(["objdump", "-d", str(obj)], capture_output=True, text=True, check=True).stdout
    cli = dis[dis.index("<cli>:"):].split("\n\n")[0].splitlines()[1:]
    k = next(i for i, ln in enumerate(cli) if ln.split("\t")[2].startswith("call"))
    site = cli[k - 2:k + 3]          # around it, pvpass.h's alignment step
    assert [ln.split("\t")[2].split()[0] for ln in site] == ["push", "push", "call", "pop", "pop"]
    assert sum(len(ln.split("\t")[1].split()) for ln in site) == 10
    r = run_pvpass("scan", "--arch", "i386", str(src), "--format", "json")
    sites = json.loads(r.stdout)["sites"]
    assert {(s["op"], s["length"], tuple(s["clobbers"]), s["nargs"]) for s in sites} == \
        {("irq.irq_disable", 10, ("eax",), 0), ("irq.mix", 10, ("eax",), 2)}
    r = run_pvpass("lint", "--arch", "i386", "--format", "json", str(src), "--", "-fno-pie")
    diags = json.loads(r.stdout)["diagnostics"]
    if fits:
        assert diags == []
    else:
        assert [(d["rule"], d["level"]) for d in diags] == [("PV003", "warning")]
        assert "lguest_ops's 11-byte inline replacement" in diags[0]["message"]


def test_xen_c_functions_behind_eax_sites_are_called_between_the_sites_saves(built, tmp_path):
    """i386: xen's irq_disable/irq_enable are C functions behind the
    eax-clobber site, which saves %ecx and %edx itself: only its call is
    patched, no trampoline. With one of those saves NOPed out of the
    records, verify finds the call made with the stack the site's own call
    did not have."""
    arch, d = built
    if arch != "i386":
        pytest.skip("the eax-clobber site is i386's")
    r = run_pvpass("show", str(d / "systems.o"), "--source", str(d / "systems.c"), "--backend", "xen_ops",
                   "--", f"-I{ROOT / 'pvpass/include'}", f"-I{ROOT / 'pvpass/runtime'}")
    assert r.returncode == 0, r.stderr
    for fn in ("xen_irq_disable", "xen_irq_enable"):
        assert f"after:  pushl %ecx; pushl %edx; call {fn}; nop; popl %edx; popl %ecx" in r.stdout, r.stdout
        assert f"call {fn} inside the site's own saves of ecx, edx" in r.stdout
    xen = _text(d / "systems_aot_xen")
    assert "<__pvpass_tramp_xen_irq_disable" not in xen and "call   " in xen
    # the mutant: the records' code without the site's saves
    obj = ElfObject.read(str(d / "systems.o"))
    code = obj.section_data(obj.section(".pvpass.code"))
    saved = bytes([0x51, 0x52, 0xE8, 0, 0, 0, 0, 0x90, 0x5A, 0x59])
    assert code.count(saved) >= 2
    sec = obj.section(".pvpass.code")
    data = bytearray(obj.data)
    at = sec["sh_offset"]
    data[at:at + len(code)] = code.replace(saved, bytes([0x90, 0x52, 0xE8, 0, 0, 0, 0, 0x90, 0x5A, 0x90]))
    bad = tmp_path / "mutant.o"
    bad.write_bytes(bytes(data))
    r = run_pvpass("verify", str(bad), "--backend", "xen_ops", "--states", "8")
    assert r.returncode == 1 and "the site calls with %esp moved by -4" in r.stderr, r.stdout + r.stderr
