"""CloudWatch metric alarms that actually evaluate, with the exact ``CloudWatch Alarm State Change`` event.

moto 5.2.5 stores alarms and metric data but never evaluates an alarm; ``SetAlarmState`` only changes the stored
state (no event, no actions) and new alarms start in ``OK`` (AWS: ``INSUFFICIENT_DATA``). This module:

* runs a background thread that evaluates every metric alarm each tick (``AUTO_REPAIR_LOCAL_ALARM_TICK`` seconds,
  default 1) from the datapoints in moto's CloudWatch backend: Statistic / ExtendedStatistic (pNN), Period (short
  periods such as 10 s work), EvaluationPeriods, DatapointsToAlarm, ComparisonOperator, Threshold,
  TreatMissingData, Dimensions (exact set, as CloudWatch), and metric math (``Metrics`` with arithmetic over ids,
  SUM/MAX/MIN/AVG of lists);
* on a state change updates the alarm (StateValue, StateReason in AWS's wording, StateReasonData, timestamp,
  history), puts the AWS event on the default bus and publishes the AWS alarm message to SNS actions;
* makes ``SetAlarmState`` emit the same event and actions, and holds the state set by hand until the next regular
  evaluation would happen on AWS (``min(Period, 60)`` seconds) so it is observable, as on AWS.

Buckets are aligned to multiples of the period. The current, still-open period counts once it has data (AWS waits
for the period to close; the local cloud reacts faster, which only shortens latency). Composite alarms are
evaluated after the metric alarms on each tick (AlarmRule with ALARM/OK/INSUFFICIENT_DATA, AND, OR, NOT, TRUE,
FALSE; not AT_LEAST).

Patches (see ``MOTO_TOUCHPOINTS``): wraps ``moto.cloudwatch.models.CloudWatchBackend.put_metric_alarm`` and
``.set_alarm_state``, adds ``moto.cloudwatch.responses.CloudWatchResponse.put_composite_alarm``, reads moto's stored
datapoints. AWS behaviour: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html
and https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/cloudwatch-and-eventbridge.html
Written for moto ``>=5.2.5,<5.3`` (``MOTO_VERSIONS``).
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import logging
import math
import operator
import os
import re
import threading
import time
import uuid
from typing import Any

from .ticker import start_ticker

# What this module relies on in moto: checked at server start and by tests/unit/test_local_cloud_contracts.py
# (auto_repair_local.moto_contract; upgrade procedure in docs/ARCHITECTURE.md, "Upgrading moto").
MOTO_VERSIONS = ">=5.2.5,<5.3"
MOTO_TOUCHPOINTS = (
    "moto.cloudwatch.models.CloudWatchBackend.put_metric_alarm(name)",
    "moto.cloudwatch.models.CloudWatchBackend.set_alarm_state(alarm_name, reason, reason_data, state_value)",
    "moto.cloudwatch.models.CloudWatchBackend#alarms",
    "moto.cloudwatch.models.CloudWatchBackend#metric_data",
    "moto.cloudwatch.models.CloudWatchBackend#account_id",
    "moto.cloudwatch.models.CloudWatchBackend#region_name",
    "moto.cloudwatch.models.cloudwatch_backends",
    "moto.cloudwatch.responses.CloudWatchResponse.put_metric_alarm()",
    "moto.cloudwatch.models.Alarm.update_state(reason, reason_data, state_value)",
    "moto.cloudwatch.models.Alarm#name",
    "moto.cloudwatch.models.Alarm#alarm_arn",
    "moto.cloudwatch.models.Alarm#state_value",
    "moto.cloudwatch.models.Alarm#state_reason",
    "moto.cloudwatch.models.Alarm#state_reason_data",
    "moto.cloudwatch.models.Alarm#state_updated_timestamp",
    "moto.cloudwatch.models.Alarm#history",
    "moto.cloudwatch.models.Alarm#rule",
    "moto.cloudwatch.models.Alarm#namespace",
    "moto.cloudwatch.models.Alarm#metric_name",
    "moto.cloudwatch.models.Alarm#dimensions",
    "moto.cloudwatch.models.Alarm#metric_data_queries",
    "moto.cloudwatch.models.Alarm#period",
    "moto.cloudwatch.models.Alarm#statistic",
    "moto.cloudwatch.models.Alarm#extended_statistic",
    "moto.cloudwatch.models.Alarm#threshold",
    "moto.cloudwatch.models.Alarm#comparison_operator",
    "moto.cloudwatch.models.Alarm#evaluation_periods",
    "moto.cloudwatch.models.Alarm#datapoints_to_alarm",
    "moto.cloudwatch.models.Alarm#treat_missing_data",
    "moto.cloudwatch.models.Alarm#alarm_actions",
    "moto.cloudwatch.models.Alarm#ok_actions",
    "moto.cloudwatch.models.Alarm#insufficient_data_actions",
    "moto.cloudwatch.models.Alarm#actions_enabled",
    "moto.cloudwatch.models.Alarm#description",
    "moto.cloudwatch.models.Alarm#unit",
    "moto.cloudwatch.models.Alarm#configuration_updated_timestamp",
    "moto.cloudwatch.models.MetricDataQuery#id",
    "moto.cloudwatch.models.MetricDataQuery#metric_stat",
    "moto.cloudwatch.models.MetricStat#metric",
    "moto.cloudwatch.models.MetricStat#period",
    "moto.cloudwatch.models.MetricStat#stat",
    "moto.cloudwatch.models.Metric#metric_name",
    "moto.cloudwatch.models.Metric#namespace",
    "moto.cloudwatch.models.Metric#dimensions",
    "moto.cloudwatch.models.MetricDatumBase#namespace",
    "moto.cloudwatch.models.MetricDatumBase#name",
    "moto.cloudwatch.models.MetricDatumBase#dimensions",
    "moto.cloudwatch.models.MetricDatumBase#timestamp",
    "moto.cloudwatch.models.MetricDatum#value",
    "moto.cloudwatch.models.MetricAggregatedDatum#sum",
    "moto.cloudwatch.models.MetricAggregatedDatum#sample_count",
    "moto.cloudwatch.models.MetricAggregatedDatum#min",
    "moto.cloudwatch.models.MetricAggregatedDatum#max",
    "moto.events.models.events_backends",
    "moto.events.models.EventsBackend.put_events(events)",
    "moto.sns.models.sns_backends",
    "moto.sns.models.SNSBackend.publish(message, arn)",
)

log = logging.getLogger("auto_repair_local.alarms")

_COMPARISON = {
    "GreaterThanThreshold": (operator.gt, "greater than"),
    "GreaterThanOrEqualToThreshold": (operator.ge, "greater than or equal to"),
    "LessThanThreshold": (operator.lt, "less than"),
    "LessThanOrEqualToThreshold": (operator.le, "less than or equal to"),
}
_REGION_NAMES = {
    "us-east-1": "US East (N. Virginia)",
    "us-east-2": "US East (Ohio)",
    "us-west-1": "US West (N. California)",
    "us-west-2": "US West (Oregon)",
    "eu-west-1": "EU (Ireland)",
    "eu-central-1": "EU (Frankfurt)",
    "ap-northeast-1": "Asia Pacific (Tokyo)",
    "ap-southeast-1": "Asia Pacific (Singapore)",
}

_lock = threading.RLock()  # one evaluation / state change at a time (ticks vs SetAlarmState requests)
_hold_until: dict[str, float] = {}  # alarm ARN -> monotonic time until which a manually set state is kept


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aws_ts(value: dt.datetime) -> str:
    # CloudWatch's own format in events and reason data: 2026-11-22T17:00:00.000+0000
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


def _as_utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


# ---------------------------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------------------------


def _dimension_set(dimensions: Any) -> frozenset[tuple[str, str]]:
    out = set()
    for d in dimensions or []:
        if isinstance(d, dict):
            out.add((d.get("Name") or d.get("name"), d.get("Value") or d.get("value")))
        else:
            out.add((d.name, d.value))
    return frozenset(out)


MetricKey = tuple[str, str, frozenset[tuple[str, str]]]


def build_index(backend: Any, horizon: dt.datetime) -> dict[MetricKey, list[Any]]:
    """Datapoints newer than ``horizon`` grouped by metric: one pass over moto's (append-only) list per tick,
    instead of one pass per alarm."""
    index: dict[MetricKey, list[Any]] = {}
    for d in list(backend.metric_data):
        if _as_utc(d.timestamp) >= horizon:
            index.setdefault((d.namespace, d.name, _dimension_set(d.dimensions)), []).append(d)
    return index


def _series(index: dict[MetricKey, list[Any]], namespace: str, name: str, dimensions: Any) -> list[Any]:
    # CloudWatch matches the exact dimension set, not a subset.
    return index.get((namespace, name, _dimension_set(dimensions)), [])


def _stat(datums: list[Any], stat: str) -> tuple[float | None, float]:
    """(value, sample count) of ``stat`` over the datums of one period."""
    values: list[float] = []
    agg_sum = agg_count = 0.0
    agg_min, agg_max = math.inf, -math.inf
    for d in datums:
        if hasattr(d, "value"):
            values.append(float(d.value))
            agg_sum += float(d.value)
            agg_count += 1
            agg_min, agg_max = min(agg_min, float(d.value)), max(agg_max, float(d.value))
        else:  # StatisticValues (moto's MetricAggregatedDatum keeps them as sum / sample_count / min / max)
            agg_sum += float(d.sum)
            agg_count += float(d.sample_count)
            agg_min, agg_max = min(agg_min, float(d.min)), max(agg_max, float(d.max))
    if agg_count == 0:
        return None, 0.0
    if stat == "SampleCount":
        return agg_count, agg_count
    if stat == "Sum":
        return agg_sum, agg_count
    if stat == "Average":
        return agg_sum / agg_count, agg_count
    if stat == "Minimum":
        return agg_min, agg_count
    if stat == "Maximum":
        return agg_max, agg_count
    if stat.startswith("p") and values:
        # CloudWatch percentiles: nearest rank over the raw values.
        q = float(stat[1:]) / 100.0
        ordered = sorted(values)
        rank = max(1, math.ceil(q * len(ordered)))
        return ordered[rank - 1], agg_count
    return None, agg_count


def _bucketed(
    datums: list[Any], stat: str, period: int, starts: list[dt.datetime]
) -> list[tuple[float | None, float]]:
    by_start: dict[dt.datetime, list[Any]] = {s: [] for s in starts}
    for d in datums:
        ts = _as_utc(d.timestamp)
        start = dt.datetime.fromtimestamp(math.floor(ts.timestamp() / period) * period, dt.UTC)
        if start in by_start:
            by_start[start].append(d)
    return [_stat(by_start[s], stat) for s in starts]


# ---------------------------------------------------------------------------------------------------------------
# Metric math: arithmetic over ids and SUM/MAX/MIN/AVG over lists of ids, evaluated per period
# ---------------------------------------------------------------------------------------------------------------

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_FUNCS = {
    "SUM": lambda xs: sum(xs),
    "MAX": lambda xs: max(xs),
    "MIN": lambda xs: min(xs),
    "AVG": lambda xs: sum(xs) / len(xs),
    "ABS": lambda xs: abs(xs[0]),
}


def _eval_expr(expression: str, env: dict[str, float | None]) -> float | None:
    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.Name):
            if node.id not in env:
                raise ValueError(f"unknown id {node.id}")
            return env[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = ev(node.left), ev(node.right)
            if left is None or right is None:
                return None
            if isinstance(node.op, ast.Div) and right == 0:
                return None  # CloudWatch drops the datapoint on division by zero
            return _BINOPS[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            value = ev(node.operand)
            return None if value is None else -value
        if isinstance(node, ast.List):
            return [ev(e) for e in node.elts]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id.upper() in _FUNCS:
            args = [ev(a) for a in node.args]
            flat = [x for a in args for x in (a if isinstance(a, list) else [a]) if x is not None]
            return _FUNCS[node.func.id.upper()](flat) if flat else None
        raise ValueError(f"unsupported metric math: {ast.dump(node)}")

    return ev(ast.parse(expression, mode="eval"))


# ---------------------------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------------------------


def _alarm_period(alarm: Any) -> int:
    if alarm.period:
        return int(alarm.period)
    for q in alarm.metric_data_queries:
        if q.metric_stat is not None and q.metric_stat.period:
            return int(q.metric_stat.period)
        if q.period:
            return int(q.period)
    return 60


def _alarm_stat(alarm: Any) -> str:
    return alarm.extended_statistic or alarm.statistic or ""


def _values(
    index: dict[MetricKey, list[Any]], alarm: Any, period: int, starts: list[dt.datetime]
) -> list[tuple[float | None, float | None]]:
    """(value, sample count) per period start; sample count is None for metric math."""
    if not alarm.metric_data_queries:
        datums = _series(index, alarm.namespace, alarm.metric_name, alarm.dimensions)
        return [(v, c) for v, c in _bucketed(datums, _alarm_stat(alarm), period, starts)]
    per_id: dict[str, list[float | None]] = {}
    for q in alarm.metric_data_queries:
        if q.metric_stat is not None:
            m = q.metric_stat.metric
            datums = _series(index, m.namespace, m.metric_name, m.dimensions)
            per_id[q.id] = [v for v, _ in _bucketed(datums, q.metric_stat.stat, period, starts)]
    result_query = next(
        (q for q in alarm.metric_data_queries if str(q.return_data).lower() == "true"),
        alarm.metric_data_queries[0],
    )
    out: list[tuple[float | None, float | None]] = []
    pending = [q for q in alarm.metric_data_queries if q.expression]
    for i in range(len(starts)):
        env = {k: v[i] for k, v in per_id.items()}
        for _ in range(len(pending)):  # expressions may refer to other expressions
            for q in pending:
                if q.id not in env:
                    try:
                        env[q.id] = _eval_expr(q.expression, env)
                    except ValueError:
                        continue
        out.append((env.get(result_query.id), None))
    return out


def horizon_for(alarms: list[Any], now: dt.datetime) -> dt.datetime:
    longest = max(
        (_alarm_period(a) * (int(a.evaluation_periods or 1) + 2) for a in alarms if not a.rule), default=0
    )
    return now - dt.timedelta(seconds=longest)


def _fmt_value(value: float) -> str:
    return repr(float(value))


def _fmt_point(value: float, start: dt.datetime) -> str:
    return f"{_fmt_value(value)} ({start.strftime('%d/%m/%y %H:%M:%S')})"


def evaluate(
    index: dict[MetricKey, list[Any]], alarm: Any, now: dt.datetime | None = None
) -> tuple[str, str, str] | None:
    """(state, reason, reasonData) the alarm should be in now, or None to keep its state."""
    if alarm.rule or alarm.comparison_operator not in _COMPARISON or alarm.threshold is None:
        return None  # composite or anomaly-detection alarms: not evaluated locally
    now = now or _now()
    period = _alarm_period(alarm)
    n = int(alarm.evaluation_periods or 1)
    m = int(alarm.datapoints_to_alarm or n)
    current = math.floor(now.timestamp() / period) * period
    starts = [dt.datetime.fromtimestamp(current - k * period, dt.UTC) for k in range(n, -1, -1)]
    points = _values(index, alarm, period, starts)
    if points[-1][0] is None:
        # The open period without data yet is not "missing": evaluate the last N closed periods.
        starts, points = starts[:-1], points[:-1]
    else:
        starts, points = starts[1:], points[1:]
    values = [v for v, _ in points]
    compare, words = _COMPARISON[alarm.comparison_operator]
    threshold = float(alarm.threshold)
    treat = alarm.treat_missing_data or "missing"
    present = [(s, v) for s, v in zip(starts, values, strict=True) if v is not None]
    breaching = [(s, v) for s, v in present if compare(v, threshold)]
    missing = len(starts) - len(present)
    n_breaching = len(breaching) + (missing if treat == "breaching" else 0)
    # Key order as CloudWatch writes it.
    reason_data: dict[str, Any] = {
        "version": "1.0",
        "queryDate": _aws_ts(now),
        "startDate": _aws_ts(starts[0]),
    }
    stat = _alarm_stat(alarm)
    if stat:
        reason_data["extendedStatistic" if alarm.extended_statistic else "statistic"] = stat
    reason_data.update(
        {
            "period": period,
            "recentDatapoints": [v for _, v in present],
            "threshold": threshold,
            "evaluatedDatapoints": [
                {
                    "timestamp": _aws_ts(s),
                    **({"sampleCount": c} if c is not None and v is not None else {}),
                    **({"value": v} if v is not None else {}),
                }
                for s, (v, c) in reversed(list(zip(starts, points, strict=True)))
            ],
        }
    )
    if not present and treat in ("missing", "ignore"):
        if treat == "ignore":
            return None
        reason = (
            f"Insufficient Data: {len(starts)} datapoint{'s were' if len(starts) != 1 else ' was'} unknown."
        )
        return "INSUFFICIENT_DATA", reason, json.dumps(reason_data)
    plural = "s" if m != 1 else ""
    if n_breaching >= m:
        shown = sorted(breaching, key=lambda p: p[0], reverse=True)
        verb = "were" if len(shown) != 1 else "was"
        reason = (
            f"Threshold Crossed: {n_breaching} out of the last {n} datapoints "
            f"[{', '.join(_fmt_point(v, s) for s, v in shown)}] {verb} {words} the threshold ({_fmt_value(threshold)}) "
            f"(minimum {m} datapoint{plural} for OK -> ALARM transition)."
        )
        return "ALARM", reason, json.dumps(reason_data)
    ok_points = sorted([p for p in present if not compare(p[1], threshold)], key=lambda p: p[0], reverse=True)
    n_ok = len(ok_points) + (missing if treat == "notBreaching" else 0)
    verb = "were" if n_ok != 1 else "was"
    reason = (
        f"Threshold Crossed: {n_ok} out of the last {n} datapoints "
        f"[{', '.join(_fmt_point(v, s) for s, v in ok_points)}] {verb} not {words} the threshold "
        f"({_fmt_value(threshold)}) (minimum 1 datapoint for ALARM -> OK transition)."
    )
    return "OK", reason, json.dumps(reason_data)


_RULE_FUNC = re.compile(r'\b(ALARM|OK|INSUFFICIENT_DATA)\s*\(\s*(?:"([^"]*)"|([^)\s]*))\s*\)')


def evaluate_composite(alarm: Any, alarms: dict[str, Any]) -> tuple[str, str, str] | None:
    """ALARM if the AlarmRule holds, else OK. Supports ALARM/OK/INSUFFICIENT_DATA(name or ARN), AND, OR, NOT,
    TRUE, FALSE and parentheses (the documented grammar, without the AT_LEAST function)."""
    by_key = {a.name: a for a in alarms.values()} | {a.alarm_arn: a for a in alarms.values()}
    triggering: list[Any] = []

    def state_test(match: re.Match[str]) -> str:
        wanted, ref = match.group(1), match.group(2) or match.group(3)
        child = by_key.get(ref)
        hit = child is not None and child.state_value == wanted
        if hit:
            triggering.append(child)
        return " True " if hit else " False "

    expression = _RULE_FUNC.sub(state_test, alarm.rule)
    expression = re.sub(r"\bAND\b", " and ", expression)
    expression = re.sub(r"\bOR\b", " or ", expression)
    expression = re.sub(r"\bNOT\b", " not ", expression)
    expression = re.sub(r"\bTRUE\b", " True ", expression)
    expression = re.sub(r"\bFALSE\b", " False ", expression)
    tree = ast.parse(expression.strip(), mode="eval")
    allowed = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.Constant)
    if not all(isinstance(node, allowed) for node in ast.walk(tree)):
        raise ValueError(f"unsupported alarm rule: {alarm.rule}")
    holds = bool(eval(compile(tree, "<alarm rule>", "eval"), {"__builtins__": {}}))  # noqa: S307 - checked AST
    if not holds:
        return "OK", "The composite alarm rule evaluated to FALSE.", "{}"
    first = triggering[0] if triggering else None
    when = _as_utc(first.state_updated_timestamp) if first else _now()
    reason = (
        f"{first.alarm_arn} transitioned to {first.state_value} at {when.strftime('%A %d %B, %Y %H:%M:%S UTC')}"
        if first
        else "The composite alarm rule evaluated to TRUE."
    )
    data = {
        "triggeringAlarms": [
            {
                "arn": a.alarm_arn,
                "state": {"value": a.state_value, "timestamp": _aws_ts(_as_utc(a.state_updated_timestamp))},
            }
            for a in triggering
        ]
    }
    return "ALARM", reason, json.dumps(data)


# ---------------------------------------------------------------------------------------------------------------
# Event and actions
# ---------------------------------------------------------------------------------------------------------------


def _metrics_configuration(alarm: Any) -> list[dict[str, Any]]:
    if alarm.metric_data_queries:
        out = []
        for q in alarm.metric_data_queries:
            item: dict[str, Any] = {"id": q.id}
            if q.metric_stat is not None:
                metric = q.metric_stat.metric
                item["metricStat"] = {
                    "metric": {
                        "namespace": metric.namespace,
                        "name": metric.metric_name,
                        "dimensions": {d.name: d.value for d in metric.dimensions},
                    },
                    "period": int(q.metric_stat.period) if q.metric_stat.period else None,
                    "stat": q.metric_stat.stat,
                }
            if q.expression:
                item["expression"] = q.expression
            if q.label:
                item["label"] = q.label
            item["returnData"] = str(q.return_data).lower() != "false"
            out.append(item)
        return out
    # AWS gives single-metric alarms a generated query id.
    metric_id = getattr(alarm, "_auto_repair_metric_id", None) or str(uuid.uuid4())
    alarm._auto_repair_metric_id = metric_id
    return [
        {
            "id": metric_id,
            "metricStat": {
                "metric": {
                    "namespace": alarm.namespace,
                    "name": alarm.metric_name,
                    "dimensions": {d.name: d.value for d in alarm.dimensions},
                },
                "period": int(alarm.period) if alarm.period else None,
                "stat": _alarm_stat(alarm),
            },
            "returnData": True,
        }
    ]


def _state_block(value: str, reason: str, reason_data: str | None, timestamp: dt.datetime) -> dict[str, Any]:
    block: dict[str, Any] = {"value": value, "reason": reason}
    if reason_data and reason_data != "{}":
        block["reasonData"] = reason_data
    block["timestamp"] = _aws_ts(timestamp)
    return block


def alarm_event_detail(alarm: Any, previous: dict[str, Any]) -> dict[str, Any]:
    configuration: dict[str, Any] = (
        {"alarmRule": alarm.rule} if alarm.rule else {"metrics": _metrics_configuration(alarm)}
    )
    if alarm.description:
        configuration = {"description": alarm.description, **configuration}
    return {
        "alarmName": alarm.name,
        "state": _state_block(
            alarm.state_value,
            alarm.state_reason,
            alarm.state_reason_data,
            _as_utc(alarm.state_updated_timestamp),
        ),
        "previousState": previous,
        "configuration": configuration,
    }


def _emit(account_id: str, region: str, alarm: Any, previous: dict[str, Any], old_value: str) -> None:
    from moto.events.models import events_backends
    from moto.sns.models import sns_backends

    detail = alarm_event_detail(alarm, previous)
    events_backends[account_id][region].put_events(
        [
            {
                "Source": "aws.cloudwatch",
                "DetailType": "CloudWatch Alarm State Change",
                "Detail": json.dumps(detail),
                "Resources": [alarm.alarm_arn],
                "EventBusName": "default",
            }
        ]
    )
    if not alarm.actions_enabled:
        return
    actions = {
        "ALARM": alarm.alarm_actions,
        "OK": alarm.ok_actions,
        "INSUFFICIENT_DATA": alarm.insufficient_data_actions,
    }[alarm.state_value]
    region_name = _REGION_NAMES.get(region, region)
    message = {
        "AlarmName": alarm.name,
        "AlarmDescription": alarm.description,
        "AWSAccountId": account_id,
        "AlarmConfigurationUpdatedTimestamp": _aws_ts(_as_utc(alarm.configuration_updated_timestamp)),
        "NewStateValue": alarm.state_value,
        "NewStateReason": alarm.state_reason,
        "StateChangeTime": _aws_ts(_as_utc(alarm.state_updated_timestamp)),
        "Region": region_name,
        "AlarmArn": alarm.alarm_arn,
        "OldStateValue": old_value,
        "OKActions": alarm.ok_actions,
        "AlarmActions": alarm.alarm_actions,
        "InsufficientDataActions": alarm.insufficient_data_actions,
        "Trigger": {
            "MetricName": alarm.metric_name,
            "Namespace": alarm.namespace,
            "StatisticType": "ExtendedStatistic" if alarm.extended_statistic else "Statistic",
            "Statistic": (alarm.statistic or "").upper() or None,
            "ExtendedStatistic": alarm.extended_statistic,
            "Unit": alarm.unit,
            "Dimensions": [{"value": d.value, "name": d.name} for d in alarm.dimensions],
            "Period": alarm.period,
            "EvaluationPeriods": alarm.evaluation_periods,
            "DatapointsToAlarm": alarm.datapoints_to_alarm,
            "ComparisonOperator": alarm.comparison_operator,
            "Threshold": alarm.threshold,
            "TreatMissingData": alarm.treat_missing_data or "missing",
        },
    }
    for arn in actions:
        if arn.startswith("arn:aws:sns:"):
            try:
                parts = arn.split(":")
                sns_backends[parts[4]][parts[3]].publish(
                    json.dumps(message),
                    arn=arn,
                    subject=f'{alarm.state_value}: "{alarm.name}" in {region_name}'[:100],
                )
            except Exception:  # a missing topic must not stop evaluation of the other alarms
                log.exception("alarm %s: publishing to %s failed", alarm.name, arn)


def _change_state(
    account_id: str,
    region: str,
    alarm: Any,
    value: str,
    reason: str,
    reason_data: str | None,
    *,
    manual: bool,
) -> None:
    previous = _state_block(
        alarm.state_value, alarm.state_reason, alarm.state_reason_data, _as_utc(alarm.state_updated_timestamp)
    )
    old_value = alarm.state_value
    alarm.update_state(reason, reason_data, value)
    alarm.state_updated_timestamp = _now()
    if manual:
        _hold_until[alarm.alarm_arn] = time.monotonic() + min(_alarm_period(alarm), 60)
    _emit(account_id, region, alarm, previous, old_value)


def tick(now: dt.datetime | None = None) -> None:
    from moto.cloudwatch.models import cloudwatch_backends

    now = now or _now()
    with _lock:
        for account_id, regions in list(cloudwatch_backends.items()):
            for region, backend in list(regions.items()):
                alarms = list(backend.alarms.values())
                if not alarms:
                    continue
                index = build_index(backend, horizon_for(alarms, now))
                for alarm in alarms:
                    if _hold_until.get(alarm.alarm_arn, 0) > time.monotonic():
                        continue
                    try:
                        result = evaluate(index, alarm, now)
                    except Exception:
                        log.exception("alarm %s: evaluation failed", alarm.name)
                        continue
                    if result is None:
                        continue
                    value, reason, reason_data = result
                    if value != alarm.state_value:
                        _change_state(account_id, region, alarm, value, reason, reason_data, manual=False)
                # Composite alarms after the metric alarms they watch, so one tick propagates a change.
                for alarm in alarms:
                    if not alarm.rule or _hold_until.get(alarm.alarm_arn, 0) > time.monotonic():
                        continue
                    try:
                        result = evaluate_composite(alarm, backend.alarms)
                    except Exception:
                        log.exception("composite alarm %s: evaluation failed", alarm.name)
                        continue
                    if result is not None and result[0] != alarm.state_value:
                        _change_state(account_id, region, alarm, *result, manual=False)


def _patch_backend() -> None:
    from moto.cloudwatch.models import CloudWatchBackend

    orig_put = CloudWatchBackend.put_metric_alarm
    orig_set = CloudWatchBackend.set_alarm_state

    def put_metric_alarm(self: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        with _lock:
            existing = self.alarms.get(name)
            alarm = orig_put(self, name, *args, **kwargs)
            if existing is not None:
                # Updating an alarm keeps its state (and history) on AWS; moto would reset it.
                alarm.state_value, alarm.state_reason = existing.state_value, existing.state_reason
                alarm.state_reason_data = existing.state_reason_data
                alarm.state_updated_timestamp = existing.state_updated_timestamp
                alarm.history = existing.history
            else:
                alarm.state_value = "INSUFFICIENT_DATA"  # AWS's initial state (moto says OK)
            return alarm

    def set_alarm_state(self: Any, alarm_name: str, reason: str, reason_data: str, state_value: str) -> None:
        with _lock:
            alarm = self.alarms.get(alarm_name)
            if alarm is None:
                return orig_set(self, alarm_name, reason, reason_data, state_value)  # raises ResourceNotFound
            before = (
                alarm.state_value,
                alarm.state_reason,
                alarm.state_reason_data,
                alarm.state_updated_timestamp,
            )
            orig_set(
                self, alarm_name, reason, reason_data, state_value
            )  # validates; then we redo it with events
            alarm.state_value, alarm.state_reason, alarm.state_reason_data, alarm.state_updated_timestamp = (
                before
            )
            alarm.history.pop()
            if state_value == alarm.state_value:
                # AWS emits nothing when the state does not change; the reason is still updated.
                alarm.state_reason, alarm.state_reason_data = reason, reason_data or "{}"
                return None
            _change_state(
                self.account_id,
                self.region_name,
                alarm,
                state_value,
                reason,
                reason_data or None,
                manual=True,
            )
            return None

    CloudWatchBackend.put_metric_alarm = put_metric_alarm  # type: ignore[method-assign]

    from moto.cloudwatch.responses import CloudWatchResponse

    # moto stores composite alarms (an Alarm with a rule; its PutMetricAlarm handler reads AlarmRule) but has no
    # PutCompositeAlarm action; the same handler serves it.
    if not hasattr(CloudWatchResponse, "put_composite_alarm"):
        CloudWatchResponse.put_composite_alarm = CloudWatchResponse.put_metric_alarm  # type: ignore[attr-defined]
    CloudWatchBackend.set_alarm_state = set_alarm_state  # type: ignore[method-assign]


_installed = False


def install(ctx: Any) -> None:
    global _installed
    if _installed:
        return
    _installed = True
    _patch_backend()
    interval = float(os.environ.get("AUTO_REPAIR_LOCAL_ALARM_TICK", "1"))

    start_ticker(ctx, "alarm-evaluator", interval, tick)
