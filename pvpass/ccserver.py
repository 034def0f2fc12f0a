"""The resident `pvpass cc` server (docs/build-path.md, "The fast path").

    python -m pvpass.ccserver [--client PATH] [SOCKET]

`--client`: build the compiled client at PATH first (pvpass/fastpath.py).
SOCKET: serve the clients (pvpass/client/pvpass-cc.c) there, from one thread
with a selector, until 10 minutes pass without a request, the socket is
removed or replaced (its directory too), or pvpass's code on disk changes.

A connection is one compile. Messages are a 4-byte length (native order)
and NUL-terminated fields:

    client: "pvpass-cc 1", KEY, PID, UMASK, CWD, N, N x "VAR=VALUE", M, M x ARG
    server: "PY"                     hand over to the Python path
          | "EXEC", ARGV...          nothing for the pass: exec the compiler
          | "RUN", TMP, ARGV...      run ARGV (it writes TMP; "" for none)
    client: "VERDICT", RC            the compiler's exit code (-N: signal N)
    server: "DONE", CODE, TEXT       exit with CODE after printing TEXT
          | "PY"                     hand the compiled TMP to the Python path

and "STATS" (tests/bench/fastpath.py) is answered with the server's CPU
seconds so far and the number of requests.

All the deciding is the driver's (pvpass/driver.py: `command`, `start_temp`,
`Compile.temp_args`, `finish` with cheap=True); this module only relays.
"""
from __future__ import annotations

import os
import socket
import stat
import struct
import sys
import time
from contextlib import contextmanager, redirect_stderr
from io import StringIO

PROTO = "pvpass-cc 1"
IDLE = 600.0           # seconds without a request before the server exits
PLAN_TIMEOUT = 10.0    # for a client's first message
MAX_MSG = 1 << 24


def _take_msg(buf: bytearray) -> list[str] | None:
    """The first whole message in `buf` (removed from it), or None; ValueError
    on one no client sends."""
    if len(buf) < 4:
        return None
    (n,) = struct.unpack_from("=I", buf)
    if n == 0 or n > MAX_MSG:
        raise ValueError("message size")
    if len(buf) < 4 + n:
        return None
    body = bytes(buf[4:4 + n])
    del buf[:4 + n]
    if not body.endswith(b"\0"):
        raise ValueError("message end")
    return [f.decode(errors="surrogateescape") for f in body[:-1].split(b"\0")]


class _Conn:
    __slots__ = ("sock", "buf", "state", "done", "since")

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buf, self.state, self.done, self.since = sock, bytearray(), None, False, time.monotonic()


def _send(conn: socket.socket, *fields: str) -> None:
    body = b"".join(f.encode(errors="surrogateescape") + b"\0" for f in fields)
    conn.sendall(struct.pack("=I", len(body)) + body)


class _Code:
    """pvpass's modules as this server loaded them: a request finds them
    changed on disk (an upgrade, a developer's edit) and is handed over."""

    def __init__(self) -> None:
        self.files = sorted({m.__file__ for n, m in list(sys.modules.items())
                             if n.split(".")[0] == "pvpass" and getattr(m, "__file__", None)})
        self.seen = self._stats()

    def _stats(self) -> list:
        out = []
        for f in self.files:
            try:
                st = os.stat(f)
                out.append((st.st_ino, st.st_size, st.st_mtime_ns))
            except OSError:
                out.append(None)
        return out

    def changed(self) -> bool:
        return self._stats() != self.seen


class Server:
    def __init__(self, path: str) -> None:
        self.path = path
        self.key = os.path.basename(path)[:-len(".sock")]
        st = os.stat(path)
        self.me = (st.st_dev, st.st_ino)
        self.code = _Code()
        self.last = time.monotonic()
        self.active = 0
        self.requests = 0
        self.stale = False

    def gone(self) -> bool:
        """Whether to stop: the socket removed or replaced, the code
        changed, or idle too long."""
        try:
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) != self.me:
                return True
        except OSError:
            return True
        return self.stale or (self.active == 0 and time.monotonic() - self.last > IDLE)

    def on_message(self, conn: "_Conn", req: list[str]) -> tuple[str, ...] | None:
        """The reply to one message; None when the connection is done."""
        if conn.state is None:
            if req == ["STATS"]:
                conn.done = True
                return ("STATS", repr(time.process_time()), str(self.requests))
            self.requests += 1
            reply, conn.state = self.plan(req)
            conn.done = conn.state is None
            return reply
        conn.done = True
        if len(req) != 2 or req[0] != "VERDICT":
            return None                      # the client's temporary is its own
        return self.verdict(conn.state, int(req[1]), req)

    def plan(self, req: list[str]):
        from . import driver
        from .atomicio import same_file
        from .errors import PvError
        py = (("PY",), None)
        if len(req) < 6 or req[0] != PROTO or req[1] != self.key:
            return py
        if self.code.changed():
            self.stale = True
            return py
        pid, umask, cwd = int(req[2]), int(req[3]), req[4]
        nenv = int(req[5])
        env = dict(e.split("=", 1) for e in req[6:6 + nenv] if "=" in e)
        args = req[7 + nenv:]
        if len(args) != int(req[6 + nenv]) or "PVPASS_TEST_PAUSE" in env:
            return py
        if any(a.startswith("@") for a in args):
            return py                        # response files: read relative to the client's cwd
        try:
            records, argv, c = driver.command(args, env)
        except PvError:
            return py                        # the Python path says what is wrong
        if records is not None:
            return py                        # patch records: the analysis
        at = lambda p: os.path.join(cwd, p)  # noqa: E731 - the client's paths
        if not all(_which(w, env.get("PATH", os.defpath), cwd) for w in c.compiler[1:]):
            return py
        if not c.compile_only:
            return ("EXEC", *argv), None
        units = c.each()
        if len(units) != 1:
            return py
        u = units[0]
        if same_file(at(u.object), at(c.sources[0])):
            return py
        obj = at(u.object)
        if driver._regular(obj) is False:   # -o /dev/null: the compiler writes it, nothing to add
            return ("RUN", "", *u.compiler, *u.args), None
        tmp = driver.start_temp(obj, pid)
        if tmp is None:
            return py
        rel = os.path.join(os.path.dirname(u.object), os.path.basename(tmp))
        return ("RUN", rel, *u.compiler, *u.temp_args(rel)), (u, obj, tmp, umask, env, cwd)

    def verdict(self, state, rc: int, req) -> tuple[str, ...]:
        from . import driver
        u, obj, tmp, umask, env, cwd = state
        _test_pause(env)
        u.work = tmp
        said = StringIO()
        try:
            with _as_client(env, cwd), redirect_stderr(said):
                code = driver.finish(u, rc, None, obj, umask, cheap=True, phase=lambda name: None)
        except (driver.Undecided, OSError):
            return ("PY",)
        return ("DONE", str(code), said.getvalue())


def _theirs(var: str) -> bool:
    """What a verdict reads from the environment (the result cache: the
    compiler's PATH, where the cache is); the client sends these."""
    return var in ("PATH", "HOME", "XDG_CACHE_HOME") or var.startswith("PVPASS_")


@contextmanager
def _as_client(env: dict, cwd: str):
    """The client's variables and working directory (the cache key holds
    both, and a header's path may be relative to it) for one verdict."""
    mine = {k: v for k, v in os.environ.items() if _theirs(k)}
    os.chdir(cwd)                            # OSError: the Python path says what is wrong
    try:
        for k in mine:
            del os.environ[k]
        os.environ.update({k: v for k, v in env.items() if _theirs(k)})
        yield
    finally:
        for k in [k for k in os.environ if _theirs(k)]:
            del os.environ[k]
        os.environ.update(mine)
        os.chdir("/")


def _which(word: str, path: str, cwd: str) -> bool:
    import shutil
    if "/" in word:
        return os.access(os.path.join(cwd, word), os.X_OK)
    return shutil.which(word, path=":".join(os.path.join(cwd, p) for p in path.split(":"))) is not None


def _test_pause(env: dict) -> None:
    """Tests: PVPASS_TEST_FAST_PAUSE=verdict:FILE creates FILE when a
    verdict is asked for and waits (up to 60 s) until it is removed."""
    spec = env.get("PVPASS_TEST_FAST_PAUSE", "")
    if spec.startswith("verdict:"):
        flag = spec.split(":", 1)[1]
        open(flag, "w").close()
        for _ in range(6000):
            if not os.path.exists(flag):
                break
            time.sleep(0.01)


def _own_dir(d: str) -> bool:
    """A directory only this user can enter: the socket's (a 0700
    /tmp/pvpass-UID is made here when missing)."""
    try:
        if d == f"/tmp/pvpass-{os.getuid()}" and not os.path.lexists(d):
            os.mkdir(d, 0o700)
        st = os.lstat(d)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077


def serve(path: str) -> None:
    import fcntl
    if not path.endswith(".sock") or not _own_dir(os.path.dirname(path)):
        return
    lock = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return                               # another server has it
    os.ftruncate(lock, 0)
    os.write(lock, f"{os.getpid()}\n".encode())    # who serves (for tests and the curious)
    if os.path.isdir(path) and not os.path.islink(path):
        return
    # bound and listening under another name, then renamed over whatever is
    # at `path` (a dead socket, a file someone left): a client never finds
    # a socket that refuses it
    fresh = os.path.join(os.path.dirname(path), f".{os.getpid()}.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        s.bind(fresh)
    finally:
        os.umask(old)
    s.listen(128)
    _preload()
    os.rename(fresh, path)
    server = Server(path)
    # One thread, one selector: a request is a fraction of a millisecond of
    # work, and threads cost more than that in GIL hand-offs; a connection
    # waiting for its compiler costs nothing here.
    import selectors
    sel = selectors.DefaultSelector()
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, None)
    checked = time.monotonic()
    try:
        while True:
            for key, _ in sel.select(timeout=1.0):
                if key.data is None:
                    _accept(s, sel)
                else:
                    _serve_one(server, key.data, sel)
            now = time.monotonic()
            if now - checked > 1.0:
                checked = now
                conns = [k.data for k in sel.get_map().values() if k.data is not None]
                for c in conns:              # a client that says nothing in time: dropped
                    if c.state is None and now - c.since > PLAN_TIMEOUT:
                        _close(c, sel)
                server.active = len(conns)
                if server.gone():
                    break
    finally:
        try:
            st = os.stat(path)
            if (st.st_dev, st.st_ino) == server.me:
                os.unlink(path)
        except OSError:
            pass
        os._exit(0)                          # requests in flight: their clients hand over


def _accept(s: socket.socket, sel) -> None:
    import selectors
    while True:
        try:
            conn, _ = s.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return                           # out of fds: the client falls back
        conn.setblocking(False)
        sel.register(conn, selectors.EVENT_READ, _Conn(conn))


def _serve_one(server: "Server", c: _Conn, sel) -> None:
    try:
        data = c.sock.recv(65536)
        if not data:
            return _close(c, sel)            # the client went: its temporary is its own
        c.buf += data
        while not c.done:
            req = _take_msg(c.buf)
            if req is None:
                return
            server.last = time.monotonic()
            reply = server.on_message(c, req)
            if reply is not None:
                c.sock.setblocking(True)     # a reply fits the socket's buffer
                c.sock.settimeout(PLAN_TIMEOUT)
                _send(c.sock, *reply)
                c.sock.setblocking(False)
        _close(c, sel)
    except (OSError, ValueError):
        _close(c, sel)


def _close(c: _Conn, sel) -> None:
    try:
        sel.unregister(c.sock)
    except (KeyError, ValueError):
        pass
    c.sock.close()


def _preload() -> None:
    """What a verdict uses, imported once, before the first client."""
    from . import driver, table  # noqa: F401
    from .link import elfobj, regcalls, tablecheck  # noqa: F401


def main(argv: list[str]) -> None:
    if argv[:1] == ["--client"] and len(argv) > 1:
        from .fastpath import build_client
        try:
            build_client(argv[1])
        except OSError:
            pass
        argv = argv[2:]
    if argv:
        serve(argv[0])


if __name__ == "__main__":
    main(sys.argv[1:])
