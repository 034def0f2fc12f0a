"""A short seeded run of the fuzzing harness (tests/fuzz/), and every saved
reproducer under testdata/bad/fuzz/ run again. Long runs are by hand:
`nice -n 10 .venv/bin/python tests/fuzz/run.py --minutes 30 --target link`."""
from __future__ import annotations

import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tests" / "fuzz"))
import harness  # noqa: E402

REPRODUCERS = sorted(harness.REPRO.glob("*.json"))


def test_short_seeded_run(tmp):
    stats = harness.campaign(list(harness.TARGETS), None, 3, seed=2026, timeout=60, save_to=tmp,
                             log=lambda s: None)
    problems = [f"{t}: {r.problem} ({r.case.how})" for t, s in stats.items() for r in s.findings]
    assert not problems, "\n".join(problems)
    assert all(s.inputs == 3 for s in stats.values())


@pytest.mark.parametrize("meta", REPRODUCERS, ids=[m.stem for m in REPRODUCERS])
def test_reproducer(meta):
    r = harness.run_case(harness.load(meta), timeout=60)
    assert r.ok, f"{r.problem}\n{r.stderr}"
