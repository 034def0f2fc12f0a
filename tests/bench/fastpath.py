#!/usr/bin/env python3
"""What `pvpass cc` adds to a compile whose object holds no site, today and
with each of issue 19's two levers, measured side by side (run by hand):

    .venv/bin/python tests/bench/fastpath.py [-n 20] [--pvpass PATH] [SOURCE.c ...]

Variants, each the whole command a build would run, interleaved run by run
(so the machine's load falls on all alike):

- gcc:       `gcc -O2 -c SRC -o OBJ`
- pvpass cc: `pvpass cc -- gcc ...` (the console script at --pvpass;
             default: the one beside this Python)
- launcher:  fastpath/launch.c, a C program that spawns the compiler, then
             reads the object's section headers and relocations itself
             (fastpath/elfcheck.h: no table, no LTO, no GOT relocation, no
             candidate `call *`) before any Python would start
- server:    fastpath/client.c spawns the compiler, then asks a resident
             Python process (fastpath/server.py, pvpass's own ELF reader and
             candidate test, imported once) over a Unix socket; the server's
             CPU per request (its own process_time) is added to the client's
- python -S -I: fastpath/fast.py, the same check in a Python started
             without site (`python -S -I`) importing only pvpass's ELF reader

CPU is user+sys of the children (the compiler included), wall is the
command's; each figure is the median of -n runs, and "adds" is the median of
the variant minus the median of gcc. The prototypes decide only the no-site
verdict (they hand nothing over): they measure the floor of each lever.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent / "fastpath"


def run(argv, env) -> tuple[float, float]:
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, check=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), wall


def server_cpu(sock: str) -> tuple[float, int]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock)
    s.sendall(b"stats")
    cpu, n = s.recv(100).decode().split()
    s.close()
    return float(cpu), int(n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20)
    ap.add_argument("--pvpass", default=str(Path(sys.executable).with_name("pvpass")))
    ap.add_argument("sources", nargs="*")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fastpath.") as tmp:
        t = Path(tmp)
        for prog in ("launch", "client"):
            subprocess.run(["gcc", "-O2", "-o", str(t / prog), str(HERE / f"{prog}.c")], check=True)
        sources = [Path(s) for s in a.sources]
        if not sources:
            sources = [t / "plain.c"]
            sources[0].write_text("int f(int x) { return x * 3; }\n")
        sock = str(t / "sock")
        env = dict(os.environ, PVPASS_CACHE_DIR=str(t / "cache"), FASTPATH_SOCK=sock)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        server = subprocess.Popen([sys.executable, str(HERE / "server.py"), sock], env=env)
        while not os.path.exists(sock):
            time.sleep(0.01)
        try:
            for src in sources:
                obj = str(t / "o.o")
                gcc = ["gcc", "-O2", "-c", str(src), "-o", obj]
                variants = {"gcc": gcc, "pvpass cc": [a.pvpass, "cc", "--", *gcc],
                            "launcher": [str(t / "launch"), obj, "--", *gcc],
                            "server": [str(t / "client"), obj, "--", *gcc],
                            "python -S -I": [sys.executable, "-S", "-I", str(HERE / "fast.py"), obj, "--", *gcc]}
                for argv in variants.values():      # warm the page cache and the server
                    run(argv, env)
                s0 = server_cpu(sock)
                got = {k: [] for k in variants}
                for _ in range(a.n):
                    for k, argv in variants.items():
                        got[k].append(run(argv, env))
                s1 = server_cpu(sock)
                per_req = (s1[0] - s0[0]) / max(1, s1[1] - s0[1])
                g_cpu = statistics.median(c for c, _ in got["gcc"])
                g_wall = statistics.median(w for _, w in got["gcc"])
                print(f"{src.name}: median of {a.n}, CPU (user+sys, children) | wall")
                for k, v in got.items():
                    extra = per_req if k == "server" else 0.0
                    cpu = statistics.median(c for c, _ in v) + extra
                    wall = statistics.median(w for _, w in v)
                    note = f"  (server {per_req * 1000:.2f} ms CPU per request included)" if extra else ""
                    print(f"  {k:<13} CPU {cpu * 1000:7.2f} ms  adds {(cpu - g_cpu) * 1000:6.2f} ms | "
                          f"wall {wall * 1000:7.2f} ms  adds {(wall - g_wall) * 1000:6.2f} ms{note}")
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
