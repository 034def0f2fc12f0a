#!/usr/bin/env python3
"""Stub generation time per 1,000 sites (run by hand, not by pytest).

    .venv/bin/python tests/bench/stubs.py [N_SITES]

Builds N synthetic sites over the ops of testdata/pvpass/sites.c with
varied lengths and clobber sets (so caches see many distinct keys) and
times the emit plan (every site x every backend) plus its asm rendering.
"""
from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from pvpass.arch import get_arch  # noqa: E402
from pvpass.emit.plan import make_plan  # noqa: E402
from pvpass.emit.render import render_asm  # noqa: E402
from pvpass.frontend.scan import scan  # noqa: E402


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    for arch_name in ("x86_64", "i386"):
        arch = get_arch(arch_name)
        inv = scan(str(ROOT / "testdata/pvpass/sites.c"), arch, ["-O2"]).inventory
        regs = [r for r, _ in arch.clobber_bits]
        base = inv.sites
        sites = []
        for i in range(n):
            s = base[i % len(base)]
            clob = tuple(r for j, r in enumerate(regs) if (i >> j) & 1) or (arch.ret_reg,)
            sites.append(replace(s, length=6 + i % 7, clobbers=clob, mask=arch.mask(clob)))
        inv.sites = sites
        t0 = time.perf_counter()
        plan = make_plan(arch, inv)
        t1 = time.perf_counter()
        text = render_asm(plan)
        t2 = time.perf_counter()
        per = 1000 / n
        print(f"{arch_name}: {n} sites x {len(plan.backends)} backends: plan {(t1 - t0) * per * 1e3:.1f} ms"
              f" + asm {(t2 - t1) * per * 1e3:.1f} ms per 1,000 sites"
              f" ({len(plan.trampolines)} trampolines, {len(text) // 1024} KiB asm)")


if __name__ == "__main__":
    main()
