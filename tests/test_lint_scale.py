"""Lint over many translation units: findings only where a TU can reach
them, a header's finding once with the TUs it came from, a progress line
on a terminal only, a summary by rule."""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys

from conftest import INCLUDE, ROOT, TESTDATA, run_pvpass

X64 = ("--arch", "x86_64", "--", "-I", str(INCLUDE))

HEADER = f'''#include "{TESTDATA / "lint/lintops.h"}"
static inline unsigned long used_delay(void)
{{
	return PV_CALL0(unsigned long, io_delay);
}}
static inline unsigned long helper(void) {{ return used_delay() + 1; }}
static inline unsigned long unused_delay(void)
{{
	pv_ops.io_delay();
	return PV_CALL0(unsigned long, io_delay);
}}
'''


def tree(tmp):
    (tmp / "h.h").write_text(HEADER)
    (tmp / "a.c").write_text('#include "h.h"\nunsigned long a(void) { return used_delay(); }\n')
    (tmp / "b.c").write_text('#include "h.h"\nint b(void) { return 0; }\n')
    (tmp / "c.c").write_text('#include "h.h"\nunsigned long c(void) { return helper(); }\n')
    return [str(tmp / n) for n in ("a.c", "b.c", "c.c")]


def test_only_reachable_findings_once_per_header(tmp):
    files = tree(tmp)
    r = run_pvpass("lint", "--format", "json", *files, *X64)
    diags = json.loads(r.stdout)["diagnostics"]
    # PV007 in used_delay (reached from a, and through helper from c); nothing
    # from unused_delay, which no TU calls
    assert [(d["line"], d["rule"]) for d in diags] == [(4, "PV007")], diags
    assert diags[0]["file"] == str(tmp / "h.h") and diags[0]["units"] == [files[0], files[2]]
    assert r.returncode == 1
    r = run_pvpass("lint", *files, *X64)
    assert r.stderr.count("[PV007]") == 1, r.stderr
    assert f"{files[0]}: note: found in 2 translation units: {files[0]}, {files[2]}" in r.stderr
    assert r.stderr.splitlines()[-1] == "pvpass lint: 3 files checked, 1 error, 0 warnings (PV007 1)"
    r = run_pvpass("lint", "--format", "sarif", *files, *X64)
    res = json.loads(r.stdout)["runs"][0]["results"]
    assert len(res) == 1 and res[0]["properties"]["translationUnits"] == [files[0], files[2]]


def test_an_unused_function_is_linted_where_it_is_used(tmp):
    tree(tmp)
    (tmp / "d.c").write_text('#include "h.h"\nunsigned long (*p)(void) = unused_delay;\n')
    r = run_pvpass("lint", "--format", "json", str(tmp / "d.c"), *X64)
    got = sorted((d["line"], d["rule"]) for d in json.loads(r.stdout)["diagnostics"])
    assert got == [(9, "PV001"), (10, "PV007")], got


def _on_a_terminal(args) -> tuple[str, str]:
    """(stdout, what the terminal on stderr showed) of `pvpass lint ARGS`."""
    master, slave = os.openpty()
    p = subprocess.Popen([sys.executable, "-m", "pvpass", "lint", *args], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    stdout = p.communicate()[0]
    os.close(master)
    return stdout.decode(), out.decode(errors="replace")


def test_progress_only_on_a_terminal(tmp):
    files = tree(tmp)
    r = run_pvpass("lint", *files, *X64)
    assert "\r" not in r.stderr and "[3/3]" not in r.stderr
    _, text = _on_a_terminal([*files, *X64])
    assert re.search(r"\[3/3\] \d+\.\d TU/s, ETA 0:00", text) and "\x1b[K" in text and "[PV007]" in text
    for fmt in ("json", "sarif"):           # the report stays clean of it
        report, text = _on_a_terminal(["--format", fmt, *files, *X64])
        assert "[3/3]" in text and "TU/s" not in report and json.loads(report)


def test_progress_line_counts_rate_and_time_left():
    from pvpass.lint.runner import _progress, FileResult

    class Tty(io.StringIO):
        def isatty(self):
            return True
    ticks = iter([0.0, 2.0, 4.0, 6.0])
    out = Tty()
    _progress((FileResult(f"f{i}.c") for i in range(3)), 3, out, clock=lambda: next(ticks))
    assert out.getvalue().split("\r\033[K")[1:] == [
        "pvpass lint: [1/3] 0.5 TU/s, ETA 0:04 f0.c", "pvpass lint: [2/3] 0.5 TU/s, ETA 0:02 f1.c",
        "pvpass lint: [3/3] 0.5 TU/s, ETA 0:00 f2.c", ""]


def test_a_member_name_is_not_a_call(tmp):
    """`.read_cr2 = f` names a member, not the static function read_cr2."""
    src = tmp / "m.c"
    src.write_text(f'#include "{TESTDATA / "lint/lintops.h"}"\n'
                   'static inline unsigned long read_cr2(void) { return PV_CALL0(unsigned long, io_delay); }\n'
                   'unsigned long f(void);\n'
                   'struct lint_ops my_ops = { .read_cr2 = f };\n'
                   'unsigned long g(struct lint_ops *o) { return o->read_cr2(); }\n')
    r = run_pvpass("lint", "--format", "json", str(src), *X64)
    rules = [d["rule"] for d in json.loads(r.stdout)["diagnostics"]]
    assert "PV007" not in rules and r.returncode == 0, r.stdout      # (my_ops: PV006 warnings)
    src.write_text(src.read_text() + "unsigned long h(void) { return read_cr2(); }\n")
    r = run_pvpass("lint", "--format", "json", str(src), *X64)
    assert [d["rule"] for d in json.loads(r.stdout)["diagnostics"]].count("PV007") == 1
