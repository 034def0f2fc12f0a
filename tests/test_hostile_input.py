"""Hostile input beyond objects (issue 11): keystone hangs, what the table
cannot record, and temporary files left by signals."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import INCLUDE, TESTDATA, gcc_c, run_pvpass

BAD = TESTDATA / "bad"


def _one_error(r, code: int, where: str, what: str) -> None:
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr
    errors = [l for l in r.stderr.splitlines() if ": error: " in l]
    assert len(errors) == 1 and where in errors[0] and what in errors[0], r.stderr


@pytest.mark.parametrize("cmd", ["emit", "verify", "lint"])
def test_inline_text_that_hangs_keystone(cmd):
    """`PV_INLINE(..., ", popq %rax", ...)` made keystone spin forever."""
    t0 = time.monotonic()
    r = run_pvpass(cmd, str(BAD / "inline_comma.c"))
    assert time.monotonic() - t0 < 30
    _one_error(r, 1, "inline_comma.c:7:", "does not start with a mnemonic or directive")


def test_keystone_hang_shapes_are_refused_and_valid_text_is_not():
    """Shapes found by probing keystone 0.9.2 (each spun forever); and the
    guard's time limit for any shape not listed."""
    from pvpass import encode
    from pvpass.arch import get_arch
    x64 = get_arch("x86_64")
    for text in [",", ", popq %rax", "nop; ,", "lock ,", "1: ,", ")", "|nop", ":", "=",
                 ".byte ,", ".byte 1,,2", ".long ,", ".byte %", "lock ?",
                 # SIGFPE, SIGSEGV, huge allocations, reading files
                 "movl $0x8000000000000000/-1, %eax", ".byte (-9223372036854775807-1)% -1",
                 ".balign 1<<28", ".rept 10000000; nop; .endr", ".fill 0x1000000, 8, 0",
                 ".skip 0x10000000", '.incbin "/etc/passwd"']:
        with pytest.raises(encode.EncodeError):
            encode.assemble(x64, text)
    gas = {"pushfq; popq %rax": "9c58", "lock incl (%rax)": "f0ff00", ".byte 0x90, 0x90": "9090",
           "call *8(%rax)": "ff5008", "movl $-1, %eax": "b8ffffffff"}   # GNU as encodings
    for text, hexcode in gas.items():
        assert encode.assemble(x64, text).hex() == hexcode


def test_keystone_guard_gives_up_on_a_stuck_engine(monkeypatch):
    from pvpass import encode
    monkeypatch.setattr(encode, "KEYSTONE_TIMEOUT", 0.5)
    monkeypatch.setattr(encode, "_refuse_unsafe", lambda text: None)   # let keystone see it
    t0 = time.monotonic()
    with pytest.raises(encode.EncodeError, match="did not finish"):
        encode._asm_guarded(64, ",", 0)
    assert time.monotonic() - t0 < 5
    assert encode._asm_guarded(64, "nop", 0)[0] == [0x90]          # a fresh engine works


@pytest.mark.parametrize("cmd", ["emit", "verify", "lint"])
def test_site_over_255_bytes(cmd):
    r = run_pvpass(cmd, str(BAD / "site_too_long.c"))
    _one_error(r, 1, "site_too_long.c:7:2:", "the site is 306 bytes: longer than the 255 bytes")
    assert "[PV003]" in r.stderr


@pytest.mark.parametrize("cmd", ["emit", "verify", "lint"])
def test_type_number_over_255(cmd):
    r = run_pvpass(cmd, str(BAD / "type_too_big.c"))
    _one_error(r, 1, "type_too_big.c:6:8:", "op late has type number 300")
    assert "[PV005]" in r.stderr


@pytest.mark.parametrize("src,what", [("site_too_long.c", "the site is 306 bytes"),
                                      ("type_too_big.c", "type number 300")])
def test_link_refuses_what_the_table_cannot_record(tmp, src, what):
    obj = gcc_c(BAD / src, tmp / "x.o", "x86_64", ["-O2"])
    r = run_pvpass("link", str(obj), "--source", str(BAD / src), "-o", str(tmp / "out.o"))
    _one_error(r, 2, f"{obj}: .text+0x", what)      # where the copy is (after any prologue)
    r = run_pvpass("cc", "--", "gcc", "-O2", "-c", str(BAD / src), "-I", str(INCLUDE),
                   "-o", str(tmp / "cc.o"))
    assert r.returncode == 2 and what in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp.iterdir()) == ["x.o"]


def _start_slow_link(tmp, out):
    obj = gcc_c(TESTDATA / "pvpass/sites.c", tmp / "p.o", "x86_64", ["-O2"])
    env = dict(os.environ, PVPASS_TEST_WRITE_DELAY="30")
    p = subprocess.Popen([sys.executable, "-m", "pvpass", "link", str(obj), "--source",
                          str(TESTDATA / "pvpass/sites.c"), "-o", str(out), "--", "-O2"],
                         env=env, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp.glob(".out.o.*.tmp")):
        time.sleep(0.05)
    tmps = list(tmp.glob(".out.o.*.tmp"))
    assert len(tmps) == 1 and f".out.o.{p.pid}." in tmps[0].name      # the pid is in the name
    return p, obj


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_mid_write_removes_the_temporary_file(tmp, sig):
    p, obj = _start_slow_link(tmp, tmp / "out.o")
    p.send_signal(sig)
    p.wait(timeout=60)
    assert p.returncode == -sig                # died of the signal, as without pvpass
    assert sorted(x.name for x in tmp.iterdir()) == ["p.o"]


def test_sigkill_leftovers_are_removed_by_the_next_write(tmp):
    p, obj = _start_slow_link(tmp, tmp / "out.o")
    p.kill()
    p.wait(timeout=60)
    assert list(tmp.glob(".out.o.*.tmp"))       # SIGKILL cannot be caught
    live = tmp / f".out.o.{os.getpid()}.abcdefgh.tmp"    # a live writer's file stays
    live.write_bytes(b"")
    r = run_pvpass("link", str(obj), "--source", str(TESTDATA / "pvpass/sites.c"),
                   "-o", str(tmp / "out.o"), "--", "-O2")
    assert r.returncode == 0, r.stderr
    assert sorted(x.name for x in tmp.iterdir()) == sorted(["p.o", "out.o", live.name])


@pytest.mark.parametrize("entry", ["python -m pvpass", "pvpass-py"])
def test_a_sigint_while_the_commands_are_imported_is_exit_130(tmp, entry):
    """^C in a run's first milliseconds, while Python imports the commands:
    exit 130 and no traceback, as main() answers one later (a fuzz finding:
    the `files` target's SIGINT 30 ms into `pvpass cc` gave a
    KeyboardInterrupt traceback). The interrupt is raised here by the
    import of pvpass.cli itself (a sitecustomize on PYTHONPATH)."""
    (tmp / "sitecustomize.py").write_text(
        "import builtins\n_imp = builtins.__import__\n"
        "def imp(name, globals=None, locals=None, fromlist=(), level=0):\n"
        "    if (name == 'cli' and level == 1) or name == 'pvpass.cli':\n"
        "        raise KeyboardInterrupt\n"
        "    return _imp(name, globals, locals, fromlist, level)\n"
        "builtins.__import__ = imp\n")
    argv = [sys.executable, "-m", "pvpass"] if entry.startswith("python") else \
        [str(os.path.join(os.path.dirname(sys.executable), "pvpass-py"))]
    r = subprocess.run([*argv, "--version"], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(tmp)})
    assert r.returncode == 130 and "Traceback" not in r.stderr, (r.returncode, r.stderr)
