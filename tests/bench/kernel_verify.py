#!/usr/bin/env python3
"""`pvpass verify` on a whole vmlinux, per backend, and on a mutant of a real
callee-save thunk (run by hand; seconds to minutes of one core per backend).

    .venv/bin/python tests/bench/kernel_verify.py VMLINUX WORKDIR [--states N] [--module MOD.ko] [--mutate FUNC]

For native and each Xen ops object the image holds (xen_irq_ops,
xen_cpu_ops, xen_mmu_ops): the command, its summary line (counts, CPU, peak
memory) and the first failures. Then the mutant: on x86-64, THUNK's last
`pop %rdx; pop %rcx` becomes `pop %rsi; ...` (one more register written),
and verify with the backend that calls it must fail there; on i386 (no Xen,
and native calls no thunk) TARGET32 starts with `xor %ebx,%ebx; ret`
(a callee-saved register written), and the native sites calling it must fail.
With --module, the same for a module's sites over VMLINUX (`--kernel`);
--mutate FUNC makes FUNC start with `xor %ebx,%ebx; ret` instead, on
either arch, verified with native.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from elftools.elf.elffile import ELFFile

THUNK, THUNK_BACKEND = "__raw_callee_save_xen_pte_val", "xen_mmu_ops"
TARGET32 = "native_queued_spin_lock_slowpath"


def verify(vmlinux: Path, backend: str, states: int, module: Path | None = None) -> subprocess.CompletedProcess:
    args = ([str(module), "--kernel"] if module else []) + [str(vmlinux), "--backend", backend, "--states", str(states)]
    cmd = [sys.executable, "-m", "pvpass", "verify", *args]
    print(f"$ pvpass verify {' '.join(args)}", flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True)
    print(f"  exit {r.returncode}: {r.stdout.strip()}")
    fails = [ln for ln in r.stderr.splitlines() if "not emulated:" not in ln]
    for ln in fails[:10]:
        print(f"  {ln}")
    if len(fails) > 10:
        print(f"  ... {len(fails) - 10} more")
    return r


def mutant(vmlinux: Path, work: Path, bits: int, name: str) -> Path | None:
    with open(vmlinux, "rb") as f:
        e = ELFFile(f)
        sym = next((s for s in e.get_section_by_name(".symtab").iter_symbols() if s.name == name), None)
        if sym is None:
            return None
        sec = e.get_section(sym["st_shndx"])
        off = sec["sh_offset"] + sym["st_value"] - sec["sh_addr"]
    data = bytearray(vmlinux.read_bytes())
    if name != THUNK:
        data[off:off + 3] = bytes([0x31, 0xDB, 0xC3])     # xor %ebx,%ebx; ret
        what = f"{name}: starts with xor %ebx,%ebx; ret"
    else:
        k = bytes(data[off:off + sym["st_size"]]).rfind(bytes([0x5A, 0x59]))   # pop %rdx; pop %rcx
        if k < 0:
            return None
        data[off + k] = 0x5E                              # pop %rsi
        what = f"{name}+{k:#x}: pop %rdx -> pop %rsi"
    out = work / "vmlinux.mutant"
    out.write_bytes(bytes(data))
    print(f"mutant: {what}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("vmlinux", type=Path)
    ap.add_argument("work", type=Path)
    ap.add_argument("--states", type=int, default=4)
    ap.add_argument("--module", type=Path, help="verify this .ko over VMLINUX instead of VMLINUX's own sites")
    ap.add_argument("--mutate", metavar="FUNC", help="the mutant's function (starts with xor %%ebx,%%ebx; ret)")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    with open(a.vmlinux, "rb") as f:
        bits = ELFFile(f).elfclass
    for b in ("native", "xen_irq_ops", "xen_cpu_ops", "xen_mmu_ops") if bits == 64 else ("native",):
        verify(a.vmlinux, b, a.states, a.module)
    name = a.mutate or (THUNK if bits == 64 else TARGET32)
    m = mutant(a.vmlinux, a.work, bits, name)
    if m is None:
        sys.exit(f"no {name} to mutate in {a.vmlinux}")
    r = verify(m, THUNK_BACKEND if name == THUNK else "native", a.states, a.module)
    hit = [ln for ln in r.stderr.splitlines() if name in ln and "changed" in ln]
    print(f"mutant: exit {r.returncode}, {len(hit)} sites fail on it"
          + (f", e.g.\n  {hit[0]}" if hit else ""))


if __name__ == "__main__":
    main()
