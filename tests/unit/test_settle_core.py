"""Settle's pure parts: the memory history read from audit entries, the reasons, the trim's rollback rule, the
story of a function and its money per size."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from auto_repair import pricing, settle


def entry(at: str, phase: str, before: int, after: int, execution: str, change: str | None = None,
          action: str = "UpdateFunctionConfiguration") -> dict[str, Any]:
    return {"auditId": f"{at}#{execution}#{phase}", "timestamp": at, "phase": phase, "action": action,
            "executionId": execution, "oldValue": {"MemorySize": before}, "newValue": {"MemorySize": after},
            "details": {"change": change} if change else {}}


RAISE = entry("2026-01-01T00:00:00.000Z", "AFTER", 128, 1024, "sweep-1")
TRIM = entry("2026-01-03T00:00:00.000Z", "AFTER", 1024, 192, "trim-1", "TRIM")
UNDO = entry("2026-01-03T00:01:00.000Z", "ROLLED_BACK", 192, 1024, "trim-1")


def test_history_is_the_chain_of_our_changes_that_ends_where_the_function_is():
    # GIVEN a raise, a trim and its undo (plus the BEFORE entries and an alias move, which are no memory changes)
    entries = [UNDO, TRIM, RAISE, entry("2026-01-01T00:00:00.000Z", "BEFORE", 128, 1024, "sweep-1"),
               entry("2026-01-02T00:00:00.000Z", "AFTER", 1, 2, "x", action="UpdateAlias")]
    hist = settle.history(entries)
    # THEN the chain is in order, starts at the original size and ends at the current one
    assert hist is not None
    assert [(c.kind, c.before, c.after) for c in hist.changes] == [("RAISE", 128, 1024), ("TRIM", 1024, 192),
                                                                   ("ROLLBACK", 192, 1024)]
    assert (hist.original, hist.current, hist.since) == (128, 1024, UNDO["timestamp"])


def test_a_change_by_someone_else_in_between_starts_a_new_chain():
    # GIVEN we raised 128 -> 256, a human set 512, and we raised 512 -> 1024
    entries = [entry("2026-01-01T00:00:00.000Z", "AFTER", 128, 256, "a"),
               entry("2026-01-02T00:00:00.000Z", "AFTER", 512, 1024, "b")]
    hist = settle.history(entries)
    # THEN the original size is what the human left, not what we found the first time
    assert hist is not None and (hist.original, hist.current) == (512, 1024)


@pytest.mark.parametrize("entries", [[], [TRIM], [entry("2026-01-01T00:00:00.000Z", "BEFORE", 128, 1024, "x")]],
                         ids=["nothing", "only a trim", "never applied"])
def test_no_history_without_a_raise_of_ours(entries):
    assert settle.history(entries) is None


def test_a_raise_undoes_a_trim_only_when_it_starts_at_the_trimmed_size():
    assert settle.trim_undone_by_raise([RAISE, TRIM], 192, "alarm-1") == settle.memory_changes([TRIM])[0]
    assert settle.trim_undone_by_raise([RAISE, TRIM], 256, "alarm-1") is None
    assert settle.trim_undone_by_raise([RAISE, TRIM, UNDO], 192, "alarm-1") is None
    assert settle.trim_undone_by_raise([RAISE], 1024, "alarm-1") is None


@pytest.mark.parametrize(("verdict", "rollback"), [
    ({"final": True, "status": "NOT_IMPROVED", "partiallyImproved": True}, True),
    ({"final": True, "status": "NOT_IMPROVED", "worse": False}, True),
    ({"final": True, "status": "IMPROVED"}, False),
    ({"final": True, "status": "INSUFFICIENT_DATA"}, False),
    ({"final": False, "status": "NOT_IMPROVED"}, False),
])
def test_a_trim_is_undone_on_any_final_failure_verdict(verdict, rollback):
    assert settle.trim_rollback_decision(verdict)["rollback"] is rollback


NOW = datetime(2026, 1, 5, tzinfo=UTC)
HIST = settle.History(original=128, current=1024, since=(NOW - timedelta(days=2)).isoformat(), changes=())
USAGE = settle.Usage(peak_mb=150.0, reports=500, failures=0)


@pytest.mark.parametrize(("configured", "usage", "words"), [
    (1024, settle.Usage(peak_mb=None, reports=0, failures=0), "no REPORT lines since"),
    (1024, settle.Usage(peak_mb=1000.0, reports=500, failures=0), "no surplus worth a trim: peak 1000 MB"),
    (2048, USAGE, "changed outside the workflow"),
])
def test_evaluate_says_why_not(configured, usage, words):
    proposal, why = settle.evaluate(configured, HIST, usage, known_bad=None, blocked=None, now=NOW,
                                    config=settle.TrimConfig())
    assert proposal is None and words in why


def test_evaluate_proposes_through_the_controller():
    proposal, why = settle.evaluate(1024, HIST, USAGE, known_bad=None, blocked=None, now=NOW,
                                    config=settle.TrimConfig())
    assert proposal is not None and proposal.target_memory == 192 and why == proposal.reason


def test_monthly_cost_is_memory_times_duration_times_invocations():
    # 1 GB for 1 s, a million times a month, is a million GB-seconds
    assert pricing.monthly_cost(1024, 1_000_000, 1000.0) == pytest.approx(
        1_000_000 * pricing.PRICE_PER_GB_SECOND["x86_64"])
    costs, assumption = settle.monthly_costs([128, 1024], invocations_per_day=86_400, avg_duration_ms=200.0)
    assert costs[1024] == pytest.approx(costs[128] * 8, rel=0.01) and "86,400 calls/day x 200 ms" in assumption
    assert settle.monthly_costs([128], invocations_per_day=None, avg_duration_ms=None) == (
        {128: None}, "no traffic data: cost not estimated")


def test_the_story_shows_steps_changes_and_money_in_a_terminal():
    steps = [{"step": 1, "memoryBefore": 128, "memoryAfter": 256, "verdict": "NOT_IMPROVED", "errorRateBefore": 1.0,
              "errorRateAfter": 0.5, "memoryBoundAfter": True}]
    lines = settle.story_lines("orders", [RAISE, TRIM, UNDO], steps=steps, costs={128: 1.5, 192: 2.25, 1024: 12.0},
                               assumption="the assumption")
    text = "\n".join(lines)
    assert "1. 128 -> 256 MB  NOT_IMPROVED  errors 100% -> 50%  still memory-bound" in text
    assert [line.split()[1] for line in lines if line.startswith("    2026")] == ["before", "RAISE", "TRIM",
                                                                                "ROLLBACK"]
    assert "cost per month at each size (duration charge):" in text and "assuming the assumption" in text
    assert "1024 MB  $12.00" in text and "128 MB  $1.50" in text
    assert max(len(line) for line in lines) <= 120


@pytest.mark.parametrize(("outcome", "subject"), [
    ("APPROVAL_REQUEST", "[prod] orders: approval needed: trim 1024->256 MB"),
    ("DRY_RUN", "[prod] orders: dry run, would trim 1024->256 MB"),
])
def test_a_trim_asks_for_approval_and_dry_runs_in_its_own_words(outcome, subject):
    from auto_repair import notification

    trim = {"configured": 1024, "targetMemory": 256, "reason": "peak 150 MB.", "originalMemory": 256}
    context = {"rawEvent": {"detail": {"trim": trim}}, "alarm": {"functionName": "orders"},
               "diagnosisResult": settle.trim_diagnosis(trim, current_memory=1024, dry_run=outcome == "DRY_RUN",
                                                        approval_required=True)}
    note = notification.build(context, outcome, "prod")
    assert note["subject"] == subject and "1024 -> 256 MB" in note["message"]["summary"]
    assert note["message"]["story"]["memoryOverTime"][0] == {"at": None, "memory": 256, "what": "before our repair"}
