"""`pvpass cc` in front of the engines builds already use: ccache (a hit
stays a hit, and the object still gets its table) and distcc (the compile
runs on a distccd, here on 127.0.0.1 only; the object comes back and gets
its table). Each through the Python path and through the fast path (the
compiled client runs ccache or distcc, the Python path adds the table)."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import INCLUDE, TESTDATA, FastPath, client_binary, need, run_pvpass

SRC = str(TESTDATA / "pvpass/sites.c")
FLAGS = ["-O2", "-I", str(INCLUDE), "-c", SRC]


def reference(tmp) -> bytes:
    subprocess.run(["gcc", *FLAGS, "-o", str(tmp / "g.o")], check=True)
    r = run_pvpass("link", str(tmp / "g.o"), "--source", SRC, "-o", str(tmp / "ref.o"),
                   "--", "-O2", "-I", str(INCLUDE))
    assert r.returncode == 0, r.stderr
    return (tmp / "ref.o").read_bytes()


def cc(how: str, args: list[str], env: dict, tmp) -> subprocess.CompletedProcess:
    """`pvpass cc ARGS` the Python way or through the fast path (a server of
    this test's own)."""
    if how == "python":
        return run_pvpass("cc", *args, env=env)
    if not (tmp / "fast").exists():
        FastPath(tmp / "fast").start()
    fast = _attached(tmp / "fast")
    if "PVPASS_CACHE_DIR" in env:        # the shell script looks for the client there
        (Path(env["PVPASS_CACHE_DIR"]) / "client").mkdir(parents=True, exist_ok=True)
        shutil.copy(client_binary(), Path(env["PVPASS_CACHE_DIR"]) / "client")
    return subprocess.run(fast.cmd("cc", *args), capture_output=True, text=True,
                          env={**os.environ, **fast.env, **env})


def _attached(d) -> FastPath:
    f = FastPath.__new__(FastPath)
    f.attach(d)
    return f


@pytest.fixture(autouse=True)
def _stop_servers(tmp):
    yield
    if (tmp / "fast").exists():
        _attached(tmp / "fast").stop()


HOW = pytest.mark.parametrize("how", ["python", "fast"])


def ccache_stats(env) -> dict[str, int]:
    out = subprocess.run(["ccache", "--print-stats"], env=env, capture_output=True, text=True, check=True).stdout
    return {k: int(v) for k, v in (line.split("\t") for line in out.splitlines() if "\t" in line)
            if v.isdigit()}


@HOW
def test_ccache_hits_stay_hits(tmp, how):
    need("ccache")
    want = reference(tmp)
    env = dict(os.environ, CCACHE_DIR=str(tmp / "ccache"), PVPASS_CACHE="0")
    for name in ("a.o", "b.o"):
        r = cc(how, ["--", "ccache", "gcc", *FLAGS, "-o", str(tmp / name)], env, tmp)
        assert r.returncode == 0, r.stderr
        assert (tmp / name).read_bytes() == want, name
    st = ccache_stats(env)
    assert st.get("direct_cache_hit", 0) + st.get("preprocessed_cache_hit", 0) == 1, st
    assert st.get("cache_miss", 0) == 1, st


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def distccd(tmp):
    """A distccd on 127.0.0.1 only, for at most two minutes."""
    need("distcc", "distccd", "timeout")
    port = _free_port()
    # distccd drops root to its own user, which cannot enter pytest's 0700
    # directories: its work directory lives beside them
    work = tempfile.mkdtemp(prefix="distccd-", dir=tempfile.gettempdir())
    os.chmod(work, 0o1777)
    log = tmp / "distccd.log"
    with open(log, "wb") as logf:
        p = subprocess.Popen(["timeout", "120", "distccd", "--no-detach", "--daemon", "--allow", "127.0.0.1",
                              "--listen", "127.0.0.1", "--port", str(port), "--jobs", "1",
                              "--log-stderr", "--log-level", "info"],
                             stderr=logf, env=dict(os.environ, TMPDIR=work))
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or p.poll() is not None:
                    pytest.skip(f"distccd did not start: {log.read_text()[-500:]}")
                time.sleep(0.05)
        yield port, log
    finally:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)


@HOW
def test_distcc_compiles_remotely_and_the_object_gets_its_table(tmp, distccd, how):
    port, log = distccd
    want = reference(tmp)
    (tmp / "distcc").mkdir()
    env = dict(os.environ, DISTCC_HOSTS=f"127.0.0.1:{port}/1", DISTCC_FALLBACK="0",
               DISTCC_DIR=str(tmp / "distcc"), PVPASS_CACHE_DIR=str(tmp / "cache"))
    for name in ("a.o", "b.o"):          # cold, then a pvpass cache hit
        r = cc(how, ["--", "distcc", "gcc", *FLAGS, "-o", str(tmp / name)], env, tmp)
        assert r.returncode == 0, r.stderr
        assert (tmp / name).read_bytes() == want, name
    time.sleep(0.2)
    assert log.read_text().count("COMPILE_OK") == 2
