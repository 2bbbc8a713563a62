"""Onboarding target functions: what each one gets, the diff that makes applying it idempotent, and the sweep.

A target function gets, all named by convention so that ``remove`` deletes exactly what ``add`` created:

* the deployment guide's alarms, with the environment's thresholds: ``lambda-duration-alarm-<fn>`` (AWS/Lambda
  Duration, Average), ``lambda-errors-alarm-<fn>`` (Errors, Sum), plus ``lambda-timeout-alarm-<fn>`` (Timeouts)
  and ``lambda-memory-alarm-<fn>`` (MemoryUtilization, Maximum, at the utilisation threshold). They are tagged
  ``auto-repair:managed-by=lambda-auto-repair``; an alarm of the same name without the tag is the user's own
  and is adopted (updated and tagged) by ``add``, never deleted by ``remove`` unless ``add`` adopted it;
* log metric filters named ``auto-repair-*`` on ``/aws/lambda/<fn>``: ``Task timed out`` lines -> Timeouts,
  out-of-memory signatures of every runtime -> OutOfMemory, REPORT lines -> MaxMemoryUsed (MB) and
  MemoryUtilization (percent of the configured memory).

Two CloudWatch limits shape the metrics:

* a metric filter can only copy a number out of the log line (``$field``) or publish a constant - no arithmetic,
  so ``used / size`` cannot be computed. MemoryUtilization is therefore published by one filter per
  utilisation band: the band's condition is written in MB for the size configured at onboarding
  (``Memory Size: 512`` and ``Max Memory Used`` in [410, 436) MB publishes 80), and the size is part of the
  condition so that after a memory change the stale bands stop matching instead of publishing wrong percentages
  until the function is re-onboarded (the targets function does that on its schedule and on configuration-change
  events). Bands are 25 points wide at the bottom and 5 near the top, with the alarm threshold always a band
  edge, so "MemoryUtilization >= threshold" is exact while the average is only as fine as the bands;
* a metric filter's dimensions can only take values from the log line, and neither REPORT nor timeout lines name
  the function, so the per-function split is the namespace: ``LambdaAutoRepair/Targets/<fn>`` (no dimensions).
  ``auto_repair.alarm_event`` maps that namespace back to the function.

The pure part (settings, desired state, plans, sweep decisions) needs no AWS. :class:`Targets` applies plans with
the clients it is given, so the command line and the targets Lambda share one implementation.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .alarm_event import SWEEP_SOURCE, TARGET_NAMESPACE_PREFIX

MANAGED_TAG = "auto-repair:managed-by"
MANAGED_BY = "lambda-auto-repair"
OPT_IN_TAG = "auto-repair"
OPT_IN_VALUE = "enabled"
FILTER_PREFIX = "auto-repair-"
SYSTEM_PREFIX = "lambda-auto-repair-"
SETTINGS_PARAMETER = "/lambda-auto-repair/{environment}/target-alarm-settings"
MEMORY_ALARM_PREFIX = "lambda-memory-alarm-"
SWEEP_ALARM_PREFIX = "lambda-memory-sweep-"
# Utilisation band edges (percent); the threshold is added as an edge. Fine near the top, where decisions are made.
BAND_EDGES = (0, 25, 50, 60, 70, 75, 80, 85, 90, 95, 100)
SWEEP_PERIOD_SECONDS = 3600
SWEEP_LOOKBACK = timedelta(days=1)

# Lambda function names (not ARNs, not qualified): what onboarding accepts.
_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

# Out-of-memory signatures of every managed runtime, as CloudWatch filter terms (case-sensitive substrings).
# They mirror the strong "oom" rules of auto_repair.evidence.SIGNATURES; the weak ones (a SIGKILL, exit 137) are
# left out because they are not proof of memory exhaustion. "MemoryError" also covers Ruby's NoMemoryError,
# Java's OutOfMemoryError and numpy's _ArrayMemoryError.
OOM_TERMS: tuple[str, ...] = (
    "Runtime.OutOfMemory",
    "MemoryError",
    "JavaScript heap",
    "Reached heap limit",
    "Array buffer allocation failed",
    "OutOfMemoryException",
    "runtime: out of memory",
    "fatal error: out of memory",
    "failed to allocate memory",
    "Cannot allocate memory",
    "std::bad_alloc",
    "ENOMEM",
)
TIMEOUT_PATTERN = '"Task timed out"'
OOM_PATTERN = " ".join(f'?"{term}"' for term in OOM_TERMS)
# Lambda's JSON log format puts the REPORT numbers in a platform.report record.
JSON_REPORT = '$.type = "platform.report"'
JSON_USED = "$.record.metrics.maxMemoryUsedMB"
JSON_SIZE = "$.record.metrics.memorySizeMB"


class TargetsError(ValueError):
    """Onboarding cannot proceed: a bad function name, a system function, or unusable settings."""


# --------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class TargetSettings:
    """The environment's thresholds for target alarms (the functions stack's TargetSettings parameter)."""

    duration_threshold: float = 30000.0
    error_threshold: float = 1.0
    timeout_threshold: float = 1.0
    memory_utilization_threshold: float = 80.0
    period: int = 300
    evaluation_periods: int = 2

    def __post_init__(self) -> None:
        problems = []
        if not self.duration_threshold > 0:
            problems.append("DurationThreshold must be positive")
        if self.error_threshold < 0 or self.timeout_threshold < 0:
            problems.append("ErrorThreshold and TimeoutThreshold must not be negative")
        if not 1 <= self.memory_utilization_threshold <= 100:
            problems.append("MemoryUtilizationThreshold must be a percentage in [1, 100]")
        if self.period not in (10, 30) and (self.period < 60 or self.period % 60):
            problems.append("AlarmPeriodSeconds must be 10, 30 or a multiple of 60")
        if not 1 <= self.evaluation_periods <= 100:
            problems.append("AlarmEvaluationPeriods must be in [1, 100]")
        if problems:
            raise TargetsError("; ".join(problems))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> TargetSettings:
        """From the parameter's JSON keys (the template's parameter names); missing keys keep the defaults."""
        keys = {
            "DurationThreshold": ("duration_threshold", float),
            "ErrorThreshold": ("error_threshold", float),
            "TimeoutThreshold": ("timeout_threshold", float),
            "MemoryUtilizationThreshold": ("memory_utilization_threshold", float),
            "AlarmPeriodSeconds": ("period", int),
            "AlarmEvaluationPeriods": ("evaluation_periods", int),
        }
        values: dict[str, Any] = {}
        for key, (attr, kind) in keys.items():
            if key not in data:
                continue
            raw = data[key]
            if isinstance(raw, bool) or not isinstance(raw, int | float | str):
                raise TargetsError(f"{key} must be a number, got {raw!r}")
            try:
                number = float(raw)
            except ValueError as exc:
                raise TargetsError(f"{key} must be a number, got {raw!r}") from exc
            if not math.isfinite(number) or (kind is int and number != int(number)):
                raise TargetsError(f"{key} must be {'an integer' if kind is int else 'a finite number'}")
            values[attr] = kind(number)
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> TargetSettings:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise TargetsError(f"target settings are not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise TargetsError("target settings must be a JSON object")
        return cls.from_mapping(data)


def settings_parameter(environment: str) -> str:
    return SETTINGS_PARAMETER.format(environment=environment)


def topic_arn(environment: str, *, partition: str, region: str, account: str) -> str:
    """The notification topic the guide's alarms notify (the main stack names it by environment)."""
    return f"arn:{partition}:sns:{region}:{account}:lambda-auto-repair-notifications-{environment}"


def state_machine_arn(environment: str, *, partition: str, region: str, account: str) -> str:
    return f"arn:{partition}:states:{region}:{account}:stateMachine:lambda-auto-repair-workflow-{environment}"


# --------------------------------------------------------------------------------------------- desired state


@dataclass(frozen=True)
class FunctionInfo:
    name: str
    memory_size: int
    log_format: str = "Text"
    arn: str = ""

    @classmethod
    def from_configuration(cls, config: Mapping[str, Any]) -> FunctionInfo:
        logging_config = config.get("LoggingConfig") or {}
        return cls(
            name=str(config["FunctionName"]),
            memory_size=int(config.get("MemorySize") or 128),
            log_format=str(logging_config.get("LogFormat") or "Text"),
            arn=str(config.get("FunctionArn") or ""),
        )


def check_function_name(name: str) -> str:
    """A plain function name we may onboard; ARNs and qualified names are refused, as are our own functions."""
    if not isinstance(name, str) or not _FUNCTION_NAME.match(name):
        raise TargetsError(
            f"{name!r} is not a Lambda function name (1-64 letters, digits, '-' or '_'; no ARN, no qualifier)"
        )
    if name.startswith(SYSTEM_PREFIX):
        raise TargetsError(f"{name} is one of the auto-repair system's own functions; it cannot be a target")
    return name


def namespace(function_name: str) -> str:
    return f"{TARGET_NAMESPACE_PREFIX}{function_name}"


def log_group(function_name: str) -> str:
    return f"/aws/lambda/{function_name}"


def alarm_names(function_name: str) -> list[str]:
    return [f"lambda-{kind}-alarm-{function_name}" for kind in ("duration", "errors", "timeout", "memory")]


def desired_alarms(
    fn: str, settings: TargetSettings, actions: Iterable[str], *, kinds: Iterable[str] | None = None
) -> list[dict[str, Any]]:
    """PutMetricAlarm arguments (without tags) of the function's alarms, in ``alarm_names`` order."""
    check_function_name(fn)
    by_function = [{"Name": "FunctionName", "Value": fn}]
    own = namespace(fn)
    table = {
        # kind: (metric, namespace, dimensions, statistic, comparison, threshold, description)
        "duration": ("Duration", "AWS/Lambda", by_function, "Average", "GreaterThanThreshold",
                     settings.duration_threshold, "Lambda function duration alarm"),
        "errors": ("Errors", "AWS/Lambda", by_function, "Sum", "GreaterThanOrEqualToThreshold",
                   settings.error_threshold, "Lambda function errors alarm"),
        "timeout": ("Timeouts", own, [], "Sum", "GreaterThanOrEqualToThreshold", settings.timeout_threshold,
                    "Lambda function timeout alarm (Task timed out lines)"),
        "memory": ("MemoryUtilization", own, [], "Maximum", "GreaterThanOrEqualToThreshold",
                   settings.memory_utilization_threshold,
                   "Lambda function memory utilization alarm (REPORT lines, percent of configured memory)"),
    }
    wanted = list(kinds) if kinds is not None else list(table)
    alarms = []
    for kind in wanted:
        metric, ns, dims, stat, comparison, threshold, description = table[kind]
        alarms.append(
            {
                "AlarmName": f"lambda-{kind}-alarm-{fn}",
                "AlarmDescription": description,
                "ActionsEnabled": True,
                "AlarmActions": list(actions),
                "MetricName": metric,
                "Namespace": ns,
                "Statistic": stat,
                "Dimensions": list(dims),
                "Period": int(settings.period),
                "EvaluationPeriods": int(settings.evaluation_periods),
                "Threshold": float(threshold),
                "ComparisonOperator": comparison,
                "TreatMissingData": "notBreaching",
            }
        )
    return alarms


def band_edges(threshold: float) -> list[int]:
    """Utilisation band edges in percent; the alarm threshold is always one of them (so >= threshold is exact)."""
    edges = set(BAND_EDGES)
    edges.add(int(math.ceil(threshold)))
    return sorted(e for e in edges if 0 <= e <= 100)


def utilisation_bands(memory_size: int, threshold: float) -> list[tuple[int, int, int | None]]:
    """``(percent, lowest MB, MB upper bound or None)`` per band that an integer Max Memory Used can fall in.

    Max Memory Used is whole MB, so "at least p percent of S" is "used >= ceil(p * S / 100)". Bands that no whole
    MB value falls in (tiny functions, close edges) are dropped. The top band (100) also takes Lambda's
    "1 MB over the limit" reports of killed environments.
    """
    if memory_size <= 0:
        raise TargetsError("memory size must be positive")
    edges = band_edges(threshold)
    bands: list[tuple[int, int, int | None]] = []
    for i, percent in enumerate(edges):
        low = math.ceil(percent * memory_size / 100)
        high = math.ceil(edges[i + 1] * memory_size / 100) if i + 1 < len(edges) else None
        if high is not None and high <= low:
            continue
        bands.append((percent, low, high))
    return bands


# REPORT RequestId: <id>\tDuration: 1.23 ms\tBilled Duration: 2 ms\tMemory Size: 128 MB\tMax Memory Used: 70 MB\t...
# Tabs and spaces both delimit fields; the trailing ellipsis takes Init Duration, Status, XRAY ... when present.
_REPORT_FIELDS = (
    'r="REPORT"', 'r1="RequestId:"', "rid", 'd0="Duration:"', "d", "d1", "b0", "b1", "b", "b2",
    'm0="Memory"', 'm1="Size:"', "{size}", 'm2="MB"', 'u0="Max"', 'u1="Memory"', 'u2="Used:"', "{used}", 'u3="MB"',
    "...",
)


def report_pattern(size_condition: str = "", used_condition: str = "") -> str:
    """A space-delimited filter pattern for Lambda REPORT lines; fields ``size`` and ``used`` (MB)."""
    fields = ", ".join(_REPORT_FIELDS).format(
        size=f"size{size_condition}", used=f"used{used_condition}"
    )
    return f"[{fields}]"


def _band_conditions(low: int, high: int | None) -> str:
    if low <= 0 and high is not None:
        return f"<{high}"
    if high is None:
        return f">={low}"
    return f">={low} && used<{high}"


def desired_filters(fn: FunctionInfo, settings: TargetSettings) -> list[dict[str, Any]]:
    """PutMetricFilter arguments of the function's log metric filters."""
    check_function_name(fn.name)
    ns, group = namespace(fn.name), log_group(fn.name)
    json_format = fn.log_format.upper() == "JSON"

    def metric(name: str, value: str, unit: str) -> list[dict[str, Any]]:
        return [{"metricName": name, "metricNamespace": ns, "metricValue": value, "unit": unit}]

    timeout_pattern = '{ $.type = "platform.report" && $.record.status = "timeout" }' if json_format \
        else TIMEOUT_PATTERN
    filters = [
        {"filterName": f"{FILTER_PREFIX}timeouts", "filterPattern": timeout_pattern,
         "metricTransformations": metric("Timeouts", "1", "Count")},
        {"filterName": f"{FILTER_PREFIX}out-of-memory", "filterPattern": OOM_PATTERN,
         "metricTransformations": metric("OutOfMemory", "1", "Count")},
    ]
    if json_format:
        filters.append({"filterName": f"{FILTER_PREFIX}max-memory-used",
                        "filterPattern": f"{{ {JSON_REPORT} && {JSON_USED} >= 0 }}",
                        "metricTransformations": metric("MaxMemoryUsed", JSON_USED, "Megabytes")})
    else:
        filters.append({"filterName": f"{FILTER_PREFIX}max-memory-used", "filterPattern": report_pattern(),
                        "metricTransformations": metric("MaxMemoryUsed", "$used", "Megabytes")})
    for percent, low, high in utilisation_bands(fn.memory_size, settings.memory_utilization_threshold):
        if json_format:
            used = [f"{JSON_USED} >= {low}"] if low > 0 else []
            used += [f"{JSON_USED} < {high}"] if high is not None else []
            pattern = "{ " + " && ".join([JSON_REPORT, f"{JSON_SIZE} = {fn.memory_size}", *used]) + " }"
        else:
            pattern = report_pattern(f"={fn.memory_size}", _band_conditions(low, high))
        filters.append({"filterName": f"{FILTER_PREFIX}memory-utilization-{percent:03d}", "filterPattern": pattern,
                        "metricTransformations": metric("MemoryUtilization", str(percent), "Percent")})
    for f in filters:
        f["logGroupName"] = group
    return filters


# --------------------------------------------------------------------------------------------- plans

CREATE, UPDATE, DELETE, ADOPT, TAG, UNTAG, CREATE_LOG_GROUP = (
    "create", "update", "delete", "adopt", "tag", "untag", "create-log-group")

_ALARM_FIELDS: dict[str, Any] = {
    # compared field: default when DescribeAlarms leaves it out
    "AlarmDescription": "", "ActionsEnabled": True, "AlarmActions": [], "MetricName": "", "Namespace": "",
    "Statistic": "", "Dimensions": [], "Period": 0, "EvaluationPeriods": 0, "Threshold": 0.0,
    "ComparisonOperator": "", "TreatMissingData": "missing",
}


@dataclass
class Change:
    action: str
    kind: str  # alarm | filter | function | log-group
    name: str
    spec: dict[str, Any] | None = None
    why: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "kind": self.kind, "name": self.name, **({"why": self.why} if self.why else {})}


@dataclass
class Observed:
    """What exists for one function (only the things our naming convention could have created)."""

    function: str
    alarms: dict[str, dict[str, Any]] = field(default_factory=dict)  # DescribeAlarms entries by name
    managed: set[str] = field(default_factory=set)  # alarm names that carry our tag
    filters: dict[str, dict[str, Any]] = field(default_factory=dict)  # DescribeMetricFilters entries, our prefix
    log_group_exists: bool = True
    tagged: bool = False  # the function carries auto-repair=enabled
    exists: bool = True


def _normal_alarm(alarm: Mapping[str, Any]) -> dict[str, Any]:
    out = {key: alarm.get(key, default) for key, default in _ALARM_FIELDS.items()}
    out["Dimensions"] = sorted((d.get("Name"), d.get("Value")) for d in out["Dimensions"] or [])
    out["AlarmActions"] = sorted(out["AlarmActions"] or [])
    out["Threshold"] = float(out["Threshold"] or 0.0)
    out["Period"], out["EvaluationPeriods"] = int(out["Period"] or 0), int(out["EvaluationPeriods"] or 0)
    return out


def _normal_transformations(items: Iterable[Mapping[str, Any]] | None) -> list[tuple[Any, ...]]:
    out = []
    for t in items or []:
        default = t.get("defaultValue")
        out.append((t.get("metricName"), t.get("metricNamespace"), str(t.get("metricValue")),
                    None if default is None else float(default), t.get("unit") or "None",
                    tuple(sorted((t.get("dimensions") or {}).items()))))
    return out


def alarm_differs(desired: Mapping[str, Any], existing: Mapping[str, Any]) -> list[str]:
    """Fields whose existing value differs from the desired one."""
    want, have = _normal_alarm(desired), _normal_alarm(existing)
    return [key for key in _ALARM_FIELDS if want[key] != have[key]]


def filter_differs(desired: Mapping[str, Any], existing: Mapping[str, Any]) -> bool:
    return (desired.get("filterPattern", "") != existing.get("filterPattern", "")
            or _normal_transformations(desired.get("metricTransformations"))
            != _normal_transformations(existing.get("metricTransformations")))


def plan_onboard(
    desired_alarm_specs: list[dict[str, Any]], desired_filter_specs: list[dict[str, Any]], observed: Observed,
    *, tag_function: bool = True,
) -> list[Change]:
    """The changes that make ``observed`` match the desired state; empty when it already does."""
    changes: list[Change] = []
    if not observed.log_group_exists:
        changes.append(Change(CREATE_LOG_GROUP, "log-group", log_group(observed.function),
                              why="the function has not logged yet; its filters need the group"))
    for spec in desired_alarm_specs:
        name = spec["AlarmName"]
        existing = observed.alarms.get(name)
        if existing is None:
            changes.append(Change(CREATE, "alarm", name, spec))
            continue
        differs = alarm_differs(spec, existing)
        if name not in observed.managed:
            changes.append(Change(ADOPT, "alarm", name, spec, why="an alarm of this name existed without our tag"))
        elif differs:
            changes.append(Change(UPDATE, "alarm", name, spec, why="changed: " + ", ".join(differs)))
    wanted = {spec["filterName"] for spec in desired_filter_specs}
    for spec in desired_filter_specs:
        existing = observed.filters.get(spec["filterName"])
        if existing is None:
            changes.append(Change(CREATE, "filter", spec["filterName"], spec))
        elif filter_differs(spec, existing):
            changes.append(Change(UPDATE, "filter", spec["filterName"], spec, why="pattern or metric changed"))
    for name in sorted(set(observed.filters) - wanted):
        # e.g. a utilisation band of the previous memory size or threshold
        changes.append(Change(DELETE, "filter", name, {"logGroupName": log_group(observed.function)},
                              why="no longer part of the desired state"))
    if tag_function and not observed.tagged:
        changes.append(Change(TAG, "function", observed.function, {OPT_IN_TAG: OPT_IN_VALUE}))
    return changes


def plan_offboard(observed: Observed, *, untag_function: bool = True) -> list[Change]:
    """Delete what onboarding created: our tagged alarms and our filters; untag the function."""
    changes = [Change(DELETE, "alarm", name) for name in alarm_names(observed.function)
               if name in observed.alarms and name in observed.managed]
    changes += [Change(DELETE, "filter", name, {"logGroupName": log_group(observed.function)})
                for name in sorted(observed.filters)]
    if untag_function and observed.tagged and observed.exists:
        changes.append(Change(UNTAG, "function", observed.function, {"keys": [OPT_IN_TAG]}))
    return changes


# --------------------------------------------------------------------------------------------- sweep


@dataclass(frozen=True)
class Finding:
    function: str
    peak: float  # highest MemoryUtilization (percent) in the lookback
    at: datetime  # end of the most recent period at or above the threshold
    periods_above: int
    periods: int


def sweep_queries(functions: list[str]) -> list[dict[str, Any]]:
    """GetMetricData queries: hourly peak MaxMemoryUsed (MB) of each function (ids f0, f1, ...)."""
    return [
        {
            "Id": f"f{i}",
            "Label": fn,
            "MetricStat": {"Metric": {"Namespace": namespace(fn), "MetricName": "MaxMemoryUsed"},
                           "Period": SWEEP_PERIOD_SECONDS, "Stat": "Maximum"},
            "ReturnData": True,
        }
        for i, fn in enumerate(functions)
    ]


def sweep_findings(
    functions: list[str], results: Iterable[Mapping[str, Any]], threshold: float, sizes: Mapping[str, int],
) -> list[Finding]:
    """Functions whose memory use in the lookback window reached ``threshold`` percent of their *current* size.

    The sweep measures the day's hourly peaks of Max Memory Used (MB) against the memory the function has now, not
    the MemoryUtilization metric: after a repair, yesterday's 90 % of the old size is not a reason to act again,
    and after someone lowered the memory, yesterday's use is exactly the risk to report. Functions without a
    current size (deleted) are skipped.
    """
    by_id = {f"f{i}": fn for i, fn in enumerate(functions)}
    points: dict[str, list[tuple[datetime, float]]] = {}
    for result in results:
        fn = by_id.get(str(result.get("Id")))
        if fn is None or not sizes.get(fn):
            continue
        for ts, value in zip(result.get("Timestamps", []), result.get("Values", []), strict=False):
            if isinstance(value, int | float) and math.isfinite(value):
                stamp = ts if isinstance(ts, datetime) else datetime.fromisoformat(str(ts))
                stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
                points.setdefault(fn, []).append((stamp, round(min(float(value) / sizes[fn], 1.0) * 100, 1)))
    findings = []
    for fn in functions:
        series = sorted(points.get(fn, []))
        above = [(ts, v) for ts, v in series if v >= threshold]
        if not above:
            continue
        findings.append(Finding(
            function=fn, peak=max(v for _, v in series), at=above[-1][0] + timedelta(seconds=SWEEP_PERIOD_SECONDS),
            periods_above=len(above), periods=len(series)))
    return findings


def _aws_time(ts: datetime) -> str:
    ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}+0000"


def sweep_execution_name(function_name: str, now: datetime) -> str:
    """One sweep incident per function per day: the name makes a second start that day fail (idempotent)."""
    return f"sweep-{function_name}-{now.astimezone(UTC):%Y%m%d}"[:80]


def sweep_event(
    finding: Finding, *, threshold: float, account: str, region: str, now: datetime
) -> dict[str, Any]:
    """An alarm-state-change-shaped event for the workflow (``auto_repair.alarm_event`` accepts its source).

    ``state.timestamp`` is the end of the latest hour at or above the threshold, so the workflow's evidence window
    reaches back to it; ``alarmName`` is not an existing alarm, so no OK transition of the real memory alarm can
    close this incident.
    """
    fn = finding.function
    reason = (
        f"Proactive memory sweep: Max Memory Used in the last {int(SWEEP_LOOKBACK.total_seconds() // 3600)} h "
        f"peaked at {finding.peak:g}% of the function's current memory ({finding.periods_above} of "
        f"{finding.periods} hours at or above {threshold:g}%), before any failure."
    )
    reason_data = {
        "version": "1.0",
        "queryDate": _aws_time(now),
        "statistic": "Maximum",
        "period": SWEEP_PERIOD_SECONDS,
        "recentDatapoints": [finding.peak],
        "threshold": float(threshold),
    }
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "CloudWatch Alarm State Change",
        "source": SWEEP_SOURCE,
        "account": account,
        "time": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [],
        "detail": {
            "alarmName": f"{SWEEP_ALARM_PREFIX}{fn}"[:255],
            "state": {"value": "ALARM", "reason": reason, "reasonData": json.dumps(reason_data),
                      "timestamp": _aws_time(min(finding.at, now))},
            "previousState": {"value": "OK", "reason": "below the threshold", "timestamp": _aws_time(now)},
            "configuration": {
                "description": "Lambda Auto-Repair proactive memory sweep",
                "metrics": [{"id": "sweep", "metricStat": {
                    "metric": {"namespace": namespace(fn), "name": "MemoryUtilization", "dimensions": {}},
                    "period": SWEEP_PERIOD_SECONDS, "stat": "Maximum"}, "returnData": True}],
            },
        },
    }


# --------------------------------------------------------------------------------------------- applying (AWS)


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


@dataclass
class Result:
    function: str
    changes: list[Change]
    applied: bool
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"function": self.function, "changes": [c.to_dict() for c in self.changes],
                               "applied": self.applied}
        if self.error:
            out["error"] = self.error
        return out


class Targets:
    """Reads and changes one account's target onboarding through the clients it is given."""

    def __init__(self, *, lambda_client: Any, cloudwatch: Any, logs: Any, settings: TargetSettings,
                 actions: list[str]) -> None:
        self.lambda_client, self.cloudwatch, self.logs = lambda_client, cloudwatch, logs
        self.settings, self.actions = settings, actions

    # ---- reading
    def function(self, name: str) -> FunctionInfo | None:
        try:
            return FunctionInfo.from_configuration(self.lambda_client.get_function_configuration(FunctionName=name))
        except Exception as exc:
            if _code(exc) == "ResourceNotFoundException":
                return None
            raise

    def observe(self, name: str, info: FunctionInfo | None = None) -> Observed:
        observed = Observed(function=name, exists=info is not None)
        names = alarm_names(name)
        found = self.cloudwatch.describe_alarms(AlarmNames=names).get("MetricAlarms", [])
        observed.alarms = {a["AlarmName"]: a for a in found if a.get("AlarmName") in names}
        for alarm in observed.alarms.values():
            tags = self.cloudwatch.list_tags_for_resource(ResourceARN=alarm["AlarmArn"]).get("Tags", [])
            if any(t.get("Key") == MANAGED_TAG and t.get("Value") == MANAGED_BY for t in tags):
                observed.managed.add(alarm["AlarmName"])
        try:
            pages = self._metric_filters(log_group(name))
            observed.filters = {f["filterName"]: f for f in pages if f["filterName"].startswith(FILTER_PREFIX)}
        except Exception as exc:
            if _code(exc) != "ResourceNotFoundException":
                raise
            observed.log_group_exists = False
        if info is not None and info.arn:
            tags = self.lambda_client.list_tags(Resource=info.arn).get("Tags", {})
            observed.tagged = tags.get(OPT_IN_TAG) == OPT_IN_VALUE
        return observed

    def _metric_filters(self, group: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"logGroupName": group, "filterNamePrefix": FILTER_PREFIX}
        while True:
            page = self.logs.describe_metric_filters(**kwargs)
            found.extend(f for f in page.get("metricFilters", []) if f.get("logGroupName", group) == group)
            if not page.get("nextToken"):
                return found
            kwargs["nextToken"] = page["nextToken"]

    def onboarded(self) -> list[str]:
        """Functions with our memory alarm (the one alarm only onboarding creates), sorted."""
        names: set[str] = set()
        kwargs: dict[str, Any] = {"AlarmNamePrefix": MEMORY_ALARM_PREFIX, "AlarmTypes": ["MetricAlarm"]}
        while True:
            page = self.cloudwatch.describe_alarms(**kwargs)
            for alarm in page.get("MetricAlarms", []):
                ns = alarm.get("Namespace") or ""
                if ns.startswith(TARGET_NAMESPACE_PREFIX):
                    names.add(ns[len(TARGET_NAMESPACE_PREFIX):])
            if not page.get("NextToken"):
                return sorted(names)
            kwargs["NextToken"] = page["NextToken"]

    def opted_in(self) -> list[str]:
        """Functions tagged auto-repair=enabled (ListFunctions + ListTags: the tagging API does not list Lambda
        functions everywhere, and this needs no extra permission model)."""
        names = []
        for page in self.lambda_client.get_paginator("list_functions").paginate():
            for config in page.get("Functions", []):
                name = config["FunctionName"]
                if name.startswith(SYSTEM_PREFIX) or not _FUNCTION_NAME.match(name):
                    continue
                tags = self.lambda_client.list_tags(Resource=config["FunctionArn"]).get("Tags", {})
                if tags.get(OPT_IN_TAG) == OPT_IN_VALUE:
                    names.append(name)
        return sorted(names)

    def is_opted_in(self, name: str) -> bool:
        info = self.function(name)
        if info is None or not info.arn:
            return False
        return self.lambda_client.list_tags(Resource=info.arn).get("Tags", {}).get(OPT_IN_TAG) == OPT_IN_VALUE

    # ---- changing
    def plan_add(self, name: str, *, tag_function: bool = True) -> tuple[list[Change], FunctionInfo]:
        check_function_name(name)
        info = self.function(name)
        if info is None:
            raise TargetsError(f"function {name} does not exist")
        observed = self.observe(name, info)
        changes = plan_onboard(desired_alarms(name, self.settings, self.actions),
                               desired_filters(info, self.settings), observed, tag_function=tag_function)
        return changes, info

    def plan_remove(self, name: str, *, untag_function: bool = True) -> list[Change]:
        check_function_name(name)
        info = self.function(name)
        return plan_offboard(self.observe(name, info), untag_function=untag_function)

    def add(self, name: str, *, dry_run: bool = False, tag_function: bool = True) -> Result:
        changes, info = self.plan_add(name, tag_function=tag_function)
        if not dry_run:
            self.apply(changes, info)
        return Result(name, changes, applied=not dry_run and bool(changes))

    def remove(self, name: str, *, dry_run: bool = False, untag_function: bool = True) -> Result:
        changes = self.plan_remove(name, untag_function=untag_function)
        if not dry_run:
            self.apply(changes, None)
        return Result(name, changes, applied=not dry_run and bool(changes))

    def apply(self, changes: list[Change], info: FunctionInfo | None) -> None:
        for change in changes:
            if change.kind == "log-group":
                self._create_log_group(change.name)
            elif change.kind == "alarm" and change.action in (CREATE, UPDATE, ADOPT):
                assert change.spec is not None
                tags = [{"Key": MANAGED_TAG, "Value": MANAGED_BY}]
                self.cloudwatch.put_metric_alarm(**change.spec, Tags=tags)
                if change.action == ADOPT:
                    # PutMetricAlarm ignores Tags when it updates an existing alarm.
                    arn = self.cloudwatch.describe_alarms(AlarmNames=[change.name])["MetricAlarms"][0]["AlarmArn"]
                    self.cloudwatch.tag_resource(ResourceARN=arn, Tags=tags)
            elif change.kind == "alarm" and change.action == DELETE:
                self.cloudwatch.delete_alarms(AlarmNames=[change.name])
            elif change.kind == "filter" and change.action in (CREATE, UPDATE):
                assert change.spec is not None
                try:
                    self.logs.put_metric_filter(**change.spec)
                except Exception as exc:
                    if _code(exc) != "ResourceNotFoundException":
                        raise
                    # The group appeared missing only now (deleted meanwhile); Lambda would create it anyway.
                    self._create_log_group(change.spec["logGroupName"])
                    self.logs.put_metric_filter(**change.spec)
            elif change.kind == "filter" and change.action == DELETE:
                assert change.spec is not None
                try:
                    self.logs.delete_metric_filter(logGroupName=change.spec["logGroupName"], filterName=change.name)
                except Exception as exc:
                    if _code(exc) != "ResourceNotFoundException":
                        raise
            elif change.kind == "function" and change.action == TAG and info is not None:
                self.lambda_client.tag_resource(Resource=info.arn, Tags={OPT_IN_TAG: OPT_IN_VALUE})
            elif change.kind == "function" and change.action == UNTAG:
                config = self.lambda_client.get_function_configuration(FunctionName=change.name)
                self.lambda_client.untag_resource(Resource=config["FunctionArn"], TagKeys=[OPT_IN_TAG])

    def _create_log_group(self, group: str) -> None:
        try:
            self.logs.create_log_group(logGroupName=group)
        except Exception as exc:
            if _code(exc) != "ResourceAlreadyExistsException":
                raise

    def reconcile(self, *, only: Iterable[str] | None = None) -> list[Result]:
        """Onboard opted-in functions, offboard onboarded ones that are no longer opted in (or deleted).

        Never tags or untags functions: in automatic mode the tag is the user's decision.
        """
        if only is None:
            opted_in, onboarded = set(self.opted_in()), set(self.onboarded())
            scope = opted_in | onboarded
        else:
            # One function's event: look at just its tags, not the whole account's.
            scope = {name for name in only if _FUNCTION_NAME.match(name) and not name.startswith(SYSTEM_PREFIX)}
            opted_in = {name for name in scope if self.is_opted_in(name)}
            onboarded = set(self.onboarded()) & scope
        results = []
        for name in sorted(scope):
            try:
                if name in opted_in:
                    results.append(self.add(name, tag_function=False))
                elif name in onboarded:
                    results.append(self.remove(name, untag_function=False))
            except Exception as exc:  # one function's failure must not stop the others
                results.append(Result(name, [], applied=False, error=f"{type(exc).__name__}: {exc}"))
        return results

    def sweep(self, *, threshold: float, now: datetime, only: Iterable[str] | None = None) -> list[Finding]:
        onboarded = set(self.onboarded())
        if only is not None:
            onboarded &= set(only)
        sizes: dict[str, int] = {}
        for page in self.lambda_client.get_paginator("list_functions").paginate():
            for config in page.get("Functions", []):
                if config["FunctionName"] in onboarded:
                    sizes[config["FunctionName"]] = int(config.get("MemorySize") or 0)
        functions = sorted(sizes)
        findings: list[Finding] = []
        for start in range(0, len(functions), 500):  # GetMetricData takes up to 500 queries
            chunk = functions[start:start + 500]
            results: list[dict[str, Any]] = []
            # EndTime a minute ahead: the latest datapoints (timestamped when logged) count too.
            kwargs: dict[str, Any] = {"MetricDataQueries": sweep_queries(chunk), "StartTime": now - SWEEP_LOOKBACK,
                                      "EndTime": now + timedelta(minutes=1)}
            while True:
                page = self.cloudwatch.get_metric_data(**kwargs)
                results.extend(page.get("MetricDataResults", []))
                if not page.get("NextToken"):
                    break
                kwargs["NextToken"] = page["NextToken"]
            findings += sweep_findings(chunk, results, threshold, sizes)
        return findings

    def alarm_states(self, names: list[str]) -> dict[str, str]:
        found = self.cloudwatch.describe_alarms(AlarmNames=names).get("MetricAlarms", []) if names else []
        return {a["AlarmName"]: a.get("StateValue", "") for a in found}
