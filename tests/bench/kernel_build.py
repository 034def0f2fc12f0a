#!/usr/bin/env python3
"""The whole kernel as the benchmark (run by hand; hours for vmlinux on 2 cores).

    tests/bench/kernel_tus.sh /work/kbench             # source + x86-64 config
    .venv/bin/python tests/bench/kernel_build.py /work/kbench [TARGET...] [-j N] [--arch i386] [--side-by-side]

TARGETs default to `vmlinux`; give directories (`arch/x86/kernel/ mm/`) for
a subset. Three out-of-tree builds from clean with reproducible-build
settings (KBUILD_BUILD_TIMESTAMP/USER/HOST fixed), the config of
WORKDIR/build-x86_64/.config (x86_64 defconfig + PARAVIRT_XXL + XEN_PV, made
by kernel_tus.sh), or with --arch i386 of WORKDIR/build-i386/.config
(i386_defconfig + PARAVIRT + PARAVIRT_SPINLOCKS + KVM_GUEST, made here):

  plain    make -jN CC=gcc
  cold     make -jN CC="pvpass cc -- gcc"     (empty pvpass cache)
  warm     make clean, then cold's build again  (the pvpass cache kept)

With --side-by-side, cold runs at the same time as plain, and warm at the
same time as a second plain build (plain2), each at -j N (N=1 on 2 cores):
each pair shares whatever else loads the machine, and each build's CPU is
its own (wait4). Ratios are then cold/plain and warm/plain2.

Prints CPU (user+sys, children included) and wall of each build and the
ratios, the per-TU CPU ratio distribution (median, 90th percentile, worst
five; over all TUs and over those whose object holds .parainstructions),
whether the outputs are byte-identical (vmlinux, else every object), and
the warning lines of each build log. Each compile is timed by
tests/bench/timecc (GNU time around the compiler command). `pvpass cc`
takes its fast path (docs/build-path.md): each pvpass build gets its own
runtime directory, and the CPU of the server it started (detached, so no
wait4 sees it) is added to the build's total; the per-TU figures do not
hold the server's share (about a millisecond per compile).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PVPASS = Path(sys.executable).with_name("pvpass")


def i386_config(src: Path, work: Path) -> Path:
    build = work / "build-i386"
    config = build / ".config"
    if not config.exists():
        make = ["make", "-s", "-C", str(src), f"O={build}", "ARCH=i386"]
        subprocess.run([*make, "i386_defconfig"], check=True, capture_output=True)
        subprocess.run([str(src / "scripts/config"), "--file", str(config), "-e", "HYPERVISOR_GUEST",
                        "-e", "PARAVIRT", "-e", "PARAVIRT_SPINLOCKS", "-e", "KVM_GUEST",
                        "-d", "DEBUG_INFO", "-d", "DEBUG_INFO_BTF"], check=True)
        subprocess.run([*make, "olddefconfig"], check=True, capture_output=True)
    return config


def start(src: Path, out: Path, config: Path, targets: list[str], cc: str, jobs: int, env: dict,
          clean: bool = True, arch: list[str] = ()) -> tuple[subprocess.Popen, float, Path]:
    """Configure OUT and start `make` in it; its output goes to OUT.log."""
    if clean and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / ".config").exists():
        shutil.copy(config, out / ".config")
    make = ["make", "-C", str(src), f"O={out}", *arch]
    subprocess.run([*make, "olddefconfig"], env=env, check=True, capture_output=True)
    logfile = out.parent / f"{out.name}.log"
    with open(logfile, "w") as f:
        p = subprocess.Popen([*make, f"-j{jobs}", f"CC={cc}", *targets], env=env, stdout=f,
                             stderr=subprocess.STDOUT, text=True)
    return p, time.perf_counter(), logfile


def finish(p: subprocess.Popen, t0: float, logfile: Path) -> tuple[float, float, str]:
    """Wait for one build: its own CPU (user+sys of make and every child it
    waited for, from wait4, so that two builds running at once are told
    apart), its wall time and its log."""
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    log = logfile.read_text(errors="replace")
    if p.returncode:
        sys.exit(f"build logged in {logfile} failed:\n{log[-3000:]}")
    return ru.ru_utime + ru.ru_stime, wall, log


def servers_cpu(run_dir: Path) -> float:
    """The CPU seconds of the `pvpass cc` servers a build started (detached:
    no wait4 counts them), which are then stopped."""
    from fastpath import server_stats
    total = 0.0
    for sock in run_dir.glob("pvpass-*.sock"):
        try:
            total += server_stats(run_dir, sock)[0]
        except OSError:
            pass
        sock.unlink()
    return total


def per_tu(log: Path) -> dict[str, float]:
    """Object -> CPU seconds of its compile (the last one logged)."""
    out = {}
    for line in log.read_text().splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3].endswith(".o"):
            out[parts[3]] = float(parts[0]) + float(parts[1])
    return out


def has_table(obj: Path) -> bool:
    r = subprocess.run(["readelf", "-S", "-W", str(obj)], capture_output=True, text=True)
    return ".parainstructions" in r.stdout


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def same_image(plain_out: Path, pvout: Path) -> str:
    """Whether the pvpass build's output is the plain build's, byte for byte:
    vmlinux, or every object when no vmlinux was built."""
    if (plain_out / "vmlinux").exists() and (pvout / "vmlinux").exists():
        return f"vmlinux byte-identical: {(plain_out / 'vmlinux').read_bytes() == (pvout / 'vmlinux').read_bytes()}"
    objs = [p.relative_to(plain_out) for p in plain_out.rglob("*.o")]
    diff = [str(o) for o in objs if not (pvout / o).exists()
            or (pvout / o).read_bytes() != (plain_out / o).read_bytes()]
    return (f"objects byte-identical: {len(objs) - len(diff)} of {len(objs)}"
            + (f" (differ: {', '.join(diff[:5])})" if diff else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work", type=Path)
    ap.add_argument("targets", nargs="*", default=["vmlinux"])
    ap.add_argument("-j", type=int, default=os.cpu_count())
    ap.add_argument("--arch", choices=("x86_64", "i386"), default="x86_64")
    ap.add_argument("--keep-plain", action="store_true",
                    help="reuse the plain build of an earlier run (same targets)")
    ap.add_argument("--no-warm", action="store_true", help="plain and cold only")
    ap.add_argument("--side-by-side", action="store_true",
                    help="run cold beside a plain build, then warm beside a second plain build, "
                         "each at -j N, so that each pair shares the machine's load")
    a = ap.parse_args()
    work = a.work.resolve()
    src = work / "linux-source-6.1"
    i386 = a.arch == "i386"
    config = i386_config(src, work) if i386 else work / "build-x86_64" / ".config"
    sfx = "-i386" if i386 else ""               # i386 builds live beside the x86-64 ones
    arch = ["ARCH=i386"] if i386 else []
    env = dict(os.environ, KBUILD_BUILD_TIMESTAMP="Thu Jan  1 00:00:00 UTC 2026",
               KBUILD_BUILD_USER="pvpass", KBUILD_BUILD_HOST="pvpass", KBUILD_BUILD_VERSION="1",
               PVPASS_CACHE_DIR=str(work / f"bench-cache{sfx}"))
    shutil.rmtree(work / f"bench-cache{sfx}", ignore_errors=True)
    timecc = str(HERE / "timecc")
    pv = f"{PVPASS} cc -- gcc"
    # (name, CC, from clean, the plain build it is compared with)
    builds = {"plain": ("gcc", True, "plain"), "cold": (pv, True, "plain"), "warm": (pv, False, "plain")}
    if a.side_by_side:        # each pvpass build beside a plain one, both at -j N, under the same load
        builds["plain2"] = ("gcc", True, "plain2")
        builds["warm"] = (pv, False, "plain2")
        rounds = [("plain", "cold"), ("plain2", "warm")]
    else:
        rounds = [("plain",), ("cold",), ("warm",)]
    if a.no_warm:
        rounds = rounds[:1] if a.side_by_side else rounds[:2]
    pvruns = [n for n in ("cold", "warm") if any(n in r for r in rounds)]
    runs = {}
    images: dict[str, str] = {}          # pvpass build -> its image against its plain build's
    for names in rounds:
        started = []
        for name in names:
            cc, clean, _ = builds[name]
            out = work / (f"bench-{name}{sfx}" if name.startswith("plain") else f"bench-pvpass{sfx}")
            log = work / f"bench-{name}{sfx}.times"
            saved = work / f"bench-{name}{sfx}.json"
            if name == "plain" and a.keep_plain and saved.exists():
                cpu, wall, text = json.loads(saved.read_text())
                runs[name] = (cpu, wall, text, per_tu(log))
                print(f"{name:<6} CPU {cpu:8.1f}s  wall {wall:7.1f}s  TUs {len(runs[name][3])}  (kept)",
                      flush=True)
                continue
            log.unlink(missing_ok=True)
            e = dict(env, PVPASS_TU_LOG=str(log))
            if not name.startswith("plain"):    # its own `pvpass cc` server (fast path), whose CPU
                run_dir = work / f"bench-run-{name}{sfx}"    # no wait4 sees: added at the end
                shutil.rmtree(run_dir, ignore_errors=True)
                run_dir.mkdir(mode=0o700)
                e["XDG_RUNTIME_DIR"] = str(run_dir)
            if name == "warm":
                subprocess.run(["make", "-C", str(src), f"O={out}", *arch, "clean"], env=e, check=True,
                               capture_output=True)
            started.append((name, log, saved,
                            start(src, out, config, a.targets, f"{timecc} {cc}", a.j, e, clean, arch)))
        for name, log, saved, job in started:
            cpu, wall, text = finish(*job)
            if not name.startswith("plain"):
                cpu += servers_cpu(work / f"bench-run-{name}{sfx}")
            runs[name] = (cpu, wall, text, per_tu(log))
            saved.write_text(json.dumps([cpu, wall, text]))
            print(f"{name:<6} CPU {cpu:8.1f}s  wall {wall:7.1f}s  TUs {len(runs[name][3])}  "
                  f"warning lines {sum('warning:' in l for l in text.splitlines())}", flush=True)
        for name in names:         # before a warm round's `make clean` removes the cold image
            if not name.startswith("plain"):
                images[name] = same_image(work / f"bench-{builds[name][2]}{sfx}", work / f"bench-pvpass{sfx}")
    for name in pvruns:
        base = builds[name][2]
        plain_warn = {l for l in runs[base][2].splitlines() if "warning:" in l}
        new = [l for l in runs[name][2].splitlines() if "warning:" in l and l not in plain_warn]
        print(f"{name}: {len(new)} warning lines the {base} build does not print"
              + "".join(f"\n  {l}" for l in new[:5]))
    for name in pvruns:
        base = builds[name][2]
        (c, w), (pc, pw) = runs[name][:2], runs[base][:2]
        print(f"{name}/{base}: CPU {c / pc:.3f}x  wall {w / pw:.3f}x")
    pvout = work / f"bench-pvpass{sfx}"
    for name in pvruns:
        tus, plain_tus = runs[name][3], runs[builds[name][2]][3]
        common = [o for o in tus if o in plain_tus and plain_tus[o] > 0]
        sites = [o for o in common if has_table(pvout / o)]
        for label, objs in (("all TUs", common), ("TUs with sites", sites)):
            if not objs:
                continue
            ratios = sorted(((tus[o] / plain_tus[o], o) for o in objs), reverse=True)
            rs = [r for r, _ in ratios]
            print(f"{name} per-TU CPU ratio, {label} ({len(objs)}): median {statistics.median(rs):.2f}x "
                  f"p90 {pct(rs, 0.9):.2f}x  worst: " + ", ".join(f"{o} {r:.2f}x" for r, o in ratios[:5]))
    for name in pvruns:
        print(f"{name}: {images[name]}")


if __name__ == "__main__":
    main()
