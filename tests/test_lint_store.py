"""Lint's store (pvpass/lint/store.py): a TU's findings kept across runs,
keyed on its preprocessed text, the flags, the compiler and the arch. A hit
is what linting afresh gives; a changed header (same size and mtime) or
other flags never hit another text's entry; a damaged or foreign entry is a
miss."""
from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest

from pvpass.lint import runner, store

from conftest import INCLUDE, TESTDATA, run_pvpass

SITE = '''#include "lintops.h"
#ifdef NARROW
#define CLOB "rax     "
#else
#define CLOB "rax, rdx"
#endif
unsigned long cr2(void)
{
	unsigned long v;
	asm volatile(PVPASS_SITE(read_cr2, CLOB) PVPASS_CALL
		     : "=a" (v) : [pv_op] "m" (pv_ops.read_cr2) : "memory", "cc");
	return v;
}
'''


@pytest.fixture
def tu(tmp, monkeypatch):
    """t.c including h.h (one site, PV002 unless NARROW), a fresh store
    under tmp, and a count of the TUs linted afresh."""
    shutil.copy(TESTDATA / "lint/lintops.h", tmp / "lintops.h")
    (tmp / "h.h").write_text(SITE)
    (tmp / "t.c").write_text('#include "h.h"\n')
    monkeypatch.setenv("PVPASS_CACHE_DIR", str(tmp / "cache"))
    monkeypatch.delenv("PVPASS_CACHE", raising=False)
    monkeypatch.setattr(store, "_store", None)
    fresh = []
    real = runner._lint_text

    def counted(res, *a):
        fresh.append(res.path)
        return real(res, *a)
    monkeypatch.setattr(runner, "_lint_text", counted)
    return tmp, fresh


def lint(tmp, *flags: str):
    job = (str(tmp / "t.c"), "x86_64", ("-I", str(INCLUDE), *flags), (), None, None, None, None)
    return [(d.loc.file, d.loc.line, d.loc.col, d.rule, d.message, d.units) for d in runner.lint_file(job).diagnostics]


def entries(tmp):
    return sorted(p for p in (tmp / "cache").glob("lint-*/*/*"))


def test_a_stored_result_is_what_linting_afresh_gives(tu):
    tmp, fresh = tu
    first = lint(tmp)
    assert [d[3] for d in first] == ["PV002"] and len(fresh) == 1 and len(entries(tmp)) == 1
    assert lint(tmp) == first and len(fresh) == 1          # the second run read the store
    args = ("lint", "--arch", "x86_64", "--format", "json", str(tmp / "t.c"), "--", "-I", str(INCLUDE))
    env = {"PVPASS_CACHE_DIR": str(tmp / "cache")}
    stored = run_pvpass(*args, env=env)
    assert stored.stdout == run_pvpass(*args, env={"PVPASS_CACHE": "0"}).stdout and stored.returncode == 1
    assert json.loads(stored.stdout)["diagnostics"][0]["rule"] == "PV002"
    assert "lint entries    1" in run_pvpass("cache", "--stats", env=env).stdout
    assert run_pvpass("cache", "--clear", env=env).returncode == 0 and entries(tmp) == []


def test_a_header_changed_under_the_same_size_and_mtime_is_linted_again(tu):
    tmp, fresh = tu
    assert [d[3] for d in lint(tmp)] == ["PV002"]
    h = tmp / "h.h"
    st = h.stat()
    h.write_text(SITE.replace('"rax, rdx"', '"rax     "'))
    os.utime(h, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert h.stat().st_size == st.st_size and h.stat().st_mtime_ns == st.st_mtime_ns
    assert lint(tmp) == [] and len(fresh) == 2


def test_a_source_line_changed_under_the_same_text_is_linted_again(tu):
    """Columns are moved along the source lines (gcc -E does not keep them
    all): a file read for them that changed is a miss, text unchanged."""
    tmp, fresh = tu
    first = lint(tmp)
    h = tmp / "h.h"
    h.write_text(h.read_text().replace("unsigned long v;", "unsigned long v; /* another comment */"))
    assert lint(tmp) == first and len(fresh) == 2


def test_other_flags_never_share_an_entry(tu):
    tmp, fresh = tu
    assert [d[3] for d in lint(tmp)] == ["PV002"]
    assert lint(tmp, "-DNARROW") == [] and len(fresh) == 2       # the -D changes the inline
    assert [d[3] for d in lint(tmp)] == ["PV002"] and len(fresh) == 2
    s = store.lint_store()
    text = "int x;\n"
    keys = {s.key(text, "t.c", "x86_64", ("-m64",), "gcc", ()), s.key(text, "t.c", "i386", ("-m32",), "gcc", ()),
            s.key(text, "t.c", "x86_64", ("-m64", "-DA"), "gcc", ()), s.key(text, "t.c", "x86_64", ("-m64",), "gcc", ("x",)),
            s.key(text, "u.c", "x86_64", ("-m64",), "gcc", ()), s.key(text + " ", "t.c", "x86_64", ("-m64",), "gcc", ())}
    assert len(keys) == 6


def _valid_but(entry: bytes, body: bytes) -> bytes:
    head = entry[:entry.index(b"\n") + 1]
    return head + hashlib.sha256(body).digest() + body


DAMAGE = {
    "truncated": lambda e, other: e[:-7],
    "a flipped byte": lambda e, other: e.replace(b"PV002", b"PV003"),
    "another key's entry": lambda e, other: other,
    "the wrong shape": lambda e, other: _valid_but(e, b'{"files": {}, "diagnostics": [{"loc": [1, 2, 3]}]}'),
    "a note that is no pair": lambda e, other: _valid_but(e, e[e.index(b"\n") + 33:].replace(
        b'"notes":[]', b'"notes":[1]')),
    "not JSON": lambda e, other: _valid_but(e, b"\x80\x04K\x01."),
}


@pytest.mark.parametrize("how", sorted(DAMAGE) + ["a FIFO", "a symlink"])
def test_a_damaged_or_foreign_entry_is_a_miss(tu, how):
    tmp, fresh = tu
    want = lint(tmp, "-DNARROW")
    (entry_other,) = entries(tmp)
    other = entry_other.read_bytes()
    want = lint(tmp)
    (entry,) = set(entries(tmp)) - {entry_other}
    good = entry.read_bytes()
    entry.unlink()
    if how == "a FIFO":
        os.mkfifo(entry)
    elif how == "a symlink":
        (tmp / "elsewhere").write_bytes(good)
        entry.symlink_to(tmp / "elsewhere")
    else:
        entry.write_bytes(DAMAGE[how](good, other))
    n = len(fresh)
    assert lint(tmp) == want and len(fresh) == n + 1
    assert entry.is_file() and not entry.is_symlink() and entry.read_bytes() == good   # stored again
    assert lint(tmp) == want and len(fresh) == n + 1
