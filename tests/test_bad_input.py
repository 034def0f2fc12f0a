"""Bad input: one clear gcc-style message with file:line:col and a caret,
the documented exit code, no traceback, no output file."""
from __future__ import annotations

import pytest

from conftest import TESTDATA, run_pvpass

CASES = [
    # file, exit code, location, message fragment
    ("broken_c.c", 2, "broken_c.c:6:9:", "before"),     # gcc's own error: it rejects the C
    ("bad_annotation.c", 2, "bad_annotation.c:6:56:", "malformed pvpass annotation: unexpected 'eax'"),
    ("unknown_op.c", 2, "unknown_op.c:6:31:", "unknown op 'irq.save_flags'"),
    ("bad_template.c", 2, "bad_template.c:6:24:", "cannot parse asm template: unexpected ')'"),
    ("bad_register.c", 2, "bad_register.c:5:58:", "'xmm0' is not a clobberable register"),
    ("missing_include.c", 2, "missing_include.c:1:10:", "no_such_header.h"),
]


@pytest.mark.parametrize("name,code,where,what", CASES)
def test_bad_source(tmp, name, code, where, what):
    out = tmp / "out.json"
    r = run_pvpass("scan", str(TESTDATA / "bad" / name), "-o", str(out))
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr
    first = r.stderr.splitlines()[0]
    assert where in first and what in first, r.stderr
    assert not out.exists()
    assert list(tmp.iterdir()) == []        # no temporary file left behind


def test_caret_points_into_the_string_literal():
    r = run_pvpass("scan", str(TESTDATA / "bad" / "bad_annotation.c"))
    lines = r.stderr.splitlines()
    src, caret = lines[1], lines[2]
    assert src.lstrip().startswith('asm volatile("# pvpass: site')
    assert src[caret.index("^"):].startswith("eax)")


def test_missing_file():
    r = run_pvpass("scan", "no/such/file.c")
    assert r.returncode == 2 and r.stderr.strip() == "pvpass: error: no/such/file.c: no such file"


def test_missing_preprocessor():
    r = run_pvpass("scan", str(TESTDATA / "pvpass/sites.c"), env={"PVPASS_CPP_CC": "no-such-cc"})
    assert r.returncode == 3
    assert "required tool 'no-such-cc' not found" in r.stderr


def test_usage_errors():
    assert run_pvpass("frobnicate").returncode == 2
    r = run_pvpass("scan")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = run_pvpass("scan", "--arch", "mips", str(TESTDATA / "pvpass/sites.c"))
    assert r.returncode == 2 and "unknown architecture 'mips'" in r.stderr


def test_outputs_that_are_no_regular_file(tmp):
    """`-o /dev/null` or `/dev/stdout` must not be renamed over (as root that
    replaced the device with a file): a FIFO stands in for the device, and
    its reader gets the output; a symlink to a file keeps pointing at it."""
    import os
    import threading
    src = str(TESTDATA / "pvpass" / "sites.c")
    flags = ["--", "-I", str(TESTDATA / "pvpass"), "-I", str(TESTDATA.parent / "pvpass" / "include")]
    fifo = tmp / "fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    r = run_pvpass("scan", src, "-o", str(fifo), *flags)
    reader.join(30)
    assert r.returncode == 0, r.stderr
    assert fifo.is_fifo() and got and b'"sites"' in got[0]
    assert [p.name for p in tmp.iterdir()] == ["fifo"]        # no temporary file left
    real = tmp / "real.json"
    real.write_text("old")
    link = tmp / "link.json"
    link.symlink_to(real)
    r = run_pvpass("scan", src, "-o", str(link), *flags)
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and b'"sites"' in real.read_bytes()
