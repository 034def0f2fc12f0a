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
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from pvpass.arch import get_arch  # noqa: E402
from pvpass.frontend.scan import scan  # noqa: E402
from pvpass.link.elfobj import ElfObject  # noqa: E402
from pvpass.link.step import link_object  # noqa: E402


def best(fn, n=3) -> float:
    t = None
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        t = dt if t is None else min(t, dt)
    return t


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
        print(f"ld -r:              {t_ld * 1e3:7.1f} ms")
        print(f"pvpass link (cmd):  {t_cmd * 1e3:7.1f} ms  = {t_cmd / t_ld:5.2f}x ld -r")
        print(f"link step alone:    {t_step * 1e3:7.1f} ms  = {t_step / t_ld:5.2f}x ld -r")


if __name__ == "__main__":
    main()
