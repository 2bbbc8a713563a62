"""HandleFailure: any step that failed for good lands here. Record it and tell the administrators."""

from __future__ import annotations

import json
from typing import Any, cast

from auto_repair import accounts, aws, guards
from auto_repair.alarm_event import parse_alarm_event
from auto_repair.clock import now_iso
from auto_repair.notification import build
from auto_repair.notifier import notify
from auto_repair.observability import CORRELATION_PATH, add_dimension_env, logger, metrics, tracer, unpack
from auto_repair.outcomes import IncidentStatus, Notice, RecordType
from auto_repair.records import IncidentStore
from auto_repair.settings import get_settings
from auto_repair.workflow import Alarm, WorkflowContext


def _cause(error: dict[str, Any]) -> str:
    cause = error.get("Cause", "")
    try:
        parsed = json.loads(cause)
    except (TypeError, ValueError):
        return str(cause)[:2000]
    if isinstance(parsed, dict):
        return str(parsed.get("errorMessage") or parsed)[:2000]
    return str(parsed)[:2000]


def dead_letter(workflow: WorkflowContext, incident_id: str, exc: Exception) -> None:
    queue_url = get_settings().dead_letter_queue_url
    built = build(workflow, Notice.FAILURE, get_settings().environment)
    body = {"kind": "UNDELIVERED_NOTIFICATION", "incidentId": incident_id, "subject": built["subject"],
            "message": built["message"], "deliveryError": f"{type(exc).__name__}: {exc}"[:1000], "at": now_iso()}
    metrics.add_metric(name="NotificationsUndelivered", unit="Count", value=1)
    logger.error("notification undeliverable", extra={"incidentId": incident_id, "error": body["deliveryError"]})
    if not queue_url:
        return
    try:
        aws.client("sqs").send_message(QueueUrl=queue_url, MessageBody=json.dumps(body, default=str)[:250_000])
    except Exception:  # noqa: BLE001 - the log line above is the last resort
        logger.exception("could not dead-letter the notification")


@logger.inject_lambda_context(correlation_id_path=CORRELATION_PATH)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    workflow, meta = unpack(event)
    error = workflow.get("error") or {"Error": "Unknown", "Cause": ""}
    if "alarm" not in workflow:
        # ParseAlarmEvent itself failed: rebuild what we can so the record names the alarm.
        workflow = {**workflow, "alarm": cast(Alarm, parse_alarm_event(workflow.get("rawEvent", workflow)))}
    alarm = workflow["alarm"]
    incident_id = meta.get("executionId") or alarm.get("executionId", "")
    store = IncidentStore(aws.table(get_settings().incidents_table), get_settings().record_ttl_days)
    record = {"error": str(error.get("Error", ""))[:256], "cause": _cause(error), "failedAt": now_iso(),
              "functionName": alarm.get("functionName", ""), **accounts.place_of(alarm)}
    # Recording is best effort here: the notification must go out even if DynamoDB is what failed.
    try:
        store.put(incident_id, RecordType.FAILURE, record)
        store.update_incident(incident_id, status=IncidentStatus.FAILED, outcome=Notice.FAILURE, endTime=now_iso(),
                              error=record["error"], functionName=accounts.key_of(alarm) or "(none)",
                              startTime=meta.get("startTime") or now_iso())
    except Exception:
        logger.exception("could not record the failure")

    # A repair applied before the failure still starts its cooldown; then this run's lock is released (before the
    # notice, so an SNS outage does not keep it). If that fails too, the lock expires on its own.
    try:
        guards.finish_run(guards.GuardStore(aws.table(get_settings().state_table)), workflow, owner=incident_id)
    except Exception:  # noqa: BLE001 - the failure is still notified; the lock expires
        logger.exception("could not start the cooldown or release the lock")
        metrics.add_metric(name="GuardReleaseFailed", unit="Count", value=1)

    failed_workflow: WorkflowContext = {**workflow, "error": {"Error": record["error"], "Cause": record["cause"]}}
    try:
        sent = notify(failed_workflow, Notice.FAILURE, environment=get_settings().environment, sns=aws.client("sns"),
                      topic_arn=get_settings().topic_arn, store=store, incident_id=incident_id)
    except Exception as exc:
        # Nobody can be told through SNS: park the notice in the dead-letter queue (alarmed on by the monitoring
        # stack), then fail so the execution shows it. Step Functions has already retried this state.
        dead_letter(failed_workflow, incident_id, exc)
        raise
    add_dimension_env(get_settings().environment)
    metrics.add_metric(name="WorkflowFailures", unit="Count", value=1)
    if "approval" in workflow:  # RequestApproval's result (approved, rejected or timed out): no longer pending
        metrics.add_metric(name="ApprovalsResolved", unit="Count", value=1)
    logger.error("workflow failed", extra=record)
    return {**sent, "error": record["error"]}
