"""Targets: automatic onboarding of functions tagged ``auto-repair=enabled`` and the proactive memory sweep.

Invoked by EventBridge:

* the schedule rule (``{"action": "scheduled"}``, daily by default): reconcile every tagged / onboarded function,
  then sweep;
* ``Tag Change on Resource`` events for Lambda functions and CloudTrail ``UpdateFunctionConfiguration`` calls:
  reconcile just that function (a memory change moves the utilisation bands, see ``auto_repair.targets``);
* by hand: ``{"action": "reconcile"}`` or ``{"action": "sweep", "threshold": 70}``, each optionally limited to
  ``"functions": [...]``;
* a team's alarm topic (SNS subscription, ``auto-repair targets add --from-topic``) or a CloudWatch Lambda alarm
  action: each ALARM state change starts the workflow with it rewritten as the EventBridge event
  (``alarm_event.alarm_deliveries``). This function already may start the workflow (the sweep), so this path
  needs no new resource; the execution name comes from the idempotency key, so SNS redeliveries start nothing,
  and a change EventBridge also delivered is a DUPLICATE in ParseAlarmEvent (same key).

The sweep starts the repair workflow itself, once per function per day, for every onboarded function whose peak
Max Memory Used in the last day reached the threshold percentage of its current memory size, unless the function's
memory alarm is already in ALARM (the alarm has started the workflow).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from auto_repair import aws
from auto_repair.alarm_event import LAMBDA_ACTION, SNS, alarm_deliveries, delivery_format, parse_alarm_event
from auto_repair.clock import utc_now
from auto_repair.errors import error_code
from auto_repair.guards import idempotency_key
from auto_repair.observability import add_dimension_env, logger, metrics, tracer
from auto_repair.settings import get_settings
from auto_repair.targets import (
    SYSTEM_PREFIX,
    Targets,
    TargetsError,
    TargetSettings,
    alarm_names,
    settings_parameter,
    state_machine_arn,
    sweep_event,
    sweep_execution_name,
    topic_arn,
)

SCHEDULED, RECONCILE, SWEEP, IGNORE = "scheduled", "reconcile", "sweep", "ignore"


def _function_from_arn(arn: str) -> str:
    # arn:aws:lambda:region:account:function:name[:qualifier]
    parts = arn.split(":")
    return parts[6] if len(parts) > 6 and parts[5] == "function" else ""


def what_to_do(event: Any) -> tuple[str, list[str] | None, dict[str, Any]]:
    """(action, functions or None for all, options) for an invocation event."""
    if not isinstance(event, dict):
        return IGNORE, None, {"reason": "event is not an object"}
    action = event.get("action")
    if action in (SCHEDULED, RECONCILE, SWEEP):
        functions = event.get("functions")
        if functions is not None and (not isinstance(functions, list) or not all(isinstance(f, str) for f in functions)):
            raise TargetsError("'functions' must be a list of function names")
        options: dict[str, Any] = {}
        if event.get("threshold") is not None:
            threshold = event["threshold"]
            if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 1 <= threshold <= 100:
                raise TargetsError("'threshold' must be a percentage in [1, 100]")
            options["threshold"] = float(threshold)
        return action, functions, options
    source = event.get("source")
    detail: dict[str, Any] = event["detail"] if isinstance(event.get("detail"), dict) else {}
    if source == "aws.events" and event.get("detail-type") == "Scheduled Event":
        return SCHEDULED, None, {}
    names: list[str] = []
    if source == "aws.tag" and detail.get("service") == "lambda":
        names = [_function_from_arn(str(arn)) for arn in event.get("resources") or []]
    elif source == "aws.lambda" and str(detail.get("eventName", "")).startswith("UpdateFunctionConfiguration"):
        requested = (detail.get("requestParameters") or {}).get("functionName") or ""
        names = [_function_from_arn(requested) if requested.startswith("arn:") else requested]
    names = sorted({n for n in names if n and not n.startswith(SYSTEM_PREFIX)})
    if not names:
        return IGNORE, None, {"reason": f"nothing to do for {source} / {event.get('detail-type')}"}
    return RECONCILE, names, {}


def load_settings(ssm: Any, environment: str) -> TargetSettings:
    name = settings_parameter(environment)
    try:
        value = ssm.get_parameter(Name=name)["Parameter"]["Value"]
    except ClientError as exc:
        raise TargetsError(f"cannot read the target settings {name}: {exc}") from exc
    return TargetSettings.from_json(value).for_environment(environment)


def run_sweep(targets: Targets, sfn: Any, *, threshold: float, machine_arn: str, account: str, region: str,
              now: datetime, only: list[str] | None = None) -> dict[str, Any]:
    findings = targets.sweep(threshold=threshold, now=now, only=only)
    env = targets.settings.environment
    memory_alarm = {f.function: alarm_names(f.function, env)[-1] for f in findings}  # this environment's
    states = targets.alarm_states(list(memory_alarm.values()))
    started: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for finding in findings:
        base = {"function": finding.function, "peak": finding.peak}
        if states.get(memory_alarm[finding.function]) == "ALARM":
            skipped.append({**base, "reason": "its memory alarm is in ALARM: the workflow already has it"})
            continue
        event = sweep_event(finding, threshold=threshold, account=account, region=region, now=now, environment=env)
        name = sweep_execution_name(finding.function, now)
        try:
            response = sfn.start_execution(stateMachineArn=machine_arn, name=name, input=json.dumps(event))
        except ClientError as exc:
            if error_code(exc) == "ExecutionAlreadyExists":
                skipped.append({**base, "reason": f"already swept today ({name})"})
                continue
            raise
        started.append({**base, "executionArn": response["executionArn"]})
    return {"threshold": threshold, "findings": len(findings), "started": started, "skipped": skipped}


def forward_alarms(event: Any, sfn: Any, *, machine_arn: str) -> dict[str, Any]:
    """Start the workflow for each ALARM state change of an SNS or Lambda-action delivery (see the module doc)."""
    started: list[str] = []
    skipped: list[dict[str, Any]] = []
    for state_change, kind in alarm_deliveries(event):
        alarm = parse_alarm_event(state_change)
        name = str((state_change.get("detail") or {}).get("alarmName") or "?") if isinstance(state_change, dict) \
            else "?"
        if alarm.get("currentState") != "ALARM":  # OK/INSUFFICIENT_DATA reach the coordinator through EventBridge
            skipped.append({"alarmName": name, "format": kind, "reason": alarm.get("reason") or "not an ALARM"})
            continue
        key = idempotency_key(state_change, alarm) or json.dumps(state_change, sort_keys=True, default=str)
        execution = f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:40]}"
        try:
            response = sfn.start_execution(stateMachineArn=machine_arn, name=execution, input=json.dumps(state_change))
            started.append(response["executionArn"])
        except ClientError as exc:
            if error_code(exc) != "ExecutionAlreadyExists":
                raise
            skipped.append({"alarmName": name, "format": kind, "reason": f"already started ({execution})"})
    metrics.add_metric(name="AlarmsForwarded", unit="Count", value=len(started))
    return {"action": "forward", "started": started, "skipped": skipped}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    environment = get_settings().environment
    add_dimension_env(environment)
    if delivery_format(event) in (SNS, LAMBDA_ACTION):
        _, partition, _, region, account = context.invoked_function_arn.split(":")[:5]
        machine = state_machine_arn(environment, partition=partition, region=region, account=account)
        forwarded = forward_alarms(event, aws.client("stepfunctions"), machine_arn=machine)
        logger.info("alarms forwarded", extra=forwarded)
        return forwarded
    action, functions, options = what_to_do(event)
    if action == IGNORE:
        logger.info("ignored", extra=options)
        return {"action": action, **options}
    _, partition, _, region, account = context.invoked_function_arn.split(":")[:5]
    settings = load_settings(aws.client("ssm"), environment)
    targets = Targets(
        lambda_client=aws.client("lambda"), cloudwatch=aws.client("cloudwatch"), logs=aws.client("logs"),
        settings=settings, actions=[topic_arn(environment, partition=partition, region=region, account=account)],
    )
    out: dict[str, Any] = {"action": action}
    if action in (SCHEDULED, RECONCILE):
        results = targets.reconcile(only=functions)
        out["reconcile"] = [r.to_dict() for r in results if r.changes or r.error]
        out["functionsChecked"] = len(results)
        changed = sum(1 for r in results if r.applied)
        failed = [r for r in results if r.error]
        metrics.add_metric(name="TargetsChanged", unit="Count", value=changed)
        metrics.add_metric(name="TargetsFailed", unit="Count", value=len(failed))
        for result in failed:
            logger.error("reconcile failed", extra={"functionName": result.function, "error": result.error})
    if action in (SCHEDULED, SWEEP):
        sweep = run_sweep(
            targets, aws.client("stepfunctions"),
            threshold=options.get("threshold", settings.memory_utilization_threshold),
            machine_arn=state_machine_arn(environment, partition=partition, region=region, account=account),
            account=account, region=region, now=utc_now(), only=functions,
        )
        out["sweep"] = sweep
        metrics.add_metric(name="SweepIncidents", unit="Count", value=len(sweep["started"]))
    logger.info("targets done", extra={"summary": out})
    return out
