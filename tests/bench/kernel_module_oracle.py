#!/usr/bin/env python3
"""The kernel's module loader as the oracle for pvpass on a `.ko` (run by
hand: needs qemu-system-x86_64, cpio, a Linux 6.1 x86-64 vmlinux with
CONFIG_PVH and CONFIG_MODULES, and modules built against it
(tests/bench/kernel_modules.sh); two boots, about a minute in all on the
defconfig kernel under TCG).

    .venv/bin/python tests/bench/kernel_module_oracle.py VMLINUX WORKDIR MOD.ko [MOD.ko ...]

1. Runs `pvpass patch --kernel` on each module: where it writes one (every
   site inline code or NOPs), a second boot loads the patched .ko in its
   place (the loader re-patches each site: it must write the same bytes).
2. Boots VMLINUX in QEMU (TCG, nokaslr, as tests/bench/kernel_oracle.py
   does) with the modules in the initramfs; its init loads each one
   (finit_module) and prints /sys/module/NAME/sections/*, and the host reads
   each loaded module's code sections out of guest memory (QMP `memsave`,
   virtual addresses).
3. For each module, ModuleImage over VMLINUX at the load addresses the guest
   printed (what `pvpass show --kernel VMLINUX --load-address ...` prints),
   and every site's region compared with memory. Sites in the module's init
   sections (freed once its init returns) are counted apart.
4. `pvpass show` and `pvpass verify` with those load addresses, each one's
   exit and last line.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))
sys.path.insert(0, str(HERE))
from kernel_oracle import boot, initramfs, text  # noqa: E402
from pvpass.kernel.image import KernelImage  # noqa: E402
from pvpass.kernel.module import ModuleImage  # noqa: E402
from pvpass.kernel.rules import backend, patch_image  # noqa: E402
from pvpass.link.elfobj import ElfObject  # noqa: E402

SECTION = re.compile(r"pvpass-oracle: section (\S+) (\S+) (0x[0-9a-f]+)")
INSMOD = re.compile(r"pvpass-oracle: insmod (\S+): (.*)")


def placed(obj: ElfObject, secs: dict[str, int]) -> dict[str, int]:
    """The guest's addresses of the module's allocated sections."""
    return {s: v for s, v in secs.items() if obj.section(s) is not None and obj.section(s)["sh_flags"] & 2}


def modname(ko: Path) -> str:
    return ko.name[:-3].replace("-", "_")


def load_map(log: str) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for m in SECTION.finditer(log):
        out.setdefault(m.group(1), {})[m.group(2)] = int(m.group(3), 16)
    return out


def compare(kernel: KernelImage, name: str, ko: Path, obj: ElfObject, secs: dict[str, int],
            mem: dict[str, bytes]) -> None:
    """Every site's region in guest memory against pvpass's result for the
    load addresses the guest printed."""
    img = ModuleImage(kernel, obj, secs)
    counts = {"kept same": 0, "kept differ": 0, "init": 0, "kept unpatched": 0}
    diffs = []
    for p in patch_image(img, backend(img, "native")):
        if img.in_init(p.start):
            counts["init"] += 1
            continue
        sec, off = img._sec_at(p.start)
        theirs = mem[sec.name][off:off + len(p.after)]
        same = theirs == p.after
        counts["kept same" if same else "kept differ"] += 1
        counts["kept unpatched"] += p.before == theirs
        if not same:
            diffs.append((img.label(p.site.addr), p.how, p.after, theirs, p.start))
    kept = counts["kept same"] + counts["kept differ"]
    where = " ".join(f"{s}={v:#x}" for s, v in sorted(secs.items()) if obj.section(s).index in img.read_secs)
    print(f"[{name}: {ko}] loaded at {where}; sites {kept + counts['init']}: kept after init {kept}, "
          f"byte-identical {counts['kept same']}/{kept}; in init sections (freed after init) "
          f"{counts['init']}; kept sites whose unpatched bytes match memory {counts['kept unpatched']}")
    for label, how, ours, theirs, start in diffs:
        print(f"  DIFF {label} ({how})\n    pvpass: {ours.hex()}  {text(img, ours, start)}\n"
              f"    kernel: {theirs.hex()}  {text(img, theirs, start)}")


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    """pvpass CMD, printed with its exit and the line that says what it did."""
    r = subprocess.run([sys.executable, "-m", "pvpass", *cmd], capture_output=True, text=True)
    if cmd[0] == "show":
        last = f"{sum(1 for line in r.stdout.splitlines() if not line.startswith(' '))} sites shown"
    elif cmd[0] == "verify":
        last = (r.stdout.strip().splitlines() or [""])[-1]
    else:
        last = r.stderr.strip() or "written"
    shown = [c for c in cmd if not c.startswith("--load-address")]
    more = f" (and {len(cmd) - len(shown)} --load-address)" if len(shown) < len(cmd) else ""
    print(f"$ pvpass {' '.join(shown)}{more}\n  exit {r.returncode}: {last}", flush=True)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("vmlinux", type=Path)
    ap.add_argument("work", type=Path)
    ap.add_argument("modules", type=Path, nargs="+")
    ap.add_argument("--timeout", type=float, default=900)
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    work = a.work.resolve()
    kernel = KernelImage(ElfObject.read(str(a.vmlinux)))
    mods = {modname(k): (k, ElfObject.read(str(k))) for k in a.modules}
    # the modules pvpass can patch ahead of time, under their own file names
    (work / "patched").mkdir(exist_ok=True)
    patched = {}
    for name, (ko, _) in mods.items():
        out = work / "patched" / ko.name
        if run(["patch", str(ko), "--kernel", str(a.vmlinux), "--backend", "native", "-o", str(out)]).returncode == 0:
            patched[name] = out
    boots = [("plain modules", {n: k for n, (k, _) in mods.items()})]
    if patched:
        boots.append(("ahead-of-time patched modules", {n: patched.get(n, k) for n, (k, _) in mods.items()}))
    for tag, files in boots:
        print(f"== boot with the {tag}")
        initrd = initramfs(work, kernel.arch.bits, tuple(files.values()))
        dumps: dict[tuple[str, str], Path] = {}

        def grab(log: str) -> list:
            """memsave of each loaded module's sections that hold sites or
            replacements (not its init sections: freed by now)."""
            cmds = []
            for name, secs in load_map(log).items():
                obj = mods[name][1]
                img = ModuleImage(kernel, obj, placed(obj, secs))
                for i in sorted(img.read_secs):
                    sec = obj.sections[i]
                    if sec.name.startswith(".init") or sec["sh_type"] == "SHT_NOBITS":
                        continue
                    f = work / f"mem-{name}{sec.name}.bin"
                    f.unlink(missing_ok=True)
                    dumps[(name, sec.name)] = f
                    v = secs[sec.name]
                    cmds.append(("memsave", {"val": v - (1 << 64) if v >> 63 else v,   # QMP's int is int64
                                             "size": sec["sh_size"], "filename": str(f), "cpu-index": 0}))
            return cmds

        _, _, log, took = boot(a.vmlinux, initrd, work, tag.split()[0], a.timeout, grab)
        print(f"userspace after {took:.0f} s")
        for m in INSMOD.finditer(log):
            print(f"  guest: insmod {m.group(1)}: {m.group(2)}")
        loaded = load_map(log)
        for name, (ko, obj) in mods.items():
            if name not in loaded:
                print(f"[{name}] not loaded in the guest: nothing to compare")
                continue
            mem = {s: dumps[(n, s)].read_bytes() for (n, s) in dumps if n == name}
            compare(kernel, name, files[name], obj, placed(obj, loaded[name]), mem)
    print("== pvpass on each module, at the first boot's load addresses where it loaded")
    loaded = load_map((work / "boot-plain.log").read_text(errors="replace"))
    for name, (ko, obj) in mods.items():
        loads = [f"--load-address={s}={v:#x}" for s, v in sorted(placed(obj, loaded.get(name, {})).items())]
        for cmd in (["show", str(ko), "--kernel", str(a.vmlinux), "--backend", "native", *loads],
                    ["verify", str(ko), "--kernel", str(a.vmlinux), "--backend", "native", "--states", "4",
                     *loads]):
            run(cmd)


if __name__ == "__main__":
    main()
