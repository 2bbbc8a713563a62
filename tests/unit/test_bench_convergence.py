"""The closed-loop convergence simulator (bench/bench_convergence.py) on a few functions: invariants, not timing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from auto_repair.controller import floor_above
from auto_repair.diagnosis import DiagnosisConfig
from auto_repair.sizing import cap_for

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import bench_convergence as bench  # noqa: E402

CONFIG = DiagnosisConfig(max_memory=bench.MAX_MEMORY)
DAYS = 3


def _fn(name: str, start: int, need: float, *, original: int | None = None, kind: str = "starved",
        shape: float = 1.0, lo: float = 0.5, rate: float = 20.0) -> bench.Fn:
    return bench.Fn(name, "python", start, need, lo, shape, rate, original or start, kind)


def _run(fn: bench.Fn, policy: str, seed: int = 5) -> bench.Trace:
    return bench.Sim(fn, policy, seed, CONFIG, DAYS * bench.WINDOWS_PER_DAY).run()


@pytest.mark.parametrize("policy", bench.POLICIES)
def test_every_policy_stays_within_max_memory_and_never_lowers_into_a_known_bad_size(policy: str) -> None:
    # GIVEN a tiny population (memory-starved, over-provisioned, beyond MaxMemory) under each policy
    fns = bench.population(8, seed=3) + [_fn("beyond", 3008, 20000.0)]
    for fn in fns:
        # WHEN it runs for a few days
        trace = _run(fn, policy)
        # THEN memory stays within Lambda's range and MaxMemory, every change is recorded in order
        sizes = [size for _, size, _ in trace.changes]
        assert all(128 <= size <= cap_for(bench.MAX_MEMORY) for size in sizes), (fn.name, sizes)
        assert [w for w, _, _ in trace.changes] == sorted(w for w, _, _ in trace.changes)
        assert trace.memory == (sizes[-1] if sizes else fn.start)
        if policy == "OURS":
            # AND ours never lands at or below a size the function died at, nor oscillates
            assert trace.known_bad_landings == 0, trace.notes
            assert bench.oscillations(trace.changes, fn.start) == 0, trace.changes
        if policy == "NAIVE":
            assert sizes == sorted(sizes)  # doubling only: it never lowers anything


def test_ours_heals_a_5x_function_within_one_incident_where_today_rolls_back() -> None:
    # GIVEN the issue's case: 128 MB, needing ~5x, every invocation killed at 128 MB
    fn = _fn("five-x", 128, 640.0, lo=0.7)
    # WHEN ours and today's behaviour repair it
    ours, today = _run(fn, "OURS"), _run(fn, "TODAY")
    # THEN ours steps up inside the first incident and ends healthy; today leaves it broken at a known-bad size
    assert ours.healthy_after == 1, ours.notes
    assert fn.fail_p(ours.memory) == 0.0
    assert [why for _, _, why in ours.changes][:2] == ["raise", "raise"]
    assert fn.fail_p(today.memory) > 0.0
    assert today.known_bad_landings >= 1


def test_ours_trims_a_function_raised_far_too_high_but_not_below_its_original_size() -> None:
    # GIVEN a function raised to 3,008 MB by an earlier repair from 512 MB, needing ~600 MB
    fn = _fn("over", 3008, 600.0, original=512, kind="over")
    # WHEN ours settles it
    trace = _run(fn, "OURS")
    # THEN one trim after a day of health, to peak + headroom, never below the original, and it stays healthy
    assert trace.trims == 1, trace.changes
    assert [why for _, _, why in trace.changes] == ["trim"]
    assert floor_above(None, 512) <= trace.memory <= round(fn.need * 1.3 / 64 + 1) * 64
    assert fn.fail_p(trace.memory) == 0.0
    # AND the other policies never take the surplus back
    assert _run(fn, "TODAY").memory == _run(fn, "NAIVE").memory == 3008


def test_a_trim_that_brings_oom_back_is_raised_again_and_never_retried() -> None:
    # GIVEN a function raised far too high, trimmed once proven healthy, whose workload then grows by 60 %
    fn = _fn("grows", 3008, 600.0, original=256, kind="over", lo=0.5)
    fn.grow_at, fn.growth = 3 * bench.WINDOWS_PER_DAY + 60, 1.6
    # WHEN ours runs for a week
    trace = bench.Sim(fn, "OURS", 5, CONFIG, 7 * bench.WINDOWS_PER_DAY).run()
    whys = [why for _, _, why in trace.changes]
    # THEN the trim brought OOM back, the normal loop raised it above the trimmed size, and it is never trimmed again
    assert whys[0] == "trim" and trace.trims == 1, trace.changes
    assert trace.trim_blocked
    trimmed = trace.changes[0][1]
    assert trace.memory > trimmed and trace.known_bad is not None and trace.known_bad >= trimmed
    assert "trim" not in whys[1:]
    assert trace.known_bad_landings == 0
    assert bench.oscillations(trace.changes, fn.start) == 1


def test_summary_counts_what_the_issue_asks_for() -> None:
    # GIVEN a few functions through all three policies / WHEN summarised
    figures = bench.run(functions=6, days=2, seed=1)
    # THEN every figure of the issue is there, for every policy, and the shares are shares
    for policy in bench.POLICIES:
        row = figures[policy]
        for _, key, _ in bench.ROWS:
            assert key in row
        for key in ("within13", "within15"):
            assert row[key] != row[key] or 0.0 <= row[key] <= 1.0
        assert row["broken"] <= row["starved"]


@pytest.mark.parametrize(("changes", "count"), [
    ([], 0),
    ([(0, 256, "raise"), (1, 512, "raise")], 0),
    ([(0, 256, "raise"), (1, 128, "rollback"), (9, 256, "raise")], 1),
    ([(0, 1024, "trim"), (9, 2048, "raise"), (20, 1024, "trim"), (30, 2048, "raise")], 2),
    ([(0, 256, "raise"), (1, 192, "keep-best"), (2, 160, "trim")], 0),
])
def test_oscillations_count_down_then_up(changes: list[tuple[int, int, str]], count: int) -> None:
    # GIVEN a memory history starting at 128 MB (or 3,008 MB for the trims) / THEN each down-then-up counts once
    start = 3008 if changes and changes[0][2] == "trim" else 128
    assert bench.oscillations(changes, start) == count
