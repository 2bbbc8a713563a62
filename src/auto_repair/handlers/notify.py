"""NotifyResult (and the other terminal notifications): SNS message in the design's format + records."""

from __future__ import annotations

from typing import Any

from auto_repair import aws, guards, knowledge, notification
from auto_repair.notifier import notify
from auto_repair.observability import CORRELATION_PATH, add_dimension_env, logger, metrics, tracer, unpack
from auto_repair.outcomes import (
    MUTATION_OUTCOMES,
    AlarmOutcome,
    GuardOutcome,
    IncidentStatus,
    Notice,
    NotifyRequest,
    RecordType,
    RepairStatus,
    Verdict,
)
from auto_repair.records import IncidentStore, now_iso
from auto_repair.settings import get_settings

# Incident status once the workflow has reached each outcome.
STATUS = {
    Notice.REPAIRED: IncidentStatus.RESOLVED,
    Notice.NOT_IMPROVED: IncidentStatus.ESCALATED,
    Notice.INCONCLUSIVE: IncidentStatus.ESCALATED,
    Notice.HUMAN_REVIEW: IncidentStatus.ESCALATED,
    Notice.APPROVAL_TIMEOUT: IncidentStatus.CLOSED,
    Notice.APPROVAL_REJECTED: IncidentStatus.CLOSED,
    Notice.DRY_RUN: IncidentStatus.CLOSED,
    Notice.NO_ACTION: IncidentStatus.CLOSED,
    Notice.SKIPPED: IncidentStatus.CLOSED,
    Notice.IGNORED: IncidentStatus.CLOSED,
    Notice.INVALID_EVENT: IncidentStatus.CLOSED,
    # Guards: nothing changed. PAUSED and BUDGET_EXHAUSTED leave a failing function a human must look at.
    Notice.DUPLICATE: IncidentStatus.CLOSED,
    Notice.LOCKED: IncidentStatus.CLOSED,
    Notice.COOLDOWN: IncidentStatus.CLOSED,
    Notice.OUT_OF_SCOPE: IncidentStatus.CLOSED,
    Notice.PAUSED: IncidentStatus.ESCALATED,
    Notice.BUDGET_EXHAUSTED: IncidentStatus.ESCALATED,
}


def result_outcome(workflow: dict[str, Any]) -> str:
    """The outcome of a run that reached NotifyResult, from its repair and verification."""
    repair = workflow.get("repair") or {}
    status = repair.get("status")
    if status == RepairStatus.DRY_RUN:
        return Notice.DRY_RUN
    if status == RepairStatus.SKIPPED:
        return Notice.SKIPPED
    if status in MUTATION_OUTCOMES:  # the kill switch or the hourly budget stopped the change
        return status
    verdict = (workflow.get("verification") or {}).get("status")
    if verdict == Verdict.IMPROVED:
        return Notice.REPAIRED
    if verdict == Verdict.NOT_IMPROVED:
        return Notice.NOT_IMPROVED
    return Notice.INCONCLUSIVE


def ignored_outcome(workflow: dict[str, Any]) -> tuple[str, bool]:
    alarm = workflow.get("alarm") or {}
    if alarm.get("outcome") == AlarmOutcome.INVALID:
        return Notice.INVALID_EVENT, True
    # Duplicates are silent (the original run reports); a locked or cooling-down function is reported so the
    # on-call sees the alarm was not lost; out of scope only when NOTIFY_IGNORED is set.
    if alarm.get("outcome") == GuardOutcome.DUPLICATE:
        return Notice.DUPLICATE, False
    if alarm.get("outcome") in (GuardOutcome.LOCKED, GuardOutcome.COOLDOWN):
        return alarm["outcome"], True
    if alarm.get("outcome") == GuardOutcome.OUT_OF_SCOPE:
        return Notice.OUT_OF_SCOPE, get_settings().notify_ignored
    return Notice.IGNORED, bool(alarm.get("needsHuman")) or get_settings().notify_ignored


def finish_guards(workflow: dict[str, Any], incident_id: str) -> None:
    """Start the cooldown of an applied repair and release this run's lock; a failure only delays the next
    repair (the lock expires), so it never fails the notification."""
    try:
        done = guards.finish_run(guards.GuardStore(aws.table(get_settings().state_table)), workflow, owner=incident_id)
    except Exception:  # noqa: BLE001 - the notice is out; the lock expires on its own
        logger.exception("could not start the cooldown or release the lock")
        metrics.add_metric(name="GuardReleaseFailed", unit="Count", value=1)
        return
    logger.info("guards finished", extra=done)


def record_case(workflow: dict[str, Any], incident_id: str, outcome: str) -> None:
    """Feed the incident back into the knowledge bucket as case history; never fails the notification."""
    bucket = get_settings().knowledge_bucket
    try:
        key = knowledge.record_case(aws.client("s3"), bucket, workflow, incident_id, outcome)
    except Exception:  # noqa: BLE001 - the incident is already recorded and notified; the case is a bonus
        logger.exception("could not write the case entry", extra={"bucket": bucket})
        metrics.add_metric(name="CaseEntriesFailed", unit="Count", value=1)
        return
    if key:
        logger.info("case entry written", extra={"bucket": bucket, "key": key})
        metrics.add_metric(name="CaseEntriesWritten", unit="Count", value=1)


@logger.inject_lambda_context(correlation_id_path=CORRELATION_PATH)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    workflow, meta = unpack(event)
    requested = event.get("outcome") if isinstance(event, dict) else None
    send = True
    if requested == NotifyRequest.RESULT or requested is None:
        outcome = result_outcome(workflow)
    elif requested == NotifyRequest.IGNORED:
        outcome, send = ignored_outcome(workflow)
    else:
        outcome = requested
    alarm = workflow.get("alarm") or {}
    incident_id = meta.get("executionId") or alarm.get("executionId", "")
    store = IncidentStore(aws.table(get_settings().incidents_table), get_settings().record_ttl_days)
    sent = notify(workflow, outcome, environment=get_settings().environment, sns=aws.client("sns"),
                  topic_arn=get_settings().topic_arn, store=store, incident_id=incident_id, send=send)
    repair = workflow.get("repair")
    if repair and repair.get("repairId"):
        rollback = workflow.get("rollback") or {}
        # The REPAIR record is what `incidents list` shows: after a rollback it must not claim the raised memory.
        rolled_back = {"rolledBack": True, "finalMemory": rollback.get("restoredMemory", repair.get("originalMemory"))
                       } if rollback.get("status") == RepairStatus.ROLLED_BACK else {}
        store.put(incident_id, RecordType.REPAIR, {**repair, **rolled_back, "verificationStatus":
                                        (workflow.get("verification") or {}).get("status", Verdict.NOT_RUN),
                                        "notificationStatus": sent["notificationStatus"]})
    store.update_incident(incident_id, outcome=outcome, status=STATUS.get(outcome, IncidentStatus.CLOSED), endTime=now_iso(),
                          summary=notification.build(workflow, outcome, get_settings().environment)["message"]["summary"])
    add_dimension_env(get_settings().environment)
    record_case(workflow, incident_id, outcome)
    finish_guards(workflow, incident_id)
    metrics.add_metric(name=f"Outcome{outcome.title().replace('_', '')}", unit="Count", value=1)
    if "approval" in workflow:  # RequestApproval's result (approved, rejected or timed out): no longer pending
        metrics.add_metric(name="ApprovalsResolved", unit="Count", value=1)
    logger.info("notified", extra=sent)
    return sent
