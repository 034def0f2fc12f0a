"""The fuzzing harness: mutate C sources, annotations and objects, run one
pvpass command on each in a child process, and check what every input must
get (docs/bad-input.md):

- an exit code in {0, 1, 2, 3}, and no "Traceback" on stderr;
- a bounded time (a limit of CPU time per input, RLIMIT_CPU, so that a run
  starved by other work on the machine is no finding; a wall-clock limit 10
  times as long behind it) and memory (RLIMIT_AS per child);
- the input untouched (hashed before and after);
- no stray temporary file, and no output at all unless the exit code is 0;
- for `link` and `patch`: an output that readelf reads without complaint
  whenever it reads the input without complaint;
- for a kernel-form image (`kimage`, stripped or not): exit 0 or 1 only on
  tables the kernel's patcher can take (kimage.faults, from pyelftools);
- for `ccfast` (`ccobj` through the installed `pvpass`: the compiled client
  and the resident server, which reads the mutated object first): the exit
  code, stderr and object of the Python path (PVPASS_SERVER=0) on the same
  input, and a server still serving afterwards.

A plain seeded random mutator: the same seed gives the same inputs. Each
failure is saved under testdata/bad/fuzz/ as TARGET-HASH.{c,o} with a .json
beside it (the command, the problem); `run.py --replay` runs them again and
tests/test_fuzz.py replays them all in the suite.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import elfmut  # noqa: E402
import filesfuzz  # noqa: E402
import kimage  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TESTDATA = ROOT / "testdata"
INCLUDE = ROOT / "pvpass" / "include"
REPRO = TESTDATA / "bad" / "fuzz"
C_TARGETS = ("scan", "lint", "emit", "verify", "cc")
OBJ_TARGETS = ("link", "table", "show", "patch")
# files and processes around `pvpass cc`: kills, a full disk, a poisoned cache (filesfuzz.py);
# kernel-form images through patch/show/verify/table (kimage.py); `pvpass cc` whose
# "compiler" writes a mutated object (both dialects)
TARGETS = C_TARGETS + OBJ_TARGETS + ("files", "kimage", "ccobj", "ccfast")
PVPASS_BIN = Path(sys.executable).with_name("pvpass")     # the launcher setup.py installs
KIMAGE_COMMANDS = ("patch", "show", "verify", "table")
# kernel-form images: k61.c's sites linked with k61_image.c (as tests/test_kernel_image.py),
# each also stripped (strip -s); and modules (gcc -c, as tests/test_kernel_module.py) over them
KIMAGE_CORPUS = ["-m64", "-m32"]
KMODULE_CORPUS = [("kernel/kmod61.c", "-m64"), ("kernel/k61.c", "-m64"), ("kernel/kmod61.c", "-m32")]
MEMORY = 2 << 30

# C sources to mutate (with the directory their includes are relative to)
C_CORPUS = ["pvpass/sites.c", "kernel/k61.c", "kernel/k2621.c", "layout/layout.c",
            "lint/pv002_fire.c", "lint/pv003_warn.c", "lint/pv004_ok.c", "lint/pv005_ok.c",
            "lint/pv006_fire.c", "lint/pv007_fire.c", "lint/pv008_fire.c", "lint/pv009_fire.c",
            "bad/inline_comma.c"]
# objects: (source, arch flag, gcc flags)
OBJ_CORPUS = [("pvpass/sites.c", "-m64", ["-O2", "-fno-pie"]),
              ("pvpass/sites.c", "-m32", ["-O2", "-fno-pie"]),
              ("kernel/k61.c", "-m64", ["-O2", "-fno-pie"]),
              ("kernel/k2621.c", "-m32", ["-O1", "-fno-pie"])]

HOSTILE_TOKENS = [",", "(", ")", "{", "}", ";", '"', "'", "#", "\\", "0x7fffffff", "-1",
                  "99999999999999999999999", "%rax", "%", "*", "&", "PV_VCALL0(cpu.io_delay)",
                  "pv_ops", "__attribute__((aligned(4096)))", "\n#define X(", "\n#include \"",
                  "((" * 60 + "0" + "))" * 60, "[" * 40, "void *pad[300];", "asm(\"\")",
                  "\"\\n\\t" + "nop\\n\\t" * 260 + "\""]
ANNOTATION_TOKENS = [", ", ",", ")", "(", "clobbers(", "clobbers()", "rax, rax", "xmm0", "eax",
                     "irq.nope", "end", "site", "inline", "target", "nop", "absent", "\\\"",
                     "callee-save", "lock ", ".byte ,", "1: ", "%%", "$", "0x", "..", "cpu.",
                     ".fill 0x1000000, 8, 0; ", "$0x8000000000000000/-1", "% -1", ".balign 1<<28; ",
                     ".incbin \\\"/etc/passwd\\\"; ", ".rept 9999999; nop; .endr; ", "movl $1<<63, %eax; "]
INTERESTING = [0, 1, 2, 3, 4, 7, 8, 0x10, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000,
               0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xA9000045, (1 << 63) - 1, (1 << 64) - 1]


@dataclass
class Case:
    target: str
    data: bytes                 # the input file's contents
    suffix: str                 # ".c", ".o", ".img" (a kernel image) or ".ko" (a module)
    source: str                 # testdata-relative C source (the input itself for C targets)
    cflags: list[str]           # preprocessor/gcc flags after `--`
    how: str                    # what was mutated


@dataclass
class Result:
    case: Case
    ok: bool
    problem: str = ""
    rc: int | None = None
    seconds: float = 0.0
    stderr: str = ""


@dataclass
class Stats:
    inputs: int = 0
    runs: int = 0
    seconds: float = 0.0        # wall
    cpu: float = 0.0            # user + sys, this process and its children
    findings: list[Result] = field(default_factory=list)
    exits: dict = field(default_factory=dict)       # exit code -> inputs


# --- mutators ---------------------------------------------------------------

def mutate_c(rng: random.Random, text: str) -> tuple[str, str]:
    hows = []
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(["byte", "token", "annotation", "annotation", "line", "splice"])
        if kind == "byte" and text:
            i = rng.randrange(len(text))
            op = rng.choice(["flip", "del", "dup", "ins"])
            if op == "flip":
                text = text[:i] + chr(rng.randrange(32, 127)) + text[i + 1:]
            elif op == "del":
                text = text[:i] + text[i + rng.randint(1, 40):]
            elif op == "dup":
                j = min(len(text), i + rng.randint(1, 200))
                text = text[:j] + text[i:j] + text[j:]
            else:
                text = text[:i] + rng.choice("(),;{}\"'#\\$%*") + text[i:]
            hows.append(f"byte-{op}@{i}")
        elif kind == "token":
            toks = [m.span() for m in re.finditer(r"\w+|[^\w\s]", text)]
            if toks:
                a, b = rng.choice(toks)
                tok = rng.choice(HOSTILE_TOKENS)
                text = text[:a] + tok + text[b:] if rng.random() < 0.5 else text[:a] + tok + text[a:]
                hows.append(f"token@{a}")
        elif kind == "annotation":
            # inside a string literal of an annotation or a PV_* macro's arguments
            spans = [m.span() for m in re.finditer(r'"[^"\n]*(pvpass|clobbers|pop|push|call|%)[^"\n]*"|PV_\w+\([^;\n]*\)', text)]
            if spans:
                a, b = rng.choice(spans)
                i = rng.randrange(a + 1, max(a + 2, b))
                text = text[:i] + rng.choice(ANNOTATION_TOKENS) + text[i + rng.choice([0, 0, 1, 3]):]
                hows.append(f"annotation@{i}")
        elif kind == "line":
            lines = text.split("\n")
            i = rng.randrange(len(lines))
            op = rng.choice(["del", "dup", "swap"])
            if op == "del":
                del lines[i]
            elif op == "dup":
                lines.insert(i, lines[i])
            else:
                j = rng.randrange(len(lines))
                lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
            hows.append(f"line-{op}@{i}")
        elif kind == "splice":
            # a function body repeated many times: scale, and same-op copies
            m = re.search(r"\n(static |unsigned |void )[^\n]*\n\{.*?\n\}\n", text, re.S)
            if m:
                body = m.group(0)
                n = rng.choice([2, 5, 50])
                copies = "".join(re.sub(r"(\w+)(\s*\()", rf"\1_fz{k}\2", body, count=1) for k in range(n))
                text = text + copies
                hows.append(f"splice x{n}")
    return text, "+".join(hows) or "none"


def mutate_obj(rng: random.Random, data: bytes, fields: list) -> tuple[bytes, str]:
    hows = []
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(["field", "field", "field", "bytes", "truncate", "shdr", "shdr", "symbol", "table"])
        shdrs = [f for f in fields if f.name.startswith("shdr[")]
        # the table's relocations (i386: the in-place addend is the entry's own field, not among these)
        sites = [f for f in fields if f.name.startswith((".rela.parainstructions[", ".rel.parainstructions["))
                 and f.name.endswith(("r_addend", "r_info"))]
        nsym = sum(1 for f in fields if f.name.startswith("sym[") and f.name.endswith(".st_name"))
        if kind == "shdr" and shdrs:
            # structured: another section's name, a meaningful type, another index
            f = rng.choice([f for f in shdrs if f.name.rsplit(".", 1)[1] in
                            ("sh_name", "sh_type", "sh_link", "sh_info", "sh_flags", "sh_size")])
            nsec = sum(1 for g in shdrs if g.name.endswith(".sh_type"))
            what = f.name.rsplit(".", 1)[1]
            v = {"sh_name": lambda: rng.choice([g.value for g in shdrs if g.name.endswith(".sh_name")]),
                 "sh_type": lambda: rng.choice([1, 2, 3, 4, 8, 9, 17, 18]),
                 "sh_link": lambda: rng.randrange(nsec + 1),
                 "sh_info": lambda: rng.randrange(nsec + 1),
                 "sh_flags": lambda: f.value ^ rng.choice([1, 2, 4, 0x10, 0x20, 0x40, 0x200, 0x400]),
                 "sh_size": lambda: f.value + rng.choice([-16, -8, -1, 1, 8, 16, 24])}[what]()
            data = elfmut.set_field(data, f, v)
            hows.append(f"{f.name}={v & ((1 << 8 * f.size) - 1):#x}")
        elif kind == "symbol":
            syms = [f for f in fields if f.name.startswith("sym[") and
                    f.name.rsplit(".", 1)[1] in ("st_value", "st_size", "st_shndx", "st_info")]
            if syms:
                f = rng.choice(syms)
                v = rng.choice([0, 1, f.value + 1, f.value + 0x40, f.value * 16, 0xFFF1, 0xFFFF, 0x12,
                                0xA9000045, rng.randrange(64)])
                data = elfmut.set_field(data, f, v)
                hows.append(f"{f.name}={v & ((1 << 8 * f.size) - 1):#x}")
        elif kind == "field" and fields:
            f = rng.choice(fields)
            v = rng.choice(INTERESTING + [f.value + 1, f.value - 1, f.value * 2, f.value + 0x1000,
                                          len(data), len(data) - 1, rng.getrandbits(8 * f.size)])
            data = elfmut.set_field(data, f, v)
            hows.append(f"{f.name}={v & ((1 << 8 * f.size) - 1):#x}")
        elif kind == "table" and sites:
            # a site moved onto another's bytes, into another section (data,
            # undefined), before or past its own: what the readers' check_sites refuses
            f = rng.choice(sites)
            if f.name.endswith("r_info"):
                shift = 32 if f.size == 8 else 8
                v = rng.randrange(nsym) << shift | f.value & ((1 << shift) - 1)
            else:
                v = rng.choice([g.value for g in sites if g.name.endswith(f.name[-8:])]) + \
                    rng.choice([0, 1, 2, 3, 5, -1, -2, -6, 0x100, 0x10000])
            data = elfmut.set_field(data, f, v)
            hows.append(f"{f.name}={v & ((1 << 8 * f.size) - 1):#x}")
        elif kind == "bytes":
            b = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                i = rng.randrange(len(b))
                b[i] = rng.randrange(256)
            data = bytes(b)
            hows.append("bytes")
        elif kind == "truncate" and rng.random() < 0.3:
            n = rng.randrange(len(data))
            data = data[:n]
            hows.append(f"truncate@{n:#x}")
    return data, "+".join(hows) or "none"


# --- corpus -----------------------------------------------------------------

def build_image(m: str, out: Path) -> Path:
    kdir = TESTDATA / "kernel"
    subprocess.run(["gcc", m, "-O2", "-fno-pie", "-no-pie", "-nostdlib", "-static", "-Wl,-e,flags_twice",
                    "-I", str(kdir), "-o", str(out), str(kdir / "k61.c"), str(kdir / "k61_image.c")],
                   check=True, capture_output=True)
    return out


_KERNELS: dict[str, Path] = {}


def kernel_for(m: str) -> Path:
    """The intact image (gcc m) a module case is loaded over: built once per
    process (a replay builds it too), removed at exit."""
    if m not in _KERNELS:
        d = Path(tempfile.mkdtemp(prefix="pvfuzz-kernel."))
        atexit.register(shutil.rmtree, d, True)
        _KERNELS[m] = build_image(m, d / f"k61{m}.img")
    return _KERNELS[m]


def mutate_image(rng: random.Random, data: bytes, fields: list, tfields: list) -> tuple[bytes, str]:
    """An image's ELF fields as mutate_obj does, or its table records'
    fields: a site or an alternative moved to another section's address or
    out of the image, a length or type pushed to its limits."""
    if rng.random() < 0.4 or not tfields:
        return mutate_obj(rng, data, fields)
    addrs = [f.value for f in fields if f.name.endswith(".sh_addr") and f.value]
    flags = {f.name.split(".")[0]: f.value for f in fields if f.name.endswith(".sh_flags")}
    data_addrs = [f.value for f in fields if f.name.endswith(".sh_addr") and f.value
                  and flags[f.name.split(".")[0]] & 6 == 2] or addrs      # allocated, not code
    hows = []
    for _ in range(rng.choice([1, 1, 2])):
        f = rng.choice(tfields)
        if f.name.endswith("instr"):             # an address: another section's, or none
            v = rng.choice([rng.choice(addrs) + rng.choice([0, 1, 8, -1, -6]), 0, 0x7FFFFFFF,
                            rng.choice(data_addrs), f.value + rng.choice([-16, -1, 1, 2, 6, 0x100])])
        elif f.name.endswith("_offset"):         # relative: moved by the distance between two sections
            v = rng.choice([f.value + rng.choice(addrs) - rng.choice(addrs), 0x7FFFFFFF, -0x80000000,
                            f.value + rng.choice(data_addrs) - rng.choice(addrs),
                            f.value + rng.choice([-16, -1, 1, 2, 6, 0x100])])
        else:
            v = rng.choice([0, 1, 5, 6, 7, 15, 16, 0x7F, 0x80, 0xFF, 0xFFFF, f.value + 1, f.value - 1])
        data = elfmut.set_field(data, f, v)
        hows.append(f"{f.name}={v & ((1 << 8 * f.size) - 1):#x}")
    return data, "+".join(hows)


def mutate_module(rng: random.Random, data: bytes, fields: list, tfields: list) -> tuple[bytes, str]:
    """A module's ELF fields as mutate_obj does, or where its tables point:
    a table relocation's addend moved by a few bytes or its symbol changed
    (another section, a data object, an undefined symbol), i386's in-place
    addends moved, a length or type pushed to its limits."""
    rels = [f for f in fields if f.name.startswith((".rela.parainstructions", ".rel.parainstructions",
                                                    ".rela.altinstructions", ".rel.altinstructions"))]
    if rng.random() < 0.4 or not tfields:
        return mutate_obj(rng, data, fields)
    nsym = sum(1 for f in fields if f.name.startswith("sym[") and f.name.endswith(".st_name"))
    hows = []
    for _ in range(rng.choice([1, 1, 2])):
        f = rng.choice(tfields + rels)
        if f.name.endswith("r_info"):
            shift = 32 if f.size == 8 else 8
            v = rng.randrange(nsym) << shift | f.value & ((1 << shift) - 1)
        elif f.name.endswith(("r_addend", "instr", "_offset")):
            v = f.value + rng.choice([-16, -6, -2, -1, 1, 2, 3, 6, 0x100, 0x10000])
        else:
            v = rng.choice([0, 1, 5, 6, 7, 15, 16, 0x7F, 0x80, 0xFF, 0xFFFF, f.value + 1, f.value - 1])
        data = elfmut.set_field(data, f, v)
        hows.append(f"{f.name}={v & ((1 << 8 * f.size) - 1):#x}")
    return data, "+".join(hows)


_FAKE_CC = """#!/bin/sh
# a "compiler" that writes the fuzzer's object; the preprocessor run is gcc's
for a; do [ "$a" = -E ] && exec gcc "$@"; done
for a; do [ "$p" = -o ] && o=$a; p=$a; done
cp "$(dirname "$0")/input.o" "$o"
"""


class Corpus:
    """Base inputs: C sources, and objects gcc builds from them (plus the
    same objects linked by pvpass, for `patch`, `show` and `table`), and
    kernel-form images."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.sources = {s: (TESTDATA / s).read_text() for s in C_CORPUS}
        self.images: dict[str, list] = {"image": [], "stripped": [], "module": []}
        for m in KIMAGE_CORPUS:
            img = build_image(m, work / f"k61{m}.img")
            subprocess.run(["strip", "-s", str(img), "-o", str(work / f"k61{m}.stripped")], check=True)
            for kind, path in (("image", img), ("stripped", work / f"k61{m}.stripped")):
                data = path.read_bytes()
                self.images[kind].append((data, elfmut.fields(data), kimage.table_fields(data), m))
        for src, m in KMODULE_CORPUS:
            ko = work / f"{Path(src).stem}{m}.ko"
            subprocess.run(["gcc", m, "-O2", "-fno-pie", "-fno-asynchronous-unwind-tables", "-I",
                            str(TESTDATA / "kernel"), "-c", str(TESTDATA / src), "-o", str(ko)],
                           check=True, capture_output=True)
            data = ko.read_bytes()
            self.images["module"].append((data, elfmut.fields(data), kimage.table_fields(data), m))
        self.objects: list[tuple[str, list[str], bytes, bytes, list, list]] = []
        for src, m, flags in OBJ_CORPUS:
            o = work / f"base{len(self.objects)}.o"
            subprocess.run(["gcc", m, "-c", str(TESTDATA / src), "-o", str(o), "-I", str(INCLUDE), *flags],
                           check=True, capture_output=True)
            lo = work / f"linked{len(self.objects)}.o"
            subprocess.run([sys.executable, "-m", "pvpass", "link", str(o), "--source", str(TESTDATA / src),
                            "-o", str(lo), "--", m, *flags], check=True, capture_output=True, cwd=ROOT)
            base, linked = o.read_bytes(), lo.read_bytes()
            self.objects.append((src, [m, *flags], base, linked,
                                 elfmut.fields(base), elfmut.fields(linked)))

    def case(self, rng: random.Random, target: str) -> Case:
        if target == "files":
            src, flags, how = filesfuzz.scenario(rng)
            return Case(target, (TESTDATA / src).read_bytes(), ".c", src, flags, how)
        if target == "kimage":
            # half whole images, a fifth stripped (table lists them), the rest modules (--kernel)
            kind = rng.choices(("image", "stripped", "module"), (5, 2, 3))[0]
            data, fields, tfields, m = rng.choice(self.images[kind])
            cmd = rng.choice({"image": KIMAGE_COMMANDS + ("patch", "patch"),   # patch writes: checked most
                              "stripped": ("table", "table", "table", "patch"),
                              "module": ("show", "verify", "patch", "patch", "table")}[kind])
            if kind == "module":
                data, how = mutate_module(rng, data, fields, tfields)
                return Case(target, data, ".ko", "kernel/k61.c", [cmd, m], how)
            data, how = mutate_image(rng, data, fields, tfields)
            return Case(target, data, ".img", "kernel/k61.c", [cmd], f"{kind}: {how}")
        if target in ("ccobj", "ccfast"):
            src, flags, base, _, bf, _ = rng.choice(self.objects)
            data, how = mutate_obj(rng, base, bf)
            records = ["--records=native"] if src.startswith("kernel/") and rng.random() < 0.3 else []
            return Case(target, data, ".o", src, records + flags, how)
        if target in C_TARGETS:
            src = rng.choice(C_CORPUS)
            text, how = mutate_c(rng, self.sources[src])
            return Case(target, text.encode(errors="replace"), ".c", src,
                        ["-I", str((TESTDATA / src).parent), "-I", str(INCLUDE)], how)
        src, flags, base, linked, bf, lf = rng.choice(self.objects)
        use_linked = target == "patch" or (target in ("table", "show") and rng.random() < 0.5)
        data, how = mutate_obj(rng, linked if use_linked else base, lf if use_linked else bf)
        return Case(target, data, ".o", src, flags, how)


# --- running ----------------------------------------------------------------

def _limits(cpu: float | None = None) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if cpu is not None:
        resource.setrlimit(resource.RLIMIT_CPU, (int(cpu), int(cpu) + 5))


def command(case: Case, inp: Path, out: Path) -> list[str]:
    src = str(TESTDATA / case.source)
    t = case.target
    if t == "kimage":
        cmd = case.cflags[0]
        extra = {"patch": ["--backend", "native", "-o", str(out)], "show": ["--backend", "native"],
                 "verify": ["--states", "4"], "table": []}[cmd]
        if case.suffix == ".ko" and cmd != "table":     # a module over the intact image of its arch
            extra += ["--kernel", str(kernel_for(case.cflags[1]))]
        return [sys.executable, "-m", "pvpass", cmd, str(inp), *extra]
    if t in ("ccobj", "ccfast"):
        records = [f for f in case.cflags if f.startswith("--records")]
        flags = [f for f in case.cflags if not f.startswith("--records")]
        prog = [str(PVPASS_BIN)] if t == "ccfast" else [sys.executable, "-m", "pvpass"]
        return [*prog, "cc", *records, "--", str(inp.parent / "fakecc"), *flags,
                "-I", str(INCLUDE), "-I", str(Path(src).parent), "-c", src, "-o", str(out)]
    args = {"scan": [str(inp), "-o", str(out)],
            "lint": [str(inp), "-o", str(out)],
            "emit": [str(inp), "--format", "asm", "-o", str(out)],
            "verify": [str(inp)],
            "cc": ["gcc", "-O2", "-c", str(inp), "-o", str(out)],
            "link": [str(inp), "--source", src, "-o", str(out)],
            "table": [str(inp), "--source", src],
            "show": [str(inp), "--source", src, "--backend", "native"],
            "patch": [str(inp), "--source", src, "--backend", "native", "-o", str(out)]}[t]
    if t == "cc":       # the build path: the compiler's command after `--`
        return [sys.executable, "-m", "pvpass", "cc", "--", *args, *case.cflags]
    return [sys.executable, "-m", "pvpass", t, *args, "--", *case.cflags]


def _readelf_complaints(path: Path) -> str:
    r = subprocess.run(["readelf", "-W", "-h", "-S", "-s", "-r", str(path)],
                       capture_output=True, text=True, errors="replace")
    return r.stderr.strip()


def run_case(case: Case, timeout: float, env: dict | None = None) -> Result:
    if case.target == "files":
        return _run_files(case, timeout, env)
    with tempfile.TemporaryDirectory(prefix="pvfuzz.") as d:
        d = Path(d)
        inp = d / f"input{case.suffix}"
        out = d / "out.o" if case.target in ("cc", "kimage", "ccobj", "ccfast") + OBJ_TARGETS else d / "out.txt"
        twin = d / "python.o"          # ccfast: the Python path's object
        inp.write_bytes(case.data)
        fake = d / "fakecc"
        if case.target in ("ccobj", "ccfast"):
            fake.write_text(_FAKE_CC)
            fake.chmod(0o755)
        before = hashlib.sha256(case.data).hexdigest()
        tmpdir = d / "tmp"             # the child's TMPDIR: must be empty again at the end
        tmpdir.mkdir()
        env = dict(env or os.environ, TMPDIR=str(tmpdir))
        t0 = time.monotonic()
        try:
            r = subprocess.run(command(case, inp, out), capture_output=True, timeout=10 * timeout,
                               preexec_fn=lambda: _limits(cpu=timeout), cwd=d, env=env)
            rc, err = r.returncode, r.stderr.decode(errors="replace")
        except subprocess.TimeoutExpired as e:
            rc, err = None, (e.stderr or b"").decode(errors="replace")
        secs = time.monotonic() - t0
        res = Result(case, True, "", rc, secs, err[-4000:])
        problems = []
        if rc is None:
            problems.append(f"timeout after {10 * timeout:g} s of wall time")
        elif rc == -signal.SIGXCPU:
            problems.append(f"over {timeout:g} s of CPU")
        elif rc not in (0, 1, 2, 3):
            problems.append(f"exit code {rc}")
        if "Traceback" in err:
            tail = [l for l in err.strip().splitlines() if l.strip()][-1:]
            problems.append(f"traceback: {tail[0] if tail else ''}")
        if hashlib.sha256(inp.read_bytes()).hexdigest() != before:
            problems.append("input changed")
        if case.target == "ccfast":
            problems += _same_as_python(case, inp, out, twin, rc, err, timeout, env)
        stray = sorted(p.name for p in d.iterdir() if p not in (inp, out, tmpdir, fake, twin))
        stray += sorted(f"$TMPDIR/{p.name}" for p in tmpdir.iterdir()
                        if not p.name.startswith(".lark_cache_"))   # lark's grammar cache, kept on purpose
        if stray:
            problems.append(f"stray files: {', '.join(stray)}")
        # lint's report is complete with findings (1) or unparsable files (2) too
        if out.exists() and rc != 0 and not (case.target == "lint" and rc in (1, 2)):
            problems.append(f"output written with exit code {rc}")
        if rc == 0 and out.exists() and case.target in ("link", "patch", "cc", "kimage") \
                and (case.target == "cc" or not _readelf_complaints(inp)):
            c = _readelf_complaints(out)
            if c:
                problems.append(f"readelf rejects the output: {c.splitlines()[0]}")
        if rc == 0 and out.exists() and case.target == "kimage" and case.suffix == ".img":
            problems += _outside_sites(case.data, out.read_bytes())
        if rc in (0, 1) and case.target == "kimage" and case.suffix == ".img":
            problems += [f"exit {rc} on damaged tables: {f}" for f in kimage.faults(case.data)[:1]]
        if rc in (0, 1) and case.suffix in (".o", ".ko") and case.target not in C_TARGETS:
            problems += [f"exit {rc} on a damaged site table: {f}" for f in kimage.object_faults(case.data)[:1]]
        if rc == 0 and case.target in ("ccobj", "ccfast"):
            problems += _ccobj_output(case.data, out)
        if problems:
            res.ok, res.problem = False, "; ".join(problems)
        return res


def _same_as_python(case: Case, inp: Path, out: Path, twin: Path, rc, err: str, timeout: float,
                    env: dict) -> list[str]:
    """The fast path decides as the Python path does, and its server lives on."""
    argv = command(case, inp, twin)
    r = subprocess.run(argv, capture_output=True, timeout=10 * timeout, preexec_fn=lambda: _limits(cpu=timeout),
                       cwd=inp.parent, env=dict(env, PVPASS_SERVER="0"))
    problems = []
    if rc is not None and r.returncode != rc:
        problems.append(f"fast path exit {rc}, Python path exit {r.returncode}")
    elif r.stderr.decode(errors="replace").replace(str(twin), str(out)) != err:   # messages name -o
        problems.append("fast path's stderr differs from the Python path's")
    elif rc == 0 and (out.read_bytes() if out.exists() else None) != (twin.read_bytes() if twin.exists() else None):
        problems.append("fast path's object differs from the Python path's")
    if not fast_server_up(env):
        problems.append("the server is gone")
        start_fast_server(env)
    return problems


def start_fast_server(env: dict) -> None:
    """A server for `ccfast`, started by a compile through the launcher
    without the inputs' CPU limit (it would inherit it)."""
    with tempfile.TemporaryDirectory(prefix="pvfuzz.") as d:
        (Path(d) / "w.c").write_text("int w;\n")
        subprocess.run([str(PVPASS_BIN), "cc", "--", "gcc", "-c", "w.c", "-o", "w.o"], cwd=d, env=env,
                       capture_output=True, check=True)
    deadline = time.monotonic() + 30
    while not fast_server_up(env):
        if time.monotonic() > deadline:
            raise SystemExit("ccfast: no pvpass cc server started (is the installed pvpass the launcher?)")
        time.sleep(0.05)


def fast_server_up(env: dict) -> bool:
    from pvpass.fastpath import _server_running
    return any(_server_running(str(s)) for s in Path(env["XDG_RUNTIME_DIR"]).glob("pvpass-*.sock"))


def _outside_sites(before: bytes, after: bytes) -> list[str]:
    """A patched image differs from its input only where the patcher may
    write (kimage.writable, from pyelftools)."""
    if len(before) != len(after):
        return [f"patched image is {len(after)} bytes, its input {len(before)}"]
    ok = kimage.writable(before)
    bad = [i for i, (a, b) in enumerate(zip(before, after)) if a != b and i not in ok]
    return [f"bytes written outside the sites, first at file offset {bad[0]:#x} ({len(bad)})"] if bad else []


_FOREIGN = ("not i386 or x86-64", "big-endian", "x32")


def _ccobj_output(given: bytes, out: Path) -> list[str]:
    """`pvpass cc` exit 0: an object that `pvpass table` (the checking
    reader) accepts, or the compiler's own object untouched for a target
    pvpass does not table."""
    if not out.exists():
        return ["exit 0 and no object"]
    r = subprocess.run([sys.executable, "-m", "pvpass", "table", str(out)], capture_output=True, text=True,
                       cwd=ROOT)
    if r.returncode == 0:
        return []
    if out.read_bytes() == given and any(f in r.stderr for f in _FOREIGN):
        return []
    return [f"exit 0 but `pvpass table` on its object: exit {r.returncode}: {r.stderr.strip()[:200]}"]


def _run_files(case: Case, timeout: float, env: dict | None) -> Result:
    with tempfile.TemporaryDirectory(prefix="pvfuzz.") as d:
        t0 = time.monotonic()
        env = dict(env or os.environ)
        env.pop("PVPASS_CACHE_DIR", None)       # each scenario has its own cache, or none
        env["PVPASS_CACHE"] = "0" if not case.how.startswith(("cache", "header")) else "1"
        rc, err, problems = filesfuzz.run(case.source, case.data, case.cflags, case.how, Path(d), timeout,
                                          env, _limits)
        res = Result(case, not problems, "; ".join(problems), rc, time.monotonic() - t0, err[-4000:])
        return res


def signature(res: Result) -> str:
    """Findings that look alike are saved once."""
    p = re.sub(r"0x[0-9a-f]+|\d+", "N", res.problem)
    return f"{res.case.target}:{p}"


def save(res: Result, where: Path = REPRO) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256(res.case.data).hexdigest()[:12]
    base = where / f"{res.case.target}-{h}"
    base.with_suffix(res.case.suffix).write_bytes(res.case.data)
    meta = {"target": res.case.target, "input": base.with_suffix(res.case.suffix).name,
            "source": res.case.source, "cflags": [f for f in res.case.cflags if not f.startswith("/")
                                                   and f != "-I"],
            "how": res.case.how, "problem": res.problem, "stderr": res.stderr[-1500:]}
    base.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    return base.with_suffix(".json")


def load(meta_path: Path) -> Case:
    meta = json.loads(meta_path.read_text())
    data = (meta_path.parent / meta["input"]).read_bytes()
    suffix = Path(meta["input"]).suffix
    if suffix == ".c" and meta["target"] != "files":
        cflags = ["-I", str((TESTDATA / meta["source"]).parent), "-I", str(INCLUDE)]
    else:
        cflags = meta["cflags"]
    return Case(meta["target"], data, suffix, meta["source"], cflags, meta["how"])


def _cpu() -> float:
    """CPU seconds (user + sys) of this process and its waited-for children."""
    ru = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(r.ru_utime + r.ru_stime for r in ru)


def campaign(targets: list[str], seconds_each: float | None, inputs_each: int | None, seed: int,
             timeout: float, save_to: Path | None, log=None, cpu_clock: bool = False) -> dict[str, Stats]:
    """Fuzz each target for `seconds_each` (of wall time, or of CPU time with
    `cpu_clock`, so a run beside other work still gets its share) or
    `inputs_each` inputs."""
    log = log or (lambda s: print(s, flush=True))
    stats: dict[str, Stats] = {}
    with tempfile.TemporaryDirectory(prefix="pvfuzz-corpus.") as w:
        corpus = Corpus(Path(w))
        # `cc` shares one result cache across its inputs, so hits are fuzzed too
        env = dict(os.environ, PVPASS_CACHE_DIR=str(Path(w) / "cache"))
        if "ccfast" in targets:         # its own server (a socket's path: at most 107 bytes)
            env["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="pvfz.", dir="/tmp")
            atexit.register(shutil.rmtree, env["XDG_RUNTIME_DIR"], True)   # its socket gone, it exits
            start_fast_server(env)
        for t in targets:
            rng = random.Random(f"{seed}:{t}")
            st = stats[t] = Stats()
            seen: set[str] = set()
            t0, c0 = time.monotonic(), _cpu()
            while True:
                spent = _cpu() - c0 if cpu_clock else time.monotonic() - t0
                if seconds_each is not None and spent >= seconds_each:
                    break
                if inputs_each is not None and st.inputs >= inputs_each:
                    break
                case = corpus.case(rng, t)
                res = run_case(case, timeout, env)
                st.inputs += 1
                st.runs += 1
                st.exits[res.rc] = st.exits.get(res.rc, 0) + 1
                if not res.ok:
                    sig = signature(res)
                    if sig not in seen:
                        seen.add(sig)
                        st.findings.append(res)
                        where = save(res, save_to) if save_to else None
                        log(f"FINDING {t}: {res.problem} ({case.how})" + (f" -> {where}" if where else ""))
            st.seconds, st.cpu = time.monotonic() - t0, _cpu() - c0
            log(f"{t}: {st.inputs} inputs, {st.runs} runs, {st.seconds / 60:.1f} min wall, "
                f"{st.cpu / 60:.1f} min CPU, {len(st.findings)} findings, "
                f"exit codes {dict(sorted(st.exits.items(), key=str))}")
    return stats
