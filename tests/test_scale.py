"""The front end scales linearly: a function with 5,000 sites, a translation
unit with 20,000. Each size is compared with half of it (CPU time of the
whole command, less that of a one-site scan), so the test holds on a slow
or busy machine; quadratic work would make the ratio about 4."""
from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from conftest import ROOT, TESTDATA

OPS = ["cpu.io_delay", "irq.irq_disable", "cpu.read_tsc"]


def source(sites: int, per_function: int) -> str:
    out = [f'#include "{TESTDATA / "pvpass/ops.h"}"']
    for f in range(0, sites, per_function):
        out.append(f"void f{f}(void)\n{{")
        for i in range(f, min(sites, f + per_function)):
            op = OPS[i % len(OPS)]
            out.append(f'\tasm volatile(PVPASS_SITE({op}, "any") PVPASS_CALL'
                       f' : : [pv_op] "m" (pv_ops.{op}) : "memory");')
        out.append("}")
    return "\n".join(out) + "\n"


def scan_cpu(path) -> tuple[float, int]:
    """CPU seconds (user + sys) of `pvpass scan`, and the sites it found."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run([sys.executable, "-m", "pvpass", "scan", str(path), "--format", "text"],
                       capture_output=True, text=True, cwd=ROOT, env={**__import__("os").environ,
                                                                      "PVPASS_CACHE": "0"})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert r.returncode == 0, r.stderr[-2000:]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, sum(1 for line in r.stdout.splitlines() if line.startswith("site "))


@pytest.mark.parametrize("sites,per_function", [(5000, 5000), (20000, 100)],
                         ids=["one function", "one TU"])
def test_scan_is_linear(tmp, sites, per_function):
    base = tmp / "one.c"
    base.write_text(source(1, 1))
    t0, n = scan_cpu(base)
    assert n == 1
    times = {}
    for size in (sites // 2, sites):
        src = tmp / f"s{size}.c"
        src.write_text(source(size, per_function))
        t, n = scan_cpu(src)
        assert n == size
        times[size] = max(t - t0, 1e-3)
    ratio = times[sites] / times[sites // 2]
    assert ratio < 3, f"{sites // 2} sites: {times[sites // 2]:.2f} s, {sites}: {times[sites]:.2f} s"
