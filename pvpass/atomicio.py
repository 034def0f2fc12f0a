"""Outputs are complete or absent: write a temporary file beside the target,
then rename it into place.

The temporary file is `.NAME.PID.XXXXXXXX.tmp`, in the target's directory
(a rename is atomic only within one file system).
- SIGTERM, SIGINT, SIGHUP, SIGXCPU during the write (or anywhere inside
  `guard()`, which `pvpass cc` and `verify` hold for their whole run): the
  temporary files and directories are removed, a running compiler gets the
  signal first, and the process dies of the signal, as it would have
  without pvpass.
- SIGKILL (or a crash) cannot be caught and leaves the temporary file. It is
  harmless (a dot-file never renamed into place) and the next write to the
  same output removes every `.NAME.PID.*.tmp` whose PID is no longer running
  (`sweep=True`, the default: it lists the directory, so a caller that
  writes many files into one directory, as a cache does, may pass
  `sweep=False` and sweep with `remove_stale` on its own schedule).
- Durability: `durable=True` (the default, for the outputs a user names)
  fsyncs the data before the rename, so after a power loss the output is the
  old file or the whole new one, never a renamed empty file. Callers whose
  output can be recomputed (cache entries, where a bad entry is a miss) pass
  `durable=False` and skip the fsync: it is the slowest part of a write.
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import stat

# Imported by `pvpass cc` on every compile: os-level code, no pathlib,
# tempfile or threading (each costs milliseconds to import).

# SIGXCPU (a CPU limit) kills by default too: the same cleanup
_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU)
_live: set[str] = set()         # temporary files being written by this process
_live_dirs: set[str] = set()    # temporary directories of this process
_children: set[int] = set()     # child processes to pass a signal on to (the compiler)
_guards = 0                     # nesting depth of guard()


def _test_delay() -> None:
    """Tests set PVPASS_TEST_WRITE_DELAY to kill a write half-way through."""
    delay = os.environ.get("PVPASS_TEST_WRITE_DELAY")
    if delay:
        import time
        time.sleep(float(delay))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True                      # someone else's live process
    return True


def remove_stale(path: str | os.PathLike, any_name: bool = False) -> list[str]:
    """Remove the temporary files of earlier writes to `path` (or, with
    `any_name`, to any file in its directory) whose writer is dead (killed
    with SIGKILL); returns what was removed."""
    d, base = os.path.split(os.fspath(path))
    name = r"[^/]+" if any_name else re.escape(base)
    return _remove_dead(d or ".", re.compile(r"\." + name + r"\.(\d+)\.[^./]+\.tmp"),
                        prefix="." if any_name else f".{base}.")


def _remove_dead(d: str, pat: re.Pattern, tree: bool = False, prefix: str = "") -> list[str]:
    """Remove the entries of `d` whose name matches `pat` and whose writer
    (the PID in group 1) is no longer running. `prefix`, a start every match
    has, spares the regex most names of a large directory (this runs on
    every `pvpass cc` compile)."""
    removed = []
    try:
        names = os.listdir(d)
    except OSError:
        return removed
    for n in names:
        m = pat.fullmatch(n) if n.startswith(prefix) else None
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            p = os.path.join(d, n)
            try:
                if tree:
                    import shutil
                    shutil.rmtree(p)
                else:
                    os.unlink(p)
                removed.append(p)
            except OSError:
                pass
    return removed


def _on_signal(signum, frame) -> None:
    for pid in list(_children):          # the compiler first: it removes its own outputs
        try:
            os.kill(pid, signum)
            os.waitpid(pid, 0)
        except OSError:
            pass
    for t in list(_live):
        try:
            os.unlink(t)
        except OSError:
            pass
    if _live_dirs:
        import shutil
        for d in list(_live_dirs):
            shutil.rmtree(d, ignore_errors=True)
    _live.clear()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)         # die of the signal: the usual exit status


@contextlib.contextmanager
def guard():
    """While inside, SIGTERM, SIGINT, SIGHUP and SIGXCPU remove this
    process's temporaries (and pass the signal on to registered children)
    before it dies of the signal. Nests; a no-op outside the main thread
    (handlers live there). Signals stay blocked until the handlers are in."""
    global _guards
    old = {}
    if _guards == 0 and _main_thread():
        old = {s: signal.getsignal(s) for s in _SIGNALS}
        old = {s: h for s, h in old.items() if h is not signal.SIG_IGN}   # nohup stays nohup
        signal.pthread_sigmask(signal.SIG_BLOCK, old)
        try:
            for s in old:
                signal.signal(s, _on_signal)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, old)
    _guards += 1
    try:
        yield
    finally:
        _guards -= 1
        for s, h in old.items():
            signal.signal(s, h)


def _main_thread() -> bool:
    import sys
    t = sys.modules.get("threading")      # not imported: there is one thread
    return t is None or t.current_thread() is t.main_thread()


def temp_file(path: str | os.PathLike, pid: int | None = None) -> str:
    """A new empty `.NAME.PID.XXXXXXXX.tmp` (mode 0600) beside `path`,
    removed by a signal while guard() is on; the caller renames or unlinks
    it and then calls `forget`. OSError when the directory cannot hold it.
    `pid`: another process's temporary (the `pvpass cc` server makes its
    clients'): named after that process, for the sweep, and not this one's
    to remove on a signal."""
    d, base = os.path.split(os.fspath(path))
    owner = os.getpid() if pid is None else pid
    for _ in range(100):
        tmp = os.path.join(d, f".{base}.{owner}.{os.urandom(4).hex()}.tmp")
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)    # until it is registered
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            if pid is None:
                _live.add(tmp)
        except FileExistsError:
            continue
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        os.close(fd)
        return tmp
    raise FileExistsError(f"{path}: no free temporary name")


def is_temp_of(tmp: str, path: str) -> bool:
    """Whether `tmp` is a temporary of this process's for `path` (the
    name temp_file gives it), to adopt one another process made for it."""
    d, base = os.path.split(path)
    td, name = os.path.split(tmp)
    return (td == d and name.startswith(f".{base}.{os.getpid()}.") and name.endswith(".tmp")
            and "/" not in name and name.count(".") == base.count(".") + 4)


def adopt(tmp: str) -> None:
    """Make a temporary file made for this process (by the `pvpass cc`
    server) this process's own: a signal removes it."""
    _live.add(tmp)


def forget(tmp: str, unlink: bool = False) -> None:
    if unlink:
        try:
            os.unlink(tmp)
        except OSError:
            pass
    _live.discard(tmp)


@contextlib.contextmanager
def temp_dir(what: str):
    """A temporary directory `pvpass-WHAT-PID-XXXXXXXX` under $TMPDIR,
    removed on exit and, under guard(), by a signal; those of earlier runs
    that died (SIGKILL) are removed first."""
    import shutil
    import tempfile
    base = tempfile.gettempdir()
    _remove_dead(base, re.compile(rf"pvpass-{re.escape(what)}-(\d+)-[^/]+"), tree=True)
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        d = tempfile.mkdtemp(prefix=f"pvpass-{what}-{os.getpid()}-", dir=base)
        _live_dirs.add(d)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
        _live_dirs.discard(d)


def write_atomic(path: str | os.PathLike, data: bytes | str, mode: int | None = None,
                 durable: bool = True, sweep: bool = True, through: bool = True) -> None:
    """`through`: an existing output that is no regular file is written
    through (-o /dev/null); caches pass False, so that a FIFO or device
    planted where an entry goes is replaced, never opened."""
    path = os.fspath(path)
    if isinstance(data, str):
        data = data.encode()
    try:
        st = os.stat(path)                  # symlinks followed
    except OSError:
        st = None
    if through and st is not None and not stat.S_ISREG(st.st_mode):
        # -o /dev/null, /dev/stdout, a FIFO: written through, never renamed
        # over (as root that would replace the device with a file)
        with open(path, "wb") as f:
            f.write(data)
        return
    if through and st is not None and os.path.islink(path):
        path = os.path.realpath(path)        # the file the link names gets the data
    if sweep:
        remove_stale(path)
    with guard():
        tmp = temp_file(path)
        try:
            with open(tmp, "wb") as f:
                half = len(data) // 2
                f.write(data[:half])
                f.flush()
                if durable:
                    _test_delay()        # the outputs a user names, not cache entries
                f.write(data[half:])
                f.flush()
                if durable:
                    os.fsync(f.fileno())
            if mode is not None:
                os.chmod(tmp, mode)
            elif st is not None and stat.S_ISREG(st.st_mode):
                os.chmod(tmp, st.st_mode & 0o7777)
            else:
                os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            forget(tmp, unlink=True)
            raise
        forget(tmp)


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether output A is input B: the same device and inode, or the same
    path once symlinks and `..` are resolved (a file not yet there). An
    output that is a device is never an input, as gcc exempts /dev/null
    (`gcc -c -x c /dev/null -o /dev/null`): writing it replaces nothing."""
    try:
        sa = os.stat(a)
        if stat.S_ISCHR(sa.st_mode) or stat.S_ISBLK(sa.st_mode):
            return False
        sb = os.stat(b)
        if (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino):
            return True
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def check_output(cmd: str, path: str | os.PathLike | None, inputs) -> None:
    """What gcc refuses before it starts: an output that is one of the
    inputs ("input file is the same as output file"), an output that is a
    directory, or one in a directory that is not there. One error, exit 2."""
    if path is None:
        return
    from .errors import PvError
    for i in inputs:
        if i is not None and same_file(path, i):
            raise PvError(f"{cmd}: input file '{os.fsdecode(i)}' is the same as output file")
    if os.path.isdir(path):
        raise PvError(f"{os.fsdecode(path)}: cannot write the output: Is a directory")
    parent = os.path.dirname(path) or "."
    if not os.path.isdir(parent):
        raise PvError(f"{os.fsdecode(path)}: cannot write the output: No such directory "
                      f"'{os.fsdecode(parent)}'")


def write_output(path: str | os.PathLike, data: bytes | str, mode: int | None = None) -> None:
    """write_atomic for an output the user named: a failure (a read-only
    directory, a full disk) is one error naming the output, exit 2."""
    try:
        write_atomic(path, data, mode)
    except OSError as e:
        from .errors import PvError
        raise PvError(f"{os.fsdecode(path)}: cannot write the output: {e.strerror}") from None
