"""Shared helpers: real gcc, real objects, pvpass run in-process and as a
subprocess (for exit codes and messages)."""
from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Keep the parse cache of test runs out of the user's cache directory.
os.environ.setdefault("PVPASS_CACHE_DIR", str(Path(__import__("tempfile").gettempdir()) / "pvpass-test-cache"))
TESTDATA = ROOT / "testdata"
INCLUDE = ROOT / "pvpass" / "include"
ARCH_FLAG = {"i386": "-m32", "x86_64": "-m64"}


# Tools the tests use beyond gcc and binutils (`scripts/bootstrap test`
# installs them): where one is missing, a test that needs it is skipped and
# says which package gives it; in CI (CI=true), which installs everything, it
# fails instead, so nothing CI checks can be skipped away.
PACKAGE = {"eu-elflint": "elfutils", "ccache": "ccache", "distcc": "distcc", "distccd": "distcc",
           "gdb": "gdb", "gcc -m32": "gcc-multilib"}


def missing(what: str) -> None:
    msg = f"{what} is not installed (package {PACKAGE.get(what, what)}: `scripts/bootstrap test` installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{msg}; CI installs every tool the tests use", pytrace=False)
    pytest.skip(msg)


def need(*tools: str) -> None:
    import shutil
    for t in tools:
        if shutil.which(t) is None:
            missing(t)


@functools.cache
def can_build_m32() -> bool:
    """gcc can build and link a 32-bit program (gcc-multilib's libc)."""
    return subprocess.run(["gcc", "-m32", "-x", "c", "-", "-o", os.devnull], input=b"int main(void){return 0;}",
                          capture_output=True).returncode == 0


def need_m32() -> None:
    if not can_build_m32():
        missing("gcc -m32")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """A test run for i386 (a parameter 'i386' or '-m32') needs a 32-bit
    libc; checked before its fixtures build anything."""
    params = getattr(item, "callspec", None)
    if params and any(v in ("i386", "-m32") for v in params.params.values() if isinstance(v, str)):
        need_m32()


def elflint(path) -> str:
    """eu-elflint's verdict on an object, stdout and stderr together."""
    need("eu-elflint")
    r = subprocess.run(["eu-elflint", "--gnu-ld", str(path)], capture_output=True, text=True)
    return r.stdout + r.stderr


def gcc_c(src: Path, out: Path, arch: str, flags: list[str]) -> Path:
    cmd = ["gcc", ARCH_FLAG[arch], "-c", str(src), "-o", str(out), "-I", str(INCLUDE), *flags]
    subprocess.run(cmd, check=True, capture_output=True)
    return out


def run_pvpass(*args: str, cwd: Path | None = None, env: dict | None = None,
               input: bytes | None = None) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "pvpass", *args], cwd=cwd or ROOT,
                          capture_output=True, text=True, env=e, input=input)


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path
