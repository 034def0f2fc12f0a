"""Messages: one location per message, columns inside the line the user
wrote (not the macro-expanded one), plain words for plain mistakes."""
from __future__ import annotations

import json

import pytest

from conftest import TESTDATA, run_pvpass

OPS_H = TESTDATA / "pvpass/ops.h"

# Each source puts a problem inside a macro expansion, where the expanded
# line is far longer than the line in the file.
IN_MACROS = {
    "parse": ('#define M(x) ((x) + )\n'
              'unsigned long f(int n) { PV_VCALL0(cpu.io_delay); return M(n); }\n',
              "expected expression"),          # gcc's message: it rejects the C
    "annotation": ('#define BADANN(op) asm volatile("# pvpass: site " #op " clobbers(rax,, rcx)\\n\\t'
                   'call *%[pv_op]" : : [pv_op] "m" (pv_ops.op))\n'
                   'void k(void) { BADANN(cpu.io_delay); }\n',
                   "malformed pvpass annotation"),
    "register": ('#define BADREG(op) asm volatile(PVPASS_SITE(op, "xmm0") "call *%[pv_op]" : : '
                 '[pv_op] "m" (pv_ops.op))\n'
                 'void k(void) { BADREG(cpu.io_delay); }\n',
                 "not a clobberable register"),
}


@pytest.mark.parametrize("case", sorted(IN_MACROS))
def test_columns_stay_inside_the_source_line(tmp, case):
    body, what = IN_MACROS[case]
    src = tmp / f"{case}.c"
    src.write_text(f'#include "{OPS_H}"\n{body}')
    r = run_pvpass("lint", "--format", "json", str(src))
    assert r.returncode in (1, 2), r.stderr
    diags = json.loads(r.stdout)["diagnostics"]
    assert diags and any(what in d["message"] for d in diags), diags
    lines = src.read_text().splitlines()
    for d in diags:
        if d["file"] == str(src):
            assert 1 <= d["col"] <= len(lines[d["line"] - 1]), (d, lines[d["line"] - 1])
    # the caret of the text output stands under the line, on the macro's use
    r = run_pvpass("lint", str(src))
    first, line, caret = (r.stdout + r.stderr).splitlines()[:3]
    assert caret.index("^") < len(line)


def test_preprocessor_error_is_reported_once(tmp):
    src = tmp / "pe.c"
    src.write_text('#include "no_such_header.h"\nint x;\n')
    for cmd in (["lint"], ["scan"]):
        r = run_pvpass(*cmd, str(src))
        out = r.stdout + r.stderr
        assert r.returncode == 2, out
        first = out.splitlines()[0]
        assert first.startswith(f"{src}:1:10: error: ") and first.count(": error:") == 1, first
        assert "no_such_header.h" in first and "Traceback" not in out


def test_directory_given_as_source(tmp):
    d = tmp / "src.d"
    d.mkdir()
    for args in (["scan", str(d)], ["emit", str(d), "--format", "json"]):
        r = run_pvpass(*args)
        assert r.returncode == 2 and "is a directory" in r.stderr, r.stderr
        assert "no such file" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_layout_error_inside_a_kernel_macro(tmp):
    """The offsetof of a kernel-dialect site names a member that does not
    exist: the column is the member's in the source line, not in the
    expanded PVOP_VCALL0."""
    import shutil
    shutil.copytree(TESTDATA / "kernel", tmp / "kernel")
    src = tmp / "kernel/k61.c"
    src.write_text(src.read_text().replace("PVOP_VCALL0(cpu.io_delay);", "PVOP_VCALL0(cpu.nosuch);", 1))
    r = run_pvpass("scan", str(src), "--arch", "x86_64")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    first, line, caret = r.stderr.splitlines()[:3]
    assert "has no member 'nosuch'" in first
    col = int(first.split(":")[2])
    assert line[1:][col - 1:].startswith("nosuch") and caret.index("^") == col
