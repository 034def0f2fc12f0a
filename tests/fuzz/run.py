#!/usr/bin/env python3
"""Fuzz pvpass's commands by hand (see harness.py for what is checked):

    nice -n 10 .venv/bin/python tests/fuzz/run.py --minutes 30 --target link
    nice -n 19 .venv/bin/python tests/fuzz/run.py --minutes 30 --cpu   # beside other work
    .venv/bin/python tests/fuzz/run.py --replay testdata/bad/fuzz/link-0123abcd.json

Findings are saved under testdata/bad/fuzz/ (--save DIR to change, --no-save
to keep none). Prints per target: inputs, runs, minutes, findings.
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402


def main() -> int:
    # the files target sends SIGINT and SIGHUP: a run started with nohup or in
    # the background would pass them on ignored, and no kill would be tested
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", action="append", choices=harness.TARGETS + ("all",),
                   help="command to fuzz (repeatable; default all)")
    p.add_argument("--minutes", type=float, help="per target")
    p.add_argument("--cpu", action="store_true",
                   help="count --minutes in CPU time (user+sys, children included), not wall time")
    p.add_argument("--inputs", type=int, help="per target (instead of, or with, --minutes)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per input")
    p.add_argument("--save", type=Path, default=harness.REPRO)
    p.add_argument("--no-save", action="store_true")
    p.add_argument("--replay", type=Path, nargs="*", help="run saved reproducers (.json) again")
    a = p.parse_args()
    if a.replay is not None:
        bad = 0
        for m in a.replay or sorted(harness.REPRO.glob("*.json")):
            r = harness.run_case(harness.load(m), a.timeout)
            print(f"{m.name}: {'ok' if r.ok else 'FAIL: ' + r.problem} (exit {r.rc}, {r.seconds:.1f} s)")
            bad += not r.ok
        return 1 if bad else 0
    targets = [t for t in (a.target or ["all"])]
    if "all" in targets:
        targets = list(harness.TARGETS)
    if a.minutes is None and a.inputs is None:
        p.error("give --minutes or --inputs")
    stats = harness.campaign(targets, a.minutes * 60 if a.minutes else None, a.inputs, a.seed,
                             a.timeout, None if a.no_save else a.save, cpu_clock=a.cpu)
    print(f"{'target':<8} {'inputs':>7} {'runs':>7} {'wall min':>8} {'CPU min':>8} {'findings':>9}"
          "  exit codes 0/1/2/3")
    for t, s in stats.items():
        ex = "/".join(str(s.exits.get(c, 0)) for c in (0, 1, 2, 3))
        print(f"{t:<8} {s.inputs:>7} {s.runs:>7} {s.seconds / 60:>8.1f} {s.cpu / 60:>8.1f} "
              f"{len(s.findings):>9}  {ex}")
    return 1 if any(s.findings for s in stats.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
