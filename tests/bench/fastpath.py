#!/usr/bin/env python3
"""What `pvpass cc` adds to a compile, through the fast path (the compiled
client and the resident server: docs/build-path.md) and through the Python
path, beside plain gcc (run by hand):

    python tests/bench/fastpath.py [-n 20] [--pvpass PATH] [--kernel DIR OBJ ...]

`--pvpass`: the `pvpass` shell script of the install to measure (default:
the one beside this Python); the fast path and the Python path
(PVPASS_SERVER=0) are both that install's. Cases:

- no site (plain C): an object with no `.parainstructions` and no `call *`;
- kernel dialect: testdata/kernel/k61.c, gcc's `.parainstructions` (the
  6-byte `call *disp32` check);
- cache hit (pvpass dialect): testdata/pvpass/sites.c, a result-cache hit
  (the server's; the Python path's with PVPASS_SERVER=0);
- `--kernel DIR OBJ`: OBJ's compile command from DIR/.../.OBJ.cmd (a kbuild
  build directory, read only: the object and its .d go to a temporary
  directory).

Runs are interleaved (gcc, Python path, fast path, 20 times each), so the
machine's load falls on all alike. CPU is user+sys of the command and its
children (resource.RUSAGE_CHILDREN), plus, for the fast path, the server's
CPU per compile (its own process_time before and after the case's runs,
asked with a STATS request, divided by -n); wall
is the command's. Each figure is the median of -n runs, "adds" the median
minus gcc's median.
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import shlex
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def timed(argv, env, cwd=None, stdin: bytes | None = None) -> tuple[float, float]:
    """(CPU seconds of the command and its children, wall seconds)."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(argv, env=env, cwd=cwd, input=stdin, capture_output=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode:
        sys.exit(f"{shlex.join(argv)}: exit {r.returncode}\n{r.stderr.decode(errors='replace')}")
    return (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), wall


def server_stats(run_dir: Path, sock: Path | None = None) -> tuple[float, int]:
    """(CPU seconds, requests) of the server in `run_dir` (at `sock`)."""
    if sock is None:
        (sock,) = [p for p in run_dir.glob("pvpass-*.sock")]
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(sock))
        body = b"STATS\0"
        s.sendall(struct.pack("=I", len(body)) + body)
        n = struct.unpack("=I", s.recv(4))[0]
        data = b""
        while len(data) < n:
            data += s.recv(n - len(data))
    _, cpu, reqs = data[:-1].decode().split("\0")
    return float(cpu), int(reqs)


def kernel_command(build: Path, obj: str, out: Path) -> list[str]:
    """kbuild's command for OBJ, writing to `out` (and its .d beside it)."""
    d, base = os.path.split(obj)
    text = (build / d / f".{base}.cmd").read_text()
    cmd = re.search(r"^cmd_\S+ := (.*)$", text, re.M).group(1)
    words = shlex.split(cmd)
    if ";" in words:
        words = words[:words.index(";")]      # objtool and the like, after the compile
    while not re.fullmatch(r"(.*-)?gcc(-[\d.]+)?", os.path.basename(words[0])):
        words = words[1:]                     # a timing wrapper in front of gcc
    out_words, i = [], 0
    while i < len(words):
        w = words[i]
        if w == "-o":
            out_words += ["-o", str(out)]
            i += 2
            continue
        if w.startswith("-Wp,-MMD,") or w.startswith("-Wp,-MD,"):
            w = w.split(",", 2)[0] + "," + w.split(",", 2)[1] + "," + str(out.with_suffix(".d"))
        out_words.append(w)
        i += 1
    return out_words


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20)
    ap.add_argument("--pvpass", default=str(Path(sys.executable).with_name("pvpass")))
    ap.add_argument("--kernel", nargs="+", metavar=("DIR", "OBJ"), default=[])
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fastpath.") as tmp:
        t = Path(tmp)
        run_dir = t / "run"
        run_dir.mkdir(mode=0o700)
        env = dict(os.environ, PVPASS_CACHE_DIR=str(t / "cache"), XDG_RUNTIME_DIR=str(run_dir))
        env.pop("PYTHONDONTWRITEBYTECODE", None)         # as installed: bytecode cached
        plain = t / "plain.c"
        plain.write_text("int f(int x) { return x * 3; }\n")
        cases = {"no site (plain C)": (["gcc", "-O2", "-c", str(plain), "-o", str(t / "o.o")], None),
                 "kernel dialect (k61.c)": (["gcc", "-O2", "-c", str(ROOT / "testdata/kernel/k61.c"),
                                             "-o", str(t / "o.o")], None),
                 "cache hit (sites.c)": (["gcc", "-O2", "-I", str(ROOT / "pvpass/include"), "-c",
                                          str(ROOT / "testdata/pvpass/sites.c"), "-o", str(t / "o.o")], None)}
        if a.kernel:
            build = Path(a.kernel[0])
            for obj in a.kernel[1:]:
                cases[f"kernel TU {obj}"] = (kernel_command(build, obj, t / "k.o"), build)
        # the first compile builds the client, the next starts the server
        deadline = time.monotonic() + 60
        while not list(run_dir.glob("pvpass-*.sock")):
            subprocess.run([a.pvpass, "cc", "--", "gcc", "-c", str(plain), "-o", str(t / "w.o")], env=env,
                           check=True)
            if time.monotonic() > deadline:
                sys.exit("no server started")
            time.sleep(0.3)
        py_env = dict(env, PVPASS_SERVER="0")
        print(f"pvpass: {a.pvpass}; median of {a.n}, CPU user+sys with children | wall")
        for name, (gcc, cwd) in cases.items():
            variants = {"gcc": (gcc, env), "python path": ([a.pvpass, "cc", "--", *gcc], py_env),
                        "fast path": ([a.pvpass, "cc", "--", *gcc], env)}
            for argv, e in variants.values():             # warm the page cache, the result cache
                timed(argv, e, cwd)
            got = {k: [] for k in variants}
            s0 = server_stats(run_dir)
            for _ in range(a.n):
                for k, (argv, e) in variants.items():
                    got[k].append(timed(argv, e, cwd))
            s1 = server_stats(run_dir)          # idle while gcc and the Python path run
            reqs = s1[1] - s0[1]
            per = (s1[0] - s0[0]) / max(1, a.n)
            got["fast path"] = [(c + per, w) for c, w in got["fast path"]]
            g_cpu = statistics.median(c for c, _ in got["gcc"])
            g_wall = statistics.median(w for _, w in got["gcc"])
            print(f"{name}:")
            for k, v in got.items():
                cpu = statistics.median(c for c, _ in v)
                wall = statistics.median(w for _, w in v)
                note = (f"  (server: {per * 1000:.2f} ms CPU per compile, {reqs} requests, included)"
                        if k == "fast path" else "")
                print(f"  {k:<12} CPU {cpu * 1000:8.2f} ms  adds {(cpu - g_cpu) * 1000:6.2f} ms | "
                      f"wall {wall * 1000:8.2f} ms  adds {(wall - g_wall) * 1000:6.2f} ms{note}")


if __name__ == "__main__":
    main()
