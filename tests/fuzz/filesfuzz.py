"""The `files` target: `pvpass cc` under hostile files and processes.

Each input is a scenario on one corpus source, written in `Case.how` so
that a saved finding replays (a kill's timing may not):

- `kill:SIG:SECONDS`: a signal (TERM, INT, HUP or KILL) to `pvpass cc` at a
  random point of its run;
- `full:KB`: the object goes to a tmpfs of that size, mostly filled (only
  when this process may mount one);
- `cache:KIND,...`: every entry of a warm cache (result and parse) replaced
  by a FIFO, a symlink to a FIFO, to /dev/zero or to a directory, or
  truncated; `cc` and then `scan` must finish;
- `header:HOW`: a header's contents changed under the same size and mtime
  (`cp -p`, `touch -r`) between two compiles through the same cache.

What every scenario must give: an exit status 0-3 or death by the signal
sent, no traceback, and an object at -o only on exit 0, where it is the
object a clean build makes (same `pvpass table` listing) and readelf reads
it; no temporary file left beside it except after SIGKILL, and then the
next compile removes it.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTDATA = ROOT / "testdata"
INCLUDE = ROOT / "pvpass" / "include"
# (source, flags): the pvpass dialect on both arches, a kernel-dialect table
SOURCES = [("pvpass/sites.c", ["-m64", "-O2", "-fno-pie"]), ("pvpass/sites.c", ["-m32", "-O2", "-fno-pie"]),
           ("kernel/k61.c", ["-m64", "-O2", "-fno-pie"])]
SIGNALS = {"TERM": signal.SIGTERM, "INT": signal.SIGINT, "HUP": signal.SIGHUP, "KILL": signal.SIGKILL}
CACHE_KINDS = ("fifo", "fifo-link", "zero-link", "dir", "truncated")


def scenario(rng: random.Random) -> tuple[str, list[str], str]:
    """(source, flags, how) for one input."""
    src, flags = rng.choice(SOURCES)
    kind = rng.choice(["kill", "kill", "kill", "full", "cache", "header"])
    if kind == "kill":
        how = f"kill:{rng.choice(list(SIGNALS))}:{rng.uniform(0, 1.5):.3f}"
    elif kind == "full":
        how = f"full:{rng.choice([16, 32, 48, 64, 96, 128])}"
    elif kind == "cache":
        how = "cache:" + ",".join(sorted(set(rng.choices(CACHE_KINDS, k=rng.randint(1, 3)))))
    else:
        how = f"header:{rng.choice(['cp-p', 'touch-r'])}"
    return src, flags, how


def _cc(src: Path, flags: list[str], out: Path, env: dict, **kw) -> list[str]:
    """The corpus copy `src` compiled with the includes of its original
    (found through -I: the copy's directory first, for extra.h)."""
    return [sys.executable, "-m", "pvpass", "cc", "--", "gcc", *flags, "-I", str(INCLUDE), "-I", str(src.parent),
            *_includes(), "-c", str(src), "-o", str(out)]


def _includes() -> list[str]:
    return [w for s in sorted({str((TESTDATA / n).parent) for n, _ in SOURCES}) for w in ("-I", s)]


def _table(obj: Path) -> str:
    r = subprocess.run([sys.executable, "-m", "pvpass", "table", str(obj)], capture_output=True, text=True,
                       cwd=ROOT)
    return r.stdout.replace(str(obj), "OBJ") if r.returncode == 0 else f"exit {r.returncode}: {r.stderr}"


@lru_cache(maxsize=None)
def reference(text: bytes, flags: tuple[str, ...], src_name: str, header: str = "") -> str:
    """The table listing a clean build gives (no cache, nothing in the way)."""
    with tempfile.TemporaryDirectory(prefix="pvfuzz-ref.") as d:
        src = Path(d) / Path(src_name).name
        src.write_bytes(text)
        (Path(d) / "extra.h").write_text(header)
        out = Path(d) / "ref.o"
        env = dict(os.environ, PVPASS_CACHE="0")
        r = subprocess.run(_cc(src, list(flags), out, env), env=env, capture_output=True, cwd=ROOT)
        return _table(out) if r.returncode == 0 else f"exit {r.returncode}"


def _temps(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.endswith(".tmp"))


def _mount(d: Path, kb: int) -> bool:
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kb}k", "tmpfs", str(d)],
                          capture_output=True).returncode == 0


def _side_run(argv: list[str], **kw) -> subprocess.CompletedProcess | None:
    """A run around the scenario's (warm-up, re-scan, the compile after a
    SIGKILL): None when it outlives its wall-clock limit."""
    try:
        return subprocess.run(argv, capture_output=True, **kw)
    except subprocess.TimeoutExpired:
        return None


def run(src_name: str, text: bytes, flags: list[str], how: str, work: Path, timeout: float,
        env: dict, limits) -> tuple[int | None, str, list[str]]:
    """Run one scenario in `work`: (exit status, stderr, problems). `timeout`
    is CPU seconds (`limits` sets RLIMIT_CPU); wall-clock limits are 10 times
    that, as for the harness's other targets, so a niced run starved by other
    work is not a finding."""
    problems: list[str] = []
    wall = 10 * timeout
    src = work / Path(src_name).name
    src.write_bytes(text)
    # the corpus' includes ("ops.h") are found through -I
    outdir = work / "out"
    outdir.mkdir()
    out = outdir / "s.o"
    env = dict(env)
    kind, _, arg = how.partition(":")
    mounted = False
    want = reference(text, tuple(flags), src_name)
    try:
        if kind == "full":
            if not _mount(outdir, int(arg)):
                return 0, "", []             # not permitted here: nothing to test
            mounted = True
            st = os.statvfs(outdir)
            keep = random.Random(how).randint(0, 6)     # pages left free
            with open(outdir / "filler", "wb") as f:
                f.write(b"\0" * max(0, (st.f_bavail - keep) * st.f_frsize))
        if kind in ("cache", "header"):
            env["PVPASS_CACHE_DIR"] = str(work / "cache")
            hdr = work / "extra.h"
            text = _clobbers_from_header(text)
            hdr.write_text(_header(1))
            os.utime(hdr, ns=(10**18, 10**18 - 10**10))
            src.write_bytes(text)
            want = reference(text, tuple(flags), src_name, _header(1))
            r = _side_run(_cc(src, flags, out, env), env=env, timeout=wall, preexec_fn=limits, cwd=work)
            if r is None:
                return None, "", [f"warm-up compile: timeout after {wall:g} s of wall time"]
            if r.returncode != 0:
                err = r.stderr.decode(errors="replace")
                return r.returncode, err, [f"warm-up compile: exit {r.returncode}: {err.strip()[-300:]}"]
            if kind == "cache":
                _poison(work / "cache", arg.split(","))
            else:
                st = hdr.stat()
                new = work / "new.h"
                new.write_text(_header(2))                  # same size, other clobbers
                if arg == "cp-p":
                    os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns))
                    os.replace(new, hdr)
                else:
                    hdr.write_text(new.read_text())
                    os.utime(hdr, ns=(st.st_atime_ns, st.st_mtime_ns))
                want = reference(text, tuple(flags), src_name, _header(2))
        sent = None
        p = subprocess.Popen(_cc(src, flags, out, env), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             preexec_fn=limits, cwd=work, start_new_session=True)
        if kind == "kill":
            name, secs = arg.split(":")
            try:
                p.wait(float(secs))
            except subprocess.TimeoutExpired:
                sent = SIGNALS[name]
                os.kill(p.pid, sent)
        try:
            _, err = p.communicate(timeout=wall)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            _, err = p.communicate()
            return None, err.decode(errors="replace"), [f"timeout after {wall:g} s of wall time"]
        finally:
            try:
                os.killpg(p.pid, signal.SIGKILL)      # a compiler a SIGKILL left behind
            except ProcessLookupError:
                pass
        rc, err = p.returncode, err.decode(errors="replace")
        # ^C while the interpreter itself starts (site.py, before pvpass runs) is
        # Python's own KeyboardInterrupt report, not pvpass's
        startup = sent == signal.SIGINT and err.rstrip().endswith("KeyboardInterrupt") and "/pvpass/" not in err
        if "Traceback" in err and not startup:
            problems.append("traceback: " + err.strip().splitlines()[-1])
        # ^C before the handlers are in is KeyboardInterrupt: pvpass exits 130, as a shell does
        if not (rc in (0, 1, 2, 3) or (sent is not None and rc == -sent) or (sent == signal.SIGINT and rc == 130)):
            problems.append(f"exit status {rc}")
        # killed after the rename (exiting): the object is finished, and must be a clean build's
        if rc != 0 and out.exists() and not (sent is not None and rc == -sent):
            problems.append(f"an object at -o after exit {rc}")
        if rc == 0 or out.exists():
            got = _table(out) if out.exists() else "no object"
            if got != want:
                problems.append(f"the object is not a clean build's: {got.splitlines()[:1]} vs "
                                f"{want.splitlines()[:1]}")
            r = subprocess.run(["readelf", "-W", "-h", "-S", "-s", "-r", str(out)], capture_output=True, text=True)
            if r.stderr.strip():
                problems.append(f"readelf rejects the object: {r.stderr.strip().splitlines()[0]}")
        left = _temps(outdir)
        if left and sent != signal.SIGKILL:
            problems.append(f"temporary files left: {', '.join(left)}")
        if kind == "cache" and rc == 0:       # scan through the same poisoned cache
            r = _side_run([sys.executable, "-m", "pvpass", "scan", str(src), "--", *flags, "-I",
                           str(INCLUDE), "-I", str(work), *_includes()], env=env, timeout=wall,
                          preexec_fn=limits, cwd=ROOT)
            if r is None:
                problems.append(f"scan with a poisoned cache: timeout after {wall:g} s of wall time")
            elif r.returncode not in (0, 2):
                problems.append(f"scan with a poisoned cache: exit {r.returncode}")
        if sent == signal.SIGKILL and not mounted:    # the next compile cleans up and builds
            r = _side_run(_cc(src, flags, out, env), env=env, timeout=wall, preexec_fn=limits, cwd=work)
            if r is None:
                problems.append(f"the compile after a SIGKILL: timeout after {wall:g} s of wall time")
            elif r.returncode == 0 and (_temps(outdir) or _table(out) != want):
                problems.append("the compile after a SIGKILL left a temporary file or a wrong object")
        return rc, err, problems
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(outdir)], capture_output=True)


_CR2 = b"""#ifdef __x86_64__
#define PVPASS_CR2_REGS "rax, rdx"
#else
#define PVPASS_CR2_REGS "eax, edx"
#endif
"""


def _clobbers_from_header(text: bytes) -> bytes:
    """sites.c with its hand-written site's clobber set taken from extra.h
    (a header's contents then decide the table); other sources just
    include it."""
    return b'#include "extra.h"\n' + text.replace(_CR2, b"")


def _header(version: int) -> str:
    if version == 1:
        return _CR2.decode()
    return _CR2.decode().replace("rdx", "rcx").replace("edx", "ecx")


def _poison(cache: Path, kinds: list[str]) -> None:
    rng = random.Random(",".join(kinds))
    for p in sorted(cache.rglob("*")):
        if not p.is_file() or p.is_symlink():
            continue
        kind = rng.choice(kinds)
        if kind == "truncated":
            p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
            continue
        p.unlink()
        if kind == "fifo":
            os.mkfifo(p)
        elif kind == "fifo-link":
            os.mkfifo(str(p) + ".fifo")
            os.symlink(str(p) + ".fifo", p)
        elif kind == "zero-link":
            os.symlink("/dev/zero", p)
        else:
            p.mkdir()
