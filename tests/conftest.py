"""Shared helpers: real gcc, real objects, pvpass run in-process and as a
subprocess (for exit codes and messages)."""
from __future__ import annotations

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
