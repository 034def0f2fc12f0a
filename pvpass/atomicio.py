"""Outputs are complete or absent: write a temporary file beside the target,
then rename it into place.

The temporary file is `.NAME.PID.XXXXXXXX.tmp`, in the target's directory
(a rename is atomic only within one file system).
- SIGTERM, SIGINT, SIGHUP during the write: the temporary file is removed
  and the process dies of the signal, as it would have without pvpass.
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

import os
import re
import signal
import stat
import threading
from pathlib import Path

_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_live: set[str] = set()         # temporary files being written by this process


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


def remove_stale(path: Path, any_name: bool = False) -> list[Path]:
    """Remove the temporary files of earlier writes to `path` (or, with
    `any_name`, to any file in its directory) whose writer is dead (killed
    with SIGKILL); returns what was removed."""
    d = path.parent if str(path.parent) else Path(".")
    name = r"[^/]+" if any_name else re.escape(path.name)
    pat = re.compile(r"\." + name + r"\.(\d+)\.[^./]+\.tmp")
    removed = []
    try:
        names = os.listdir(d)
    except OSError:
        return removed
    for n in names:
        m = pat.fullmatch(n)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            try:
                os.unlink(d / n)
                removed.append(d / n)
            except OSError:
                pass
    return removed


def _on_signal(signum, frame) -> None:
    for t in list(_live):
        try:
            os.unlink(t)
        except OSError:
            pass
    _live.clear()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)         # die of the signal: the usual exit status


def write_atomic(path: str | os.PathLike, data: bytes | str, mode: int | None = None,
                 durable: bool = True, sweep: bool = True) -> None:
    path = Path(path)
    if isinstance(data, str):
        data = data.encode()
    try:
        st = os.stat(path)                  # symlinks followed
    except OSError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        # -o /dev/null, /dev/stdout, a FIFO: written through, never renamed
        # over (as root that would replace the device with a file)
        with open(path, "wb") as f:
            f.write(data)
        return
    if st is not None and path.is_symlink():
        path = Path(os.path.realpath(path))  # the file the link names gets the data
    if sweep:
        remove_stale(path)
    old = {}
    if threading.current_thread() is threading.main_thread():     # handlers live there
        old = {s: signal.getsignal(s) for s in _SIGNALS}
        old = {s: h for s, h in old.items() if h is not signal.SIG_IGN}   # nohup stays nohup
        signal.pthread_sigmask(signal.SIG_BLOCK, old)        # until the file is registered
        for s in old:
            signal.signal(s, _on_signal)
    try:
        try:
            import tempfile             # only writers pay for it
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                                       dir=path.parent if str(path.parent) else ".")
            _live.add(tmp)
        finally:
            if old:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, old)
        try:
            with os.fdopen(fd, "wb") as f:
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
            elif path.exists():
                os.chmod(tmp, path.stat().st_mode & 0o7777)
            else:
                os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        finally:
            _live.discard(tmp)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
