"""The caches of the build path: the result cache (direct mode: a hit needs
neither the preprocessor nor the front end) and the parse cache (data only,
checked). Anything wrong in a cache directory is a miss, never a traceback
and never a wrong object."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pvpass import buildcache, parsecache

from conftest import INCLUDE, TESTDATA, run_pvpass

SRC = TESTDATA / "pvpass/sites.c"


@pytest.fixture
def logcc(tmp) -> Path:
    """A real gcc behind a script that logs each preprocessor run of a
    source (not the `-dM -E` of empty input that reads the code model)."""
    p = tmp / "gcc-log"
    p.write_text(f'#!/bin/sh\ncase " $* " in *" -dM "*) ;; *" -E "*) echo E >> {tmp}/cpp.log;; esac\n'
                 f'exec gcc "$@"\n')
    p.chmod(0o755)
    return p


def cc(tmp, compiler, *args, env=None, src=SRC, out="s.o"):
    e = {"PVPASS_CACHE_DIR": str(tmp / "cache")}
    e.update(env or {})
    return run_pvpass("cc", "--", str(compiler), "-O2", "-I", str(INCLUDE), "-I", str(tmp),
                      *args, "-c", str(src), "-o", str(tmp / out), env=e)


def cpp_runs(tmp) -> int:
    log = tmp / "cpp.log"
    return len(log.read_text().split()) if log.exists() else 0


def reference(tmp) -> bytes:
    """gcc + the full analysis (`pvpass link`)."""
    assert subprocess.run(["gcc", "-O2", "-I", str(INCLUDE), "-c", str(SRC), "-o", str(tmp / "g.o")]).returncode == 0
    r = run_pvpass("link", str(tmp / "g.o"), "--source", str(SRC), "-o", str(tmp / "ref.o"),
                   "--", "-O2", "-I", str(INCLUDE), env={"PVPASS_CACHE": "0"})
    assert r.returncode == 0, r.stderr
    return (tmp / "ref.o").read_bytes()


def result_entries(tmp) -> list[Path]:
    return [p for p in (tmp / "cache").glob("results-*/??/*") if not p.name.startswith(".")]


def test_hit_needs_no_preprocessing(tmp, logcc):
    want = reference(tmp)
    assert cc(tmp, logcc).returncode == 0 and cpp_runs(tmp) == 1
    assert (tmp / "s.o").read_bytes() == want
    r = cc(tmp, logcc, out="t.o")
    assert r.returncode == 0, r.stderr
    assert cpp_runs(tmp) == 1 and (tmp / "t.o").read_bytes() == want
    st = run_pvpass("cache", "--stats", env={"PVPASS_CACHE_DIR": str(tmp / "cache")})
    assert "result entries  1" in st.stdout and "hits            1" in st.stdout


def test_headers_decide(tmp, logcc):
    """A header's contents changing is a miss; its mtime alone is not."""
    src = tmp / "h.c"
    hdr = tmp / "extra.h"
    hdr.write_text("#define EXTRA 1\n")
    src.write_text(f'#include "extra.h"\n{SRC.read_text()}'.replace('#include "ops.h"',
                                                                      f'#include "{SRC.parent}/ops.h"'))
    assert cc(tmp, logcc, src=src).returncode == 0 and cpp_runs(tmp) == 1
    os.utime(hdr, ns=(1, 1))
    assert cc(tmp, logcc, src=src).returncode == 0 and cpp_runs(tmp) == 1
    hdr.write_text("#define EXTRA 2\n")
    assert cc(tmp, logcc, src=src).returncode == 0 and cpp_runs(tmp) == 2
    assert cc(tmp, logcc, "-DMORE", src=src).returncode == 0 and cpp_runs(tmp) == 3


def _signed(e) -> bytes:
    """A crafted entry with a checksum that fits: only shape checks can tell."""
    if isinstance(e, dict):
        e = dict(e, sum=buildcache._checksum(e))
    return json.dumps(e).encode()


def _corruptions(entry: dict) -> list:
    def variant(edit):
        e = json.loads(json.dumps(entry))
        edit(e)
        return e
    sec0 = lambda e: e["value"]["sections"][0]
    return [b"", b"\xff\xfe garbage", json.dumps(entry).encode()[:-7], b"[" * 100000 + b"]" * 100000,
            # a flipped byte inside the recorded section bytes: valid JSON, caught by the checksum
            json.dumps(variant(lambda e: sec0(e).update(data="0" + sec0(e)["data"][1:]
                                                        if sec0(e)["data"][0] != "0" else "1" + sec0(e)["data"][1:]))).encode(),
            _signed([]), _signed(42), _signed(None), _signed({"format": 1}),
            _signed(variant(lambda e: e.update(headers="x"))),
            _signed(variant(lambda e: e.update(headers=[[1, 2, 3, 4]]))),
            _signed(variant(lambda e: e.update(value={"sections": 5}))),
            _signed(variant(lambda e: e.update(value=[]))),
            _signed(variant(lambda e: sec0(e).update(data="zz"))),
            _signed(variant(lambda e: sec0(e).update(relocs=[[1, 2]]))),
            _signed(variant(lambda e: sec0(e)["relocs"][0].__setitem__(2, ".no.such.section"))),
            _signed(variant(lambda e: e.update(object="0" * 64))),
            _signed(variant(lambda e: e.update(key="f" * 64)))]


def test_corrupt_result_entries_are_misses(tmp):
    want = reference(tmp)
    assert cc(tmp, "gcc").returncode == 0
    [path] = result_entries(tmp)
    entry = json.loads(path.read_text())
    assert entry["value"]["sections"]
    for i, data in enumerate(_corruptions(entry)):
        path.write_bytes(data)
        r = cc(tmp, "gcc", out=f"c{i}.o")
        assert r.returncode == 0 and "Traceback" not in r.stderr, (i, r.stderr)
        assert (tmp / f"c{i}.o").read_bytes() == want, i


def test_concurrent_compiles_share_the_cache(tmp):
    """Like make -j: one empty cache, eight compiles of the same source at
    once, then eight hits; every object right, no temporary file left."""
    want = reference(tmp)

    def one(i):
        return cc(tmp, "gcc", out=f"j{i}.o")
    for _ in range(2):
        with ThreadPoolExecutor(8) as ex:
            rs = list(ex.map(one, range(8)))
        assert all(r.returncode == 0 for r in rs), [r.stderr for r in rs]
        assert all((tmp / f"j{i}.o").read_bytes() == want for i in range(8))
    leftovers = [p for p in (tmp / "cache").rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers and len(result_entries(tmp)) == 1


def test_eviction_keeps_the_recently_used(tmp):
    root = tmp / "c"
    for i in range(10):
        p = root / "results-1" / "ab" / f"e{i}"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x" * 1000)
        os.utime(p, (1000 + i, 1000 + i))
    assert buildcache.evict(root, 20_000) == 0
    assert buildcache.evict(root, 5_000) == 6          # down to 80% of the limit
    assert sorted(p.name for p in root.rglob("e*")) == ["e6", "e7", "e8", "e9"]


def test_size_limit_is_enforced_by_stores(tmp, monkeypatch):
    """One store in 256 (by key) checks the size: with a tiny limit the cache
    shrinks back under it."""
    c = buildcache.ResultCache(tmp / "c")
    for i in range(1, 300):
        c.put(f"{i:064x}", [], "0" * 64, {"sections": [], "symbols": []})
    size = lambda: sum(p.stat().st_size for p in (tmp / "c").rglob("*") if p.is_file())
    assert size() > 10_000                  # the default limit: nothing evicted
    monkeypatch.setenv("PVPASS_CACHE_SIZE", "10k")
    c.put("ab01" + "0" * 60, [], "0" * 64, None)
    assert size() > 10_000                  # not a checking store
    c.put("ab00" + "0" * 60, [], "0" * 64, None)
    assert size() <= 10_240


def test_cache_off_and_cleared(tmp):
    r = cc(tmp, "gcc", env={"PVPASS_CACHE": "0"})
    assert r.returncode == 0 and not (tmp / "cache").exists()
    assert "off" in run_pvpass("cache", "--stats", env={"PVPASS_CACHE": "0"}).stdout
    assert cc(tmp, "gcc").returncode == 0 and result_entries(tmp)
    env = {"PVPASS_CACHE_DIR": str(tmp / "cache")}
    assert run_pvpass("cache", "--clear", env=env).returncode == 0
    assert not result_entries(tmp) and not list((tmp / "cache").glob("chunks-*"))
    r = run_pvpass("cache", env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr


# --- the parse cache ---------------------------------------------------------

def scan_json(tmp, env=None) -> str:
    e = {"PVPASS_CACHE_DIR": str(tmp / "cache")}
    e.update(env or {})
    r = run_pvpass("scan", str(SRC), "--", "-I", str(INCLUDE), env=e)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    return r.stdout


def chunk_entries(tmp) -> list[Path]:
    return sorted(p for p in (tmp / "cache").glob("chunks-*/??/*") if not p.name.startswith("."))


def signed(key: str, value) -> bytes:
    """A crafted parse-cache entry with a header and digest that fit."""
    body = pickle.dumps(value)
    return buildcache.seal(parsecache.FORMAT, key, body)


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_parse_cache_entries_are_checked(tmp):
    want = scan_json(tmp, {"PVPASS_CACHE": "0"})
    assert scan_json(tmp) == want
    entries = chunk_entries(tmp)
    assert entries
    good = {p: p.read_bytes() for p in entries}
    pwned = tmp / "pwned"
    from pycparser import c_ast
    for p in entries:
        key = p.name
        ast, index = parsecache.loads(good[p], key)
        wrong = [b"", good[p][:len(good[p]) // 2], pickle.dumps(42), pickle.dumps(_Evil(pwned)),
                 signed(key, 42), signed(key, (1, 2)), signed(key, ("ast", {})),
                 parsecache.dumps("0" * 64, ast, index),
                 parsecache.dumps(key, c_ast.FileAST(["x"]), index),
                 parsecache.dumps(key, c_ast.FileAST([c_ast.ID(5)]), index),
                 parsecache.dumps(key, ast, {("f", "1"): 2}),
                 signed(key, (_Evil(pwned), index)), signed(key, _Evil(pwned))]
        for data in wrong:
            assert parsecache.loads(data, key) is None
        for i in range(0, len(good[p]), max(1, len(good[p]) // 40)):
            flipped = bytearray(good[p])
            flipped[i] ^= 0xFF
            assert parsecache.loads(bytes(flipped), key) is None
    for make in (lambda k: pickle.dumps(_Evil(pwned)), lambda k: signed(k, _Evil(pwned)),
                 lambda k: signed(k, (_Evil(pwned), {}))):
        for p in entries:
            p.write_bytes(make(p.name))
        assert scan_json(tmp) == want
    assert not pwned.exists()
    for p in entries:        # each entry replaced by another chunk's: its key says no
        p.write_bytes(good[entries[0]] if p != entries[0] else good[entries[-1]])
    assert scan_json(tmp) == want


def test_wrong_shaped_entries_never_change_the_result(tmp):
    """Wrong entries of every kind at every key: the same scan. (A
    well-formed entry that holds another chunk's AST under this chunk's key
    takes crafting, not corruption; it is not detected.)"""
    want = scan_json(tmp, {"PVPASS_CACHE": "0"})
    scan_json(tmp)
    entries = chunk_entries(tmp)
    from pycparser import c_ast
    for make in (lambda k: parsecache.dumps(k, c_ast.FileAST([c_ast.ID(5)]), {}),
                 lambda k: parsecache.dumps(k, c_ast.FileAST([c_ast.Constant("int", ["1"])]), {}),
                 lambda k: parsecache.dumps(k, c_ast.FileAST(None), {}),
                 lambda k: parsecache.dumps(k, c_ast.FileAST([]), {(1, 2): 3}),
                 lambda k: signed(k, ([], {})),
                 lambda k: pickle.dumps({"x": 1}),
                 lambda k: b"\x80\x05\x95" + os.urandom(64)):
        for p in entries:
            p.write_bytes(make(p.name))
        assert scan_json(tmp) == want


def test_deep_ast_is_not_cached(tmp, monkeypatch):
    """A 2,000-deep nested struct cannot be pickled within Python's
    recursion limit: it is parsed every time instead of crashing."""
    from pycparser import c_ast
    monkeypatch.setenv("PVPASS_CACHE_DIR", str(tmp / "cache"))
    monkeypatch.setattr(parsecache, "_cache", None)
    node = c_ast.ID("x")
    for _ in range(2000):
        node = c_ast.UnaryOp("-", node)
    ast = c_ast.FileAST([node])
    c = parsecache.parse_cache()
    c.put("ab" * 32, ast, {})
    assert c.get("ab" * 32) is None
    assert parsecache._tree_ok(ast)          # checking is iterative: no RecursionError
    src = tmp / "deep.c"
    depth = 2000
    src.write_text(f'#include "{SRC.parent}/ops.h"\n'
                   + "struct deep { " + "struct { " * depth + "int x; " + "} a; " * depth + "};\n"
                   "void f(void) { PV_VCALL0(cpu.io_delay); }\n")
    r = run_pvpass("scan", str(src), "--", "-I", str(INCLUDE), env={"PVPASS_CACHE_DIR": str(tmp / "cache")})
    assert "Traceback" not in r.stderr and r.returncode in (0, 2), r.stderr
