"""VerifyRepair: compare the window after the repair with the window before it, and decide the next step.

When the verdict is final, the after window is diagnosed as an incident's evidence would be (it now holds
invocations at the larger size) and the step-up controller (``auto_repair.controller``) decides: raise again inside
this execution (``step.action`` STEP_UP loops the state machine back to ExecuteRepair), stop healthy, keep the
best size reached, or roll back. Sizes the function was seen to die of memory at are remembered
(``auto_repair.memory_history``) so that no rollback lands at or below them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from auto_repair import accounts, aws, memory_history, settle
from auto_repair.clock import now_iso, parse_time, utc_now
from auto_repair.collect import SERIES, get_log_lines, get_series
from auto_repair.controller import StepDecision, next_step
from auto_repair.diagnosis import DiagnosisConfig, diagnose
from auto_repair.errors import AutoRepairError
from auto_repair.evidence_store import window_before
from auto_repair.observability import CORRELATION_PATH, add_dimension_env, logger, metrics, tracer, unpack
from auto_repair.outcomes import DeliveryStatus, RecordType, StepAction, Verdict
from auto_repair.records import IncidentStore
from auto_repair.settings import get_settings
from auto_repair.verification import (
    WindowStats,
    compare,
    lines_at,
    repair_step,
    rollback_decision,
    step_rollback,
    window_stats,
)
from auto_repair.workflow import RepairStep, WorkflowContext

MAX_ATTEMPTS = 2  # INSUFFICIENT_DATA: extend once, then report inconclusive


def diagnose_after(evidence: Mapping[str, Any], series: dict[str, list[dict[str, Any]]], lines: list[dict[str, Any]],
                   *, memory: int, max_memory: int, metric_name: str | None) -> dict[str, Any]:
    """The diagnosis engine's verdict on the after window (rules only: this is a re-sizing, not a new incident).
    Only the small figures travel on; the lines stay in this invocation."""
    key = next((k for k, n, _ in SERIES if n == (metric_name or "Duration")), None)
    request = {"functionName": evidence.get("functionName", ""), "alarmDetails": evidence.get("alarmDetails") or {},
               "metrics": series.get(key, []) if key else [], "logs": lines_at(lines, memory),
               "currentMemorySize": memory, "runtime": evidence.get("runtime"),
               "timeoutSeconds": evidence.get("timeoutSeconds"), "metricSeries": series}
    try:
        result = diagnose(request, config=DiagnosisConfig(max_memory=max(128, min(int(max_memory), 10240))))
    except AutoRepairError as exc:  # an unreadable window says nothing about memory: the controller stops
        return {"isMemoryIssue": False, "cause": f"after-window diagnosis failed: {exc}", "confidence": 0.0,
                "recommendedMemorySize": None}
    return {k: result.get(k) for k in ("isMemoryIssue", "cause", "confidence", "recommendedMemorySize")}


def known_bad_size(table: Any, name: str, steps: list[RepairStep], before_oom_at: int | None, now: float) -> int | None:
    """The largest size this function is known to die of memory at: the state table's fresh record, and what
    this incident saw even if the table could not be read (never guess a lower floor)."""
    seen = [int(s["memoryAfter"]) for s in steps if s.get("memoryBoundAfter") and s.get("verdict") != Verdict.IMPROVED]
    seen += [before_oom_at] if before_oom_at else []
    try:
        stored = memory_history.known_bad_size(table, name, now=now)
    except memory_history.MemoryHistoryError:
        logger.exception("known-bad size unreadable; using this incident's own evidence")
        stored = None
    sizes = [s for s in [stored, *seen] if s]
    return max(sizes) if sizes else None


def remember_known_bad(table: Any, name: str, size: int, stats: WindowStats, execution_id: str, where: str) -> None:
    evidence = (f"{stats.oom} out-of-memory failure(s) in {stats.invocations} invocation(s) at {size} MB "
                f"({where}, execution {execution_id})")
    try:
        memory_history.record_known_bad(table, name, size, at=time.time(), execution_id=execution_id, evidence=evidence)
    except memory_history.MemoryHistoryError:
        # The controller still uses this incident's own evidence; the next incident may not know it.
        logger.exception("could not record the known-bad size", extra={"sizeMb": size})
        metrics.add_metric(name="KnownBadWriteFailed", unit="Count", value=1)


def decide_step(workflow: WorkflowContext, verdict: dict[str, Any], before: WindowStats, after: WindowStats,
                after_diagnosis: dict[str, Any], execution_id: str) -> dict[str, Any]:
    """The step history with this step, the controller's decision and what it means for rollback."""
    settings = get_settings()
    alarm, repair = workflow["alarm"], workflow["repair"]
    # Known-bad sizes are kept under the function's key (<account>:<region>:<function> for a member's).
    name, step_no = accounts.key_of(alarm), int(repair.get("step") or 1)
    earlier = [s for s in (workflow.get("verification") or {}).get("steps") or [] if int(s["step"]) < step_no]
    rate_before = float(earlier[-1]["errorRateAfter"]) if earlier else before.error_rate
    this = repair_step(step_no, repair, verdict, rate_before=rate_before, after=after)
    steps = [*earlier, this]
    table = aws.table(settings.state_table)
    original = int(earlier[0]["memoryBefore"]) if earlier else int(repair.get("originalMemory") or 0)
    before_oom_at = original if before.oom and step_no == 1 else None
    if before_oom_at:
        remember_known_bad(table, name, original, before, execution_id, "the incident's window before the repair")
    if after.oom and verdict["status"] != Verdict.IMPROVED:
        remember_known_bad(table, name, this["memoryAfter"], after, execution_id, f"verification of step {step_no}")
    approval = workflow.get("approval") or {}
    policy: Mapping[str, Any] = alarm.get("settings") or {}
    max_memory = int(policy.get("maxMemory") or settings.max_memory_mb)
    decision: StepDecision = next_step(
        steps, original_memory=original, after_is_memory=bool(after_diagnosis.get("isMemoryIssue")),
        after_recommended=after_diagnosis.get("recommendedMemorySize"), max_steps=settings.max_repair_steps,
        max_memory=max_memory,
        ceiling=int(approval.get("ceilingMemory") or approval["targetMemory"]) if approval.get("approved") else None,
        known_bad=known_bad_size(table, name, steps, before_oom_at, time.time()))
    current = int(repair.get("newMemory") or 0)
    # Behind an alias each step serves a new version: a rollback to an earlier size moves the alias to its version.
    versions = dict((workflow.get("verification") or {}).get("versions") or {})
    if (repair.get("alias") or {}).get("newVersion"):
        versions.setdefault(str(repair.get("originalMemory")), repair["alias"]["previousVersion"])
        versions[str(current)] = repair["alias"]["newVersion"]
    return {"steps": steps, "afterDiagnosis": after_diagnosis, **({"versions": versions} if versions else {}),
            "step": {"action": decision.action, "targetMemory": decision.target_memory,
                     "bestMemory": decision.best_memory, "rollbackTo": decision.rollback_to,
                     "stopReason": decision.stop_reason, "reason": decision.reason, "maxMemory": max_memory,
                     "maxSteps": settings.max_repair_steps},
            **step_rollback(decision, current=current, enabled=settings.rollback_on_failure)}


@logger.inject_lambda_context(correlation_id_path=CORRELATION_PATH)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    workflow, meta = unpack(event)
    alarm, evidence, repair = workflow["alarm"], workflow["evidence"], workflow["repair"]
    execution_id = meta.get("executionId") or alarm.get("executionId", "")
    previous = workflow.get("verification") or {}
    # Attempts count per step: a verification of an earlier step (same state, before the loop) is not this one's.
    same_step = previous.get("repairId") == repair.get("repairId")
    attempt = (int(previous.get("attempt", 0)) if same_step else 0) + 1
    now = utc_now()
    repaired_at = parse_time(repair.get("endTime"), now)
    name = alarm["functionName"]
    period = int((evidence.get("window") or {}).get("periodSeconds", 60))

    # Judge the deployment that serves the traffic: after an alias move that is the new version (its own log
    # streams, the alias's Resource metrics), otherwise $LATEST.
    alias = repair.get("alias") or {}
    version = str(alias.get("newVersion") or "$LATEST")
    resource = f"{name}:{alias['name']}" if alias.get("name") else None
    # Collect summarised the window before the repair; its series and lines are in the evidence bucket.
    before = window_before(evidence)
    # The function's metrics and logs are in its own account and region (the member role there).
    clients = accounts.clients_for(accounts.identity_of(alarm), execution_id)
    series, missing = get_series(clients.client("cloudwatch"), name, repaired_at, now, period, resource)
    # The function's configured log group (LoggingConfig.LogGroup), as the collector found it.
    group = (evidence.get("function") or {}).get("logGroup")
    lines, miss = get_log_lines(clients.client("logs"), name, repaired_at, now, version=version, group=group)
    memory = int(repair.get("newMemory") or 0)
    after = window_stats(series, lines, memory_size=memory or None)
    verdict = compare(before, after, alarm_metric=alarm.get("metricName") or "Errors",
                      min_invocations=get_settings().min_invocations_for_verdict)
    verdict.update(attempt=attempt, final=verdict["status"] != Verdict.INSUFFICIENT_DATA or attempt >= MAX_ATTEMPTS,
                   window={"start": repaired_at.isoformat(), "end": now.isoformat()},
                   missingData=missing + miss, verifiedAt=now_iso(), functionName=name,
                   repairTimestamp=repair.get("endTime"), metricName=alarm.get("metricName"),
                   verificationPeriod=int((now - repaired_at).total_seconds()), verifiedVersion=version,
                   repairId=repair.get("repairId"), step={"action": ""},
                   steps=[s for s in previous.get("steps") or [] if int(s["step"]) < int(repair.get("step") or 1)])
    if verdict["final"] and memory and not repair.get("trim"):  # a trim is judged once, never stepped
        policy: Mapping[str, Any] = alarm.get("settings") or {}
        after_diagnosis = diagnose_after(evidence, series, lines, memory=memory, metric_name=alarm.get("metricName"),
                                         max_memory=int(policy.get("maxMemory") or get_settings().max_memory_mb))
        verdict.update(decide_step(workflow, verdict, before, after, after_diagnosis, execution_id))
    else:
        verdict.update(rollback_decision(verdict, enabled=get_settings().rollback_on_failure))
        if repair.get("trim"):
            verdict.update(settle.trim_rollback_decision(verdict))
    record(workflow, verdict, execution_id, now)
    logger.info("verified", extra={"status": verdict["status"], "attempt": attempt, "reason": verdict["reason"],
                                   "step": verdict["step"]})
    return verdict


def record(workflow: WorkflowContext, verdict: dict[str, Any], execution_id: str, now: Any) -> None:
    alarm, repair = workflow["alarm"], workflow["repair"]
    store = IncidentStore(aws.table(get_settings().incidents_table), get_settings().record_ttl_days)
    store.put(execution_id, RecordType.VERIFICATION, verdict)
    store.put(execution_id, RecordType.REPAIR, {**repair, "verificationStatus": verdict["status"],
                                                "notificationStatus": DeliveryStatus.PENDING})
    add_dimension_env(get_settings().environment)
    if not verdict["final"]:
        return
    if verdict["step"]["action"]:
        metrics.add_metric(name=f"Step{verdict['step']['action'].title().replace('_', '')}", unit="Count", value=1)
    if verdict["step"]["action"] == StepAction.STEP_UP:
        return  # the incident goes on: its result is counted once, at its last step
    if verdict["status"] == Verdict.IMPROVED:
        metrics.add_metric(name="RepairsSucceeded", unit="Count", value=1)
        detected = parse_time(alarm.get("stateChangeTime"), now)
        metrics.add_metric(name="TimeToRepairSeconds", unit="Seconds",
                           value=max(0.0, (now - detected).total_seconds()))
    else:
        metrics.add_metric(name="RepairsNotImproved", unit="Count", value=1)
