"""ParseAlarmEvent: the alarm event -> the design's alarm-event model, and the incident record.

It is also the workflow's admission: a repair starts only for the first delivery of an alarm state change,
for a function in scope, not locked by another run and not in its cooldown (see auto_repair.guards).

Organisation mode (auto_repair.accounts): the event body is not believed. Its account must be the account of the
alarm ARN, an allowed member, in an allowed region; otherwise the event is REFUSED (recorded on every delivery,
notified once per event and at most once per claimed account and kind of refusal per cooldown window).
An admitted member's function is read through the member role and keyed ``<account>:<region>:<function>``.
"""

from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import ClientError

from auto_repair import accounts, aws, guards
from auto_repair.alarm_event import as_state_change, parse_alarm_event
from auto_repair.clock import now_iso
from auto_repair.errors import error_code
from auto_repair.observability import CORRELATION_PATH, add_dimension_env, logger, metrics, tracer, unpack
from auto_repair.outcomes import AlarmOutcome, GuardOutcome
from auto_repair.policy import from_tags
from auto_repair.records import IncidentStore
from auto_repair.settings import Settings, get_settings


def _deleted(alarm: dict[str, Any], lambda_client: Any) -> bool:
    """Whether a function whose configuration IAM hid from us is gone: a deleted function is not in any scope, so
    GetFunctionConfiguration answers AccessDenied; ListTags (unscoped: the tags decide the scope) tells."""
    arn = (f"arn:{alarm.get('partition') or 'aws'}:lambda:{alarm.get('region')}:{alarm.get('account')}:function:"
           f"{alarm['functionName']}")
    try:
        lambda_client.list_tags(Resource=arn)
    except ClientError as exc:
        return error_code(exc) == "ResourceNotFoundException"
    return False


def check_target(alarm: dict[str, Any], settings: Settings, lambda_client: Any) -> dict[str, Any]:
    """Narrow a PROCEED verdict: our own functions, missing functions and functions out of scope are recorded,
    not repaired."""
    name = alarm["functionName"]
    if name.startswith(settings.system_prefix):
        return {**alarm, "outcome": AlarmOutcome.IGNORED, "reason": f"{name} is one of the auto-repair system's own functions"}
    try:
        config = lambda_client.get_function_configuration(FunctionName=name)
    except ClientError as exc:
        code = error_code(exc)
        if code == "ResourceNotFoundException":
            return {**alarm, "outcome": AlarmOutcome.IGNORED, "reason": f"function {name} does not exist (deleted?)"}
        if code == "AccessDeniedException" and _deleted(alarm, lambda_client):
            return {**alarm, "outcome": AlarmOutcome.IGNORED, "reason": f"function {name} does not exist (deleted?)"}
        if code == "AccessDeniedException":  # IAM lets us read the configuration of in-scope functions only
            return {**alarm, "settings": from_tags(settings, {}), "outcome": GuardOutcome.OUT_OF_SCOPE,
                    "scopeMode": settings.scope_mode, "reason": f"{name} is out of scope: its configuration is "
                    f"not readable by auto-repair ({code}; the scope tag condition of the role)"}
        raise
    unreadable = ""
    try:
        tags = lambda_client.list_tags(Resource=config["FunctionArn"]).get("Tags", {})
    except ClientError as exc:
        tags, unreadable = {}, error_code(exc, "error")
    policy = from_tags(settings, tags)
    ok, why = guards.in_scope(tags, settings.scope_mode, settings.environment, plain_tag=settings.plain_scope_tag)
    if not ok:
        if unreadable:  # fail closed: an unreadable opt-in tag is not an opt-in
            why = f"{why}; its tags could not be read ({unreadable})"
        return {**alarm, "settings": policy, "outcome": GuardOutcome.OUT_OF_SCOPE, "scopeMode": settings.scope_mode,
                "reason": f"{name} is out of scope: {why}"}
    return {**alarm, "settings": policy, "scopeMode": settings.scope_mode}


def enrich_from_alarm(alarm: dict[str, Any], cloudwatch: Any) -> dict[str, Any]:
    """The event lacks evaluation periods; the alarm definition has them. Best effort."""
    try:
        found = cloudwatch.describe_alarms(AlarmNames=[alarm["alarmName"]]).get("MetricAlarms", [])
    except ClientError:
        return alarm
    if not found:
        return alarm
    definition = found[0]
    return {
        **alarm,
        "evaluationPeriods": definition.get("EvaluationPeriods"),
        "threshold": alarm.get("threshold") if alarm.get("threshold") is not None else definition.get("Threshold"),
        "period": alarm.get("period") or definition.get("Period"),
    }


def trust(alarm: dict[str, Any], raw: Any, settings: Settings, *, home_account: str, home_region: str,
          org_accounts: Any = None) -> dict[str, Any]:
    """Apply the trust check (auto_repair.accounts.refusal) and, in organisation mode, put the function's key,
    account and region in the model. Single-account mode checks only what today would repair (PROCEED), so every
    other outcome stays exactly as today's; organisation mode checks every readable event."""
    if alarm["outcome"] == AlarmOutcome.INVALID or (not settings.organization_mode
                                                    and alarm["outcome"] != AlarmOutcome.PROCEED):
        return alarm
    why = accounts.refusal(raw, settings=settings, home_account=home_account, home_region=home_region,
                           org_accounts=org_accounts or accounts.org_accounts)
    if why:
        # Keyed apart from any real function of that name, so a forged event never lands in its history.
        claimed = f"{alarm.get('account') or '?'}:{alarm.get('region') or '?'}:{alarm.get('functionName') or '(none)'}"
        return {**alarm, "outcome": AlarmOutcome.REFUSED, "needsHuman": True, "functionKey": claimed,
                "refusalKind": getattr(why, "kind", accounts.MALFORMED), "reason": f"event refused: {why}"}
    if not settings.organization_mode or not alarm.get("functionName"):
        return alarm
    identity = accounts.event_identity(raw, alarm["functionName"], home_account=home_account, home_region=home_region)
    return {**alarm, "functionKey": identity.key, "account": identity.account, "region": identity.region,
            "partition": identity.partition}


@logger.inject_lambda_context(correlation_id_path=CORRELATION_PATH)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    _, meta = unpack(event)
    # The raw event as delivered, even when it is not an object, so the parser can say what it was.
    raw = event["context"] if isinstance(event, dict) and "context" in event else event
    # SNS and Lambda-action deliveries in the EventBridge shape, so the idempotency key is the same in all three.
    raw = as_state_change(raw)
    execution_id = meta.get("executionId") or context.aws_request_id
    account, region = accounts.home_of(context)
    settings = get_settings()
    # Single-account mode: an event for another account or region is IGNORED by the parser, as always.
    alarm = (parse_alarm_event(raw) if settings.organization_mode
             else parse_alarm_event(raw, account=account, region=region))
    alarm = trust(alarm, raw, settings, home_account=account, home_region=region)
    state = guards.GuardStore(aws.table(get_settings().state_table))
    # Idempotency first: a redelivered event is a DUPLICATE whatever else is true of it.
    alarm = guards.admit_event(alarm, raw, state, owner=execution_id, now=time.time())
    # A refusal is recorded on every delivery but notified once per event and per claimed account, kind and window.
    alarm = guards.admit_refusal(alarm, raw, state, owner=execution_id, now=time.time(),
                                 window_minutes=settings.repair_cooldown_minutes)
    # Clients in the function's account and region: assumed only for an admitted member's event.
    clients = (accounts.clients_for(accounts.identity_of(alarm), execution_id)
               if alarm["outcome"] == AlarmOutcome.PROCEED else None)
    if clients is not None:
        alarm = check_target(alarm, get_settings(), clients.client("lambda"))
    if alarm["outcome"] == AlarmOutcome.PROCEED:
        lock_ttl = guards.lock_ttl_seconds(get_settings().verification_wait_seconds, get_settings().approval_timeout_seconds,
                                           bool(alarm["settings"].get("approvalRequired")),
                                           max_steps=get_settings().max_repair_steps)
        alarm = guards.admit_function(alarm, state, owner=execution_id, lock_ttl=lock_ttl,
                                      cooldown_minutes=get_settings().repair_cooldown_minutes, now=time.time())
    if alarm["outcome"] == AlarmOutcome.PROCEED and clients is not None:
        alarm = enrich_from_alarm(alarm, clients.client("cloudwatch"))
    alarm.update(
        executionId=execution_id,
        executionArn=meta.get("executionArn", ""),
        receivedAt=now_iso(),
    )
    alarm.setdefault("settings", from_tags(get_settings(), {}))
    IncidentStore(aws.table(get_settings().incidents_table), get_settings().record_ttl_days).start_incident(
        execution_id, alarm, execution_arn=meta.get("executionArn", ""), start_time=meta.get("startTime") or now_iso()
    )
    logger.info("alarm parsed", extra={"outcome": alarm["outcome"], "reason": alarm.get("reason"),
                                       "functionName": alarm.get("functionName"), **accounts.place_of(alarm)})
    add_dimension_env(get_settings().environment)
    metrics.add_metric(name=f"Alarms{alarm['outcome'].title().replace('_', '')}", unit="Count", value=1)
    if alarm.get("refusalNotice"):  # RefusalsSent / RefusalsRepeated / RefusalsWithheld: a flood shows here
        metrics.add_metric(name=f"Refusals{str(alarm['refusalNotice']).title()}", unit="Count", value=1)
    return alarm
