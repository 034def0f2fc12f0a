#!/usr/bin/env python3
"""Link-step time over one `ld -r` of the same object, for an object with
thousands of sites (run by hand, not by pytest).

    .venv/bin/python tests/bench/link_vs_ld.py [N_FUNCTIONS]

Generates N functions that each inline four pvpass-dialect sites, compiles
with gcc -O2, then times `ld -r` on the object, the whole `pvpass link`
command (preprocess + scan + link step + write), and the link step alone
(find copies, build sections, write ELF) in-process.
"""
from __future__ import annotations

import os
import subprocess
import sys
import resource
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from pvpass.arch import get_arch  # noqa: E402
from pvpass.frontend.scan import scan  # noqa: E402
from pvpass.link.elfobj import ElfObject  # noqa: E402
from pvpass.link.step import link_object  # noqa: E402


def best(fn, n=3) -> tuple[float, float]:
    """(CPU, wall), each the best of n runs: CPU is this process's plus its
    children's user+sys."""
    cpu = wall = None
    for _ in range(n):
        c0, t0 = _cpu(), time.perf_counter()
        fn()
        dt, dc = time.perf_counter() - t0, _cpu() - c0
        wall = dt if wall is None else min(wall, dt)
        cpu = dc if cpu is None else min(cpu, dc)
    return cpu, wall


def _cpu() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "many.c"
        body = [f'#include "{ROOT}/testdata/pvpass/ops.h"',
                "static inline unsigned long sfl(void) { return PV_CALLEE0(unsigned long, irq.save_fl); }",
                "static inline void dly(void) { PV_VCALL0(cpu.io_delay); }",
                "static inline unsigned long pte(unsigned long x) { return PV_CALLEE1(unsigned long, mmu.pte_val, x); }"]
        for i in range(n):
            body.append(f"unsigned long f{i}(unsigned long x) {{ dly(); x += pte(x); dly(); return x ^ sfl(); }}")
        src.write_text("\n".join(body) + "\n")
        obj = Path(tmp) / "many.o"
        flags = ["-O2", "-I", str(ROOT / "pvpass/include")]
        subprocess.run(["gcc", *flags, "-c", str(src), "-o", str(obj)], check=True)
        t_ld = best(lambda: subprocess.run(["ld", "-r", str(obj), "-o", str(Path(tmp) / "r.o")], check=True))
        out = Path(tmp) / "l.o"
        cmd = [sys.executable, "-m", "pvpass", "link", str(obj), "--source", str(src), "-o", str(out), "--", *flags]
        t_cmd = best(lambda: subprocess.run(cmd, check=True))
        arch = get_arch("x86_64")
        res = scan(str(src), arch, flags)
        o = ElfObject.read(str(obj))
        result = None

        def step():
            nonlocal result
            result = link_object(ElfObject(str(obj), o.data), res)
        t_step = best(step)
        sites = len(result.copies)
        print(f"{sites} site copies in {os.path.getsize(obj) // 1024} KiB object")
        print("                     CPU (user+sys)       wall")
        for name, (c, w) in (("ld -r", t_ld), ("pvpass link (cmd)", t_cmd), ("link step alone", t_step)):
            print(f"{name + ':':<20} {c * 1e3:7.1f} ms {c / t_ld[0]:5.2f}x   {w * 1e3:7.1f} ms {w / t_ld[1]:5.2f}x")


if __name__ == "__main__":
    main()
