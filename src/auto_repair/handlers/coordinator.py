"""The design's simple-flow coordinator: alarm transitions that need no workflow (OK, INSUFFICIENT_DATA).

An OK transition closes the function's open incident, records the time to recovery and sends a short notice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from auto_repair import accounts, aws
from auto_repair.alarm_event import parse_alarm_event
from auto_repair.clock import now_iso, parse_time, utc_now
from auto_repair.notifier import notify
from auto_repair.observability import add_dimension_env, logger, metrics, tracer
from auto_repair.outcomes import AlarmOutcome, IncidentStatus, Notice
from auto_repair.records import IncidentStore
from auto_repair.settings import get_settings
from auto_repair.workflow import WorkflowContext

RECOVERABLE = (IncidentStatus.OPEN, IncidentStatus.RESOLVED, IncidentStatus.ESCALATED, IncidentStatus.AWAITING_APPROVAL,
               IncidentStatus.FAILED)
IN_PROGRESS = (IncidentStatus.OPEN, IncidentStatus.AWAITING_APPROVAL)


def handle_ok(alarm: dict[str, Any], store: IncidentStore, sns: Any, now: datetime) -> dict[str, Any]:
    name = accounts.key_of(alarm)  # a member's incidents are under <account>:<region>:<function>
    open_incidents = [
        i for i in store.list_incidents(function_name=name, limit=20)
        if i.get("status") in RECOVERABLE and not i.get("recoveredAt")
        and i.get("outcome") not in (AlarmOutcome.INVALID, AlarmOutcome.REFUSED)
        and i.get("alarmName") == alarm.get("alarmName")
    ]
    if not open_incidents:
        return {"action": "none", "reason": f"no open incident for {name} / {alarm.get('alarmName')}"}
    incident = open_incidents[0]
    detected = parse_time(incident.get("stateChangeTime") or incident.get("startTime"), now)
    recovered = parse_time(alarm.get("stateChangeTime"), now)
    seconds = max(0.0, (recovered - detected).total_seconds())
    if incident.get("status") in IN_PROGRESS:
        # The workflow is still verifying or waiting for approval; its own result notice will follow, so
        # record the recovery without sending a second message for the same incident.
        store.update_incident(incident["incidentId"], recoveredAt=now_iso(), timeToRecoverySeconds=round(seconds, 1))
        metrics.add_metric(name="TimeToRecoverySeconds", unit="Seconds", value=seconds)
        return {"action": "recorded", "incidentId": incident["incidentId"], "timeToRecoverySeconds": seconds}
    store.update_incident(incident["incidentId"], recoveredAt=now_iso(), timeToRecoverySeconds=round(seconds, 1),
                          status=IncidentStatus.RECOVERED if incident.get("status") != IncidentStatus.FAILED
                          else IncidentStatus.FAILED)
    # The incident's ALARM record is the alarm model it started from.
    # The record's functionName is the key; the notice names the function (and where it lives).
    context = cast(WorkflowContext, {"alarm": {**incident, "functionName": incident.get("function") or
                                               incident.get("functionName"), "stateReason": alarm.get("stateReason", ""),
                                               "stateChangeTime": alarm.get("stateChangeTime", "")}})
    sent = notify(context, Notice.RECOVERY, environment=get_settings().environment, sns=sns, topic_arn=get_settings().topic_arn,
                  store=store, incident_id=incident["incidentId"])
    metrics.add_metric(name="TimeToRecoverySeconds", unit="Seconds", value=seconds)
    return {"action": "closed", "incidentId": incident["incidentId"], "timeToRecoverySeconds": seconds,
            "messageId": sent["messageId"]}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    alarm = parse_alarm_event(event)
    add_dimension_env(get_settings().environment)
    if alarm["outcome"] == AlarmOutcome.INVALID or not alarm.get("functionName"):
        logger.warning("coordinator ignored event", extra={"reason": alarm.get("reason")})
        return {"action": "none", "reason": alarm.get("reason")}
    settings = get_settings()
    if settings.organization_mode:
        # A recovery closes an incident: only a believable event from an allowed member may do that.
        home_account, home_region = accounts.home_of(context)
        why = accounts.refusal(event, settings=settings, home_account=home_account, home_region=home_region,
                               org_accounts=accounts.org_accounts)
        if why:
            logger.warning("coordinator refused event", extra={"reason": why, "account": alarm.get("account")})
            metrics.add_metric(name="RecoveriesRefused", unit="Count", value=1)
            return {"action": "refused", "reason": f"event refused: {why}"}
        identity = accounts.event_identity(event, alarm["functionName"], home_account=home_account,
                                           home_region=home_region)
        alarm = {**alarm, "functionKey": identity.key, "account": identity.account, "region": identity.region}
    if alarm["currentState"] == "OK" and alarm.get("previousState") == "ALARM":
        store = IncidentStore(aws.table(get_settings().incidents_table), get_settings().record_ttl_days)
        result = handle_ok(alarm, store, aws.client("sns"), utc_now())
    else:
        result = {"action": "none", "reason": f"{alarm.get('previousState')} -> {alarm['currentState']}: "
                                               "nothing to do"}
    logger.info("coordinator", extra=result)
    return result
