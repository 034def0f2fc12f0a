"""The code model pvpass assembles sites for (pvpass/frontend/operands.py):
decided from the flags when they name one, as gcc's option handling does,
and otherwise the compiler's default, learned once per compiler and stored
(pvpass/compilerfacts.py). Both are held against what gcc itself says:
the __PIC__/__PIE__ macros of `gcc -dM -E` with the same flags."""
from __future__ import annotations

import itertools
import os
import subprocess

import pytest

from pvpass.arch import get_arch
from pvpass.frontend import operands
from pvpass.frontend.operands import CodeModel, code_model

from conftest import need_m32

MODEL_FLAGS = ["-fpic", "-fPIC", "-fpie", "-fPIE", "-fno-pic", "-fno-PIC", "-fno-pie", "-fno-PIE"]
# options beside them that must not change the verdict, or that gcc refuses PIC under
OTHER = [[], ["-mcmodel=kernel"], ["-shared"], ["-static"], ["-pie"], ["-no-pie"], ["-static-pie"],
         ["-O0"], ["-O2", "-fno-plt"], ["-mcmodel=kernel", "-mcmodel=small"]]


def gcc_says(arch: str, flags: list[str]) -> CodeModel:
    r = subprocess.run(["gcc", get_arch(arch).gcc_flag, *flags, "-dM", "-E", "-x", "c", "-"],
                       input=b"", capture_output=True)
    m = r.stdout.decode()
    pie = "__PIE__" in m
    return CodeModel(pic="__PIC__" in m and not pie, pie=pie)


def combos():
    """No model flag, each alone, every ordered pair and some triples, each
    after every OTHER set of options and, but for none, before it too."""
    seqs = [[]] + [[f] for f in MODEL_FLAGS] + [list(p) for p in itertools.permutations(MODEL_FLAGS, 2)]
    seqs += [["-fPIC", "-fno-pie", "-fpie"], ["-fpie", "-fno-PIC", "-fpic"], ["-fno-pic", "-fPIE", "-fno-pie"]]
    for seq in seqs:
        for other in OTHER:
            yield other + seq
            if seq and other:
                yield seq + other


@pytest.mark.parametrize("arch", ["x86_64", "i386"])
def test_flags_decide_as_gcc_does(arch, tmp, monkeypatch):
    """Every combination (1,300 per arch) against gcc -dM -E, most answered
    by the flags alone, the rest (no model flag; -mcmodel=kernel, under
    which gcc refuses PIC) by the compiler."""
    if arch == "i386":
        need_m32()
    monkeypatch.setenv("PVPASS_CACHE_DIR", str(tmp / "cache"))
    operands._default_model.cache_clear()
    a = get_arch(arch)
    cases = list(combos())
    assert len(cases) > 1000
    wrong = [(flags, ours, theirs) for flags in cases
             if (ours := code_model(a, tuple(flags), "gcc")) != (theirs := gcc_says(arch, flags))]
    assert not wrong, wrong[:5]


def test_the_default_is_asked_once_per_compiler(tmp, monkeypatch):
    """The compiler's default, asked by a first process, is read back by
    the next ones (here: the in-process cache cleared) until the compiler
    changes (its mtime); flags naming a model never ask."""
    log = tmp / "asked"
    cc = tmp / "cc"
    cc.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec gcc "$@"\n')
    cc.chmod(0o755)
    monkeypatch.setenv("PVPASS_CACHE_DIR", str(tmp / "cache"))
    a = get_arch("x86_64")

    def model(*flags):
        operands._default_model.cache_clear()
        return code_model(a, flags, str(cc))

    def asked() -> int:
        return len(log.read_text().splitlines()) if log.exists() else 0
    default = gcc_says("x86_64", [])
    assert model("-O2") == default and asked() == 1
    assert model("-O2") == default and model("-O0", "-DX=1") == default and asked() == 1   # -O, -D: same probe
    assert model("-mcmodel=kernel", "-fno-pie") == CodeModel(False, False) and asked() == 1  # named
    assert model("-fPIC") == CodeModel(True, False) and model("-fno-pie", "-fPIE").pie and asked() == 1
    assert model("-mcmodel=kernel") == gcc_says("x86_64", ["-mcmodel=kernel"]) and asked() == 2
    st = cc.stat()
    os.utime(cc, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))       # another compiler
    assert model("-O2") == default and asked() == 3
    assert model("-O2") == default and asked() == 3
    monkeypatch.setenv("PVPASS_CACHE", "0")                                   # no store: asked
    assert model("-O2") == default and asked() == 4


def test_a_damaged_store_is_a_miss(tmp, monkeypatch):
    """An entry that is torn, flipped, emptied or a FIFO: the compiler is
    asked again and the entry replaced; a FIFO is never opened for a
    blocking read."""
    monkeypatch.setenv("PVPASS_CACHE_DIR", str(tmp / "cache"))
    a = get_arch("x86_64")
    operands._default_model.cache_clear()
    right = code_model(a, (), "gcc")
    [entry] = [p for p in (tmp / "cache").rglob("*") if p.is_file()]
    good = entry.read_bytes()
    flipped = good.replace(b"true", b"TRUE") if b"true" in good else good.replace(b"false", b"FALSE")
    for bad in (good[:-3], flipped, b""):
        entry.write_bytes(bad)
        operands._default_model.cache_clear()
        assert code_model(a, (), "gcc") == right
        assert entry.read_bytes() == good
    entry.unlink()
    os.mkfifo(entry)
    operands._default_model.cache_clear()
    assert code_model(a, (), "gcc") == right and entry.read_bytes() == good


def test_cache_clear_removes_the_stored_models(tmp, monkeypatch):
    from pvpass.buildcache import clear
    monkeypatch.setenv("PVPASS_CACHE_DIR", str(tmp / "cache"))
    operands._default_model.cache_clear()
    code_model(get_arch("x86_64"), ("-O2",), "gcc")
    assert (tmp / "cache" / "compilers-1").is_dir()
    clear(tmp / "cache")
    assert not (tmp / "cache" / "compilers-1").exists()
