"""VerifyRepair: compare the window after the repair with the window before it."""

from __future__ import annotations

from typing import Any

from auto_repair import aws, settle
from auto_repair.clock import now_iso, parse_time, utc_now
from auto_repair.collect import get_log_lines, get_series
from auto_repair.evidence_store import window_before
from auto_repair.observability import CORRELATION_PATH, add_dimension_env, logger, metrics, tracer, unpack
from auto_repair.outcomes import DeliveryStatus, RecordType, Verdict
from auto_repair.records import IncidentStore
from auto_repair.settings import get_settings
from auto_repair.verification import compare, rollback_decision, window_stats

MAX_ATTEMPTS = 2  # INSUFFICIENT_DATA: extend once, then report inconclusive


@logger.inject_lambda_context(correlation_id_path=CORRELATION_PATH)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    workflow, meta = unpack(event)
    alarm, evidence, repair = workflow["alarm"], workflow["evidence"], workflow["repair"]
    execution_id = meta.get("executionId") or alarm.get("executionId", "")
    attempt = int((workflow.get("verification") or {}).get("attempt", 0)) + 1
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
    series, missing = get_series(aws.client("cloudwatch"), name, repaired_at, now, period, resource)
    # The function's configured log group (LoggingConfig.LogGroup), as the collector found it.
    group = (evidence.get("function") or {}).get("logGroup")
    lines, miss = get_log_lines(aws.client("logs"), name, repaired_at, now, version=version, group=group)
    after = window_stats(series, lines, memory_size=int(repair.get("newMemory") or 0) or None)
    verdict = compare(before, after, alarm_metric=alarm.get("metricName") or "Errors",
                      min_invocations=get_settings().min_invocations_for_verdict)
    verdict.update(attempt=attempt, final=verdict["status"] != Verdict.INSUFFICIENT_DATA or attempt >= MAX_ATTEMPTS,
                   window={"start": repaired_at.isoformat(), "end": now.isoformat()},
                   missingData=missing + miss, verifiedAt=now_iso(), functionName=name,
                   repairTimestamp=repair.get("endTime"), metricName=alarm.get("metricName"),
                   verificationPeriod=int((now - repaired_at).total_seconds()), verifiedVersion=version)
    verdict.update(rollback_decision(verdict, enabled=get_settings().rollback_on_failure))
    if repair.get("trim"):
        verdict.update(settle.trim_rollback_decision(verdict))

    store = IncidentStore(aws.table(get_settings().incidents_table), get_settings().record_ttl_days)
    store.put(execution_id, RecordType.VERIFICATION, verdict)
    store.put(execution_id, RecordType.REPAIR, {**repair, "verificationStatus": verdict["status"],
                                                "notificationStatus": DeliveryStatus.PENDING})
    add_dimension_env(get_settings().environment)
    if verdict["final"]:
        if verdict["status"] == Verdict.IMPROVED:
            metrics.add_metric(name="RepairsSucceeded", unit="Count", value=1)
            detected = parse_time(alarm.get("stateChangeTime"), now)
            metrics.add_metric(name="TimeToRepairSeconds", unit="Seconds",
                               value=max(0.0, (now - detected).total_seconds()))
        else:
            metrics.add_metric(name="RepairsNotImproved", unit="Count", value=1)
    logger.info("verified", extra={"status": verdict["status"], "attempt": attempt, "reason": verdict["reason"]})
    return verdict
