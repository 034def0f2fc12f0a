"""What a compiler decides by default, learned once per compiler identity.

Today one fact: whether the compiler's default code model is PIC or PIE
(a distribution's gcc may default to -fPIE, a cross compiler to none),
which `gcc -dM -E` tells and which costs a compiler start (~10 ms). The
build path asks it once per object with sites, in a new process each
time, so an in-process cache alone does not help: the answer is stored in
the cache directory (PVPASS_CACHE_DIR, beside the result cache), keyed on
the compiler's identity (its resolved path, size and mtime, as the result
cache keys it) and the flags given to the probe. An entry that is missing,
torn, foreign or no regular file is a miss: the compiler is asked again.
PVPASS_CACHE=0: no store, the compiler is asked (once per process).
"""
from __future__ import annotations

import hashlib
import json
from typing import Callable

from .buildcache import _identity, cache_root, read_regular, seal, unseal

FORMAT = 1
_FORM = f"pvpass-compiler-facts-{FORMAT}"
_MAX_ENTRY = 4096


def _key(compiler: str, probe: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for part in (_FORM, _identity(compiler), *probe):
        h.update(part.encode(errors="surrogateescape"))
        h.update(b"\0")
    return h.hexdigest()


def learned(compiler: str, probe: tuple[str, ...], ask: Callable[[], dict]) -> dict:
    """The fact `ask()` learns from `compiler` run with `probe` (its flags),
    from the store when an earlier process stored it. `ask` must return
    JSON data and be a pure function of the compiler and the probe."""
    root = cache_root()
    if root is None:
        return ask()
    key = _key(compiler, probe)
    path = root / f"compilers-{FORMAT}" / key[:2] / key
    raw = read_regular(path, _MAX_ENTRY, follow=False)
    body = unseal(_FORM, key, raw) if raw is not None and len(raw) <= _MAX_ENTRY else None
    if body is not None:
        try:
            value = json.loads(body)
            if isinstance(value, dict):
                return value
        except (ValueError, RecursionError):
            pass
    value = ask()
    try:
        from .atomicio import write_atomic
        path.parent.mkdir(parents=True, exist_ok=True)
        # through=False: a FIFO planted where the entry goes is replaced, never opened
        write_atomic(path, seal(_FORM, key, json.dumps(value, sort_keys=True).encode()), durable=False,
                     sweep=False, through=False)
    except OSError:
        pass                                # a store that cannot be written is no store
    return value
