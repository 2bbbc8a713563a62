"""Pure pieces of the step-up wiring (issue 13): what a controller decision means for rollback, the step history
entry, and the notice's step story."""

from __future__ import annotations

import pytest

from auto_repair import notification
from auto_repair.controller import StepDecision
from auto_repair.outcomes import Notice, StepAction
from auto_repair.verification import WindowStats, memory_bound, repair_step, step_rollback


def decision(action: StepAction, *, best: int = 512, rollback_to: int | None = None) -> StepDecision:
    return StepDecision(action, 1024 if action == StepAction.STEP_UP else None, best, rollback_to, None, "why")


@pytest.mark.parametrize(
    ("made", "enabled", "rollback", "restore", "says"),
    [
        (decision(StepAction.STEP_UP), True, False, None, ""),
        (decision(StepAction.HEALTHY), True, False, None, ""),
        (decision(StepAction.ROLLBACK, best=256, rollback_to=256), True, True, 256, "why; restore 256 MB"),
        (decision(StepAction.ROLLBACK, best=256, rollback_to=256), False, False, None, "RollbackOnFailure=false"),
        (decision(StepAction.KEEP_BEST), True, False, None, "kept 512 MB: why"),
        (decision(StepAction.KEEP_BEST, best=256), True, True, 256, "restore 256 MB"),
        (decision(StepAction.NEEDS_APPROVAL), True, False, None, "kept 512 MB: why"),
        (decision(StepAction.ROLLBACK, rollback_to=None), True, False, None, "kept 512 MB"),
    ],
)
def test_a_controller_decision_becomes_a_rollback_only_to_an_earlier_size(made, enabled, rollback, restore, says):
    # GIVEN the controller's decision at the end of a step at 512 MB
    result = step_rollback(made, current=512, enabled=enabled)
    # THEN a rollback happens only to another size, and only when RollbackOnFailure allows it
    assert (result["rollback"], result["restoreTo"]) == (rollback, restore)
    assert says in result["rollbackReason"]


def stats(invocations: int, errors: int, oom: int, utilisation: float | None) -> WindowStats:
    return WindowStats(invocations=invocations, errors=errors, timeouts=0, oom=oom, durationP95=None,
                       durationAvg=None, maxMemoryUtilization=utilisation, reportLines=invocations)


@pytest.mark.parametrize(
    ("window", "bound"),
    [(stats(10, 2, 2, 0.6), True), (stats(10, 0, 0, 0.99), True), (stats(10, 0, 0, 0.9), False),
     (stats(0, 0, 0, None), False)],
)
def test_memory_bound_means_oom_or_max_memory_used_at_the_limit(window, bound):
    assert memory_bound(window) is bound


def test_a_step_entry_keeps_sizes_rates_and_caps_a_rate_at_one():
    repair = {"originalMemory": 256, "newMemory": 512, "endTime": "2026-12-04T04:00:00+00:00"}
    step = repair_step(2, repair, {"status": "NOT_IMPROVED"}, rate_before=1.0, after=stats(4, 9, 4, 1.0))
    assert step == {"step": 2, "memoryBefore": 256, "memoryAfter": 512, "verdict": "NOT_IMPROVED",
                    "errorRateBefore": 1.0, "errorRateAfter": 1.0, "memoryBoundAfter": True,
                    "at": "2026-12-04T04:00:00+00:00"}


STEPS = [{"step": 1, "memoryBefore": 128, "memoryAfter": 256, "verdict": "NOT_IMPROVED", "errorRateBefore": 1.0,
          "errorRateAfter": 1.0, "memoryBoundAfter": True},
         {"step": 2, "memoryBefore": 256, "memoryAfter": 512, "verdict": "NOT_IMPROVED", "errorRateBefore": 1.0,
          "errorRateAfter": 0.4, "memoryBoundAfter": True}]


@pytest.mark.parametrize(
    ("stop", "expected"),
    [
        ("MAX_MEMORY", "Reached MaxMemory 512 MB and the function still fails of memory; kept the best size "
                       "reached, 512 MB. The evidence now suggests memory_exhaustion, needing about 1,024 MB."),
        ("MAX_STEPS", "Used all 3 steps (MaxRepairSteps); kept the best size reached, 512 MB."),
        ("CEILING", "The next step is beyond the approved ceiling; kept 512 MB. A new approval is needed"),
    ],
)
def test_the_notice_tells_each_step_and_why_it_stopped(stop, expected):
    # GIVEN two steps that left memory failures, and the controller's stop
    context = {"alarm": {"functionName": "orders"},
               "repair": {"status": "SUCCEEDED", "originalMemory": 256, "newMemory": 512},
               "verification": {"status": "NOT_IMPROVED", "steps": STEPS,
                                "afterDiagnosis": {"isMemoryIssue": True, "cause": "memory_exhaustion",
                                                   "recommendedMemorySize": 1024},
                                "step": {"action": "KEEP_BEST", "stopReason": stop, "bestMemory": 512,
                                         "maxMemory": 512, "maxSteps": 3, "reason": "r"}}}
    built = notification.build(context, Notice.NOT_IMPROVED, "dev")
    summary = built["message"]["summary"]
    # THEN the subject spans the incident, and the summary lists each step and says why it stopped
    assert built["subject"] == "[dev] orders: memory 128->512 MB, NOT recovered, needs attention"
    assert ("Steps: step 1: 128 MB -> 256 MB, error rate 100% -> 100%, not improved, still memory-bound; step 2: "
            "256 MB -> 512 MB, error rate 100% -> 40%, not improved, still memory-bound.") in summary
    assert expected in summary
    assert built["message"]["stepping"]["stopReason"] == stop


def test_a_single_healthy_step_keeps_the_notice_as_it_was():
    context = {"alarm": {"functionName": "orders"},
               "repair": {"status": "SUCCEEDED", "originalMemory": 128, "newMemory": 256},
               "verification": {"status": "IMPROVED", "steps": [{**STEPS[0], "verdict": "IMPROVED",
                                                                 "memoryBoundAfter": False}],
                                "step": {"action": "HEALTHY", "reason": "fixed"}}}
    summary = notification.build(context, Notice.REPAIRED, "dev")["message"]["summary"]
    assert summary == "orders: memory raised 128 -> 256 MB and verification shows it recovered."
