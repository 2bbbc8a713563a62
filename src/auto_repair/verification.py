"""VerifyRepair: did the function recover? Compare the window after the repair with the window before.

Pure code over the same shapes CollectMetricsAndLogs produces (metric series + log lines).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .evidence import FAILED_STATUSES, classify_message, parse_report_line
from .outcomes import StepAction, Verdict

if TYPE_CHECKING:
    from .controller import StepDecision
    from .workflow import RepairStep

# Failure kinds of the evidence module's log signatures that mark an invocation as failed.
FAILURE_KINDS = frozenset({"oom", "timeout", "code_error", "init_error", "downstream", "access_denied"})
# Max Memory Used at or above this share of the configured memory counts as memory-bound.
AT_LIMIT = 0.98


def _kinds(message: str) -> set[str]:
    return {rule.kind for rule in classify_message(message)}


@dataclass
class WindowStats:
    invocations: int
    errors: int
    timeouts: int
    oom: int
    durationP95: float | None
    durationAvg: float | None
    maxMemoryUtilization: float | None
    reportLines: int

    @property
    def error_rate(self) -> float:
        return self.errors / self.invocations if self.invocations else 0.0


def _total(points: list[dict[str, Any]] | None) -> float:
    return float(sum(p.get("value", 0.0) for p in points or []))


def _percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, math.ceil(pct / 100.0 * len(ordered)) - 1)
    return ordered[rank]


def lines_at(logs: list[dict[str, Any]], memory_size: int) -> list[dict[str, Any]]:
    """The lines of the invocations whose REPORT line shows ``memory_size`` (the after window of a change also holds
    invocations that started on the old configuration)."""
    ids = {r["requestId"] for r in (parse_report_line(line.get("message", "")) for line in logs)
           if r and r["requestId"] and r["memorySizeMb"] == int(memory_size)}
    return [line for line in logs if any(i in line.get("message", "").lower() for i in ids)]


def window_stats(
    series: dict[str, list[dict[str, Any]]], logs: list[dict[str, Any]], memory_size: int | None = None
) -> WindowStats:
    """Numbers of one window.

    With ``memory_size``, only invocations whose REPORT line shows that memory count: right after a change,
    invocations that started on the old configuration still finish (and fail) inside the new window.
    """
    reports = [r for r in (parse_report_line(line.get("message", "")) for line in logs) if r]
    if memory_size is not None and reports:
        reports = [r for r in reports if r["memorySizeMb"] == int(memory_size)]
        ids = {r["requestId"] for r in reports if r["requestId"]}
        logs = lines_at(logs, memory_size)
        failed_ids = {r["requestId"] for r in reports if r["status"] in FAILED_STATUSES} | {
            i for i in ids for line in logs
            if i in line.get("message", "").lower() and not parse_report_line(line.get("message", ""))
            and _kinds(line["message"]) & FAILURE_KINDS
        }
        series = {**series, "Invocations.Sum": [{"value": len(reports)}],
                  "Errors.Sum": [{"value": len(failed_ids)}]}
    durations = [r["durationMs"] for r in reports if r["durationMs"] is not None]
    utilisations = [r["maxMemoryUsedMb"] / r["memorySizeMb"] for r in reports if r["maxMemoryUsedMb"] is not None]
    kinds = [_kinds(line.get("message", "")) for line in logs if not parse_report_line(line.get("message", ""))]
    invocations = int(_total(series.get("Invocations.Sum"))) or len(reports)
    errors = int(_total(series.get("Errors.Sum")))
    p95_series = [p["value"] for p in series.get("Duration.p95") or []]
    avg_series = [p["value"] for p in series.get("Duration.Average") or []]
    return WindowStats(
        invocations=invocations,
        errors=errors,
        timeouts=sum(1 for k in kinds if "timeout" in k),
        oom=sum(1 for k in kinds if "oom" in k),
        durationP95=_percentile(durations, 95) if durations else (max(p95_series) if p95_series else None),
        durationAvg=(sum(durations) / len(durations)) if durations else
        ((sum(avg_series) / len(avg_series)) if avg_series else None),
        maxMemoryUtilization=max(utilisations) if utilisations else None,
        reportLines=len(reports),
    )


def compare(
    before: WindowStats,
    after: WindowStats,
    *,
    alarm_metric: str = "Errors",
    min_invocations: int = 3,
) -> dict[str, Any]:
    """Verdict and the numbers behind it, in the design's metricsComparison shape."""
    checks: list[str] = []
    if after.invocations < min_invocations:
        return {
            "status": Verdict.INSUFFICIENT_DATA,
            "reason": f"only {after.invocations} invocation(s) after the repair (need {min_invocations})",
            "before": asdict(before),
            "after": asdict(after),
            "metricsComparison": _comparison(before, after, alarm_metric),
            "worse": False,
            "partiallyImproved": False,
        }
    failures_before = before.oom + before.timeouts
    problems: list[str] = []
    if after.oom:
        problems.append(f"{after.oom} out-of-memory failure(s) after the repair")
    if after.timeouts and after.timeouts >= max(1, before.timeouts):
        problems.append(f"{after.timeouts} timeout(s) after the repair (before: {before.timeouts})")
    if before.error_rate > 0 and after.error_rate > before.error_rate * 0.5:
        problems.append(f"error rate {after.error_rate:.0%} after vs {before.error_rate:.0%} before")
    elif before.error_rate == 0 and after.error_rate > 0.05:
        problems.append(f"error rate rose to {after.error_rate:.0%}")
    if alarm_metric == "Duration" and before.durationP95 and after.durationP95:
        if after.durationP95 > before.durationP95 * 0.9:
            problems.append(f"duration p95 {after.durationP95:.0f} ms vs {before.durationP95:.0f} ms before")
    worse = (after.error_rate > before.error_rate + 0.05) or bool(
        before.durationP95 and after.durationP95 and after.durationP95 > before.durationP95 * 1.2
    )
    checks.append(f"errors {before.errors}/{before.invocations} -> {after.errors}/{after.invocations}")
    checks.append(f"out-of-memory {before.oom} -> {after.oom}, timeouts {before.timeouts} -> {after.timeouts}")
    if failures_before == 0 and before.error_rate == 0 and alarm_metric != "Duration" and not problems:
        checks.append("no failures before either; healthy after")
    status = Verdict.NOT_IMPROVED if problems else Verdict.IMPROVED
    # Not recovered, but the failure rate at least halved: undoing the change would make things worse again.
    partial = status == Verdict.NOT_IMPROVED and not worse and before.error_rate > 0 and (
        after.error_rate <= before.error_rate * 0.5)
    return {
        "status": status,
        "reason": "; ".join(problems) if problems else "; ".join(checks),
        "before": asdict(before),
        "after": asdict(after),
        "metricsComparison": _comparison(before, after, alarm_metric),
        "worse": worse,
        "partiallyImproved": partial,
    }


def rollback_decision(verdict: dict[str, Any], *, enabled: bool) -> dict[str, Any]:
    """Whether to restore the original memory after a final verdict: ``{rollback, rollbackReason}``.

    Roll back when the change did not help (NOT_IMPROVED) or made things worse, unless it at least halved the
    failure rate. INSUFFICIENT_DATA never rolls back: no evidence the change hurt. IMPROVED never does either,
    even with a higher p95: invocations that used to be killed early now run to completion.
    """
    if not verdict.get("final") or verdict.get("status") != Verdict.NOT_IMPROVED:
        return {"rollback": False, "rollbackReason": ""}
    if verdict.get("partiallyImproved"):
        return {"rollback": False, "rollbackReason": "kept the new memory: it did not fix the function but at "
                                                     f"least halved its failures ({verdict.get('reason', '')})"}
    why = ("the function got worse" if verdict.get("worse") else "the change did not help") + (
        f" ({verdict.get('reason', '')})")
    if not enabled:
        return {"rollback": False, "rollbackReason": f"not rolled back (RollbackOnFailure=false): {why}"}
    return {"rollback": True, "rollbackReason": why}


def memory_bound(stats: WindowStats) -> bool:
    """Failures that more memory may cure remain: out-of-memory signatures, or Max Memory Used at the limit (the
    runtime kills a function at its limit, often before an error line is written)."""
    return stats.oom > 0 or (stats.maxMemoryUtilization or 0.0) >= AT_LIMIT


def repair_step(step: int, repair: Mapping[str, Any], verdict: Mapping[str, Any], *, rate_before: float,
                after: WindowStats) -> RepairStep:
    """The history entry of one verified step (``rate_before``: the previous step's rate, or the incident's)."""
    return {"step": step, "memoryBefore": int(repair.get("originalMemory") or 0),
            "memoryAfter": int(repair.get("newMemory") or 0), "verdict": str(verdict.get("status")),
            "errorRateBefore": round(min(1.0, rate_before), 4), "errorRateAfter": round(min(1.0, after.error_rate), 4),
            "memoryBoundAfter": memory_bound(after), "at": str(repair.get("endTime") or "")}


def step_rollback(decision: StepDecision, *, current: int, enabled: bool) -> dict[str, Any]:
    """``{rollback, rollbackReason, restoreTo}`` for the controller's decision at the end of a step.

    ROLLBACK restores ``rollback_to`` (the original or the best earlier size, never at/below a known-bad size);
    KEEP_BEST and NEEDS_APPROVAL keep the best size reached, which is a move back only when a later, larger step
    was no better; HEALTHY and STEP_UP keep the current size.
    """
    target: int | None = None
    if decision.action == StepAction.ROLLBACK:
        target = decision.rollback_to
    elif decision.action in (StepAction.KEEP_BEST, StepAction.NEEDS_APPROVAL) and decision.best_memory != current:
        target = decision.best_memory
    if target is None or int(target) == int(current):
        kept = "" if decision.action in (StepAction.STEP_UP, StepAction.HEALTHY) else (
            f"kept {current} MB: {decision.reason}")
        return {"rollback": False, "rollbackReason": kept, "restoreTo": None}
    why = f"{decision.reason}; restore {target} MB"
    if not enabled:
        return {"rollback": False, "rollbackReason": f"not rolled back (RollbackOnFailure=false): {why}",
                "restoreTo": None}
    return {"rollback": True, "rollbackReason": why, "restoreTo": int(target)}


def _comparison(before: WindowStats, after: WindowStats, alarm_metric: str) -> dict[str, Any]:
    if alarm_metric == "Duration":
        b, a, unit = before.durationP95, after.durationP95, "duration p95 (ms)"
    else:
        b, a, unit = before.error_rate * 100.0, after.error_rate * 100.0, "error rate (%)"
    if b is None or a is None:
        improvement = "n/a"
    elif b == 0:
        improvement = "no change" if a == 0 else f"+{a:.1f}"
    else:
        improvement = f"{(b - a) / b * 100.0:+.0f}% better" if a <= b else f"{(a - b) / b * 100.0:.0f}% worse"
    return {
        "metric": unit,
        "before": round(b, 2) if b is not None else None,
        "after": round(a, 2) if a is not None else None,
        "improvement": improvement,
    }
