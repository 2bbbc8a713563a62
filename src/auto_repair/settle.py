"""Settle near the real need (issue 13): trim memory our workflow raised once the function has proven its peak.

The daily sweep (``handlers/targets``) reads each onboarded function's memory history from the audit trail
(:func:`history`), its use since our last change from the target metrics (:func:`usage_since`), and asks the
controller (``controller.propose_trim``) for a trim. A proposal starts a workflow execution whose diagnosis is
:func:`trim_diagnosis`: a decision with ``targetMemory < currentMemory`` and ``trim: true``, so DetermineAction,
RequestApproval, ExecuteRepair (audited as ``details.change = TRIM``), VerifyRepair and RollbackRepair treat it as
any other change. A trim that brings failures back is undone at once (:func:`trim_rollback_decision`); the undo
writes the known-bad size and the trim-undone marker (:func:`record_undone_trim`), so the function is not trimmed
again for ``memory_history.NO_TRIM_DAYS``. An out-of-memory alarm later at the trimmed size raises it through the
normal loop, which records the same (:func:`trim_undone_by_raise`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from . import memory_history, pricing
from .clock import parse_time
from .controller import TrimProposal, duration_text, floor_above, propose_trim
from .outcomes import AuditPhase, PolicyAction, Verdict

TRIM = "TRIM"
RAISE = "RAISE"
ROLLBACK = "ROLLBACK"
UPDATE = "UpdateFunctionConfiguration"
TRIM_ALARM_PREFIX = "lambda-memory-trim-"
TRIM_CAUSE = "OVER_PROVISIONED"
# GetMetricData: one function's usage in at most this many periods (the window since our change can be weeks).
_MAX_POINTS = 1440


@dataclass(frozen=True)
class TrimConfig:
    """When a function has proven its peak (the targets function's TRIM_* settings)."""

    min_healthy_seconds: float = 86400.0
    min_reports: int = 100
    headroom: float = 0.25
    right_size_generally: bool = False


@dataclass(frozen=True)
class MemoryChange:
    """One memory change of $LATEST our workflow made, from its audit entry (AFTER or ROLLED_BACK)."""

    at: str
    before: int
    after: int
    kind: str  # RAISE | TRIM | ROLLBACK
    execution_id: str


@dataclass(frozen=True)
class History:
    """The chain of our changes that left the function at ``current`` MB (each change starts where the last ended)."""

    original: int  # the size before our first change of the chain: what the function had before our repair
    current: int
    since: str  # when the last change of the chain was applied
    changes: tuple[MemoryChange, ...]


@dataclass(frozen=True)
class Usage:
    """The function's REPORT-line metrics since a time (target onboarding's filters)."""

    peak_mb: float | None
    reports: int
    failures: int  # out-of-memory lines + timeouts


def _memory(value: Any) -> int | None:
    size = value.get("MemorySize") if isinstance(value, Mapping) else None
    return int(size) if isinstance(size, int | float) and not isinstance(size, bool) else None


def memory_changes(entries: Iterable[Mapping[str, Any]]) -> list[MemoryChange]:
    """Our applied memory changes of $LATEST, oldest first, from a function's audit entries."""
    changes = []
    for entry in sorted(entries, key=lambda e: str(e.get("auditId", ""))):
        phase = entry.get("phase")
        if entry.get("action") != UPDATE or phase not in (AuditPhase.AFTER, AuditPhase.ROLLED_BACK):
            continue
        before, after = _memory(entry.get("oldValue")), _memory(entry.get("newValue"))
        if before is None or after is None or before == after:
            continue
        if phase == AuditPhase.ROLLED_BACK:
            kind = ROLLBACK
        else:
            kind = TRIM if (entry.get("details") or {}).get("change") == TRIM else RAISE
        changes.append(MemoryChange(at=str(entry.get("timestamp", "")), before=before, after=after, kind=kind,
                                    execution_id=str(entry.get("executionId", ""))))
    return changes


def history(entries: Iterable[Mapping[str, Any]]) -> History | None:
    """The chain that ends with our latest change; None when we never raised the function."""
    changes = memory_changes(entries)
    if not changes:
        return None
    chain = [changes[-1]]
    for change in reversed(changes[:-1]):
        if change.after != chain[0].before:
            break  # someone else changed the memory in between: what came before is another story
        chain.insert(0, change)
    if not any(c.kind == RAISE for c in chain):
        return None
    return History(original=chain[0].before, current=chain[-1].after, since=chain[-1].at, changes=tuple(chain))


def usage_queries(function_name: str, namespace: str, period: int) -> list[dict[str, Any]]:
    def query(qid: str, metric: str, stat: str) -> dict[str, Any]:
        return {"Id": qid, "ReturnData": True, "MetricStat": {
            "Metric": {"Namespace": namespace, "MetricName": metric}, "Period": period, "Stat": stat}}

    return [query("peak", "MaxMemoryUsed", "Maximum"), query("reports", "MaxMemoryUsed", "SampleCount"),
            query("oom", "OutOfMemory", "Sum"), query("timeouts", "Timeouts", "Sum")]


def usage_since(cloudwatch: Any, function_name: str, namespace: str, start: datetime, now: datetime) -> Usage:
    """Peak Max Memory Used, REPORT lines and failures of the function from ``start`` to ``now``."""
    seconds = max(60.0, (now - start).total_seconds())
    period = max(60, math.ceil(seconds / _MAX_POINTS / 60) * 60)
    kwargs: dict[str, Any] = {"MetricDataQueries": usage_queries(function_name, namespace, period),
                              "StartTime": start, "EndTime": now + timedelta(minutes=1)}
    values: dict[str, list[float]] = {}
    while True:
        page = cloudwatch.get_metric_data(**kwargs)
        for result in page.get("MetricDataResults", []):
            values.setdefault(result["Id"], []).extend(float(v) for v in result.get("Values", []))
        if not page.get("NextToken"):
            break
        kwargs["NextToken"] = page["NextToken"]
    peaks = values.get("peak") or []
    return Usage(peak_mb=max(peaks) if peaks else None, reports=int(sum(values.get("reports") or [])),
                 failures=int(sum(values.get("oom") or []) + sum(values.get("timeouts") or [])))


def evaluate(configured: int, hist: History | None, usage: Usage | None, *, known_bad: int | None,
             blocked: Mapping[str, Any] | None, now: datetime, config: TrimConfig
             ) -> tuple[TrimProposal | None, str]:
    """The controller's proposal for one function, or None with the reason in words (for the sweep's answer)."""
    if hist is None:
        return None, "not raised by the workflow: nothing to settle"
    if configured != hist.current:
        return None, (f"memory is {configured} MB but our last change left {hist.current} MB: changed outside the "
                      "workflow since, left alone")
    if blocked:
        return None, (f"a trim to {blocked.get('trimmedTo')} MB was undone at {blocked.get('atIso')}: no trim until "
                      f"{blocked.get('untilIso')}")
    healthy = max(0.0, (now - parse_time(hist.since, now)).total_seconds())
    if usage is None or usage.peak_mb is None:
        return None, f"no REPORT lines since {hist.since}: peak unknown"
    if usage.failures:
        return None, f"{usage.failures} out-of-memory/timeout failure(s) at {configured} MB since {hist.since}"
    proposal = propose_trim(configured=configured, peak_mb=usage.peak_mb, report_count=usage.reports,
                            healthy_seconds=healthy, original_memory=hist.original, known_bad=known_bad,
                            trim_blocked=False, headroom=config.headroom, min_reports=config.min_reports,
                            min_healthy_seconds=config.min_healthy_seconds,
                            right_size_generally=config.right_size_generally)
    if proposal is not None:
        return proposal, proposal.reason
    if usage.reports < config.min_reports:
        return None, f"only {usage.reports} REPORT lines at {configured} MB (need {config.min_reports})"
    if healthy < config.min_healthy_seconds:
        return None, (f"healthy at {configured} MB for {duration_text(healthy)} (need "
                      f"{duration_text(config.min_healthy_seconds)})")
    floor = floor_above(known_bad, None if config.right_size_generally else hist.original)
    return None, (f"no surplus worth a trim: peak {usage.peak_mb:.0f} MB x {1 + config.headroom:g} headroom, floor "
                  f"{floor} MB (original {hist.original} MB, known-bad {known_bad or 'none'}), configured "
                  f"{configured} MB")


def proposal_detail(proposal: TrimProposal, configured: int, hist: History, usage: Usage,
                    known_bad: int | None) -> dict[str, Any]:
    """What the trim event carries to the workflow (``detail.trim``)."""
    return {"configured": configured, "targetMemory": proposal.target_memory, "reason": proposal.reason,
            "peakMb": usage.peak_mb, "reports": usage.reports, "healthySince": hist.since,
            "originalMemory": hist.original, "knownBad": known_bad}


# ------------------------------------------------------------------------------------------------ the workflow


def trim_of(raw_event: Any) -> dict[str, Any] | None:
    """The trim proposal a sweep execution carries, if this execution is a trim."""
    detail = raw_event.get("detail") if isinstance(raw_event, Mapping) else None
    trim = detail.get("trim") if isinstance(detail, Mapping) else None
    return dict(trim) if isinstance(trim, Mapping) and isinstance(trim.get("targetMemory"), int) else None


def trim_diagnosis(trim: Mapping[str, Any], *, current_memory: int, dry_run: bool, approval_required: bool
                   ) -> dict[str, Any]:
    """DiagnoseIssue's result for a trim execution: the sweep's evidence, and the decision under the policy."""
    target, configured = int(trim["targetMemory"]), int(trim.get("configured") or 0)
    evidence = [{"type": "peak", "description": f"peak Max Memory Used {trim.get('peakMb')} MB over "
                                                f"{trim.get('reports')} REPORT lines since {trim.get('healthySince')}"}]
    result: dict[str, Any] = {
        "isMemoryIssue": True, "confidence": 1.0, "cause": TRIM_CAUSE, "recommendedAction": "DECREASE_MEMORY",
        "recommendedMemorySize": target, "recommendedMemoryIncrease": target - current_memory,
        "reasoning": str(trim.get("reason") or ""), "evidencePoints": evidence,
        "diagnosisMethod": {"method": "settle", "source": "daily sweep"}, "knowledgeReferences": [],
    }
    decision: dict[str, Any] = {"currentMemory": current_memory, "targetMemory": target, "approvalRequired": False,
                                "dryRun": dry_run, "trim": True}
    if current_memory != configured or target >= current_memory:
        # Someone changed the memory since the sweep measured it: the proposal no longer applies.
        result.update(isMemoryIssue=False, cause="TRIM_STALE")
        decision.update(targetMemory=current_memory, action=PolicyAction.NO_ACTION,
                        reason=f"memory is {current_memory} MB, the sweep proposed {configured} -> {target} MB: "
                               "changed since, no trim")
    elif dry_run:
        decision.update(action=PolicyAction.DRY_RUN, reason=f"dry run: would trim memory {current_memory} -> "
                                                            f"{target} MB")
    else:
        decision.update(action=PolicyAction.REPAIR, approvalRequired=bool(approval_required),
                        reason=f"trim memory {current_memory} -> {target} MB: {trim.get('reason', '')}")
    return {**result, "decision": decision}


def trim_rollback_decision(verdict: Mapping[str, Any]) -> dict[str, Any]:
    """A trim is undone as soon as its verification finds failures: no partial credit, whatever
    RollbackOnFailure says (a trim only ever saves money; it must never cost health)."""
    if not verdict.get("final") or verdict.get("status") != Verdict.NOT_IMPROVED:
        return {"rollback": False, "rollbackReason": ""}
    return {"rollback": True, "rollbackReason": f"the trim brought failures back ({verdict.get('reason', '')})"}


def record_undone_trim(table: Any, function_name: str, *, trimmed_to: int, raised_to: int, at: float,
                       execution_id: str, oom: bool, evidence: str) -> int | None:
    """The trim to ``trimmed_to`` was undone: no trim for NO_TRIM_DAYS; with out-of-memory failures the trimmed
    size is known-bad. Returns the known-bad size written (or None)."""
    memory_history.record_trim_undone(table, function_name, at=at, execution_id=execution_id,
                                      trimmed_to=trimmed_to, raised_to=raised_to)
    if not oom:
        return None
    memory_history.record_known_bad(table, function_name, trimmed_to, at=at, execution_id=execution_id,
                                    evidence=evidence)
    return trimmed_to


def trim_undone_by_raise(entries: Iterable[Mapping[str, Any]], original: int, execution_id: str
                         ) -> MemoryChange | None:
    """The trim a raise from ``original`` MB (by ``execution_id``) undoes: our last change before it was a trim
    that left exactly that size."""
    changes = [c for c in memory_changes(entries) if c.execution_id != execution_id]
    last = changes[-1] if changes else None
    return last if last and last.kind == TRIM and last.after == original else None


def trim_summary(context: Mapping[str, Any], outcome: str) -> tuple[str, str] | None:
    """(summary, subject tail) of a trim's notice, or None when this run was no trim."""
    decision = ((context.get("diagnosisResult") or {}).get("decision") or {})
    if not decision.get("trim"):
        return None
    name = (context.get("alarm") or {}).get("functionName") or "the function"
    before, target = decision.get("currentMemory"), decision.get("targetMemory")
    rollback = context.get("rollback") or {}
    verification = context.get("verification") or {}
    why = (context.get("diagnosisResult") or {}).get("reasoning", "")
    if rollback.get("trimUndone"):
        bad = f" {target} MB is now known-bad." if rollback.get("knownBad") else ""
        return (f"{name}: trimmed {before} -> {target} MB ({why}), but verification found failures "
                f"({verification.get('reason', '')}); the trim was undone at once, back to "
                f"{rollback.get('restoredMemory')} MB.{bad} No trim of this function for "
                f"{memory_history.NO_TRIM_DAYS} days.", f"trim {before}->{target} MB UNDONE, back to "
                                                        f"{rollback.get('restoredMemory')} MB")
    if outcome == "REPAIRED":
        return (f"{name}: trimmed {before} -> {target} MB ({why}); verification shows it healthy at the new size.",
                f"memory trimmed {before}->{target} MB, healthy")
    if outcome == "APPROVAL_REQUEST":
        return (f"{name}: approve a trim of memory {before} -> {target} MB? {why} The trim is verified and undone at "
                "once if failures come back.", f"approval needed: trim {before}->{target} MB")
    if outcome == "DRY_RUN":
        return f"{name}: dry run - would trim memory {before} -> {target} MB ({why}). Nothing was changed.", \
            f"dry run, would trim {before}->{target} MB"
    return None


# ------------------------------------------------------------------------------------------------ the story


def trim_story(context: Mapping[str, Any]) -> dict[str, Any] | None:
    """The notice's ``story`` of a trim run, from the workflow context alone: the sizes over time and the cost per
    million invocations at each (the notify function reads no audit trail; `incidents show` tells the full one)."""
    decision = ((context.get("diagnosisResult") or {}).get("decision") or {})
    trim = trim_of(context.get("rawEvent"))
    if not decision.get("trim") or trim is None:
        return None
    repair, rollback = context.get("repair") or {}, context.get("rollback") or {}
    memory = [{"at": None, "memory": trim.get("originalMemory"), "what": "before our repair"},
              {"at": trim.get("healthySince"), "memory": trim.get("configured"), "what": "raised by the workflow"}]
    if repair.get("status") == "SUCCEEDED":
        memory.append({"at": repair.get("endTime"), "memory": repair.get("newMemory"), "what": "trimmed"})
    if rollback.get("status") == "ROLLED_BACK":
        memory.append({"at": rollback.get("endTime"), "memory": rollback.get("restoredMemory"),
                       "what": "trim undone"})
    duration = ((context.get("verification") or {}).get("before") or {}).get("durationAvg")
    sizes = sorted({size for m in memory if isinstance(size := m.get("memory"), int)})
    costs = {str(s): pricing.monthly_cost(s, 1_000_000, float(duration)) if duration else None for s in sizes}
    return {"memoryOverTime": memory, "costPerMonthPerMillionInvocations": costs,
            "assumption": (f"{float(duration):.0f} ms average duration before the trim, the same at every size; "
                           "duration charge only") if duration else "no duration observed: cost not estimated",
            "peakMb": trim.get("peakMb"), "reports": trim.get("reports"),
            "knownBad": rollback.get("knownBad") or trim.get("knownBad")}


def monthly_costs(sizes: Sequence[int], *, invocations_per_day: float | None, avg_duration_ms: float | None,
                  architecture: str = "x86_64") -> tuple[dict[int, float | None], str]:
    """USD per month at each size for the observed traffic, and the assumption behind the figures."""
    if not invocations_per_day or not avg_duration_ms:
        return {s: None for s in sizes}, "no traffic data: cost not estimated"
    costs: dict[int, float | None] = {s: pricing.monthly_cost(s, invocations_per_day * 30, avg_duration_ms, architecture) for s in sizes}
    return costs, (f"{invocations_per_day:,.0f} calls/day x {avg_duration_ms:.0f} ms (observed, last 24 h) x 30 "
                   "days; same duration at every size; no request charges")


def story_lines(function_name: str, audit_entries: Sequence[Mapping[str, Any]], *,
                steps: Sequence[Mapping[str, Any]] = (), costs: Mapping[int, float | None] | None = None,
                assumption: str = "") -> list[str]:
    """The whole story of one function for a terminal: steps, trims, undos, memory over time, money per size."""
    changes = memory_changes(audit_entries)
    lines = [f"Story of {function_name}"]
    if steps:
        lines.append("  steps of this incident:")
        for step in steps:
            lines.append(f"    {step.get('step')}. {step.get('memoryBefore')} -> {step.get('memoryAfter')} MB  "
                         f"{step.get('verdict', '?')}  errors {_rate(step.get('errorRateBefore'))} -> "
                         f"{_rate(step.get('errorRateAfter'))}"
                         f"{'  still memory-bound' if step.get('memoryBoundAfter') else ''}")
    if not changes:
        lines.append("  memory over time: no change by the workflow on record")
        return lines
    lines.append("  memory over time (audit trail):")
    top = max([changes[0].before] + [c.after for c in changes])
    lines.append(f"    {changes[0].at[:19]:19}  {'before':8} {changes[0].before:>6} MB  {_bar(changes[0].before, top)}")
    for change in changes:
        lines.append(f"    {change.at[:19]:19}  {change.kind:8} {change.after:>6} MB  {_bar(change.after, top)}  "
                     f"({change.before} -> {change.after}, {change.execution_id})")
    if costs:
        lines.append("  cost per month at each size (duration charge):")
        for size in sorted(costs):
            lines.append(f"    {size:>6} MB  {_usd(costs[size])}")
        lines.append(f"    assuming {assumption}")
    elif assumption:
        lines.append(f"  cost per month: {assumption}")
    return lines


def _usd(cost: float | None) -> str:
    if cost is None:
        return "n/a"
    return f"${cost:,.2f}" if cost >= 1 or cost == 0 else f"${cost:.4f}"


def _rate(value: Any) -> str:
    return f"{float(value):.0%}" if isinstance(value, int | float) else "?"


def _bar(size: int, top: int, width: int = 30) -> str:
    return "#" * max(1, round(size / top * width))
