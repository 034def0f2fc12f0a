"""The fast path of `pvpass cc` (docs/build-path.md): the shell script, the
compiled client and the resident server write what the Python path and a
plain gcc write, start no Python where the cheap verdicts decide, keep the
all-or-nothing rule when the client or the server is killed, and fall back
to the Python path, never hang, when there is no server to ask."""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pvpass.fastpath import client_name

from conftest import INCLUDE, PVPASS_SH, ROOT, TESTDATA, FastPath, launcher_binary, stop_servers
from test_files import ARG_FORMS, _wait_for
from test_valid_c import expressions_source

SITES = TESTDATA / "pvpass/sites.c"
KERNEL = TESTDATA / "kernel/k61.c"
PLAIN = "#include <stdio.h>\nint f(int x) { return printf(\"%d\", x); }\n"


@pytest.fixture(scope="module")
def fast_module(tmp_path_factory):
    f = FastPath(tmp_path_factory.mktemp("fast"))
    f.start()
    yield f
    f.stop()


@pytest.fixture
def fast(fast_module):
    """The module's server, its count of Python starts at 0."""
    fast_module.python_runs()
    return fast_module


def test_the_shell_script_names_this_clients_binary():
    """The shell script finds the client under its source's hash; an edit
    of the source without the script would run an old client."""
    script = (ROOT / "pvpass/client/pvpass").read_text()
    assert f"/client/{client_name()}\"" in script


def test_the_installed_pvpass_is_this_trees_launcher():
    """setup.py installs `pvpass` as the launcher built from this tree's
    client source (gcc is deterministic: the same bytes), the shell script
    only where no C compiler is."""
    assert PVPASS_SH.read_bytes() == launcher_binary().read_bytes()


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    f = FastPath(tmp_path_factory.mktemp("launched"), client=False, launcher=True)
    f.start()
    yield f
    f.stop()


def test_the_launcher_compiles_without_python_and_hands_the_rest_over(launched, tmp):
    """`pvpass cc` through the launcher: the same object as gcc's, no
    Python start (no cache-directory client needed); any other command,
    and `pvpass cc` with PVPASS_SERVER=0, run `pvpass-py` beside it, also
    through a symlink to the launcher."""
    f = launched
    f.python_runs()
    (tmp / "a.c").write_text(PLAIN)
    subprocess.run(["gcc", "-O2", "-c", "a.c", "-o", "g.o"], cwd=tmp, check=True)
    for i in range(3):
        r = f.run("cc", "--", "gcc", "-O2", "-c", "a.c", "-o", f"p{i}.o", cwd=tmp)
        assert r.returncode == 0, r.stderr
        assert (tmp / f"p{i}.o").read_bytes() == (tmp / "g.o").read_bytes()
    assert f.python_runs() == 0
    assert not (f.d / "cache/client" / client_name()).exists()
    link = tmp / "elsewhere/pvpass"
    link.parent.mkdir()
    link.symlink_to(f.bin / "pvpass")
    r = subprocess.run([str(link), "--version"], env={**os.environ, **f.env}, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("pvpass ") and f.python_runs() == 1, r.stderr
    r = f.run("cc", "--", "gcc", "-c", "a.c", "-o", "off.o", cwd=tmp, env={"PVPASS_SERVER": "0"})
    assert r.returncode == 0 and f.python_runs() == 1, r.stderr
    r = f.run("cc", "--", "gcc", "-c", "missing.c", "-o", "m.o", cwd=tmp)
    assert r.returncode == 1 and b"missing.c" in r.stderr and not (tmp / "m.o").exists()


@pytest.mark.parametrize("how", ["path", "PATH"])
def test_a_launcher_without_proc_finds_pvpass_py_beside_it(tmp, how):
    """A build chroot may have no /proc mounted: the launcher then finds
    itself as the shell script did, from argv[0] (a path, or a name on
    the PATH). Here /proc is a tmpfs in a mount namespace of the test's."""
    if not shutil.which("unshare") or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode:
        pytest.skip("no mount namespace here (unshare -m)")
    (tmp / "bin").mkdir()
    shutil.copy(launcher_binary(), tmp / "bin/pvpass")
    (tmp / "bin/pvpass-py").write_text('#!/bin/sh\necho "beside: $*"\n')
    (tmp / "bin/pvpass-py").chmod(0o755)
    prog = str(tmp / "bin/pvpass") if how == "path" else "pvpass"
    r = subprocess.run(["unshare", "-m", "sh", "-c", 'mount -t tmpfs none /proc && exec "$@"', "sh",
                        prog, "table", "x.o"], capture_output=True, text=True,
                       env={**os.environ, "PATH": f"{tmp / 'bin'}:{os.environ['PATH']}"})
    assert r.returncode == 0 and r.stdout == "beside: table x.o\n", (r.stdout, r.stderr)


def test_a_launcher_without_pvpass_py_runs_python3_m_pvpass(tmp):
    """As the shell script: no `pvpass-py` beside it, `python3 -m pvpass`
    from the PATH (here this venv's python)."""
    (tmp / "bin").mkdir()
    shutil.copy(launcher_binary(), tmp / "bin/pvpass")
    (tmp / "py").mkdir()
    (tmp / "py/python3").symlink_to(sys.executable)
    r = subprocess.run([str(tmp / "bin/pvpass"), "--version"], capture_output=True, text=True,
                       env={**os.environ, "PATH": f"{tmp / 'py'}:{os.environ['PATH']}"})
    assert r.returncode == 0 and r.stdout.startswith("pvpass "), r.stderr


def test_the_client_is_static_where_the_c_library_allows(fast, tmp):
    """Built with -static when the system's gcc can link a static program
    (no dynamic loader on every compile), else dynamically; either way it
    runs (the module's compiles went through it)."""
    client = fast.d / "cache/client" / client_name()
    assert client.exists()
    probe = subprocess.run(["gcc", "-static", "-x", "c", "-", "-o", str(tmp / "probe")],
                           input=b"int main(void){return 0;}", capture_output=True)
    headers = subprocess.run(["readelf", "-lW", str(client)], capture_output=True, text=True, check=True).stdout
    assert ("INTERP" not in headers) == (probe.returncode == 0), headers


def _tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _fresh(d: Path) -> Path:
    shutil.rmtree(d, ignore_errors=True)
    for sub in ("sub", "sub2", "dd"):
        (d / sub).mkdir(parents=True)
    for src in ("a.c", "sub2/a.c"):
        (d / src).write_text(PLAIN)
    return d


@pytest.mark.parametrize("form", ARG_FORMS + [
    "-g -MD -c a.c -o sub/x.o", "-g3 -MMD -MP -c a.c -o sub/x.o", "-g -gsplit-dwarf -c a.c -o sub/x.o",
    "-save-temps -fstack-usage -c a.c -o sub/x.o", "-MD -MF dep.d -MT 'weird $name' -c a.c -o sub/x.o"])
def test_fast_path_writes_what_gcc_and_the_python_path_write(fast, tmp, form):
    """Object, .d, .dwo, .gcno, .su, -save-temps files and exit code: the
    fast path's are plain gcc's and the Python path's, byte for byte, and
    no Python started."""
    args = ["-frandom-seed=1", *shlex.split(form)]
    got = {}
    for how, argv, env in [("gcc", ["gcc", *args], {}),
                           ("fast", fast.cmd("cc", "--", "gcc", *args), {}),
                           ("python", fast.cmd("cc", "--", "gcc", *args), {"PVPASS_SERVER": "0"})]:
        d = _fresh(tmp / "w")              # one directory: -g writes its name
        r = subprocess.run(argv, cwd=d, capture_output=True, env={**os.environ, **fast.env, **env})
        got[how] = (r.returncode, r.stderr, _tree(d))
        assert r.returncode == 0, r.stderr
        assert fast.python_runs() == (how == "python"), how
    assert got["fast"] == got["gcc"]
    assert got["python"] == got["gcc"]


def test_compile_errors_kernel_tables_and_pass_through(fast, tmp):
    """A failing compile's exit code and messages are gcc's; a kernel
    object's table is checked without Python; linking passes through."""
    (tmp / "bad.c").write_text("int f(void) { return x; }\n")
    g = subprocess.run(["gcc", "-c", "bad.c", "-o", "bad.o"], cwd=tmp, capture_output=True)
    r = fast.run("cc", "--", "gcc", "-c", "bad.c", "-o", "bad.o", cwd=tmp)
    assert (r.returncode, r.stderr) == (g.returncode, g.stderr) and g.returncode == 1
    assert not (tmp / "bad.o").exists() and not list(tmp.glob(".*.tmp"))

    k = ["-O2", "-c", str(KERNEL)]
    assert fast.run("cc", "--", "gcc", *k, "-o", "k.o", cwd=tmp).returncode == 0
    assert fast.python_runs() == 0
    assert fast.run("cc", "--", "gcc", *k, "-o", "kp.o", cwd=tmp, env={"PVPASS_SERVER": "0"}).returncode == 0
    assert fast.python_runs() == 1
    assert (tmp / "k.o").read_bytes() == (tmp / "kp.o").read_bytes()

    (tmp / "m.c").write_text("int main(void) { return 3; }\n")
    assert fast.run("cc", "--", "gcc", "m.c", "-o", "m", cwd=tmp).returncode == 0
    assert subprocess.run([str(tmp / "m")]).returncode == 3
    r = fast.run("cc", "--", "gcc", "-c", "m.c", "-o", "/dev/null", cwd=tmp)     # kbuild's probes
    assert r.returncode == 0 and fast.python_runs() == 0
    for env in ({}, {"PVPASS_SERVER": "0"}):   # gcc exempts /dev/null from its same-file check
        r = fast.run("cc", "--", "gcc", "-c", "-x", "c", "/dev/null", "-o", "/dev/null", cwd=tmp, env=env)
        assert (r.returncode, r.stderr) == (0, b""), env


def test_object_mode_is_the_compilers(fast, tmp):
    """The client's umask, not the server's, decides a new object's mode;
    an existing object keeps its own."""
    (tmp / "a.c").write_text(PLAIN)
    r = subprocess.run(fast.cmd("cc", "--", "gcc", "-c", "a.c", "-o", "n.o"), cwd=tmp, umask=0o077,
                       env={**os.environ, **fast.env})
    assert r.returncode == 0 and (tmp / "n.o").stat().st_mode & 0o777 == 0o600
    (tmp / "e.o").write_text("")
    (tmp / "e.o").chmod(0o640)
    assert fast.run("cc", "--", "gcc", "-c", "a.c", "-o", "e.o", cwd=tmp).returncode == 0
    assert (tmp / "e.o").stat().st_mode & 0o777 == 0o640 and fast.python_runs() == 0


def test_what_the_server_does_not_decide_goes_to_python_compiled_once(fast, tmp):
    """A source with sites: the client compiles, the Python path adds the
    table to that object (the compiler runs once), as it does alone."""
    log = tmp / "gcc.log"
    counting = tmp / "gcc"
    counting.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec gcc "$@"\n')
    counting.chmod(0o755)
    args = ["-O2", "-I", str(INCLUDE), "-c", str(SITES)]
    r = fast.run("cc", "--", str(counting), *args, "-o", "s.o", cwd=tmp)
    assert r.returncode == 0, r.stderr
    assert fast.python_runs() == 1
    assert sum(" -c " in line for line in log.read_text().splitlines()) == 1
    assert fast.run("cc", "--", "gcc", *args, "-o", "p.o", cwd=tmp, env={"PVPASS_SERVER": "0"}).returncode == 0
    assert (tmp / "s.o").read_bytes() == (tmp / "p.o").read_bytes()
    assert not list(tmp.glob(".*.tmp"))


def test_a_result_cache_hit_is_the_servers(fast, tmp):
    """A source with sites compiled again is a result-cache hit, which the
    server takes (no Python start), reading the cache, the compiler and
    the headers as the client sees them (its PATH, cache directory and
    working directory): the Python path's object, its warnings replayed.
    A header changed in between, size and mtime kept, is a miss that the
    Python path takes."""
    (tmp / "h.h").write_text("#define LIVE irq.irq_disable\n")
    (tmp / "dead.c").write_text('#include "h.h"\n' + expressions_source(
        {"dead": "if (n && 0) PV_VCALL0(cpu.io_delay);", "live": "PV_VCALL0(LIVE);"}))
    args = ["-fno-pie", "-O2", "-I", str(INCLUDE), "-I.", "-c", "dead.c"]
    ref = fast.run("cc", "--", "gcc", *args, "-o", "p.o", cwd=tmp, env={"PVPASS_SERVER": "0"})
    assert ref.returncode == 0 and b"holds no copy of this site" in ref.stderr, ref.stderr
    fast.python_runs()
    for i in range(2):
        r = fast.run("cc", "--", "gcc", *args, "-o", f"s{i}.o", cwd=tmp)
        assert r.returncode == 0 and r.stderr == ref.stderr, r.stderr
        assert (tmp / f"s{i}.o").read_bytes() == (tmp / "p.o").read_bytes()
    assert fast.python_runs() == 0
    st = (tmp / "h.h").stat()
    (tmp / "h.h").write_text("#define LIVE cpu.io_delay\n")
    os.utime(tmp / "h.h", ns=(st.st_atime_ns, st.st_mtime_ns))
    r = fast.run("cc", "--", "gcc", *args, "-o", "c.o", cwd=tmp)
    assert r.returncode == 0 and fast.python_runs() == 1, r.stderr
    ref = fast.run("cc", "--", "gcc", *args, "-o", "p2.o", cwd=tmp, env={"PVPASS_SERVER": "0"})
    assert (tmp / "c.o").read_bytes() == (tmp / "p2.o").read_bytes() != (tmp / "p.o").read_bytes()
    assert not list(tmp.glob(".*.tmp"))


def _gcc(tmp: Path, *args: str) -> bytes:
    """gcc's own object for these arguments."""
    subprocess.run(["gcc", *args, "-o", str(tmp / "ref.obj")], cwd=tmp, check=True)
    return (tmp / "ref.obj").read_bytes()


def test_a_response_file_is_read_where_the_client_runs(fast, tmp):
    """`@FILE` (CMake, ninja) names a file relative to the compile's own
    directory: the object still gets its table."""
    (tmp / "args.rsp").write_text(f"-O2 -I {INCLUDE} -c {SITES}")
    assert fast.run("cc", "--", "gcc", "@args.rsp", "-o", "r.o", cwd=tmp).returncode == 0
    assert fast.run("cc", "--", "gcc", "@args.rsp", "-o", "p.o", cwd=tmp,
                    env={"PVPASS_SERVER": "0"}).returncode == 0
    assert (tmp / "r.o").read_bytes() == (tmp / "p.o").read_bytes()


def _spawn(fast: FastPath, tmp: Path, out: Path, env: dict, compiler: str = "gcc") -> subprocess.Popen:
    return subprocess.Popen(fast.cmd("cc", "--", compiler, "-O2", "-c", str(KERNEL), "-o", str(out)), cwd=tmp,
                            env={**os.environ, **fast.env, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)


@pytest.mark.parametrize("phase", ["planned", "compiler", "compiled", "verdict"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killing_the_client_at_any_phase_leaves_no_half_object(fast, tmp, phase, sig):
    """Killed before, during or after the compile, or while the server
    decides: no object at -o, or the complete one; no temporary (after
    SIGKILL the next compile sweeps it); the status is the signal's."""
    out = tmp / "k.o"
    flag = tmp / "flag"
    if phase == "compiler":
        slow = tmp / "slow-gcc"
        slow.write_text(f'#!/bin/sh\ngcc "$@" || exit $?\n: > {flag}\nexec sleep 30\n')
        slow.chmod(0o755)
        p = _spawn(fast, tmp, out, {}, str(slow))
    else:
        p = _spawn(fast, tmp, out, {"PVPASS_TEST_FAST_PAUSE": f"{phase}:{flag}"})
    _wait_for(flag, p)
    os.kill(p.pid, sig)
    p.wait(timeout=60)
    if phase == "verdict":
        flag.unlink()                  # the server goes on with a client that is gone
        time.sleep(0.5)
    try:
        os.killpg(p.pid, signal.SIGKILL)          # the slow compiler SIGKILL left running
    except ProcessLookupError:
        pass
    p.communicate(timeout=60)
    assert p.returncode == -sig
    want = _gcc(tmp, "-O2", "-c", str(KERNEL))
    assert not out.exists() or out.read_bytes() == want
    left = [n.name for n in tmp.glob(".*.tmp")]
    if sig != signal.SIGKILL or phase == "verdict":
        assert not left
    r = fast.run("cc", "--", "gcc", "-O2", "-c", str(KERNEL), "-o", str(out), cwd=tmp)
    assert r.returncode == 0 and out.read_bytes() == want and not list(tmp.glob(".*.tmp")), r.stderr
    assert fast.python_runs() == 0, (left, fast.sockets())


def test_a_server_killed_mid_request_hands_over(tmp):
    """The server dies while it decides: the client hands the compiled
    object to the Python path, which finishes it."""
    f = FastPath(tmp / "own")
    f.start()
    try:
        flag, out = tmp / "flag", tmp / "k.o"
        p = _spawn(f, tmp, out, {"PVPASS_TEST_FAST_PAUSE": f"verdict:{flag}", "PVPASS_SERVER_TIMEOUT": "300"})
        _wait_for(flag, p)
        os.kill(int(Path(f"{f.sockets()[0]}.lock").read_text()), signal.SIGKILL)
        assert p.wait(timeout=30) == 0, p.communicate()
        assert f.python_runs() == 1
        want = _gcc(tmp, "-O2", "-c", str(KERNEL))
        assert out.read_bytes() == want and not list(tmp.glob(".*.tmp"))
    finally:
        f.stop()


def _stale(kind: str, path: Path):
    """Something at the socket path that is no answering server of ours."""
    if kind == "regular file":
        path.write_text("")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "dead socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        s.close()
    elif kind == "silent server":             # listens, never accepts
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        s.listen(8)
        return s
    elif kind == "another identity":          # a live server of another key, moved here
        other = path.with_name("pvpass-0000000000000000.sock")
        srv = subprocess.Popen([sys.executable, "-m", "pvpass.ccserver", str(other)], start_new_session=True)
        deadline = time.monotonic() + 30
        while not other.exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.rename(other, path)
        return srv
    return None


@pytest.mark.parametrize("kind", ["none", "regular file", "fifo", "dead socket", "silent server",
                                  "another identity"])
def test_no_answering_server_means_the_python_path(tmp, kind):
    f = FastPath(tmp / "fb")
    try:
        (tmp / "a.c").write_text(PLAIN)
        # the socket's name: what the client would connect to
        sock = None
        if kind != "none":
            f.start()
            sock = f.sockets()[0]
            f.stop()
            held = _stale(kind, sock)
        t0 = time.monotonic()
        r = f.run("cc", "--", "gcc", "-c", "a.c", "-o", "a.o", cwd=tmp, env={"PVPASS_SERVER_TIMEOUT": "300"},
                  timeout=60)
        assert time.monotonic() - t0 < 20
        assert r.returncode == 0 and f.python_runs() == 1, r.stderr
        g = _gcc(tmp, "-c", "a.c")
        assert (tmp / "a.o").read_bytes() == g and not list(tmp.glob(".*.tmp"))
        if kind not in ("silent server", "another identity"):
            # the compile that fell back started a server; the next one uses it
            deadline = time.monotonic() + 30
            while True:
                r = f.run("cc", "--", "gcc", "-c", "a.c", "-o", "a.o", cwd=tmp)
                assert r.returncode == 0, r.stderr
                if f.python_runs() == 0:
                    break
                assert time.monotonic() < deadline, "no server took over"
                time.sleep(0.1)
        if kind == "silent server":
            held.close()
        elif kind == "another identity":
            held.wait(timeout=30)        # its socket moved: it exits
    finally:
        f.stop()


def test_opt_out_starts_no_server(tmp):
    f = FastPath(tmp / "off")
    (tmp / "a.c").write_text(PLAIN)
    for _ in range(2):
        r = f.run("cc", "--", "gcc", "-c", "a.c", "-o", "a.o", cwd=tmp, env={"PVPASS_SERVER": "0"})
        assert r.returncode == 0 and f.python_runs() == 1
    time.sleep(0.5)
    assert not f.sockets()


def test_without_a_c_compiler_pvpass_cc_stays_on_the_python_path(tmp):
    """The first `pvpass cc` tries to build the client; with no `cc` or
    `gcc` on the PATH that fails once (CLIENT.failed), and every compile
    goes on through Python."""
    f = FastPath(tmp / "nocc", client=False)
    path = tmp / "path"                       # what gcc -c needs from the PATH, and no compiler
    path.mkdir()
    (path / "as").symlink_to(shutil.which("as"))
    (tmp / "a.c").write_text(PLAIN)
    gcc = os.path.realpath(shutil.which("gcc"))
    failed = f.d / "cache/client" / f"{client_name()}.failed"
    inodes = set()
    for i in range(3):
        r = f.run("cc", "--", gcc, "-c", "a.c", "-o", "a.o", cwd=tmp, env={"PATH": str(path)})
        assert r.returncode == 0 and f.python_runs() == 1, r.stderr
        deadline = time.monotonic() + 30
        while not failed.exists():                # built in the background
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)
        inodes.add(failed.stat().st_ino)
    assert len(inodes) == 1, "the build was tried again"
    assert "no C compiler" in failed.read_text()
    assert not (f.d / "cache/client" / client_name()).exists()
    assert (tmp / "a.o").read_bytes() == _gcc(tmp, "-c", "a.c")


def test_a_server_exits_when_its_socket_goes(fast, tmp):
    """What the test run relies on to leave no server behind."""
    assert fast.sockets()
    assert not stop_servers(fast.run_dir, timeout=10)
    fast.start()
