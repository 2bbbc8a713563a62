"""NotifyResult (and the other terminal notifications): SNS message in the design's format + records."""

from __future__ import annotations

from typing import Any

from auto_repair import aws, guards, knowledge, notification
from auto_repair.clock import now_iso
from auto_repair.notifier import notify
from auto_repair.observability import CORRELATION_PATH, add_dimension_env, logger, metrics, tracer, unpack
from auto_repair.outcomes import RecordType, RepairStatus, Verdict
from auto_repair.records import IncidentStore
from auto_repair.settings import get_settings
from auto_repair.workflow import WorkflowContext


def finish_guards(workflow: WorkflowContext, incident_id: str) -> None:
    """Start the cooldown of an applied repair and release this run's lock; a failure only delays the next
    repair (the lock expires), so it never fails the notification."""
    try:
        done = guards.finish_run(guards.GuardStore(aws.table(get_settings().state_table)), workflow, owner=incident_id)
    except Exception:  # noqa: BLE001 - the notice is out; the lock expires on its own
        logger.exception("could not start the cooldown or release the lock")
        metrics.add_metric(name="GuardReleaseFailed", unit="Count", value=1)
        return
    logger.info("guards finished", extra=done)


def record_case(workflow: WorkflowContext, incident_id: str, outcome: str) -> None:
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


def final_memory(workflow: WorkflowContext) -> dict[str, Any]:
    """The REPAIR record is what `incidents list` shows: after a rollback it must not claim the raised memory, and
    after several steps it shows where the last applied one left the function (a later one may have been stopped)."""
    repair, rollback = workflow.get("repair") or {}, workflow.get("rollback") or {}
    if rollback.get("status") == RepairStatus.ROLLED_BACK:
        return {"rolledBack": True, "finalMemory": rollback.get("restoredMemory", repair.get("originalMemory"))}
    steps = notification.repair_steps(workflow)
    return {"finalMemory": steps[-1].get("memoryAfter")} if steps else {}


@logger.inject_lambda_context(correlation_id_path=CORRELATION_PATH)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    workflow, meta = unpack(event)
    requested = event.get("outcome") if isinstance(event, dict) else None
    outcome, send = notification.requested_outcome(requested, workflow,
                                                   notify_ignored=get_settings().notify_ignored)
    alarm = workflow.get("alarm") or {}
    incident_id = meta.get("executionId") or alarm.get("executionId", "")
    store = IncidentStore(aws.table(get_settings().incidents_table), get_settings().record_ttl_days)
    sent = notify(workflow, outcome, environment=get_settings().environment, sns=aws.client("sns"),
                  topic_arn=get_settings().topic_arn, store=store, incident_id=incident_id, send=send)
    repair = workflow.get("repair")
    if repair and repair.get("repairId"):
        store.put(incident_id, RecordType.REPAIR, {**repair, **final_memory(workflow), "verificationStatus":
                                        (workflow.get("verification") or {}).get("status", Verdict.NOT_RUN),
                                        "notificationStatus": sent["notificationStatus"]})
    steps = notification.repair_steps(workflow)
    store.update_incident(incident_id, outcome=outcome, status=notification.incident_status(outcome),
                          endTime=now_iso(), **({"steps": steps} if steps else {}),
                          summary=notification.build(workflow, outcome, get_settings().environment)["message"]["summary"])
    add_dimension_env(get_settings().environment)
    record_case(workflow, incident_id, outcome)
    finish_guards(workflow, incident_id)
    metrics.add_metric(name=f"Outcome{outcome.title().replace('_', '')}", unit="Count", value=1)
    if "approval" in workflow:  # RequestApproval's result (approved, rejected or timed out): no longer pending
        metrics.add_metric(name="ApprovalsResolved", unit="Count", value=1)
    logger.info("notified", extra=sent)
    return sent
