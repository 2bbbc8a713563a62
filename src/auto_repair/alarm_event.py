"""CloudWatch ``Alarm State Change`` events -> the design's alarm-event model.

Pure code. It never raises on bad input: every event, however malformed, becomes a model with an
``outcome`` so that the workflow can record it (and notify when a human is needed) instead of crashing.
The function is taken from the alarm's metric dimensions, never from the alarm name: names are free text.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .errors import AutoRepairError
from .outcomes import AlarmOutcome

# Namespaces whose metrics identify a Lambda function, and the dimension that names it.
FUNCTION_DIMENSIONS: dict[str, tuple[str, ...]] = {
    # Resource ("name:alias") is the more specific of the two when an alarm carries both.
    "AWS/Lambda": ("Resource", "FunctionName"),
    "LambdaAutoRepair": ("FunctionName",),
    "LambdaInsights": ("function_name",),
}
KNOWN_STATES = ("OK", "ALARM", "INSUFFICIENT_DATA")
_FUNCTION_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}\Z")
_QUALIFIER = re.compile(r"(|\$LATEST|[a-zA-Z0-9_-]{1,128})\Z")
MAX_TEXT = 2000
# Target onboarding (auto_repair.targets) publishes log-derived metrics in LambdaAutoRepair/Targets/<function>:
# a metric filter cannot set a constant dimension, so the namespace names the function.
TARGET_NAMESPACE_PREFIX = "LambdaAutoRepair/Targets/"
# The proactive memory sweep (auto_repair.targets) starts the workflow with an alarm-state-change-shaped event.
SWEEP_SOURCE = "lambda-auto-repair.sweep"
ALARM_SOURCES = ("aws.cloudwatch", SWEEP_SOURCE)


class AlarmEventError(AutoRepairError, ValueError):
    """The event is not a well-formed CloudWatch alarm state change."""


def clean_text(value: Any, limit: int = MAX_TEXT) -> str:
    """Strings from events are untrusted: force valid UTF-8 and bound the size."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = text.encode("utf-8", "replace").decode("utf-8", "replace")
    if len(text) > limit:
        text = text[:limit] + f"... [truncated {len(text) - limit} chars]"
    return text


def _dict(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise AlarmEventError(f"'{field}' must be an object, got {type(value).__name__}")
    return value


def _function_targets(metrics: list[Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """Lambda functions named by the alarm's metrics, and the namespaces seen."""
    targets: list[dict[str, Any]] = []
    namespaces: list[str] = []
    for index, item in enumerate(metrics):
        item = _dict(item, f"configuration.metrics[{index}]")
        stat = item.get("metricStat")
        if stat is None:
            continue  # a metric-math expression; the metrics it uses are listed separately
        stat = _dict(stat, f"configuration.metrics[{index}].metricStat")
        metric = _dict(stat.get("metric"), f"configuration.metrics[{index}].metricStat.metric")
        namespace = metric.get("namespace")
        if not isinstance(namespace, str):
            raise AlarmEventError(f"configuration.metrics[{index}] has no namespace")
        namespaces.append(namespace)
        dims = metric.get("dimensions") or {}
        dims = _dict(dims, f"configuration.metrics[{index}].metricStat.metric.dimensions")
        if namespace.startswith(TARGET_NAMESPACE_PREFIX) and len(namespace) > len(TARGET_NAMESPACE_PREFIX):
            dims = {**dims, "FunctionName": namespace[len(TARGET_NAMESPACE_PREFIX):]}
            namespace_dims: tuple[str, ...] = ("FunctionName",)
        else:
            namespace_dims = FUNCTION_DIMENSIONS.get(namespace, ())
        for dim in namespace_dims:
            raw = dims.get(dim)
            if not isinstance(raw, str) or not raw:
                continue
            # `Resource` is "name" or "name:qualifier" (alias or version).
            name, _, qualifier = raw.partition(":")
            if not _FUNCTION_NAME.match(name) or not _QUALIFIER.match(qualifier):
                raise AlarmEventError(f"dimension {dim} {clean_text(raw, 80)!r} is not a Lambda function name "
                                      "(1-64 letters, digits, '-' or '_', optionally ':alias' or ':version')")
            targets.append(
                {
                    "functionName": clean_text(name, 140),
                    "qualifier": clean_text(qualifier, 128) or None,
                    "metricName": clean_text(metric.get("name"), 255),
                    "namespace": namespace,
                    "period": stat.get("period") if isinstance(stat.get("period"), int) else None,
                    "stat": clean_text(stat.get("stat"), 64),
                    "metricId": clean_text(item.get("id"), 255),
                }
            )
            break
    return targets, namespaces


def _reason_data(state: dict[str, Any]) -> dict[str, Any]:
    raw = state.get("reasonData")
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        try:
            data = json.loads(raw)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}
    return {}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def parse_alarm_event(event: Any, *, account: str | None = None, region: str | None = None) -> dict[str, Any]:
    """Return the alarm-event model plus ``outcome`` (PROCEED / IGNORED / INVALID) and ``reason``."""
    try:
        return _parse(event, account=account, region=region)
    except AlarmEventError as exc:
        model = _empty_model(event)
        model.update(outcome=AlarmOutcome.INVALID, reason=f"malformed alarm event: {exc}", needsHuman=True)
        return model


def _empty_model(event: Any) -> dict[str, Any]:
    resources = event.get("resources") if isinstance(event, dict) else None
    detail = event.get("detail") if isinstance(event, dict) else None
    alarm_name = detail.get("alarmName") if isinstance(detail, dict) else None
    return {
        "alarmId": clean_text(resources[0], 512) if isinstance(resources, list) and resources else "",
        "alarmName": clean_text(alarm_name, 255),
        "functionName": "",
        "qualifier": None,
        "functionNames": [],
        "metricName": "",
        "namespace": "",
        "threshold": None,
        "currentValue": None,
        "stateChangeTime": clean_text(event.get("time"), 64) if isinstance(event, dict) else "",
        "previousState": "",
        "currentState": "",
        "stateReason": "",
        "eventId": clean_text(event.get("id"), 128) if isinstance(event, dict) else "",
        "account": clean_text(event.get("account"), 32) if isinstance(event, dict) else "",
        "region": clean_text(event.get("region"), 32) if isinstance(event, dict) else "",
        "needsHuman": False,
    }


def _parse(event: Any, *, account: str | None, region: str | None) -> dict[str, Any]:
    event = _dict(event, "event")
    model = _empty_model(event)
    if event.get("source") not in ALARM_SOURCES or event.get("detail-type") != "CloudWatch Alarm State Change":
        raise AlarmEventError(
            f"expected source 'aws.cloudwatch' and detail-type 'CloudWatch Alarm State Change', got "
            f"{clean_text(event.get('source'), 64)!r} / {clean_text(event.get('detail-type'), 64)!r}"
        )
    detail = _dict(event.get("detail"), "detail")
    if not isinstance(detail.get("alarmName"), str) or not detail["alarmName"]:
        raise AlarmEventError("'detail.alarmName' is missing")
    state = _dict(detail.get("state"), "detail.state")
    previous = detail.get("previousState") or {}
    previous = _dict(previous, "detail.previousState")
    value = state.get("value")
    if value not in KNOWN_STATES:
        raise AlarmEventError(f"unknown alarm state value {clean_text(value, 64)!r}")
    reason_data = _reason_data(state)
    datapoints = reason_data.get("recentDatapoints")
    current = _number(datapoints[-1]) if isinstance(datapoints, list) and datapoints else None
    model.update(
        currentState=value,
        previousState=clean_text(previous.get("value"), 32),
        stateReason=clean_text(state.get("reason")),
        stateChangeTime=clean_text(state.get("timestamp") or event.get("time"), 64),
        threshold=_number(reason_data.get("threshold")),
        currentValue=current,
    )
    if account and model["account"] and model["account"] != account:
        model.update(outcome=AlarmOutcome.IGNORED, reason=f"event for account {model['account']}, not this account {account}")
        return model
    if region and model["region"] and model["region"] != region:
        model.update(outcome=AlarmOutcome.IGNORED, reason=f"event for region {model['region']}, not this region {region}")
        return model

    configuration = detail.get("configuration") or {}
    configuration = _dict(configuration, "detail.configuration")
    metrics = configuration.get("metrics")
    if metrics is None:
        kind = "composite alarm" if "alarmRule" in configuration else "alarm without metrics"
        model.update(outcome=AlarmOutcome.IGNORED, reason=f"{kind}: no metric names a Lambda function")
        return model
    if not isinstance(metrics, list):
        raise AlarmEventError("'detail.configuration.metrics' must be a list")
    targets, namespaces = _function_targets(metrics)
    names = sorted({t["functionName"] for t in targets})
    model["functionNames"] = names
    if not targets:
        seen = ", ".join(sorted(set(namespaces))) or "none"
        model.update(outcome=AlarmOutcome.IGNORED, reason=f"alarm is not about a Lambda function (metric namespaces: {seen})")
        return model
    first = targets[0]
    model.update(
        functionName=first["functionName"],
        qualifier=first["qualifier"],
        metricName=first["metricName"],
        namespace=first["namespace"],
        period=first["period"],
        stat=first["stat"],
    )
    if len(names) > 1:
        model.update(
            outcome=AlarmOutcome.IGNORED,
            needsHuman=True,
            reason=(
                f"alarm spans {len(names)} functions ({', '.join(names[:10])}); a repair cannot be attributed "
                "to one of them - give each function its own alarm"
            ),
        )
        return model
    if value != "ALARM":
        model.update(outcome=AlarmOutcome.IGNORED, reason=f"state is {value}, only ALARM starts a repair")
        return model
    model.update(outcome=AlarmOutcome.PROCEED, reason="Lambda alarm in ALARM state")
    return model
