"""Unwinding through what pvpass generates, with the real tools.

testdata/unwind/unwind.c has a site of each kind (an inline replacement, a
direct call, a trampoline, on i386 the eax-clobber site's saves-c call),
built with `pvpass cc -- gcc -O2 -g` for x86-64 and i386 and run unpatched,
patched at run time (pvpass_apply) and patched ahead of time (pvpass patch).
gdb, in one batch run per program and mode, stops in every target (behind
the inline patch: at the line of the site) and its backtrace must reach
main with no unknown frame; glibc's backtrace() from behind a trampoline
names main; addr2line gives an inline-patched site the line of its call;
every target is entered with the stack 16-byte aligned (psABI)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ARCH_FLAG, INCLUDE, ROOT, need

SRC = ROOT / "testdata" / "unwind" / "unwind.c"
RT = ROOT / "pvpass" / "runtime"
LINE = next(i for i, t in enumerate(SRC.read_text().splitlines(), 1) if "UW_INLINE_SITE" in t)
TARGETS = ("t_inl", "t_dir", "t_tramp", "t_eax", "cs_tramp")

@pytest.fixture(scope="module", autouse=True)
def _gdb():
    need("gdb")         # before the builds: skipped without gdb, naming its package; a failure in CI


def _pvpass(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "pvpass", *args], check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture(scope="module", params=["x86_64", "i386"])
def progs(request, tmp_path_factory):
    """arch, {mode: (program, argument)}: one program unpatched and patched at
    run time, one patched ahead of time."""
    arch = request.param
    d = tmp_path_factory.mktemp(f"unwind_{arch}")
    m = ARCH_FLAG[arch]
    cpp = [f"-I{INCLUDE}", f"-I{RT}"]
    subprocess.run([sys.executable, "-m", "pvpass", "cc", "--", "gcc", m, "-O2", "-g", "-Wall", "-fno-pie",
                    *cpp, "-c", str(SRC), "-o", str(d / "u.o")], check=True, capture_output=True)
    subprocess.run(["gcc", m, "-O2", "-fno-pie", *cpp, "-c", str(RT / "pvpass_rt.c"), "-o", str(d / "rt.o")],
                   check=True, capture_output=True)
    _pvpass("patch", str(d / "u.o"), "--source", str(SRC), "--backend", "c_ops", "-o", str(d / "aot.o"),
            "--", m, *cpp)
    ld = _pvpass("ldscript", "--path").strip()
    for name in ("u", "aot"):
        subprocess.run(["gcc", m, "-no-pie", "-rdynamic", str(d / f"{name}.o"), str(d / "rt.o"),
                        "-o", str(d / name), f"-Wl,-T,{ld}"], check=True, capture_output=True)
    return arch, {"unpatched": (d / "u", "none"), "runtime": (d / "u", "c_ops"), "aot": (d / "aot", "none")}


def _stops(exe: Path, arg: str) -> list[tuple[str, list[str]]]:
    """(where gdb stopped, the backtrace's frames) for every breakpoint hit;
    breakpoints are set once `work` runs, after pvpass_apply."""
    script = exe.parent / f"{exe.name}-{arg}.gdb"
    targets = "\n".join(f"break {t}" for t in TARGETS)
    script.write_text(f"set pagination off\nset confirm off\nset breakpoint pending on\nbreak work\n"
                      f"run {arg}\n{targets}\nbreak unwind.c:{LINE}\ncommands 2-{len(TARGETS) + 2}\n"
                      f"bt\ncontinue\nend\ncontinue\n")
    r = subprocess.run(["gdb", "-batch", "-nx", "-x", str(script), str(exe)], capture_output=True, text=True,
                       timeout=120)
    stops: list[tuple[str, list[str]]] = []
    for line in r.stdout.splitlines():
        hit = re.match(r"Breakpoint (\d+), (?:0x\w+ in )?(\w+) \(.*?\)(?: at .*:(\d+))?", line)
        if hit and hit.group(1) != "1":
            stops.append((hit.group(2) + (f":{hit.group(3)}" if hit.group(2) == "work" else ""), []))
        elif line.startswith("#") and stops:
            stops[-1][1].append(line)
    assert "exited normally" in r.stdout, r.stdout + r.stderr
    return stops


@pytest.mark.parametrize("mode", ["unpatched", "runtime", "aot"])
def test_gdb_backtrace_reaches_main_from_every_target(progs, mode):
    arch, runs = progs
    stops = _stops(*runs[mode])
    for where, frames in stops:
        assert frames and re.search(r" main \(", frames[-1]), (where, frames)
        assert not any("??" in f for f in frames), (where, frames)
    eax = ["t_eax"] if arch == "i386" else []
    want = {"unpatched": [f"work:{LINE}", "t_inl", "t_dir", "cs_tramp", *eax]}.get(
        mode, [f"work:{LINE}", "t_dir", "t_tramp", *eax])
    assert sorted({w for w, _ in stops}) == sorted(want), stops
    tramp = [f for w, f in stops if w == "t_tramp"]
    assert all("__pvpass_tramp_t_tramp_" in f[1] and " work (" in f[2] for f in tramp), tramp


def test_targets_are_entered_aligned_and_backtrace_names_main(progs):
    _, runs = progs
    for mode, (exe, arg) in runs.items():
        r = subprocess.run([str(exe), arg], capture_output=True, text=True, env={"UW_BACKTRACE": "1"})
        assert r.returncode == 0 and r.stdout.strip().endswith("misaligned 0"), r.stdout + r.stderr
        if mode == "unpatched":
            continue                    # t_tramp is reached through the trampoline only
        assert re.search(r"\(main\+0x\w+\)", r.stdout), r.stdout
        assert re.search(r"\(work\+0x\w+\)", r.stdout), r.stdout


def test_addr2line_gives_an_inline_patched_site_its_line(progs):
    _, runs = progs
    exe = runs["aot"][0]
    entries = json.loads(_pvpass("table", str(exe), "--format", "json"))["entries"]
    first = min(e["offset"] for e in entries)          # the inline site is the first in work
    assert entries[0]["bytes"][:2] != "ff"              # patched: no indirect call left
    out = subprocess.run(["addr2line", "-e", str(exe), hex(first)], check=True, capture_output=True,
                         text=True).stdout
    assert re.match(rf".*unwind\.c:{LINE}\b", out), out
