#!/usr/bin/env python3
"""The kernel's own boot-time patch as the oracle for `pvpass patch` (run by
hand: needs qemu-system-x86_64, cpio, a Linux 6.1 x86-64 vmlinux with
CONFIG_PVH; about 2-4 min of one core per boot under TCG).

    .venv/bin/python tests/bench/kernel_oracle.py VMLINUX WORKDIR [--backend native]

1. `pvpass patch VMLINUX --backend native -o WORKDIR/vmlinux.patched`.
2. Boots VMLINUX in QEMU (TCG, one CPU, `nokaslr`, PVH entry with
   `-kernel`) to a static init in an initramfs, which prints
   "pvpass-oracle: userspace reached"; then reads the kernel's memory with
   the monitor's `pmemsave` (physical addresses from the ELF program headers).
3. Compares every site's region (the site and the alternatives overlapping
   it) in memory with the patched file: sites in memory the kernel keeps and
   sites in init memory (freed after boot, so not comparable) are counted apart;
   each difference is printed with both disassemblies.
4. Boots the patched image the same way, and compares again (the kernel
   re-patches each site at boot: it must write the same bytes).
"""
from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from elftools.elf.elffile import ELFFile

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))
from pvpass.emit.stubs import disassemble  # noqa: E402
from pvpass.kernel.image import KernelImage  # noqa: E402
from pvpass.kernel.rules import backend, patch_image  # noqa: E402
from pvpass.link.elfobj import ElfObject  # noqa: E402

READY = b"pvpass-oracle: userspace reached"


def initramfs(work: Path, bits: int, modules: tuple[Path, ...] = ()) -> Path:
    """The static init, and the modules it loads at start (in /modules)."""
    out = work / "initramfs.cpio"
    root = Path(tempfile.mkdtemp(dir=work))
    subprocess.run(["gcc", f"-m{bits}", "-static", "-O2", "-o", str(root / "init"), str(HERE / "kernel_init.c")],
                   check=True)
    if modules:
        (root / "modules").mkdir()
        for m in modules:
            shutil.copy(m, root / "modules" / m.name)
    names = subprocess.run(["find", ".", "-print0"], cwd=root, capture_output=True, check=True).stdout
    with open(out, "wb") as f:
        subprocess.run(["cpio", "--null", "-o", "-H", "newc", "--quiet"], cwd=root, input=names,
                       stdout=f, check=True)
    shutil.rmtree(root)
    return out


def loads(path: Path) -> list[tuple[int, int, int]]:
    """(vaddr, paddr, memsz) of each PT_LOAD."""
    with open(path, "rb") as f:
        return [(p["p_vaddr"], p["p_paddr"], p["p_memsz"]) for p in ELFFile(f).iter_segments()
                if p["p_type"] == "PT_LOAD"]


def qmp(sock: Path, commands: list[tuple[str, dict]]) -> None:
    """Run QMP commands in order, each to its reply (pmemsave returns when
    the file is written)."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(sock))
    f = s.makefile("rwb")
    json.loads(f.readline())                   # the greeting
    for name, args in commands:
        f.write(json.dumps({"execute": name, "arguments": args}).encode() + b"\n")
        f.flush()
        while True:
            line = f.readline()
            if not line:
                return                            # quit: the socket closes
            r = json.loads(line)
            if "error" in r:
                sys.exit(f"QMP {name}: {r['error']}")
            if "return" in r:
                break
    s.close()


def boot(vmlinux: Path, initrd: Path, work: Path, tag: str, timeout: float,
         grab=None) -> tuple[bytes, int, str, float]:
    """Boot to userspace; (physical memory from the lowest load, its base,
    the serial log, seconds to userspace). grab(log) gives more QMP
    commands to run before the guest quits (memsave of module sections)."""
    segs = loads(vmlinux)
    base = min(p for _, p, _ in segs)
    end = max(p + m for _, p, m in segs)
    log, sock, dump = work / f"boot-{tag}.log", work / f"mon-{tag}.sock", work / f"mem-{tag}.bin"
    for f in (log, sock, dump):
        f.unlink(missing_ok=True)
    cmd = ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "qemu64", "-smp", "1", "-m", "512M",
           "-display", "none", "-no-reboot", "-kernel", str(vmlinux), "-initrd", str(initrd),
           "-append", "console=ttyS0 nokaslr panic=-1", "-serial", f"file:{log}",
           "-qmp", f"unix:{sock},server,nowait"]
    print(f"$ {' '.join(cmd)}", flush=True)
    t0 = time.time()
    q = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
    try:
        while READY not in (log.read_bytes() if log.exists() else b""):
            if q.poll() is not None:
                sys.exit(f"QEMU exited ({q.returncode}) before userspace; log {log}:\n"
                         + log.read_text(errors="replace")[-3000:])
            if time.time() - t0 > timeout:
                sys.exit(f"no userspace after {timeout:.0f} s; log {log}:\n"
                         + log.read_text(errors="replace")[-3000:])
            time.sleep(1)
        took = time.time() - t0
        time.sleep(2)                      # let the console settle
        more = grab(log.read_text(errors="replace")) if grab else []
        qmp(sock, [("qmp_capabilities", {}),
                   ("pmemsave", {"val": base, "size": end - base, "filename": str(dump)}),
                   *more, ("quit", {})])
        q.wait(timeout=60)
    finally:
        if q.poll() is None:
            q.kill()
    mem = dump.read_bytes()
    dump.unlink()
    return mem, base, log.read_text(errors="replace"), took


def text(img: KernelImage, code: bytes, addr: int) -> str:
    return "; ".join(t for _, _, t in disassemble(img.arch, code, addr)) or code.hex()


def compare(img: KernelImage, patched: KernelImage, mem: bytes, base: int, segs) -> dict:
    """Each site region: the patched file's bytes against guest memory."""
    def phys(addr: int) -> int:
        for v, p, m in segs:
            if v <= addr < v + m:
                return addr - v + p - base
        raise ValueError(f"{addr:#x} in no PT_LOAD")
    counts = {"kept same": 0, "kept differ": 0, "init same": 0, "init differ": 0, "kept unpatched": 0}
    diffs = []
    for sp in patch_image(img, backend(img, "native")):
        n = len(sp.after)
        ours = patched.read(sp.start, n)
        o = phys(sp.start)
        theirs = mem[o:o + n]
        where = "init" if img.in_init(sp.site.addr) else "kept"
        same = ours == theirs
        counts[f"{where} {'same' if same else 'differ'}"] += 1
        # the comparison can fail: the unpatched bytes are not what the kernel runs
        counts["kept unpatched"] += where == "kept" and sp.before == theirs
        if not same and where == "kept":
            diffs.append((img.name_of(sp.site.addr), sp.how, ours, theirs, sp.start))
    return {"counts": counts, "diffs": diffs}


def report(tag: str, img: KernelImage, res: dict, took: float) -> None:
    c = res["counts"]
    kept = c["kept same"] + c["kept differ"]
    init = c["init same"] + c["init differ"]
    print(f"[{tag}] userspace after {took:.0f} s; sites {kept + init}: kept after boot {kept}, "
          f"byte-identical {c['kept same']}/{kept}; in init memory (freed after boot) {init}, "
          f"identical there anyway {c['init same']}; kept sites whose unpatched bytes match "
          f"memory {c['kept unpatched']}")
    for name, how, ours, theirs, start in res["diffs"]:
        print(f"  DIFF {name} ({how})\n    pvpass: {ours.hex()}  {text(img, ours, start)}\n"
              f"    kernel: {theirs.hex()}  {text(img, theirs, start)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("vmlinux", type=Path)
    ap.add_argument("work", type=Path)
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--skip-patched", action="store_true", help="do not boot the patched image")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    work = a.work.resolve()
    out = work / "vmlinux.patched"
    t0 = time.process_time()
    r = subprocess.run([sys.executable, "-m", "pvpass", "patch", str(a.vmlinux), "--backend", "native",
                        "-o", str(out)], capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"pvpass patch failed ({r.returncode}):\n{r.stderr}")
    print(f"pvpass patch {a.vmlinux} --backend native -o {out}: exit 0")
    img = KernelImage(ElfObject.read(str(a.vmlinux)))
    initrd = initramfs(work, img.arch.bits)
    patched = KernelImage(ElfObject.read(str(out)))
    segs = loads(a.vmlinux)
    mem, base, log, took = boot(a.vmlinux, initrd, work, "plain", a.timeout)
    report("plain kernel vs pvpass patch", img, compare(img, patched, mem, base, segs), took)
    if not a.skip_patched:
        mem, base, log, took = boot(out, initrd, work, "patched", a.timeout)
        report("ahead-of-time patched kernel vs pvpass patch", img,
               compare(img, patched, mem, base, segs), took)
        print("boot log of the patched kernel (first and last lines):")
        lines = log.splitlines()
        for line in lines[:3] + ["..."] + lines[-8:]:
            print(f"  {line}")


if __name__ == "__main__":
    main()
