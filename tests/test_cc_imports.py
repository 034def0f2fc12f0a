"""Which modules `pvpass cc` loads on each of its paths (issue 19): every
compile of a build pays for its imports, and capstone alone costs more than
a small compile's whole check. Each run is a real `pvpass cc -- gcc` under
`python -X importtime`, whose report names every module that loaded."""
from __future__ import annotations

import os
import subprocess
import sys

from pvpass import table
from pvpass.buildcache import stats
from pvpass.link.elfobj import ElfObject

from conftest import INCLUDE, TESTDATA

# The disassembler, the emulator and the assembler, and the front end's parsers.
HEAVY = {"capstone", "unicorn", "keystone", "lark", "pycparser", "pycparserext", "elftools"}


def _cc_modules(args: list[str], env: dict) -> set[str]:
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "pvpass", "cc", "--", "gcc", *args],
                       capture_output=True, text=True, env={**os.environ, **env})
    assert r.returncode == 0, r.stderr
    return {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}


def _top(mods: set[str]) -> set[str]:
    return {m.split(".")[0] for m in mods}


def test_each_path_imports_only_what_it_needs(tmp):
    env = {"PVPASS_CACHE_DIR": str(tmp / "cache")}
    plain = tmp / "plain.c"
    plain.write_text("int f(int x) { return x * 3; }\n")
    cheap = HEAVY | {"pvpass.frontend", "pvpass.buildcache", "pvpass.link.copies"}

    mods = _cc_modules(["-O2", "-c", str(plain), "-o", str(tmp / "p.o")], env)   # no site
    assert "pvpass.driver" in mods and not (cheap & (mods | _top(mods)))

    pic = tmp / "pic.c"            # PIC: a call through a pointer the GOT gives; the source is
    pic.write_text("extern void (*fp)(void);\nvoid g(void) { fp(); }\n")     # preprocessed to count sites
    mods = _cc_modules(["-O2", "-fPIC", "-c", str(pic), "-o", str(tmp / "pic.o")], env)
    assert "pvpass.frontend.pptext" in mods and "pvpass.frontend.scan" not in mods
    assert not (HEAVY | {"pvpass.link.copies"}) & (mods | _top(mods))

    k = tmp / "k.o"                                    # kernel dialect: the 6-byte fast check
    mods = _cc_modules(["-O2", "-c", str(TESTDATA / "kernel/k61.c"), "-o", str(k)], env)
    assert ElfObject.read(str(k)).section(table.SECTION) is not None
    assert "pvpass.link.tablecheck" in mods and not (cheap & (mods | _top(mods)))

    s = ["-O2", "-I", str(INCLUDE), "-c", str(TESTDATA / "pvpass/sites.c"), "-o", str(tmp / "s.o")]
    full = _cc_modules(s, env)                         # pvpass dialect, empty cache: the analysis
    mods = _top(full)                                  # reads annotations and templates (lark), operands
    # (pycparser), checks each new statement's encoding (keystone) and matches the object's calls
    # (capstone); it emulates nothing, reads no ELF with pyelftools, and runs no other command's code
    assert {"lark", "pycparser", "keystone", "capstone"} <= mods and not {"unicorn", "elftools"} & mods
    assert not {m for m in full if m.startswith(("pvpass.verify", "pvpass.kernel", "pvpass.lint",
                                                 "pvpass.patch", "pvpass.bench"))}
    assert stats(tmp / "cache")["hits"] == 0

    mods = _cc_modules(s, env)                         # the same compile again: a cache hit
    assert stats(tmp / "cache")["hits"] == 1
    assert ElfObject.read(str(tmp / "s.o")).section(table.SECTION) is not None
    assert not (cheap - {"pvpass.buildcache"}) & (mods | _top(mods))
