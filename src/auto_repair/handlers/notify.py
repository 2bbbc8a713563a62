"""NotifyResult (and the other terminal notifications): SNS message in the design's format + records."""

from __future__ import annotations

from typing import Any

from auto_repair import aws, notification
from auto_repair.notifier import notify
from auto_repair.observability import CORRELATION_PATH, add_dimension_env, logger, metrics, tracer, unpack
from auto_repair.records import REPAIR, IncidentStore, now_iso
from auto_repair.settings import Settings

SETTINGS = Settings.from_env()

# Incident status once the workflow has reached each outcome.
STATUS = {
    notification.REPAIRED: "RESOLVED",
    notification.ESCALATION: "ESCALATED",
    notification.INCONCLUSIVE: "ESCALATED",
    notification.HUMAN_REVIEW: "ESCALATED",
    notification.APPROVAL_TIMEOUT: "CLOSED",
    notification.APPROVAL_REJECTED: "CLOSED",
    notification.DRY_RUN: "CLOSED",
    notification.NO_ACTION: "CLOSED",
    notification.SKIPPED: "CLOSED",
    notification.IGNORED: "CLOSED",
    notification.INVALID_EVENT: "CLOSED",
}


def result_outcome(workflow: dict[str, Any]) -> str:
    """The outcome of a run that reached NotifyResult, from its repair and verification."""
    repair = workflow.get("repair") or {}
    status = repair.get("status")
    if status == "DRY_RUN":
        return notification.DRY_RUN
    if status == "SKIPPED":
        return notification.SKIPPED
    verdict = (workflow.get("verification") or {}).get("status")
    if verdict == "IMPROVED":
        return notification.REPAIRED
    if verdict == "NOT_IMPROVED":
        return notification.ESCALATION
    return notification.INCONCLUSIVE


def ignored_outcome(workflow: dict[str, Any]) -> tuple[str, bool]:
    alarm = workflow.get("alarm") or {}
    if alarm.get("outcome") == "INVALID":
        return notification.INVALID_EVENT, True
    return notification.IGNORED, bool(alarm.get("needsHuman")) or SETTINGS.notify_ignored


@logger.inject_lambda_context(correlation_id_path=CORRELATION_PATH)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    workflow, meta = unpack(event)
    requested = event.get("outcome") if isinstance(event, dict) else None
    send = True
    if requested == "RESULT" or requested is None:
        outcome = result_outcome(workflow)
    elif requested == "IGNORED":
        outcome, send = ignored_outcome(workflow)
    else:
        outcome = requested
    alarm = workflow.get("alarm") or {}
    incident_id = meta.get("executionId") or alarm.get("executionId", "")
    store = IncidentStore(aws.table(SETTINGS.incidents_table), SETTINGS.record_ttl_days)
    sent = notify(workflow, outcome, environment=SETTINGS.environment, sns=aws.client("sns"),
                  topic_arn=SETTINGS.topic_arn, store=store, incident_id=incident_id, send=send)
    repair = workflow.get("repair")
    if repair and repair.get("repairId"):
        store.put(incident_id, REPAIR, {**repair, "verificationStatus":
                                        (workflow.get("verification") or {}).get("status", "NOT_RUN"),
                                        "notificationStatus": sent["notificationStatus"]})
    store.update_incident(incident_id, outcome=outcome, status=STATUS.get(outcome, "CLOSED"), endTime=now_iso(),
                          summary=notification.build(workflow, outcome, SETTINGS.environment)["message"]["summary"])
    add_dimension_env(SETTINGS.environment)
    metrics.add_metric(name=f"Outcome{outcome.title().replace('_', '')}", unit="Count", value=1)
    logger.info("notified", extra=sent)
    return sent
