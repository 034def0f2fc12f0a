#!/usr/bin/env python3
"""`pvpass verify` on a whole vmlinux, per backend, and on a mutant of a real
callee-save thunk (run by hand; seconds to minutes of one core per backend).

    .venv/bin/python tests/bench/kernel_verify.py VMLINUX WORKDIR [--states N]

For native and each Xen ops object the image holds (xen_irq_ops,
xen_cpu_ops, xen_mmu_ops): the command, its summary line (counts, CPU, peak
memory) and the first failures. Then the mutant: on x86-64, THUNK's last
`pop %rdx; pop %rcx` becomes `pop %rsi; ...` (one more register written),
and verify with the backend that calls it must fail there; on i386 (no Xen,
and native calls no thunk) TARGET32 starts with `xor %ebx,%ebx; ret`
(a callee-saved register written), and the native sites calling it must fail.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from elftools.elf.elffile import ELFFile

THUNK, THUNK_BACKEND = "__raw_callee_save_xen_pte_val", "xen_mmu_ops"
TARGET32 = "native_queued_spin_lock_slowpath"


def verify(vmlinux: Path, backend: str, states: int) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pvpass", "verify", str(vmlinux), "--backend", backend,
           "--states", str(states)]
    print(f"$ pvpass verify {vmlinux} --backend {backend} --states {states}", flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True)
    print(f"  exit {r.returncode}: {r.stdout.strip()}")
    fails = [ln for ln in r.stderr.splitlines() if "not emulated:" not in ln]
    for ln in fails[:10]:
        print(f"  {ln}")
    if len(fails) > 10:
        print(f"  ... {len(fails) - 10} more")
    return r


def mutant(vmlinux: Path, work: Path, bits: int) -> Path | None:
    name = THUNK if bits == 64 else TARGET32
    with open(vmlinux, "rb") as f:
        e = ELFFile(f)
        sym = next((s for s in e.get_section_by_name(".symtab").iter_symbols() if s.name == name), None)
        if sym is None:
            return None
        sec = e.get_section(sym["st_shndx"])
        off = sec["sh_offset"] + sym["st_value"] - sec["sh_addr"]
    data = bytearray(vmlinux.read_bytes())
    if bits == 32:
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
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    with open(a.vmlinux, "rb") as f:
        bits = ELFFile(f).elfclass
    for b in ("native", "xen_irq_ops", "xen_cpu_ops", "xen_mmu_ops") if bits == 64 else ("native",):
        verify(a.vmlinux, b, a.states)
    m = mutant(a.vmlinux, a.work, bits)
    if m is None:
        sys.exit(f"no {THUNK if bits == 64 else TARGET32} to mutate in {a.vmlinux}")
    r = verify(m, THUNK_BACKEND if bits == 64 else "native", a.states)
    hit = [ln for ln in r.stderr.splitlines()
           if (THUNK if bits == 64 else TARGET32) in ln and "changed" in ln]
    print(f"mutant: exit {r.returncode}, {len(hit)} sites fail on it"
          + (f", e.g.\n  {hit[0]}" if hit else ""))


if __name__ == "__main__":
    main()
