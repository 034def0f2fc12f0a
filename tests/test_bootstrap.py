"""What a missing tool does: scripts/bootstrap names it, its package and
why, and the tests skip (outside CI) or fail (in CI) with that reason."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, need

BOOTSTRAP = ROOT / "scripts" / "bootstrap"


def test_a_missing_tool_skips_outside_ci_and_fails_in_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"^eu-elflint-nope is not installed"):
        need("gcc", "eu-elflint-nope")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI installs every tool the tests use"):
        need("eu-elflint-nope")
    need("gcc")


def fake_path(tmp, drop: set[str], uid: int):
    """A PATH with the tools bootstrap looks for, less `drop`, no sudo, and an
    `id` that says `uid`."""
    b = tmp / "bin"
    b.mkdir()
    for t in ("bash", "gcc", "as", "ld", "readelf", "objdump", "objcopy", "addr2line", "make", "eu-elflint",
              "ccache", "distcc", "distccd", "gdb", "dirname", "env", "touch"):
        if t not in drop and shutil.which(t):
            (b / t).symlink_to(shutil.which(t))
    (b / "python3").symlink_to(sys._base_executable)      # the real one, not a venv's or a shim
    (b / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    (b / "id").chmod(0o755)
    return {"PATH": str(b), "HOME": str(tmp)}


def run(mode, env):
    return subprocess.run(["bash", str(BOOTSTRAP), mode], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=120)


def test_not_root_no_sudo_says_what_is_missing_for_which_mode(tmp):
    env = fake_path(tmp, {"ccache", "eu-elflint"}, uid=1000)
    r = run("test", env)
    assert r.returncode == 3, r.stderr
    assert r.stderr == ("bootstrap: missing for 'test': elfutils (check written objects) ccache (composition "
                        "tests); not root and no sudo: install them as root (apt-get install elfutils ccache) "
                        "and run this again\n"), r.stderr
    assert run("nonsense", env).returncode == 2
