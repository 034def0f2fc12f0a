#!/usr/bin/env python3
"""The in-process CPU of `pvpass cc`'s cheap verdicts on given objects (run by
hand): what driver._after_compile does before it returns on the kernel-check
and no-site paths: read the object, check it as every reader does
(tableread.check, where this pvpass has it), then the kernel table's
object-only check or the scan for candidate calls. startup.py's process
figures vary by milliseconds from run to run; this resolves the tenths.

    .venv/bin/python tests/bench/verdict_cpu.py OBJ.o...
    PYTHONPATH=OTHER_TREE .venv/bin/python tests/bench/verdict_cpu.py OBJ.o...   # another version

Prints the median CPU (process time) of N runs per object."""
from __future__ import annotations

import statistics
import sys
import time

from pvpass import table
from pvpass.link.elfobj import ElfObject
from pvpass.link.tablecheck import call_candidates, check_table

try:
    from pvpass.link.tableread import check
except ImportError:          # a pvpass from before the check
    check = None


def verdict(data: bytes) -> None:
    obj = ElfObject("o.o", data)
    entries = check(obj) if check else None
    if obj.section(table.SECTION) is not None:
        check_table(obj, entries) if check else check_table(obj)
    else:
        call_candidates(obj)


def main() -> None:
    for f in sys.argv[1:]:
        with open(f, "rb") as fh:
            data = fh.read()
        n = 300 if len(data) < 100_000 else 60
        ts = []
        for _ in range(n):
            t0 = time.process_time()
            verdict(data)
            ts.append(time.process_time() - t0)
        print(f"{f}: {statistics.median(ts) * 1000:.3f} ms CPU (median of {n}; "
              f"{'with' if check else 'without'} the check)")


if __name__ == "__main__":
    main()
