"""The step-up controller's pure rules (issue 13): step up, stop, keep the best, roll back, settle."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auto_repair.controller import (
    ControllerError,
    StepDecision,
    approval_ceiling,
    floor_above,
    next_step,
    propose_trim,
)
from auto_repair.errors import AutoRepairError
from auto_repair.outcomes import StepAction, Verdict
from auto_repair.sizing import round_up, size_from_failure_curve
from auto_repair.workflow import RepairStep

NI, OK, NO_DATA = Verdict.NOT_IMPROVED.value, Verdict.IMPROVED.value, Verdict.INSUFFICIENT_DATA.value


def steps_of(original: int, *seen: tuple[int, str, float, bool], start_rate: float = 1.0) -> list[RepairStep]:
    """Steps from (memoryAfter, verdict, errorRateAfter, memoryBoundAfter), each starting where the last ended."""
    out: list[RepairStep] = []
    before, rate = original, start_rate
    for i, (after, verdict, rate_after, bound) in enumerate(seen, start=1):
        out.append(RepairStep(step=i, memoryBefore=before, memoryAfter=after, verdict=verdict, errorRateBefore=rate,
                              errorRateAfter=rate_after, memoryBoundAfter=bound, at="2026-12-04T04:00:00Z"))
        before, rate = after, rate_after
    return out


def decide(steps: list[RepairStep], **kw: Any) -> StepDecision:
    args: dict[str, Any] = {"original_memory": steps[0]["memoryBefore"], "after_is_memory": True,
                            "after_recommended": None, "max_steps": 3, "max_memory": 3008, "ceiling": None,
                            "known_bad": steps[0]["memoryBefore"]}
    args.update(kw)
    return next_step(steps, **args)


# (case, steps, keyword overrides, expected action, target, rollback_to, best, stop_reason)
CASES: list[tuple[str, list[RepairStep], dict[str, Any], StepAction, int | None, int | None, int, str | None]] = [
    ("first step still all killed: step up by the engine's size",
     steps_of(128, (256, NI, 1.0, True)), {"after_recommended": 512},
     StepAction.STEP_UP, 512, None, 256, None),
    ("saturated twice (the need is above both sizes): keep going",
     steps_of(128, (256, NI, 1.0, True), (512, NI, 1.0, True)), {"after_recommended": 1024, "known_bad": 256},
     StepAction.STEP_UP, 1024, None, 512, None),
    ("partial failures fell: the failure curve beats a timid engine size",
     steps_of(256, (512, NI, 1.0, True), (768, NI, 0.4, True)), {"after_recommended": 832},
     StepAction.STEP_UP, 1152, None, 768, None),  # 768 + 256 x 0.4 / 0.6 = 939 MB, + 20 %
    ("verified improved but peaks close to the limit (the engine sizes above): one more step",
     steps_of(128, (256, NI, 1.0, True), (512, OK, 0.0, False)), {"after_recommended": 640},
     StepAction.STEP_UP, 640, None, 512, None),
    ("verified improved, memory still the engine's cause but nothing to add: healthy",
     steps_of(128, (256, NI, 1.0, True), (640, OK, 0.0, False)), {"after_recommended": 640},
     StepAction.HEALTHY, None, None, 640, None),
    ("verified improved, nothing memory-bound: healthy",
     steps_of(128, (256, NI, 1.0, True), (640, OK, 0.0, False)), {"after_is_memory": False},
     StepAction.HEALTHY, None, None, 640, None),
    ("steps exhausted: keep the best, say what the evidence suggests",
     steps_of(128, (256, NI, 1.0, True), (512, NI, 0.6, True), (768, NI, 0.3, True)), {"after_recommended": 1024},
     StepAction.KEEP_BEST, None, None, 768, "MAX_STEPS"),
    ("at MaxMemory: keep the best",
     steps_of(1024, (2048, NI, 0.5, True)), {"after_recommended": 3008, "max_memory": 2048},
     StepAction.KEEP_BEST, None, None, 2048, "MAX_MEMORY"),
    ("the approved ceiling is reached: ask for a new approval",
     steps_of(128, (256, NI, 1.0, True), (512, NI, 0.5, True)), {"after_recommended": 896, "ceiling": 512},
     StepAction.NEEDS_APPROVAL, None, None, 512, "CEILING"),
    ("the target is above the ceiling: clamp to the ceiling first",
     steps_of(128, (256, NI, 1.0, True)), {"after_recommended": 512, "ceiling": 384},
     StepAction.STEP_UP, 384, None, 256, None),
    ("a step made things worse: back to the best earlier size above known-bad",
     steps_of(128, (256, NI, 0.5, False), (512, NI, 0.9, False)), {"after_is_memory": False, "known_bad": 128},
     StepAction.ROLLBACK, None, 256, 256, None),
    ("worse but every earlier size is known-bad: nowhere safe to go, keep",
     steps_of(128, (256, NI, 0.9, True), start_rate=0.5), {"known_bad": 128, "after_is_memory": False},
     StepAction.KEEP_BEST, None, None, 256, "KNOWN_BAD"),
    ("not memory, did not help, original not known-bad: roll back to the original",
     steps_of(512, (1024, NI, 0.5, False), start_rate=0.5), {"after_is_memory": False, "known_bad": None},
     StepAction.ROLLBACK, None, 512, 512, None),
    ("not memory but the failures halved: progress, keep the best",
     steps_of(128, (256, NI, 1.0, True), (512, NI, 0.2, False)), {"after_is_memory": False},
     StepAction.KEEP_BEST, None, None, 512, None),
    ("memory-bound, partial rate unchanged by the step: memory is not the cure (256 MB died: not a landing)",
     steps_of(128, (256, NI, 0.5, True), (512, NI, 0.5, True)), {"after_recommended": 1024},
     StepAction.KEEP_BEST, None, None, 512, None),
    ("OOM at the limit but the engine blames the code (an allocation beyond any size): no step, no progress",
     steps_of(128, (256, NI, 1.0, True)), {"after_is_memory": False, "known_bad": 128},
     StepAction.KEEP_BEST, None, None, 256, "KNOWN_BAD"),
    ("too few invocations after the step: neither roll back nor step blind",
     steps_of(128, (256, NO_DATA, 0.0, False)), {},
     StepAction.KEEP_BEST, None, None, 256, None),
    ("the known-bad size is above the engine's size: land strictly above it",
     steps_of(128, (256, NI, 1.0, True)), {"after_recommended": 384, "known_bad": 448},
     StepAction.STEP_UP, 512, None, 256, None),
]


@pytest.mark.parametrize(("case", "steps", "kw", "action", "target", "rollback_to", "best", "stop"), CASES,
                         ids=[c[0] for c in CASES])
def test_next_step_table(case: str, steps: list[RepairStep], kw: dict[str, Any], action: StepAction,
                         target: int | None, rollback_to: int | None, best: int, stop: str | None) -> None:
    # GIVEN the steps applied so far and the after-window diagnosis / WHEN the controller decides
    decision = decide(steps, **kw)
    # THEN the action, the sizes and the stop reason are the rule's, with a sentence for the notice
    assert (decision.action, decision.target_memory, decision.rollback_to, decision.best_memory,
            decision.stop_reason) == (action, target, rollback_to, best, stop), decision.reason
    assert decision.reason.startswith(f"step {len(steps)} of ")


BAD_INPUT = [
    ("no steps", [], {}, "at least one applied step"),
    ("zero memoryAfter", steps_of(128, (0, NI, 1.0, True)), {}, "memoryAfter"),
    ("string memoryAfter", [RepairStep(step=1, memoryBefore=128, memoryAfter="256", errorRateBefore=1.0)],  # type: ignore[typeddict-item]
     {}, "memoryAfter"),
    ("rate above one", steps_of(128, (256, NI, 1.5, True)), {}, "errorRateAfter"),
    ("negative rate", steps_of(128, (256, NI, 0.5, True), start_rate=-0.1), {}, "errorRateBefore"),
    ("zero max_steps", steps_of(128, (256, NI, 1.0, True)), {"max_steps": 0}, "max_steps"),
    ("zero original", steps_of(128, (256, NI, 1.0, True)), {"original_memory": 0}, "original_memory"),
]


@pytest.mark.parametrize(("case", "steps", "kw", "message"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_is_a_clear_error(case: str, steps: list[RepairStep], kw: dict[str, Any], message: str) -> None:
    # GIVEN impossible controller input / WHEN deciding / THEN one of the product's errors names the field
    args: dict[str, Any] = {"original_memory": 128, "after_is_memory": True, "after_recommended": None,
                            "max_steps": 3, "max_memory": 3008, "ceiling": None, "known_bad": None}
    args.update(kw)
    with pytest.raises(ControllerError, match=message) as info:
        next_step(steps, **args)
    assert isinstance(info.value, AutoRepairError)


@pytest.mark.parametrize(("known_bad", "original", "floor"), [
    (None, None, 128), (128, None, 192), (200, None, 256), (1024, 512, 1088), (256, 1793, 1793), (None, 640, 640),
])
def test_floor_above(known_bad: int | None, original: int | None, floor: int) -> None:
    # GIVEN a known-bad size and an original size / THEN the floor is strictly above the first, not below the second
    assert floor_above(known_bad, original) == floor


@pytest.mark.parametrize(("current", "first", "steps", "max_memory", "known_bad", "ceiling"), [
    (128, 256, 3, 3008, None, 1024),   # 256 -> 512 -> 1024
    (128, 256, 1, 3008, None, 256),    # one step: the first target is the ceiling
    (1024, 2048, 3, 3008, None, 3008),  # capped at MaxMemory
    (128, 256, 3, 3000, None, 1024),
    (2048, 4096, 2, 3008, None, 3008),  # even the first target is above the cap
    (128, 192, 2, 3008, 640, 1408),    # the known-bad size lifts the start
])
def test_approval_ceiling(current: int, first: int, steps: int, max_memory: int, known_bad: int | None,
                          ceiling: int) -> None:
    # GIVEN the first raise and the step budget / THEN the ceiling the approval request states
    assert approval_ceiling(current=current, first_target=first, max_steps=steps, max_memory=max_memory,
                            known_bad=known_bad) == ceiling


TRIMS: list[tuple[str, dict[str, Any], int | None]] = [
    ("proven healthy, far above the peak: trim to peak + headroom", {}, 512),
    ("not enough invocations yet", {"report_count": 99}, None),
    ("not healthy for a day yet", {"healthy_seconds": 3600}, None),
    ("a trim was undone recently: never again", {"trim_blocked": True}, None),
    ("within one step of peak + headroom: leave it", {"configured": 576}, None),
    ("never below the original size", {"original_memory": 1024}, 1024),
    ("unless right-sizing generally", {"original_memory": 1024, "right_size_generally": True}, 512),
    ("never at or below a fresh known-bad size", {"known_bad": 640}, 704),
    ("the original is the configured size: nothing to trim", {"original_memory": 2048}, None),
    ("peak at the limit is not a surplus", {"peak_mb": 2048}, None),
    ("no peak observed", {"peak_mb": 0}, None),
]


@pytest.mark.parametrize(("case", "kw", "target"), TRIMS, ids=[c[0] for c in TRIMS])
def test_propose_trim_table(case: str, kw: dict[str, Any], target: int | None) -> None:
    # GIVEN a function healthy at 2,048 MB with a 400 MB peak, raised from 256 MB / WHEN the sweep looks at it
    args: dict[str, Any] = {"configured": 2048, "peak_mb": 400.0, "report_count": 500, "healthy_seconds": 90000,
                            "original_memory": 256, "known_bad": 256, "trim_blocked": False}
    args.update(kw)
    proposal = propose_trim(**args)
    # THEN the trim (or none) the rules allow, with its reason
    assert (proposal.target_memory if proposal else None) == target
    if proposal:
        assert f"{proposal.target_memory} MB" in proposal.reason


@pytest.mark.parametrize(("points", "size"), [
    ([(256, 1.0), (512, 0.4)], 832),   # need ~683 MB, + 20 %
    ([(256, 1.0), (512, 1.0)], None),  # saturated: no slope to extrapolate
    ([(256, 0.3), (512, 0.0)], None),  # nothing left failing
    ([(512, 0.4)], None),
    ([(512, 0.2), (256, 0.6)], None),  # not measured upwards
])
def test_size_from_failure_curve(points: list[tuple[int, float]], size: int | None) -> None:
    # GIVEN failure rates measured at two sizes / THEN the secant to zero failures, with headroom
    assert size_from_failure_curve(points) == size


def test_step_action_values_are_their_names() -> None:
    # GIVEN the controller's vocabulary / THEN it travels as its name (the state machine's Choice matches it)
    assert [a.name for a in StepAction] == [a.value for a in StepAction]
    assert set(StepAction) == {"STEP_UP", "HEALTHY", "KEEP_BEST", "ROLLBACK", "NEEDS_APPROVAL"}


# Properties: whatever the history, the decision stays inside the bounds.
size_st = st.integers(min_value=2, max_value=160).map(lambda k: k * 64)
rate_st = st.floats(min_value=0.0, max_value=1.0)
step_st = st.tuples(size_st, st.sampled_from([NI, OK, NO_DATA]), rate_st, st.booleans())


@settings(max_examples=200, deadline=None)
@given(original=size_st, seen=st.lists(step_st, min_size=1, max_size=5), start_rate=rate_st,
       after_is_memory=st.booleans(), after_recommended=st.none() | size_st,
       max_steps=st.integers(min_value=1, max_value=6), max_memory=st.integers(min_value=128, max_value=10240),
       ceiling=st.none() | size_st, known_bad=st.none() | size_st)
def test_next_step_properties(original: int, seen: list[tuple[int, str, float, bool]], start_rate: float,
                              after_is_memory: bool, after_recommended: int | None, max_steps: int, max_memory: int,
                              ceiling: int | None, known_bad: int | None) -> None:
    # GIVEN any history of steps (sizes going up, as the controller applies them)
    sizes = sorted({s[0] for s in seen if s[0] > original})
    if not sizes:
        return
    steps = steps_of(original, *[(m, v, r, b) for m, (_, v, r, b) in zip(sizes, seen, strict=False)],
                     start_rate=start_rate)
    current = steps[-1]["memoryAfter"]
    died = [s["memoryAfter"] for s in steps if s["memoryBoundAfter"]] + ([known_bad] if known_bad else [])
    floor = floor_above(max(died) if died else None)
    # WHEN the controller decides
    decision = next_step(steps, original_memory=original, after_is_memory=after_is_memory,
                         after_recommended=after_recommended, max_steps=max_steps, max_memory=max_memory,
                         ceiling=ceiling, known_bad=known_bad)
    # THEN a raise is within MaxMemory, the ceiling and one bounded step, strictly above every known-bad size,
    # and only while steps remain
    if decision.action == StepAction.STEP_UP:
        assert decision.target_memory is not None
        assert current < decision.target_memory <= max_memory
        assert ceiling is None or decision.target_memory <= ceiling
        assert decision.target_memory >= floor
        # one bounded step, unless a known-bad size above it must be cleared (the function dies below it anyway)
        assert decision.target_memory <= max(round_up(current * 2), floor)
        assert len(steps) < max_steps
    else:
        assert decision.target_memory is None
    # AND a rollback never lands at or below a known-bad size, and lands on a size the incident has seen
    if decision.action == StepAction.ROLLBACK:
        assert decision.rollback_to is not None and decision.rollback_to >= floor
        assert decision.rollback_to in {original, *sizes}
    else:
        assert decision.rollback_to is None
    # AND the best size kept is the current one or one above every known-bad size
    assert decision.best_memory == current or decision.best_memory >= floor
    assert decision.stop_reason in (None, "MAX_STEPS", "MAX_MEMORY", "CEILING", "KNOWN_BAD")


@settings(max_examples=200, deadline=None)
@given(configured=st.integers(min_value=128, max_value=10240), peak=st.floats(min_value=0, max_value=12000),
       reports=st.integers(min_value=0, max_value=10000), healthy=st.floats(min_value=0, max_value=10 * 86400),
       original=st.none() | st.integers(min_value=128, max_value=10240), known_bad=st.none() | size_st,
       blocked=st.booleans(), general=st.booleans(), headroom=st.floats(min_value=0, max_value=1))
def test_propose_trim_properties(configured: int, peak: float, reports: int, healthy: float, original: int | None,
                                 known_bad: int | None, blocked: bool, general: bool, headroom: float) -> None:
    # GIVEN any observed history / WHEN a trim is proposed
    proposal = propose_trim(configured=configured, peak_mb=peak, report_count=reports, healthy_seconds=healthy,
                            original_memory=original, known_bad=known_bad, trim_blocked=blocked,
                            headroom=headroom, right_size_generally=general)
    if proposal is None:
        return
    target = proposal.target_memory
    # THEN it lowers memory, keeps headroom above the peak, and respects every floor
    assert not blocked and reports >= 100 and healthy >= 86400
    assert target < configured
    assert target >= peak * (1 + headroom)
    assert target >= floor_above(known_bad)
    assert general or original is None or target >= original
    assert target % 64 == 0 or target == original


@settings(max_examples=200, deadline=None)
@given(current=size_st, first=size_st, steps=st.integers(min_value=1, max_value=6),
       max_memory=st.integers(min_value=128, max_value=10240), known_bad=st.none() | size_st)
def test_approval_ceiling_properties(current: int, first: int, steps: int, max_memory: int,
                                     known_bad: int | None) -> None:
    # GIVEN any start / THEN the ceiling is never above MaxMemory (unless already there) and never below now
    ceiling = approval_ceiling(current=current, first_target=first, max_steps=steps, max_memory=max_memory,
                               known_bad=known_bad)
    assert ceiling >= current
    assert ceiling <= max(max_memory, current)


@settings(max_examples=200, deadline=None)
@given(original=st.integers(min_value=-10, max_value=12000),
       raw=st.lists(st.fixed_dictionaries({}, optional={
           "memoryAfter": st.integers(min_value=-5, max_value=12000) | st.text(max_size=3) | st.none(),
           "verdict": st.text(max_size=12) | st.sampled_from([NI, OK, NO_DATA]),
           "errorRateBefore": st.floats(allow_nan=True) | st.booleans(),
           "errorRateAfter": st.floats(min_value=-1, max_value=2) | st.none(),
           "memoryBoundAfter": st.booleans()}), max_size=4),
       after_recommended=st.none() | st.integers(min_value=-100, max_value=20000),
       max_steps=st.integers(min_value=-1, max_value=5), max_memory=st.integers(min_value=-1, max_value=10240),
       ceiling=st.none() | st.integers(min_value=0, max_value=12000),
       known_bad=st.none() | st.integers(min_value=0, max_value=12000))
def test_next_step_on_any_input_decides_or_says_what_is_wrong(original: int, raw: list[dict[str, Any]],
                                                             after_recommended: int | None, max_steps: int,
                                                             max_memory: int, ceiling: int | None,
                                                             known_bad: int | None) -> None:
    # GIVEN anything a caller could pass (sizes in any order, broken fields) / WHEN the controller decides
    try:
        decision = next_step(raw, original_memory=original, after_is_memory=True,  # type: ignore[arg-type]
                             after_recommended=after_recommended, max_steps=max_steps, max_memory=max_memory,
                             ceiling=ceiling, known_bad=known_bad)
    except ControllerError:
        return  # THEN either a clear error of the product's own ...
    # ... or a decision that never raises above MaxMemory or the ceiling, nor lands at or below a known-bad size
    if decision.target_memory is not None:
        assert decision.target_memory <= max_memory and (ceiling is None or decision.target_memory <= ceiling)
        assert decision.target_memory > (known_bad or 0)
    if decision.rollback_to is not None:
        assert decision.rollback_to > (known_bad or 0)
