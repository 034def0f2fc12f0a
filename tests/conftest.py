"""Shared helpers: real gcc, real objects, pvpass run in-process and as a
subprocess (for exit codes and messages)."""
from __future__ import annotations

import atexit
import fcntl
import functools
import shlex
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# One directory per test run, made by the process that starts the run and
# inherited by pytest-xdist's workers (they start after this module is
# loaded): builds shared across the run, and pvpass's caches, kept apart
# from the user's and from other runs on the machine, and removed at the end.
if "PVPASS_TEST_RUN_DIR" not in os.environ:
    _run_dir = tempfile.mkdtemp(prefix="pvpass-tests-")
    os.environ["PVPASS_TEST_RUN_DIR"] = _run_dir
    atexit.register(shutil.rmtree, _run_dir, True)
RUN_DIR = Path(os.environ["PVPASS_TEST_RUN_DIR"])
os.environ["PVPASS_CACHE_DIR"] = str(RUN_DIR / "pvpass-cache")
os.environ["XDG_CACHE_HOME"] = str(RUN_DIR / "xdg-cache")
# `pvpass cc` servers (the fast path) put their sockets here: the run's own,
# stopped at its end (pytest_sessionfinish), and they exit once it is removed.
os.environ["XDG_RUNTIME_DIR"] = str(RUN_DIR / "run")
os.makedirs(os.environ["XDG_RUNTIME_DIR"], mode=0o700, exist_ok=True)
# The tests send SIGINT and SIGHUP to pvpass and expect it to die of them, as
# it does when started from a terminal or by make. A run started with nohup
# or as a shell's background job inherits them ignored, and so would every
# pvpass it starts (which rightly keeps an inherited SIG_IGN): give the run
# the dispositions a terminal gives it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
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


def shared_build(name: str, build) -> Path:
    """RUN_DIR/name, made by `build(dir)` once per test run: the first
    process (xdist worker) to ask builds it, under a lock; the others wait
    and reuse it. Treat it as read-only. A build that fails leaves nothing,
    so the next test to ask gets the same failure, not a half-made tree."""
    d = RUN_DIR / "shared" / name
    d.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{d}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (d / ".built").exists():
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir()
            try:
                build(d)
            except BaseException:
                shutil.rmtree(d, ignore_errors=True)
                raise
            (d / ".built").touch()
    return d


def make_example(example: str, name: str, *make_args: str) -> Path:
    """pvpass/examples/EXAMPLE built once per run with `make -j2
    CC="pvpass cc -- gcc"`, through the fast path (the run's server:
    `fast_server`); make's output is in make.log beside it, and how many
    of its `pvpass cc` commands started Python."""
    def build(d: Path) -> None:
        fast = fast_server()
        shutil.copytree(ROOT / "pvpass/examples" / example, d, dirs_exist_ok=True)
        pv = f"{sys.executable} -m pvpass"
        with open(fast.d / "make.lock", "w") as lock:      # one build at a time counts Python starts
            fcntl.flock(lock, fcntl.LOCK_EX)
            fast.python_runs()
            r = subprocess.run(["make", "-j2", "-C", str(d), f"PVPASS={pv}",
                                f"CC={shlex.join(fast.cmd('cc', '--', 'gcc'))}", *make_args],
                               capture_output=True, text=True, cwd=ROOT, env={**os.environ, **fast.env})
            starts = fast.python_runs()
        (d / "make.log").write_text(r.stdout + r.stderr + f"python starts: {starts}\n")
        assert r.returncode == 0, r.stdout + r.stderr
    return shared_build(name, build)


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


# -- the fast path of `pvpass cc` (pvpass/client/, pvpass/ccserver.py) ---------

PVPASS_SH = Path(sys.executable).with_name("pvpass")      # the installed `pvpass`: launcher or script
PVPASS_PY = Path(sys.executable).with_name("pvpass-py")


def stop_servers(run_dir: Path, timeout: float = 20) -> list[str]:
    """Remove every server socket under `run_dir` and wait for each server to
    exit (its lock released); returns the sockets whose server outlived
    `timeout`."""
    import time
    for sock in run_dir.rglob("pvpass-*.sock"):
        sock.unlink(missing_ok=True)
    stuck = []
    for lock in run_dir.rglob("pvpass-*.sock.lock"):
        with open(lock) as f:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        stuck.append(str(lock))
                        break
                    time.sleep(0.05)
    return stuck


def pytest_sessionfinish(session):
    if not hasattr(session.config, "workerinput"):      # the run's controller: the workers are done
        stop_servers(RUN_DIR)


def client_binary() -> Path:
    """The compiled client, built once per run (as the first `pvpass cc`
    through the shell script builds it)."""
    from pvpass.fastpath import build_client, client_name
    def build(d: Path) -> None:
        assert build_client(str(d / client_name())), (d / f"{client_name()}.failed").read_text()
    return shared_build("client", build) / client_name()


def launcher_binary() -> Path:
    """`pvpass` as setup.py builds it (the client with PVPASS_LAUNCHER),
    once per run."""
    from pvpass.fastpath import client_source, compile_client
    def build(d: Path) -> None:
        why = compile_client(shutil.which("cc") or "gcc", client_source(), str(d / "pvpass"), launcher=True)
        assert why is None, why
    return shared_build("launcher", build) / "pvpass"


class FastPath:
    """`pvpass cc` through the shell script (or, `launcher`, the compiled
    `pvpass` that setup.py installs), the client and a server of its own,
    in `d`: the entry point is a wrapper that logs each Python start
    (py.log) and then runs the real one."""

    def __init__(self, d: Path, client: bool = True, launcher: bool = False) -> None:
        from pvpass.fastpath import client_name
        self.attach(d)
        self.bin.mkdir(parents=True)
        shutil.copy(launcher_binary() if launcher else ROOT / "pvpass/client/pvpass",  # this tree's
                    self.bin / "pvpass")
        (self.bin / "pvpass-py").write_text(f'#!/bin/sh\necho "$$" >> "{self.log}"\nexec "{PVPASS_PY}" "$@"\n')
        (self.bin / "pvpass-py").chmod(0o755)
        (d / "cache/client").mkdir(parents=True)
        if client:
            shutil.copy(client_binary(), d / "cache/client" / client_name())

    def attach(self, d: Path) -> None:
        self.d, self.bin, self.log = d, d / "bin", d / "py.log"
        # a socket's path holds at most 107 bytes: the runtime directory is
        # a short one of the run's (pytest's own are too deep under xdist)
        link = d / "run"
        if not link.is_symlink():
            d.mkdir(parents=True, exist_ok=True)
            (RUN_DIR / "fp").mkdir(exist_ok=True)
            link.symlink_to(tempfile.mkdtemp(dir=RUN_DIR / "fp"))
        self.run_dir = Path(os.readlink(link))
        self.env = {"XDG_RUNTIME_DIR": str(self.run_dir), "PVPASS_CACHE_DIR": str(d / "cache")}

    def cmd(self, *args: str) -> list[str]:
        return [str(self.bin / "pvpass"), *args]

    def run(self, *args: str, cwd=None, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(self.cmd(*args), cwd=cwd, env={**os.environ, **self.env, **(env or {})},
                              capture_output=True, **kw)

    def python_runs(self) -> int:
        """How many times the Python path ran since the last call."""
        n = len(self.log.read_text().splitlines()) if self.log.exists() else 0
        self.log.unlink(missing_ok=True)
        return n

    def sockets(self) -> list[Path]:
        return sorted(self.run_dir.glob("pvpass-*.sock"))

    def start(self) -> None:
        """A compile with no server hands over and starts one."""
        import time
        (self.d / "start.c").write_text("int start;\n")
        r = self.run("cc", "--", "gcc", "-c", "start.c", "-o", "start.o", cwd=self.d)
        assert r.returncode == 0, r.stderr
        deadline = time.monotonic() + 30
        while not self.sockets():
            assert time.monotonic() < deadline, "no server started"
            time.sleep(0.05)
        self.python_runs()

    def stop(self) -> None:
        assert not stop_servers(self.run_dir), "a server did not exit when its socket was removed"


def fast_server() -> FastPath:
    """The run's fast path, its server started (stopped at the run's end)."""
    d = shared_build("fast", lambda d: FastPath(d).start())
    f = FastPath.__new__(FastPath)
    FastPath.attach(f, d)
    if not f.sockets():                  # idle for 10 minutes in a long run: start it again
        f.start()
    return f
