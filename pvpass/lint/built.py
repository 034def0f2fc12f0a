"""Whether the build has already compiled a translation unit's text.

Lint parses every function of the main file to find C that gcc rejects
(pvpass/frontend/scan.py); over a kernel tree that is most of a cold run's
Python time (3.6 MB of functions in 35 TUs). A TU of a compile database
whose object exists and is no older than the source and every header its
line markers name was compiled from that very text by the same command:
gcc accepted it, as make concludes that it need not compile it again. A
failed compile leaves no object (gcc removes it), so the question is then
already answered and is not asked again."""
from __future__ import annotations

import os
import stat

from ..frontend.pptext import PPText


def compiled_by_build(obj: str | None, pp: PPText) -> bool:
    """`obj` (the command's -o, absolute) is at least as new as every file
    of `pp` (names like `<built-in>` are no files)."""
    if not obj:
        return False
    try:
        st = os.stat(obj)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode):
        return False
    built = st.st_mtime_ns
    for f in pp.files() + [pp.main_file]:
        if f.startswith("<") and f.endswith(">"):
            continue
        try:
            if os.stat(f).st_mtime_ns > built:
                return False
        except OSError:
            return False           # a header that is gone: the object says nothing
    return True
