"""pvpass scales linearly in sites, whether they crowd one function or
spread over many: `scan` over a function with 5,000 sites and a translation
unit with 20,000, `pvpass cc` over a function with 8,000 sites, 3,000
functions of one site and 1,000 functions of ten (issue 15: matching each
call against every site of its op made cc quadratic; reading each
function's asm statements and head afresh cost it ~0.1 ms a function). Each size is compared with half of it (CPU time
of the whole command, gcc included for cc, less that of a one-site run),
so the test holds on a slow or busy machine; quadratic work would make the
ratio about 4."""
from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest

from conftest import INCLUDE, ROOT, TESTDATA

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


def _cpu(argv: list[str]) -> tuple[float, str]:
    """CPU seconds (user + sys) of a pvpass command and its children, and
    its standard output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run([sys.executable, "-m", "pvpass", *argv], capture_output=True, text=True,
                       cwd=ROOT, env={**os.environ, "PVPASS_CACHE": "0"})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert r.returncode == 0, r.stderr[-2000:]
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), r.stdout


def scan_cpu(path) -> tuple[float, int]:
    """CPU seconds of `pvpass scan`, and the sites it found."""
    cpu, out = _cpu(["scan", str(path), "--format", "text"])
    return cpu, sum(1 for line in out.splitlines() if line.startswith("site "))


def cc_cpu(path) -> tuple[float, int]:
    """CPU seconds of `pvpass cc -- gcc -O0` (at -O0 gcc reaches the ops
    object afresh at every site, so each is tabled), and the table's sites."""
    obj = path.with_suffix(".o")
    cpu, _ = _cpu(["cc", "--", "gcc", "-O0", "-fno-pie", f"-I{INCLUDE}", "-c", str(path), "-o", str(obj)])
    _, out = _cpu(["table", str(obj)])
    return cpu, int(out.split(": ", 1)[1].split()[0])


@pytest.mark.parametrize("measure,sites,per_function", [
    (scan_cpu, 5000, 5000), (scan_cpu, 20000, 100), (cc_cpu, 8000, 8000), (cc_cpu, 3000, 1),
    (cc_cpu, 10000, 10)],
    ids=["scan one function", "scan one TU", "cc one function", "cc functions", "cc one TU"])
def test_linear(tmp, measure, sites, per_function):
    base = tmp / "one.c"
    base.write_text(source(1, 1))
    t0, n = measure(base)
    assert n == 1
    times = {}
    for size in (sites // 2, sites):
        src = tmp / f"s{size}.c"
        src.write_text(source(size, per_function))
        t, n = measure(src)
        assert n == size
        times[size] = max(t - t0, 1e-3)
    ratio = times[sites] / times[sites // 2]
    assert ratio < 3, f"{sites // 2} sites: {times[sites // 2]:.2f} s, {sites}: {times[sites]:.2f} s"
