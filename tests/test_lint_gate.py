"""Lint's object gate (pvpass/lint/gate.py): under -p, a TU whose
up-to-date object shows nothing to lint is decided from it, and every TU
that holds a finding gcc compiled, or one the object cannot show, is
linted in full. Real gcc builds of small kernel-style TUs (testdata/kernel/
pv61.h: the 6.1 site macros, which push `.parainstructions` and name no
pvpass text), each compiled with -MD as make would."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from pvpass.lint import gate, runner

from conftest import TESTDATA, can_build_m32, run_pvpass

X64 = ("--arch", "x86_64")

# pv61.h with %r11 dropped from the extra clobbers: every C-convention site
# that a TU uses is then a PV002 error.
def _header(tmp) -> None:
    h = (TESTDATA / "kernel/pv61.h").read_text()
    for macro in ("EXTRA_CLOBBERS\t ", "VEXTRA_CLOBBERS\t "):
        h = h.replace(f'#define {macro}, "rax", "r8", "r9", "r10", "r11"',
                      f'#define {macro}, "rax", "r8", "r9", "r10"')
        h = h.replace(f'#define {macro}, "r8", "r9", "r10", "r11"', f'#define {macro}, "r8", "r9", "r10"')
    (tmp / "pv61.h").write_text(h)
    # a paravirt.h of static inlines: the sites every TU holds, emitted only where used,
    # and a plain call through the ops object (the kernel's __set_fixmap)
    (tmp / "irqs.h").write_text('#ifndef IRQS_H\n#define IRQS_H\n#include "pv61.h"\n'
                                'static inline void io_delay(void) { PVOP_VCALL0(cpu.io_delay); }\n'
                                'static inline void raw_delay(void) { pv_ops.cpu.io_delay(); }\n#endif\n')


QUIET = '#include "irqs.h"\nint quiet(int x) { return x * 3 + 1; }\n'

TUS = {
    "a_quiet.c": QUIET,
    "b_quiet.c": QUIET.replace("quiet", "quiet_b"),
    # PV002 in code gcc emits: the object holds .parainstructions and pv_ops
    "site.c": '#include "irqs.h"\nvoid f(void) { io_delay(); }\n',
    # PV001 in a header inline the TU calls: its object loads pv_ops
    "plain.c": '#include "irqs.h"\nvoid g(void) { raw_delay(); }\n',
    # PV006: a backend that leaves ops unset; its object names no ops object
    "backend.c": '#include "irqs.h"\nstatic void my_delay(void) { }\n'
                 'const struct pv_cpu_ops my_cpu_ops = { .io_delay = my_delay };\n',
    # PV009: the main file's text
    "suppress.c": '#include "irqs.h"\n/* pvpass-lint: allow PV001 nothing here */\nint s(void) { return 1; }\n',
}


def _build(tmp, tus: dict[str, str], md=True) -> None:
    _header(tmp)
    db = []
    for name, text in tus.items():
        (tmp / name).write_text(text)
        args = ["gcc", "-O2", *(["-MD"] if md else []), "-c", name, "-o", name[:-2] + ".o"]
        subprocess.run(args, cwd=tmp, check=True)
        db.append({"directory": str(tmp), "file": name, "arguments": args})
    (tmp / "compile_commands.json").write_text(json.dumps(db))


def _lint(tmp, *extra):
    r = run_pvpass("lint", *X64, "-p", str(tmp), "--format", "json", *extra, env={"PVPASS_CACHE": "0"})
    assert "Traceback" not in r.stderr, r.stderr
    return r, sorted({(os.path.basename(d["file"]), d["rule"], d["level"], tuple(d.get("units", ())))
                      for d in json.loads(r.stdout)["diagnostics"]})


def _summary(tmp, *extra) -> str:
    r = run_pvpass("lint", *X64, "-p", str(tmp), *extra, env={"PVPASS_CACHE": "0"})
    assert "Traceback" not in r.stderr, r.stderr
    return r.stderr.splitlines()[-1]


def _decided(tmp) -> list[str]:
    """The TUs the gate decided from their objects (runner.run in-process)."""
    return sorted(os.path.basename(r.path) for r in runner.run([], "x86_64", [], 1, str(tmp)) if r.gated)


def _units(tmp, *names):
    return tuple(str(tmp / n) for n in names)


def test_each_finding_is_linted_in_full_and_the_quiet_tus_are_decided(tmp):
    _build(tmp, TUS)
    r, got = _lint(tmp)
    want = [("backend.c", "PV006", "warning", ()),
            ("irqs.h", "PV001", "warning", _units(tmp, "plain.c")),
            ("irqs.h", "PV002", "error", _units(tmp, "site.c")),
            ("suppress.c", "PV009", "warning", ())]
    assert r.returncode == 1 and got == want
    # only the two quiet TUs (site.c and suppress.c, linted in full, read the headers)
    assert _decided(tmp) == ["a_quiet.c", "b_quiet.c"]
    assert "6 files checked (2 decided from their objects), 1 error" in _summary(tmp)
    r, full = _lint(tmp, "--no-gate")
    assert full == want
    assert "6 files checked, 1 error" in _summary(tmp, "--no-gate")


def test_the_names_come_from_a_scan_even_when_every_object_is_quiet(tmp):
    """No object loads pv_ops: the first TU that reads the site header is
    scanned, and its names (pv_ops, struct pv_cpu_ops) rule out backend.c."""
    _build(tmp, {n: TUS[n] for n in ("a_quiet.c", "b_quiet.c", "backend.c")})
    r, got = _lint(tmp)
    assert got == [("backend.c", "PV006", "warning", ())]
    assert _decided(tmp) == ["b_quiet.c"]


def test_a_stale_object_is_no_witness(tmp):
    """The objects were built from quiet text; the sources (or a header
    they read) have changed since: each TU is linted in full."""
    (tmp / "late.h").write_text('#include "irqs.h"\n#define LATE() do { } while (0)\n')
    _build(tmp, {"a_quiet.c": QUIET, "late.c": '#include "late.h"\nvoid l(void) { LATE(); }\n',
                 "now.c": QUIET.replace("quiet", "now")})
    assert _decided(tmp) == ["late.c", "now.c"]
    later = (tmp / "late.o").stat().st_mtime_ns + 10 ** 9
    (tmp / "late.h").write_text('#include "irqs.h"\n#define LATE() pv_ops.cpu.io_delay()\n')
    (tmp / "now.c").write_text('#include "irqs.h"\nvoid now(void) { io_delay(); }\n')
    for f in ("late.h", "now.c"):
        os.utime(tmp / f, ns=(later, later))
    r, got = _lint(tmp)
    assert got == [("irqs.h", "PV002", "error", _units(tmp, "now.c")), ("late.c", "PV001", "warning", ())]
    assert _decided(tmp) == ["a_quiet.c"]


def test_no_object_or_no_dependency_file_is_linted_in_full(tmp):
    _build(tmp, {"a_quiet.c": QUIET, "site.c": TUS["site.c"]}, md=False)
    r, got = _lint(tmp)
    assert got == [("irqs.h", "PV002", "error", _units(tmp, "site.c"))]
    assert _decided(tmp) == []                     # no -MD: the headers are unknown
    _build(tmp, {"a_quiet.c": QUIET, "b_quiet.c": QUIET.replace("quiet", "qb")})
    assert _decided(tmp) == ["b_quiet.c"]
    (tmp / "b_quiet.d").unlink()                   # named by -MD, and gone
    assert _decided(tmp) == ["a_quiet.c"]
    _build(tmp, {"a_quiet.c": QUIET, "b_quiet.c": QUIET.replace("quiet", "qb"), "site.c": TUS["site.c"]})
    (tmp / "site.o").unlink()
    r, got = _lint(tmp)
    assert got == [("irqs.h", "PV002", "error", _units(tmp, "site.c"))]
    assert _decided(tmp) == ["a_quiet.c", "b_quiet.c"]


def test_code_gcc_does_not_emit_is_the_one_difference(tmp):
    """A site in a branch gcc removes is no site of the object: the gate
    does not report it; the full lint, which reads text, does."""
    _build(tmp, {"a_quiet.c": QUIET, "dead.c": '#include "irqs.h"\nvoid d(void) { if (0) io_delay(); }\n'})
    assert _lint(tmp)[1] == []
    assert _lint(tmp, "--no-gate")[1] == [("irqs.h", "PV002", "error", _units(tmp, "dead.c"))]


@pytest.mark.parametrize("text", ['#include "pvpass.h"\n', "#ifdef __PVPASS__\n#endif\n"])
def test_pvpass_text_in_a_header_needs_the_full_lint(tmp, text):
    (tmp / "p.h").write_text(text.replace('#include "pvpass.h"', "/* see pvpass.h */"))
    _build(tmp, {"a_quiet.c": QUIET, "b_quiet.c": '#include "p.h"\n' + QUIET.replace("quiet", "qb")})
    assert _decided(tmp) == ["a_quiet.c"]


def test_an_object_that_is_no_relocatable_of_the_arch_is_no_witness(tmp):
    _build(tmp, {"a_quiet.c": QUIET, "b_quiet.c": QUIET.replace("quiet", "qb")})
    assert _decided(tmp) == ["b_quiet.c"]
    for what in (b"not an object", None):
        if what is None and not can_build_m32():
            continue
        if what is None:       # an i386 object, no older than the source
            subprocess.run(["gcc", "-m32", "-O2", "-c", "b_quiet.c", "-o", "b_quiet.o"], cwd=tmp, check=True)
        else:
            (tmp / "b_quiet.o").write_bytes(what)
        later = (tmp / "b_quiet.d").stat().st_mtime_ns + 10 ** 9
        os.utime(tmp / "b_quiet.o", ns=(later, later))
        assert _decided(tmp) == ["a_quiet.c"]


def test_dependency_files_make_and_kbuild(tmp):
    (tmp / "x.d").write_text("x.o: x.c /usr/include/stdio.h \\\n  a\\ b.h \\\n  c$$.h\nx.c:\n")
    assert gate.dependencies(str(tmp / "x.d")) == ["x.c", "/usr/include/stdio.h", "a b.h", "c$.h"]
    (tmp / ".y.o.cmd").write_text("cmd_y.o := gcc -c y.c\n\nsource_y.o := /src/y.c\n\ndeps_y.o := \\\n"
                                  "  include/linux/kconfig.h \\\n    $(wildcard include/config/FOO) \\\n"
                                  "\ny.o: $(deps_y.o)\n\n$(deps_y.o):\n")
    assert gate.dependencies(str(tmp / ".y.o.d")) == ["/src/y.c", "include/linux/kconfig.h",
                                                      "?include/config/FOO"]
    assert gate.dependencies(str(tmp / "none.d")) is None
    (tmp / ".z.o.cmd").write_text("cmd_z.o := gcc -c z.c\n\nsource_z.o := /src/z.c\n")
    assert gate.dependencies(str(tmp / ".z.o.d")) is None          # no deps_ list: headers unknown
    assert gate.depfile_of(["gcc", "-Wp,-MMD,k/.f.o.d", "-c", "f.c"], "/b/k/f.o", "/b") == "/b/k/.f.o.d"
    assert gate.depfile_of(["gcc", "-MD", "-MF", "dep/f.d", "-c", "f.c"], "/b/f.o", "/b") == "/b/dep/f.d"
    assert gate.depfile_of(["gcc", "-MMD", "-c", "f.c", "-o", "o/f.o"], "/b/o/f.o", "/b") == "/b/o/f.d"
    assert gate.depfile_of(["gcc", "-c", "f.c"], "/b/f.o", "/b") is None
    assert gate.depfile_of(["gcc", "-MF", "f.d", "-c", "f.c"], "/b/f.o", "/b") is None


def test_a_header_that_names_an_ops_struct_is_read_by_one_full_lint(tmp):
    """A backend initializer in a header that only quiet TUs read: its
    first reader is linted in full and reports it; the others are decided
    from their objects, so the finding's TUs name that one (the full lint
    names them all)."""
    (tmp / "backends.h").write_text('#include "irqs.h"\nstatic void hdr_delay(void) { }\n'
                                    'static const struct pv_cpu_ops hdr_ops = { .io_delay = hdr_delay };\n')
    _build(tmp, {"a_quiet.c": QUIET, "b.c": '#include "backends.h"\n' + QUIET.replace("quiet", "qb"),
                 "c.c": '#include "backends.h"\n' + QUIET.replace("quiet", "qc")})
    assert _lint(tmp)[1] == [("backends.h", "PV006", "warning", _units(tmp, "b.c"))]
    assert _lint(tmp, "--no-gate")[1] == [("backends.h", "PV006", "warning", _units(tmp, "b.c", "c.c"))]
    assert _decided(tmp) == ["c.c"]
