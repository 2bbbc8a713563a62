"""CloudWatch alarm state changes (EventBridge event, SNS notification, Lambda alarm action) -> the design's
alarm-event model.

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
            # LambdaAutoRepair/Targets/<env>/<function> (or <function>, before environment scoping)
            dims = {**dims, "FunctionName": namespace[len(TARGET_NAMESPACE_PREFIX):].rsplit("/", 1)[-1]}
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
    """Return the alarm-event model plus ``outcome`` (PROCEED / IGNORED / INVALID) and ``reason``.

    ``event`` may be any of the three delivery formats (see :func:`alarm_deliveries`).
    """
    event = as_state_change(event)
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


# ---------------------------------------------------------------------------------------- delivery formats
# CloudWatch delivers an alarm state change in three shapes: the EventBridge event (the workflow's own input),
# the SNS notification of an alarm action (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/
# AlarmThatSendsEmail.html, in SNS's Lambda / SQS / HTTP envelopes) and the Lambda alarm action's payload
# (#alarms-and-actions-Lambda). Each is rewritten into the EventBridge shape once, so that the parser, the
# idempotency key (alarm ARN + state timestamp) and every later state see one format.
EVENTBRIDGE, SNS, LAMBDA_ACTION = "eventbridge", "sns", "lambda-action"
STATE_CHANGE = "CloudWatch Alarm State Change"
# SNS alarm messages name the region in words ("US East (N. Virginia)", older ones "EU - Ireland"); the alarm
# ARN or the topic ARN is preferred, this table is the last resort.
_REGION_WORDS = {
    "us east n virginia": "us-east-1", "us east ohio": "us-east-2", "us west n california": "us-west-1",
    "us west oregon": "us-west-2", "eu ireland": "eu-west-1", "eu london": "eu-west-2", "eu paris": "eu-west-3",
    "eu frankfurt": "eu-central-1", "eu stockholm": "eu-north-1", "eu milan": "eu-south-1",
    "europe ireland": "eu-west-1", "europe london": "eu-west-2", "europe paris": "eu-west-3",
    "europe frankfurt": "eu-central-1", "europe stockholm": "eu-north-1", "europe milan": "eu-south-1",
    "europe spain": "eu-south-2", "europe zurich": "eu-central-2",
    "asia pacific tokyo": "ap-northeast-1", "asia pacific seoul": "ap-northeast-2",
    "asia pacific osaka": "ap-northeast-3", "asia pacific singapore": "ap-southeast-1",
    "asia pacific sydney": "ap-southeast-2", "asia pacific jakarta": "ap-southeast-3",
    "asia pacific mumbai": "ap-south-1", "asia pacific hong kong": "ap-east-1", "canada central": "ca-central-1",
    "south america sao paulo": "sa-east-1", "middle east bahrain": "me-south-1", "africa cape town": "af-south-1",
}
_REGION_CODE = re.compile(r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d\Z")
_STATISTICS = {"AVERAGE": "Average", "SUM": "Sum", "MINIMUM": "Minimum", "MAXIMUM": "Maximum",
               "SAMPLE_COUNT": "SampleCount", "SAMPLECOUNT": "SampleCount"}


def delivery_format(event: Any) -> str | None:
    """Which of the three shapes ``event`` is (SNS also for its Lambda/SQS/HTTP envelopes), or None."""
    if not isinstance(event, dict):
        return None
    if "detail-type" in event:
        return EVENTBRIDGE
    if "alarmData" in event:
        return LAMBDA_ACTION
    if "Records" in event or event.get("Type") == "Notification" or "NewStateValue" in event:
        return SNS
    return None


def alarm_deliveries(event: Any) -> list[tuple[Any, str]]:
    """Each alarm in a delivery, in the EventBridge shape, with its format; an SQS batch holds several.

    A payload that cannot be rewritten is returned as it came (with its format, or ``"unknown"``) so that the
    parser records it as INVALID and says why.
    """
    kind = delivery_format(event)
    if kind == EVENTBRIDGE or kind is None:
        return [(event, kind or "unknown")]
    if kind == LAMBDA_ACTION:
        return [(_from_lambda_action(event), kind)]
    records = event.get("Records")
    if records is None:
        return [(_from_sns(event), kind)]
    if not isinstance(records, list) or not records:
        return [(event, kind)]
    return [(_from_sns(record), kind) for record in records]


def as_state_change(event: Any) -> Any:
    """The first (for SNS-to-Lambda: the only) alarm of a delivery in the EventBridge shape."""
    return alarm_deliveries(event)[0][0]


def _region_from(message: dict[str, Any], topic_arn: str) -> str:
    for arn in (message.get("AlarmArn"), topic_arn):
        parts = arn.split(":") if isinstance(arn, str) else []
        if len(parts) > 4 and parts[3]:
            return parts[3]
    words = str(message.get("Region") or "")
    if _REGION_CODE.match(words):
        return words
    return _REGION_WORDS.get(" ".join(re.findall(r"[a-z]+", words.lower())), "")


def _json_object(value: Any, what: str) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return {"malformed": what}
    return value


def _sns_message(delivery: Any) -> tuple[Any, str, str]:
    """(alarm message, topic ARN, message id) of an SNS record, SQS record, SNS envelope or bare message."""
    if not isinstance(delivery, dict):
        return delivery, "", ""
    if "body" in delivery:  # SQS: the body is the SNS envelope, or the message itself (raw delivery)
        delivery = _json_object(delivery["body"], "SQS body")
        if not isinstance(delivery, dict):
            return delivery, "", ""
    envelope: dict[str, Any] = delivery["Sns"] if isinstance(delivery.get("Sns"), dict) else delivery
    if "Message" not in envelope:
        return envelope, "", ""
    message = _json_object(envelope["Message"], "SNS Message")
    return message, str(envelope.get("TopicArn") or ""), str(envelope.get("MessageId") or "")


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _dimensions(raw: Any) -> dict[str, Any]:
    """SNS lists dimensions as ``[{"name": ..., "value": ...}]``; EventBridge as an object."""
    if not isinstance(raw, list):
        return _obj(raw)
    return {str(d["name"]): d.get("value") for d in raw if isinstance(d, dict) and isinstance(d.get("name"), str)}


def _sns_metrics(trigger: dict[str, Any]) -> list[dict[str, Any]]:
    if isinstance(trigger.get("Metrics"), list):  # metric math: one entry per metric or expression
        out: list[dict[str, Any]] = []
        for item in trigger["Metrics"]:
            item = _obj(item)
            entry: dict[str, Any] = {"id": item.get("Id"), "returnData": item.get("ReturnData")}
            stat = item.get("MetricStat")
            if isinstance(stat, dict):
                metric = _obj(stat.get("Metric"))
                entry["metricStat"] = {"metric": {"namespace": metric.get("Namespace"), "name": metric.get("MetricName"),
                                                  "dimensions": _dimensions(metric.get("Dimensions"))},
                                       "period": stat.get("Period"), "stat": stat.get("Stat")}
            else:
                entry["expression"] = item.get("Expression")
            out.append(entry)
        return out
    if "MetricName" not in trigger and "Namespace" not in trigger:
        return []
    extended = trigger.get("StatisticType") == "ExtendedStatistic" or trigger.get("ExtendedStatistic")
    stat = (trigger.get("ExtendedStatistic") or trigger.get("Statistic")) if extended else \
        _STATISTICS.get(str(trigger.get("Statistic") or "").upper(), trigger.get("Statistic"))
    return [{"id": "m1", "returnData": True,
             "metricStat": {"metric": {"namespace": trigger.get("Namespace"), "name": trigger.get("MetricName"),
                                       "dimensions": _dimensions(trigger.get("Dimensions"))},
                            "period": trigger.get("Period"), "stat": stat}}]


def _from_sns(delivery: Any) -> Any:
    message, topic_arn, message_id = _sns_message(delivery)
    if isinstance(message, dict) and "detail-type" in message:  # an EventBridge rule that targets the topic
        # Marked like a converted message: the topic's account is the one thing here that SNS itself vouches for.
        return {**message, "deliveredVia": {"format": SNS, "topicArn": topic_arn}}
    if not isinstance(message, dict) or "NewStateValue" not in message:
        return {"source": SNS, "detail-type": "SNS message that is not a CloudWatch alarm notification",
                "detail": message if isinstance(message, dict) else {}}
    region = _region_from(message, topic_arn)
    account = str(message.get("AWSAccountId") or "")
    name = message.get("AlarmName")
    arn = message.get("AlarmArn") or (f"arn:aws:cloudwatch:{region}:{account}:alarm:{name}"
                                      if region and account and isinstance(name, str) else "")
    trigger = _obj(message.get("Trigger"))
    configuration: dict[str, Any] = {"description": message.get("AlarmDescription")}
    if "AlarmRule" in message:
        configuration["alarmRule"] = message["AlarmRule"]
    elif trigger:
        configuration["metrics"] = _sns_metrics(trigger)
    threshold = trigger.get("Threshold")
    return {
        "version": "0", "id": message_id, "detail-type": STATE_CHANGE, "source": "aws.cloudwatch",
        "account": account, "time": message.get("StateChangeTime"), "region": region,
        "resources": [arn] if arn else [], "deliveredVia": {"format": SNS, "topicArn": topic_arn},
        "detail": {
            "alarmName": name,
            "state": {"value": message.get("NewStateValue"), "reason": message.get("NewStateReason"),
                      "timestamp": message.get("StateChangeTime"),
                      "reasonData": json.dumps({"threshold": threshold}) if threshold is not None else None},
            "previousState": {"value": message.get("OldStateValue")},
            "configuration": configuration,
        },
    }


def _from_lambda_action(event: dict[str, Any]) -> dict[str, Any]:
    arn = event.get("alarmArn")
    return {
        "version": "0", "id": "", "detail-type": STATE_CHANGE, "source": event.get("source"),
        "account": event.get("accountId"), "time": event.get("time"), "region": event.get("region"),
        "resources": [arn] if isinstance(arn, str) and arn else [], "deliveredVia": {"format": LAMBDA_ACTION},
        "detail": event.get("alarmData"),
    }
