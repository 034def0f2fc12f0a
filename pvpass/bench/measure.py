"""Run the harness per mode and turn its lines into rows: one per
(arch, convention, op, patch), with the median and spread of ticks per call,
or the reason pvpass does not produce that patch at that site."""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from .. import tools
from ..diag import PvError

OPS = ("save_fl", "io_delay", "caller")
# Convention ids as the harness names them, and how the report names them.
CONVS = {"bare": "none", "cc": "cc", "cs": "callee-save", "eax": "eax-clobber"}
PATCHES = {
    "bare": "no paravirt: the instructions themselves",
    "indirect-c": "unpatched: indirect call through the ops table to a C function",
    "indirect-cs": "unpatched: indirect call to a callee-save function",
    "direct-c": "patched: direct call to the C function",
    "trampoline-c": "patched: call to a trampoline that saves registers and calls the C function",
    "saves-c": "patched: direct call to the C function between the site's own push and pop of %ecx, %edx",
    "direct-cs": "patched: direct call to the callee-save function",
    "inline": "patched: inline replacement, NOP-padded (caller: save_fl inline, irq ops direct calls)",
    "nop": "patched: NOPs",
}
# The harness's modes: the unpatched ones, then the backends pvpass_apply patches in.
UNPATCHED = ("bare", "indirect-c", "indirect-cs")
MODES = (*UNPATCHED, "c_ops", "cs_ops", "native_ops")
# Patch record kinds (pvpass_rt.h).
KINDS = {0: "none", 1: "inline", 2: "call", 3: "trampoline", 4: "nop"}


def convs_of(arch: str) -> tuple[str, ...]:
    return ("cc", "cs", "eax") if arch == "i386" else ("cc", "cs")


def patch_of(mode: str, conv: str, op: str) -> str:
    if mode == "c_ops":
        return {"cc": "direct-c", "eax": "saves-c"}.get(conv, "trampoline-c")
    if mode == "cs_ops":
        return "direct-cs"
    if mode == "native_ops":
        return "nop" if op == "io_delay" else "inline"
    return mode


def expected_kind(mode: str, conv: str, op: str) -> str:
    """What pvpass must have emitted for a site of op in a patched mode (a
    site's op: the caller's sites are save_fl, irq_disable, irq_restore)."""
    if mode == "c_ops":
        return "trampoline" if conv == "cs" else "call"
    if mode == "native_ops" and op == "save_fl":
        return "inline"
    if mode == "native_ops" and op == "io_delay":
        return "nop"
    return "call"


def not_applicable(arch: str, conv: str, op: str, patch: str) -> str | None:
    """Why (conv, op, patch) is not measured, or None if it is."""
    if conv == "eax" and arch != "i386":
        return "the eax-clobber site is the i386 convention"
    if patch == "bare":
        return "measured once, as convention none"
    if conv == "cs" and patch == "indirect-c":
        return "a callee-save site may not call a C function unpatched"
    if conv == "cc" and patch == "trampoline-c":
        return "a C function fits a cc site: pvpass emits a direct call"
    if conv == "eax" and patch == "trampoline-c":
        return "the site saves %ecx and %edx itself: pvpass patches only its call (saves-c)"
    if conv == "eax" and patch == "direct-c":
        return "the C function clobbers %ecx and %edx: the call stays between the site's push and pop (saves-c)"
    if conv != "eax" and patch == "saves-c":
        return "only the eax-clobber site saves registers around its call"
    if conv != "cc" and patch == "direct-c":
        return "the C function clobbers registers the site keeps: pvpass emits a trampoline"
    if op == "io_delay" and patch == "inline":
        return "native io_delay does nothing: see nop"
    if op != "io_delay" and patch == "nop":
        return f"{op} has an effect: no NOP patch"
    return None


@dataclass(frozen=True)
class Stats:
    median: float
    q1: float
    q3: float
    min: float
    max: float
    runs: tuple[float, ...]

    @staticmethod
    def of(values: list[float]) -> Stats:
        v = sorted(values)
        if len(v) >= 2:
            q1, _, q3 = statistics.quantiles(v, n=4, method="inclusive")
        else:
            q1 = q3 = v[0]
        return Stats(statistics.median(v), q1, q3, v[0], v[-1], tuple(values))


@dataclass(frozen=True)
class Row:
    arch: str
    conv: str          # harness id: bare, cc, cs, eax
    op: str
    patch: str
    site_len: int | None
    stats: Stats | None
    note: str = ""
    discarded: int = 0     # runs repeated because the harness was preempted during them
    dirty: int = 0         # runs kept although preempted on every try

    @property
    def convention(self) -> str:
        return CONVS[self.conv]


@dataclass(frozen=True)
class ModeRun:
    types: dict[tuple[str, str], int]             # (conv, op) -> type number
    sites: list[tuple[int, int, str]]             # (type, len, kind) per table entry
    rows: dict[tuple[str, str], list[float]]      # (conv, op) -> ticks per run
    retries: dict[tuple[str, str], tuple[int, int]]   # (conv, op) -> (discarded, dirty)
    results: dict[str, tuple[int, int]]           # conv -> (caller's value, irq_enabled after it)


def parse(text: str) -> ModeRun:
    types, sites, rows, retries, results = {}, [], {}, {}, {}
    for line in text.splitlines():
        f = line.split()
        if f[0] == "op":
            types[(f[1], f[2])] = int(f[3])
        elif f[0] == "site":
            sites.append((int(f[1]), int(f[2]), KINDS.get(int(f[3]), "?")))
        elif f[0] == "row":
            retries[(f[1], f[2])] = (int(f[3]), int(f[4]))
            rows[(f[1], f[2])] = [float(x) for x in f[5:]]
        elif f[0] == "result":
            results[f[1]] = (int(f[2]), int(f[3]))
    return ModeRun(types, sites, rows, retries, results)


def run_mode(exe: Path, mode: str, runs: int, calls: int) -> ModeRun:
    r = tools.run([str(exe), mode, str(runs), str(calls)], what=f"bench harness ({mode})")
    return parse(r.stdout.decode())


def site_ops(op: str) -> tuple[str, ...]:
    return ("save_fl", "irq_disable", "irq_restore") if op == "caller" else (op,)


def check_kinds(arch: str, mode: str, run: ModeRun) -> dict[tuple[str, str], int]:
    """Every site copy got the patch this mode stands for; returns each
    (conv, site op)'s site length. A wrong label would make a wrong table."""
    by_type = {t: k for k, t in run.types.items()}
    lens: dict[tuple[str, str], int] = {}
    for typ, length, kind in run.sites:
        conv, op = by_type.get(typ, ("?", "?"))
        want = expected_kind(mode, conv, op)
        if mode not in UNPATCHED and kind != want:
            raise PvError(f"pvpass bench: {arch} {mode}: a {conv}.{op} site got a {kind} patch, "
                          f"expected {want}")
        lens[(conv, op)] = length
    return lens


def collect(exes: dict[str, Path], runs: int, calls: int) -> dict[tuple[str, str], list[ModeRun]]:
    """Each (arch, mode) `runs` times, one timed run per process, round-robin:
    on a shared machine a burst of load then spoils one run of many rows
    instead of every run of one row."""
    got: dict[tuple[str, str], list[ModeRun]] = {}
    for _ in range(runs):
        for arch, exe in exes.items():
            for mode in MODES:
                got.setdefault((arch, mode), []).append(run_mode(exe, mode, 1, calls))
    return got


def rows_of(arch: str, runs: dict[str, list[ModeRun]]) -> tuple[list[Row], Stats]:
    """The rows of one arch from its runs per mode, and TSC ticks per core cycle."""
    rows: list[Row] = []
    lens: dict[tuple[str, str], int] = {}
    got: dict[tuple[str, str, str], list[float]] = {}
    retries: dict[tuple[str, str, str], list[int]] = {}
    want = runs["bare"][0].results["bare"]
    for mode in MODES:
        for run in runs[mode]:
            lens.update(check_kinds(arch, mode, run))
            for conv, res in run.results.items():
                if res != want:     # a patch that broke the caller's registers or the flag
                    raise PvError(f"pvpass bench: {arch} {mode}: caller_{conv} computed {res[0]:#x} "
                                  f"leaving irq_enabled={res[1]}, the bare caller {want[0]:#x}, {want[1]}")
            for (conv, op), vals in run.rows.items():
                key = (conv, op, patch_of(mode, conv, op))
                got.setdefault(key, []).extend(vals)
                r = retries.setdefault(key, [0, 0])
                r[0] += run.retries[(conv, op)][0]
                r[1] += run.retries[(conv, op)][1]
    for op in OPS:
        rows.append(Row(arch, "bare", op, "bare", None, Stats.of(got[("bare", op, "bare")]),
                        "", *retries[("bare", op, "bare")]))
    for conv in ("cc", "cs", "eax"):
        for op in OPS:
            length = lens.get((conv, site_ops(op)[0]))
            for patch in list(PATCHES)[1:]:
                why = not_applicable(arch, conv, op, patch)
                vals = got.get((conv, op, patch))
                if why is None and vals is None:
                    raise PvError(f"pvpass bench: the harness printed no {arch} {conv} {op} {patch} row")
                rows.append(Row(arch, conv, op, patch, length if why is None else None,
                                Stats.of(vals) if why is None else None, why or "",
                                *retries.get((conv, op, patch), (0, 0))))
    return rows, Stats.of(got[("bare", "cycle", "bare")])
