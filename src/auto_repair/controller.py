"""The step-up controller (issue 13): pure decisions for a repair that converges.

A repair is a sequence of verified steps inside one incident, then a settle (trim) once the function has been
healthy long enough. Everything here is pure arithmetic over what the workflow already holds (the steps applied,
the diagnosis of the last step's *after* window, the limits); the handlers read settings and the state table and
pass the numbers in (conv-flow wires ``next_step``/``approval_ceiling``, conv-settle ``propose_trim``).

Rules of ``next_step`` (in this order):

1. Healthy: the last step was verified IMPROVED, nothing memory-bound is left and the after window's diagnosis
   does not ask for more (memory pressure: peaks close to the limit) -> HEALTHY, keep it.
2. Insufficient data: no evidence either way -> KEEP_BEST at the current size (never roll back or step blind).
3. Worse: the last step raised the failure rate by more than ``WORSE_MARGIN`` -> ROLLBACK to the best earlier
   size strictly above the known-bad size; when there is none, KEEP_BEST (``KNOWN_BAD``).
4. Not memory: the after window's diagnosis no longer says memory (whatever failures remain). If the
   steps at least halved the failure rate of the incident's start, that is progress: KEEP_BEST. Otherwise the
   raise did not help and what remains is not memory: ROLLBACK (original size, else the best earlier size above
   the known-bad size; KEEP_BEST ``KNOWN_BAD`` when neither is allowed).
5. Memory still: STEP_UP when the last step helped (or was the first). Under the sizing model (each invocation
   has its own need; OOM when it exceeds the limit) raising memory lowers the share of invocations that die,
   unless every one of them still needs more than the new limit. So a step "helped" when the failure rate fell,
   or when the invocations were all killed before and after (saturated: the need lies above both sizes). A step
   that left a partial failure rate unchanged is evidence against memory being the cure: KEEP_BEST.
   Bounds, checked before raising: ``max_steps`` (MAX_STEPS), ``max_memory`` (MAX_MEMORY), the approved ceiling
   (a target above it is clamped to it; at the ceiling -> NEEDS_APPROVAL, CEILING).

The step-up target is the engine's recommendation for the after window (the after window holds successes at the
larger size) combined with the failure curve the steps themselves measured (``sizing.size_from_failure_curve``),
never more than ``sizing.OOM_MAX_FACTOR`` times the current size per step and never at or below a fresh
known-bad size (when the two disagree the known-bad floor wins: the function dies below it anyway). Every size the controller saw a function die of memory at counts as known-bad for the rest of
the incident, whether or not the state table has caught up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .errors import AutoRepairError
from .outcomes import StepAction, Verdict
from .sizing import (
    LAMBDA_MIN_MB,
    OOM_MAX_FACTOR,
    STEP_MB,
    cap_for,
    round_up,
    size_from_failure_curve,
)
from .workflow import RepairStep

# A step whose failure rate rose by more than this made things worse (verification.compare uses the same margin).
WORSE_MARGIN = 0.05
# Failure rates closer than this are the same rate (windows of a few dozen invocations are noisy).
RATE_EPSILON = 0.02
# Every invocation killed: the need lies above the limit, a step up cannot show progress yet.
SATURATED_RATE = 0.95


class ControllerError(AutoRepairError, ValueError):
    """Impossible controller input (no steps, non-positive sizes, negative limits)."""


@dataclass(frozen=True)
class StepDecision:
    action: StepAction
    target_memory: int | None  # STEP_UP: the next size; otherwise None
    best_memory: int  # the best size reached so far (lowest error rate; ties -> not memory-bound, then smaller)
    rollback_to: int | None  # ROLLBACK: where to restore (original or best earlier, > known_bad)
    stop_reason: str | None  # "MAX_STEPS" | "MAX_MEMORY" | "CEILING" | "KNOWN_BAD" | None
    reason: str  # one human sentence for the notice


@dataclass(frozen=True)
class TrimProposal:
    target_memory: int
    reason: str


@dataclass(frozen=True)
class _Point:
    """One size the incident has seen, with the failure rate measured there."""

    memory: int
    rate: float
    memory_bound: bool


def floor_above(known_bad: int | None, original_memory: int | None = None) -> int:
    """The lowest size any rollback/trim/recommendation may land at: the smallest step multiple strictly above a
    fresh known-bad size, and never below ``original_memory`` when one is given."""
    floor = LAMBDA_MIN_MB
    if known_bad is not None and known_bad > 0:
        floor = max(floor, (int(known_bad) // STEP_MB + 1) * STEP_MB)
    if original_memory is not None and original_memory > 0:
        floor = max(floor, int(original_memory))
    return floor


def approval_ceiling(*, current: int, first_target: int, max_steps: int, max_memory: int,
                     known_bad: int | None = None) -> int:
    """The highest size the controller may reach in ``max_steps`` steps starting with ``first_target`` (each later
    step at most ``OOM_MAX_FACTOR`` times the size before it), capped at ``max_memory``: the figure an approval
    request states ("up to 1,024 MB in at most 3 steps")."""
    _positive(current=current, first_target=first_target, max_memory=max_memory)
    if max_steps < 1:
        raise ControllerError(f"max_steps must be at least 1, got {max_steps}")
    cap = cap_for(max_memory)
    reach = max(int(first_target), floor_above(known_bad), int(current))
    for _ in range(max_steps - 1):
        if reach >= cap:
            break
        reach = round_up(reach * OOM_MAX_FACTOR)
    return max(min(reach, cap), int(current))


def next_step(steps: Sequence[RepairStep], *, original_memory: int, after_is_memory: bool,
              after_recommended: int | None, max_steps: int, max_memory: int, ceiling: int | None,
              known_bad: int | None) -> StepDecision:
    """What to do after the last step of ``steps`` was verified (module docstring: the rules, in order).

    Read from each step: ``memoryAfter`` (required), ``errorRateAfter``, ``verdict``, ``memoryBoundAfter``; from
    the first step also ``errorRateBefore`` (the incident's starting rate; a later step's before window is the
    previous step's after window). A missing rate reads as 0.0; a rate outside [0, 1] or a non-positive size is
    a :class:`ControllerError`."""
    points = _validate(steps, original_memory, max_steps, max_memory)
    last = steps[-1]
    current = points[-1].memory
    bad = _effective_known_bad(points[1:], known_bad)
    n = len(steps)
    label = f"step {n} of {max_steps}"
    rate_before, rate_after = points[-2].rate, points[-1].rate
    rates = f"failures {rate_before:.0%} -> {rate_after:.0%}"
    # The engine's verdict on the after window decides "still memory": an OOM it explains otherwise (an allocation
    # larger than any Lambda size) is not a reason to raise again.
    memory_left = after_is_memory
    verdict = last.get("verdict")

    # Verified improved with memory use near the limit (the engine still says memory and sizes above the current
    # size): the largest invocations of the after window nearly died, so one more step is cheap insurance (the
    # settle trims any surplus later); otherwise the function is healthy.
    pressure = after_is_memory and (after_recommended or 0) > current
    if verdict == Verdict.IMPROVED and not last.get("memoryBoundAfter") and not pressure:
        return StepDecision(StepAction.HEALTHY, None, current, None, None,
                            f"{label}: {points[-2].memory} -> {current} MB fixed it ({rates}); keeping {current} MB.")
    if verdict == Verdict.INSUFFICIENT_DATA:
        return StepDecision(StepAction.KEEP_BEST, None, current, None, None,
                            f"{label}: too few invocations after {points[-2].memory} -> {current} MB to judge; "
                            f"keeping {current} MB.")
    if rate_after > rate_before + WORSE_MARGIN:
        return _back_off(points, bad, current, prefer_original=False,
                         why=f"{label}: {points[-2].memory} -> {current} MB made things worse ({rates})")
    if not memory_left:
        start = points[0].rate
        if start > 0 and rate_after <= start * 0.5:
            best = _best(points, bad, current)
            return StepDecision(StepAction.KEEP_BEST, None, best, None, None,
                                f"{label}: the remaining failures are not memory failures, but the steps at least "
                                f"halved the failure rate ({start:.0%} -> {rate_after:.0%}); keeping {best} MB.")
        return _back_off(points, bad, current, prefer_original=True,
                         why=f"{label}: the remaining failures are not memory failures and the raise to {current} MB "
                             f"did not help ({rates})")
    return _step_up(points, bad, after_recommended=after_recommended, max_steps=max_steps, max_memory=max_memory,
                    ceiling=ceiling, label=label, rates=rates)


def _step_up(points: list[_Point], bad: int | None, *, after_recommended: int | None, max_steps: int,
             max_memory: int, ceiling: int | None, label: str, rates: str) -> StepDecision:
    current = points[-1].memory
    n = len(points) - 1
    prev, last = points[-2], points[-1]
    saturated = prev.rate >= SATURATED_RATE and last.rate >= SATURATED_RATE
    helped = n == 1 or last.rate < prev.rate - RATE_EPSILON or saturated
    best = _best(points, bad, current)
    if not helped:
        return StepDecision(StepAction.KEEP_BEST, None, best, None, None,
                            f"{label}: memory-bound failures remain but {prev.memory} -> {current} MB did not lower "
                            f"them ({rates}), so more memory is not a safe bet; keeping {best} MB.")
    if n >= max_steps:
        return StepDecision(StepAction.KEEP_BEST, None, best, None, "MAX_STEPS",
                            f"{label}: memory-bound failures remain ({rates}) and the {max_steps} steps are used; "
                            f"keeping {best} MB; the evidence now suggests "
                            f"{_suggested(points, after_recommended)} MB.")
    cap = cap_for(max_memory)
    target = _target(points, after_recommended, bad)
    if current >= cap or target <= current:
        return StepDecision(StepAction.KEEP_BEST, None, best, None, "MAX_MEMORY",
                            f"{label}: memory-bound failures remain ({rates}) at {current} MB and MaxMemory is "
                            f"{max_memory} MB; keeping {best} MB, a human must decide.")
    target = min(target, cap)
    if ceiling is not None:
        if current >= ceiling:
            return StepDecision(StepAction.NEEDS_APPROVAL, None, best, None, "CEILING",
                                f"{label}: memory-bound failures remain ({rates}) at the approved ceiling of "
                                f"{ceiling} MB; going to {target} MB needs a new approval; keeping {best} MB.")
        target = min(target, max(int(ceiling), current))
    if target < floor_above(bad) or target <= current:
        return StepDecision(StepAction.KEEP_BEST, None, best, None, "KNOWN_BAD",
                            f"{label}: the next size would not clear the known-bad size of {bad} MB; keeping {best} MB.")
    left = "left memory-bound failures" if last.memory_bound else "left memory use close to the limit"
    return StepDecision(StepAction.STEP_UP, target, best, None, None,
                        f"{label}: {prev.memory} -> {current} MB {left} ({rates}) and the after-window evidence "
                        f"still says memory; raising to {target} MB.")


def _target(points: list[_Point], after_recommended: int | None, bad: int | None) -> int:
    """Next size: the engine's after-window size or the measured failure curve, whichever is larger, within one
    bounded step of the current size and strictly above the known-bad size."""
    current = points[-1].memory
    curve = size_from_failure_curve([(p.memory, p.rate) for p in points if p.memory_bound or p.rate > 0])
    candidates = [c for c in (after_recommended, curve) if c]
    target = max(candidates) if candidates else round_up(current * OOM_MAX_FACTOR)
    target = min(round_up(target), round_up(current * OOM_MAX_FACTOR))
    return max(target, floor_above(bad))


def _suggested(points: list[_Point], after_recommended: int | None) -> int:
    curve = size_from_failure_curve([(p.memory, p.rate) for p in points if p.memory_bound or p.rate > 0])
    return max([c for c in (after_recommended, curve) if c] or [round_up(points[-1].memory * OOM_MAX_FACTOR)])


def _back_off(points: list[_Point], bad: int | None, current: int, *, prefer_original: bool, why: str
              ) -> StepDecision:
    floor = floor_above(bad)
    earlier = [p for p in points[:-1] if p.memory >= floor and p.memory != current]
    if prefer_original and points[0].memory >= floor and points[0].memory != current:
        target: int | None = points[0].memory
    else:
        target = min(earlier, key=_rank).memory if earlier else None
    if target is None:
        return StepDecision(StepAction.KEEP_BEST, None, current, None, "KNOWN_BAD",
                            f"{why}; every earlier size is at or below the known-bad size of {bad} MB, so "
                            f"{current} MB stays.")
    return StepDecision(StepAction.ROLLBACK, None, _best(points, bad, current), target, None,
                        f"{why}; rolling back to {target} MB.")


def _rank(point: _Point) -> tuple[float, bool, int]:
    return (round(point.rate / RATE_EPSILON), point.memory_bound, point.memory)


def _best(points: list[_Point], bad: int | None, current: int) -> int:
    """Lowest failure rate (within the noise), then not memory-bound, then smaller; never a landing at or below
    the known-bad size (the current size is where the function already is, so it always qualifies)."""
    floor = floor_above(bad)
    allowed = [p for p in points if p.memory >= floor or p.memory == current]
    return min(allowed, key=_rank).memory


def _effective_known_bad(step_points: list[_Point], known_bad: int | None) -> int | None:
    died = [p.memory for p in step_points if p.memory_bound]
    sizes = died + ([int(known_bad)] if known_bad else [])
    return max(sizes) if sizes else None


def _validate(steps: Sequence[RepairStep], original_memory: int, max_steps: int, max_memory: int) -> list[_Point]:
    """The sizes seen, in order (the original first), with their failure rates; clear errors for bad input."""
    if not steps:
        raise ControllerError("next_step needs at least one applied step")
    if max_steps < 1:
        raise ControllerError(f"max_steps must be at least 1, got {max_steps}")
    _positive(original_memory=original_memory, max_memory=max_memory)
    points = [_Point(int(original_memory), _rate(steps[0], "errorRateBefore", 1), False)]
    for i, step in enumerate(steps, start=1):
        after = step.get("memoryAfter")
        if not isinstance(after, int) or isinstance(after, bool) or after <= 0:
            raise ControllerError(f"step {i}: memoryAfter must be a positive integer, got {after!r}")
        points.append(_Point(after, _rate(step, "errorRateAfter", i), bool(step.get("memoryBoundAfter"))))
    return points


def _rate(step: RepairStep, key: str, index: int) -> float:
    value = step.get(key, 0.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
        raise ControllerError(f"step {index}: {key} must be a rate within [0, 1], got {value!r}")
    return float(value)


def _positive(**sizes: int) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ControllerError(f"{name} must be a positive number of MB, got {value!r}")


def duration_text(seconds: float) -> str:
    """A span for a human: 1.5 d, 3.2 h or 40 s."""
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds:.0f} s"


def propose_trim(*, configured: int, peak_mb: float, report_count: int, healthy_seconds: float,
                 original_memory: int | None, known_bad: int | None, trim_blocked: bool,
                 headroom: float = 0.25, min_reports: int = 100, min_healthy_seconds: float = 86400,
                 right_size_generally: bool = False) -> TrimProposal | None:
    """A trim toward the observed peak, or None.

    None unless the function was proven healthy long enough (``min_reports`` REPORT lines over at least
    ``min_healthy_seconds``) and the configured size is more than one step above ``peak x (1 + headroom)``; the
    target is never below ``floor_above(known_bad)`` and never below ``original_memory`` unless
    ``right_size_generally``. A blocked function (a trim of it was undone recently) is never trimmed."""
    _positive(configured=configured)
    if not 0.0 <= headroom <= 2.0:
        raise ControllerError(f"headroom must be within [0, 2], got {headroom!r}")
    if trim_blocked or report_count < min_reports or healthy_seconds < min_healthy_seconds:
        return None
    if not peak_mb or peak_mb <= 0 or peak_mb != peak_mb or peak_mb >= configured:
        return None
    wanted = max(round_up(peak_mb * (1.0 + headroom)), LAMBDA_MIN_MB)
    if configured <= wanted + STEP_MB:
        return None
    floor = floor_above(known_bad, None if right_size_generally else original_memory)
    target = max(wanted, floor)
    if target >= configured:
        return None
    floors = []
    if target == floor and floor > wanted:
        floors.append(f"not below {'the original' if floor == original_memory else 'above the known-bad'} "
                      f"size ({floor} MB)")
    return TrimProposal(target, f"peak {peak_mb:.0f} MB over {report_count} invocations in "
                                f"{duration_text(healthy_seconds)} healthy at "
                                f"{configured} MB: {target} MB keeps {headroom:.0%} headroom"
                                + (f" ({floors[0]})" if floors else "") + ".")
