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
   sections (freed once its init returns) are counted apart, and compared
   where the module's init copied its own patched code to oracle_init_copy
   (tests/bench/kmod/pvmod.c does).
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


def init_copy(obj: ElfObject, secs: dict[str, int]) -> tuple[int, int, int] | None:
    """(address, size, the code's address) of a copy the module's init made of
    its own patched init code (oracle_init_copy, from init_module on):
    .init.text is freed once the init returns."""
    syms = {s.name: s for s in obj.symbols if s.name in ("oracle_init_copy", "init_module")}
    if len(syms) < 2:
        return None
    buf, code = syms["oracle_init_copy"], syms["init_module"]
    return (secs[obj.sections[buf.shndx].name] + buf.value, buf.size,
            secs[obj.sections[code.shndx].name] + code.value)


def modname(ko: Path) -> str:
    return ko.name[:-3].replace("-", "_")


def load_map(log: str) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for m in SECTION.finditer(log):
        out.setdefault(m.group(1), {})[m.group(2)] = int(m.group(3), 16)
    return out


def compare(kernel: KernelImage, name: str, ko: Path, obj: ElfObject, secs: dict[str, int],
            mem: dict[str, bytes], copy: bytes | None) -> None:
    """Every site's region in guest memory (an init site: in the init's copy
    of its code, where it made one) against pvpass's result for the load
    addresses the guest printed."""
    img = ModuleImage(kernel, obj, secs)
    counts = {"kept same": 0, "kept differ": 0, "init same": 0, "init differ": 0, "init unread": 0,
              "unpatched": 0}
    copied = init_copy(obj, secs)
    diffs = []
    for p in patch_image(img, backend(img, "native")):
        n = len(p.after)
        if img.in_init(p.start):
            if copy is None or not copied or not copied[2] <= p.start <= copied[2] + len(copy) - n:
                counts["init unread"] += 1
                continue
            theirs, where = copy[p.start - copied[2]:p.start - copied[2] + n], "init"
        else:
            sec, off = img._sec_at(p.start)
            theirs, where = mem[sec.name][off:off + n], "kept"
        same = theirs == p.after
        counts[f"{where} {'same' if same else 'differ'}"] += 1
        counts["unpatched"] += p.before == theirs
        if not same:
            diffs.append((img.label(p.site.addr), p.how, p.after, theirs, p.start))
    kept = counts["kept same"] + counts["kept differ"]
    init = counts["init same"] + counts["init differ"]
    where = " ".join(f"{s}={v:#x}" for s, v in sorted(secs.items()) if obj.section(s).index in img.read_secs)
    print(f"[{name}: {ko}] loaded at {where}; sites {kept + init + counts['init unread']}: kept after init "
          f"{kept}, byte-identical {counts['kept same']}/{kept}; in init sections {init + counts['init unread']}"
          f" (freed after init), read from the init's copy {init}, byte-identical {counts['init same']}/{init};"
          f" sites whose unpatched bytes match memory {counts['unpatched']}")
    for label, how, ours, theirs, start in diffs:
        print(f"  DIFF {label} ({how})\n    pvpass: {ours.hex()}  {text(img, ours, start)}\n"
              f"    kernel: {theirs.hex()}  {text(img, theirs, start)}")


def memsave(addr: int, size: int, f: Path) -> tuple[str, dict]:
    """QMP memsave of guest virtual memory (its int is int64)."""
    return ("memsave", {"val": addr - (1 << 64) if addr >> 63 else addr, "size": size, "filename": str(f),
                        "cpu-index": 0})


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
        copies: dict[str, Path] = {}

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
                    cmds.append(memsave(v, sec["sh_size"], f))
                c = init_copy(obj, placed(obj, secs))
                if c:
                    f = work / f"mem-{name}.init-copy.bin"
                    f.unlink(missing_ok=True)
                    copies[name] = f
                    cmds.append(memsave(c[0], c[1], f))
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
            copy = copies[name].read_bytes() if name in copies else None
            compare(kernel, name, files[name], obj, placed(obj, loaded[name]), mem, copy)
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
