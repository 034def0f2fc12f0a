"""The Python side of `pvpass cc`'s fast path (docs/build-path.md, "The
fast path").

`pvpass` on the PATH is the compiled launcher (pvpass/client/pvpass-cc.c
built by setup.py with PVPASS_LAUNCHER), or, where no C compiler was there
at install, a shell script (pvpass/client/pvpass) that runs the same client
from the cache directory once it is built; either runs `pvpass cc` through
the client and everything else through Python (the `pvpass-py` entry point).
The client asks the resident server (pvpass/ccserver.py) for the command
to run and for the cheap verdicts; whatever those do not decide comes here,
by exec (same pid), with:

- PVPASS_CC_COMPILED=TMP: the compiler ran and wrote TMP, the temporary
  the server named after this process: finish it, do not compile again;
- PVPASS_CC_START=SOCKET: no server listens there: start one, detached,
  for the compiles that follow (this one takes the Python path);

and the shell script sets PVPASS_CC_CLIENT=PATH where it found no client:
build it there (in the background) for the next compiles.
"""
from __future__ import annotations

import os

_compiled: str | None = None


def after_handover() -> None:
    """Take (and drop from the environment the compiler inherits) what
    the client and the shell script handed over."""
    global _compiled
    env = os.environ
    _compiled = env.pop("PVPASS_CC_COMPILED", None)
    sock = env.pop("PVPASS_CC_START", None)
    client = env.pop("PVPASS_CC_CLIENT", None)
    if (sock or client) and env.get("PVPASS_SERVER", "1") != "0":
        _spawn_helper(sock, client)


def compiled_for(obj: str) -> str | None:
    """The temporary the client compiled `obj` into, made this process's
    (a signal removes it); None when the compile is still to run."""
    global _compiled
    tmp, _compiled = _compiled, None
    from .atomicio import adopt, is_temp_of
    if tmp and is_temp_of(tmp, obj) and os.path.isfile(tmp) and not os.path.islink(tmp):
        adopt(tmp)
        return tmp
    return None


def client_source() -> str:
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "client", "pvpass-cc.c")


def compile_client(cc: str, src: str, out: str, launcher: bool = False) -> str | None:
    """Compile the client `src` to `out` with `cc`: None, or why not.
    `launcher`: the `pvpass` command itself (setup.py, which loads this
    module by path before the package is installed: so nothing here may
    import from the package at module level). Static where the C library
    allows it: it runs once per compile, and the dynamic loader cost
    ~0.15 ms of CPU each time (docs/build-path.md)."""
    import subprocess
    why = ""
    for flags in (["-O2", "-static"], ["-O2"]):
        r = subprocess.run([cc, *flags, *(["-DPVPASS_LAUNCHER"] if launcher else []), "-o", out, src],
                           capture_output=True)
        if r.returncode == 0:
            return None
        why = r.stderr.decode(errors="replace")
    return why


def client_name() -> str:
    """The client's file name, keyed by its source (the shell script holds
    the same name: tests/test_fastpath.py keeps them equal)."""
    import hashlib
    with open(client_source(), "rb") as f:
        return "pvpass-cc-" + hashlib.sha256(f.read()).hexdigest()[:16]


def _spawn_helper(sock: str | None, client: str | None) -> None:
    """Start `python -m pvpass.ccserver` detached (own session, stdio on
    /dev/null, no inherited fds: make's jobserver and a caller's pipes are
    not held open) to build the client and/or serve `sock`."""
    if client and (os.path.exists(client) or os.path.exists(client + ".failed")):
        client = None                        # built, or no compiler to build it with
    if sock and _server_running(sock):
        sock = None
    if not (sock or client):
        return
    import subprocess
    import sys
    args = [sys.executable, "-m", "pvpass.ccserver", *(["--client", client] if client else []),
            *([sock] if sock else [])]
    try:
        subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, close_fds=True, start_new_session=True, cwd="/")
    except OSError:
        pass                                 # the fast path is an optimisation: this compile goes on


def _server_running(sock: str) -> bool:
    """A server holds SOCKET.lock for its whole life."""
    import fcntl
    try:
        fd = os.open(sock + ".lock", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def build_client(dest: str) -> bool:
    """Compile the client to `dest` with the system's C compiler, atomically;
    a failure (no compiler) leaves DEST.failed, so it is not tried again."""
    import shutil
    from .atomicio import temp_file, write_atomic
    if os.path.basename(dest) != client_name():
        return False                         # another version's name: not this source's binary
    os.makedirs(os.path.dirname(dest) or ".", mode=0o700, exist_ok=True)
    cc = shutil.which("cc") or shutil.which("gcc")
    why = "no C compiler (cc, gcc) on the PATH"
    if cc:
        tmp = temp_file(dest)
        try:
            why = compile_client(cc, client_source(), tmp)
            if why is None:
                os.chmod(tmp, 0o755)
                os.replace(tmp, dest)
                return True
        except OSError as e:
            why = str(e)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    write_atomic(dest + ".failed", why, durable=False)
    return False
