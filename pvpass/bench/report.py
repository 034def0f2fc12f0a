"""Renderings of a bench result: a text table, JSON and CSV."""
from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass

from .callers import CallerCode
from .measure import CONVS, OPS, PATCHES, Row, Stats, convs_of


@dataclass(frozen=True)
class Result:
    archs: tuple[str, ...]
    runs: int
    calls: int
    cpu: str
    gcc: str
    cflags: dict[str, list[str]]
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    rows: tuple[Row, ...]
    callers: tuple[CallerCode, ...]
    ticks_per_cycle: dict[str, Stats]     # per arch: TSC ticks per core cycle

    def row(self, arch: str, conv: str, op: str, patch: str) -> Row | None:
        return next((r for r in self.rows if (r.arch, r.conv, r.op, r.patch) == (arch, conv, op, patch)), None)

    def median(self, arch: str, conv: str, op: str, patch: str) -> float | None:
        r = self.row(arch, conv, op, patch)
        return r.stats.median if r and r.stats else None


UNIT = "TSC ticks"

_CALLER_COLS = ("bytes", "insns", "saved_regs", "loop_insns", "loop_stack_loads",
                "loop_stack_stores", "loop_push", "loop_pop")


def _load(t: tuple[float, float, float]) -> str:
    return " ".join(f"{x:.2f}" for x in t)


def _cell(r: Row | None) -> str:
    if r is None or r.stats is None:
        return "-"
    s = r.stats
    return f"{s.median:.2f} [{s.q1:.2f}-{s.q3:.2f}] {s.min:.2f}"


def render_text(res: Result) -> str:
    out = [f"pvpass bench: {UNIT} per call (caller: per iteration of save_fl, irq_disable, "
           "a critical section, irq_restore; a run is calls/3 iterations)",
           f"median of {res.runs} runs x {res.calls} calls [interquartile range] and minimum; "
           f"{res.cpu}; gcc {res.gcc}; load average {_load(res.load_before)} before, "
           f"{_load(res.load_after)} after",
           f"runs repeated because another process preempted the harness during them: "
           f"{sum(r.discarded for r in res.rows)}; kept although preempted on every try: "
           f"{sum(r.dirty for r in res.rows)}", ""]
    for arch in res.archs:
        convs = ("bare", *convs_of(arch))
        clk = res.ticks_per_cycle[arch]
        out.append(f"{arch} ({' '.join(res.cflags[arch])}); one core cycle = {clk.median:.2f} "
                   f"[{clk.q1:.2f}-{clk.q3:.2f}] {UNIT} (a chain of dependent adds)")
        out.append(f"{'op':<9} {'patch':<13}" + "".join(f" {CONVS[c]:<25}" for c in convs))
        for op in OPS:
            for patch in PATCHES:
                cells = [res.row(arch, c, op, patch) for c in convs]
                if all(c is None or c.stats is None for c in cells):
                    continue
                out.append(f"{op:<9} {patch:<13}" + "".join(f" {_cell(c):<25}" for c in cells).rstrip())
        out.append("")
    out.append("caller-side code of each convention (the same C caller, gcc -O2; loop = one iteration)")
    out.append(f"{'arch':<7} {'convention':<12} {'bytes':>5} {'insns':>5} {'saved':>5} | {'loop insns':>10} "
               f"{'reloads':>7} {'spills':>6} {'push':>4} {'pop':>4} | {'ticks/iter':>10} (patch)")
    for c in res.callers:
        patch = "bare" if c.conv == "bare" else "direct-cs"
        m = res.median(c.arch, c.conv, "caller", patch)
        out.append(f"{c.arch:<7} {CONVS[c.conv]:<12} {c.bytes:>5} {c.insns:>5} {c.saved_regs:>5} | "
                   f"{c.loop_insns:>10} {c.loop_stack_loads:>7} {c.loop_stack_stores:>6} {c.loop_push:>4} "
                   f"{c.loop_pop:>4} | {m:>10.2f} ({patch})")
    out += ["", *_cc_vs_eax(res)]
    return "\n".join(out).rstrip() + "\n"


def _cc_vs_eax(res: Result) -> list[str]:
    """The thread's question in numbers: what cc-only costs against the
    eax-clobber site, per call and in the caller (i386)."""
    if "i386" not in res.archs:
        return []
    cc = next(c for c in res.callers if (c.arch, c.conv) == ("i386", "cc"))
    eax = next(c for c in res.callers if (c.arch, c.conv) == ("i386", "eax"))
    lines = [f"cc-only against eax-clobber (i386), {UNIT}, cc - eax-clobber: medians, and minimums"]
    for op, patch in (("save_fl", "indirect-c"), ("save_fl", "direct-cs"), ("caller", "indirect-c"),
                      ("caller", "direct-cs"), ("caller", "inline"), ("caller", "C fn patched")):
        a, b = res.row("i386", "cc", op, patch), res.row("i386", "eax", op, patch)
        if patch == "C fn patched":       # cc: direct-c, eax-clobber: saves-c
            a, b = res.row("i386", "cc", op, "direct-c"), res.row("i386", "eax", op, "saves-c")
        if a and a.stats and b and b.stats:
            x, y = a.stats, b.stats
            lines.append(f"  {op:<8} {patch:<13} {x.median:6.2f} - {y.median:6.2f} = {x.median - y.median:+6.2f}"
                         f"   {x.min:6.2f} - {y.min:6.2f} = {x.min - y.min:+6.2f}")
    lines.append(f"  caller loop, unpatched: cc {cc.loop_stack_loads} reloads + {cc.loop_stack_stores} "
                 f"spills; eax-clobber {eax.loop_stack_loads} + {eax.loop_stack_stores}, and "
                 f"{eax.loop_push} push + {eax.loop_pop} pop in its sites (a patch overwrites them); "
                 f"caller {cc.bytes} bytes against {eax.bytes}")
    lines.append("  (C fn patched: a C function after patching, a direct call at the cc site and a "
                 "direct call between the eax-clobber site's own push and pop)")
    return lines


def to_json(res: Result) -> dict:
    return {
        "schema": 1, "tool": "pvpass", "kind": "bench", "unit": UNIT,
        "runs": res.runs, "calls": res.calls, "cpu": res.cpu, "gcc": res.gcc,
        "cflags": res.cflags, "load_before": list(res.load_before), "load_after": list(res.load_after),
        "patches": PATCHES, "conventions": CONVS,
        "ticks_per_cycle": {a: _stats_json(s) for a, s in res.ticks_per_cycle.items()},
        "rows": [_row_json(r) for r in res.rows],
        "callers": [{**asdict(c), "convention": CONVS[c.conv]} for c in res.callers],
    }


_STATS = ("median", "q1", "q3", "min", "max")


def _stats_json(s: Stats | None) -> dict:
    return {**{k: getattr(s, k) if s else None for k in _STATS}, "runs": list(s.runs) if s else []}


def _row_json(r: Row) -> dict:
    return {"arch": r.arch, "convention": r.convention, "op": r.op, "patch": r.patch,
            "site_len": r.site_len, **_stats_json(r.stats), "note": r.note,
            "discarded": r.discarded, "dirty": r.dirty}


def render_csv(res: Result) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["arch", "convention", "op", "patch", "site_len", "median", "q1", "q3", "min", "max",
                "discarded", "dirty", "note", *_CALLER_COLS])
    code = {(c.arch, c.conv): c for c in res.callers}
    for r in res.rows:
        j = _row_json(r)
        c = code.get((r.arch, r.conv)) if r.op == "caller" else None
        w.writerow([r.arch, r.convention, r.op, r.patch, "" if r.site_len is None else r.site_len,
                    *("" if j[k] is None else f"{j[k]:.4f}" for k in _STATS),
                    r.discarded, r.dirty, r.note, *(getattr(c, k) if c else "" for k in _CALLER_COLS)])
    return buf.getvalue()
