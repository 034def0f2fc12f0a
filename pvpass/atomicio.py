"""Outputs are complete or absent: write a temporary file beside the target,
then rename it into place."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _test_delay() -> None:
    """Tests set PVPASS_TEST_WRITE_DELAY to kill a write half-way through."""
    delay = os.environ.get("PVPASS_TEST_WRITE_DELAY")
    if delay:
        import time
        time.sleep(float(delay))


def write_atomic(path: str | os.PathLike, data: bytes | str, mode: int | None = None,
                 fsync: bool = True) -> None:
    """`fsync=False` for cache entries: after a crash a torn one is a miss."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                               dir=path.parent if str(path.parent) else ".")
    try:
        with os.fdopen(fd, "wb") as f:
            half = len(data) // 2
            f.write(data[:half])
            f.flush()
            _test_delay()
            f.write(data[half:])
            f.flush()
            if fsync:
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
