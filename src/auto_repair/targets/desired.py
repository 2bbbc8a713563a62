"""What one target function should have: its alarms and its log metric filters (pure)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..alarm_event import TARGET_NAMESPACE_PREFIX
from .constants import (
    _FUNCTION_NAME,
    BAND_EDGES,
    FILTER_PREFIX,
    JSON_REPORT,
    JSON_SIZE,
    JSON_USED,
    OOM_PATTERN,
    SYSTEM_PREFIX,
    TIMEOUT_PATTERN,
)
from .exceptions import TargetsError
from .settings import TargetSettings


@dataclass(frozen=True)
class FunctionInfo:
    name: str
    memory_size: int
    log_format: str = "Text"
    arn: str = ""
    custom_log_group: str = ""  # LoggingConfig.LogGroup when it is not /aws/lambda/<name>

    @classmethod
    def from_configuration(cls, config: Mapping[str, Any]) -> FunctionInfo:
        logging_config = config.get("LoggingConfig") or {}
        name = str(config["FunctionName"])
        group = str(logging_config.get("LogGroup") or "")
        return cls(
            name=name,
            memory_size=int(config.get("MemorySize") or 128),
            log_format=str(logging_config.get("LogFormat") or "Text"),
            arn=str(config.get("FunctionArn") or ""),
            custom_log_group="" if group == log_group(name) else group,
        )

    @property
    def log_group(self) -> str:
        return self.custom_log_group or log_group(self.name)


def check_function_name(name: str) -> str:
    """A plain function name we may onboard; ARNs and qualified names are refused, as are our own functions."""
    if not isinstance(name, str) or not _FUNCTION_NAME.match(name):
        raise TargetsError(
            f"{name!r} is not a Lambda function name (1-64 letters, digits, '-' or '_'; no ARN, no qualifier)"
        )
    if name.startswith(SYSTEM_PREFIX):
        raise TargetsError(f"{name} is one of the auto-repair system's own functions; it cannot be a target")
    return name


def namespace(function_name: str, environment: str = "") -> str:
    """``LambdaAutoRepair/Targets/<env>/<fn>``: each environment's filters publish apart (two environments' Timeouts
    filters on one log group would otherwise double the Sum their alarms read)."""
    return f"{TARGET_NAMESPACE_PREFIX}{environment + '/' if environment else ''}{function_name}"


def suffix(environment: str) -> str:
    """What ends the name of every alarm an environment's onboarding creates."""
    return f"-{environment}" if environment else ""


def log_group(function_name: str) -> str:
    return f"/aws/lambda/{function_name}"


def filter_prefix(environment: str = "") -> str:
    """``auto-repair-<env>.``: the dot ends the environment (no kind or function name has one; a filter name may
    not contain ``:``)."""
    return f"{FILTER_PREFIX}{environment}." if environment else FILTER_PREFIX


def filter_name(kind: str, function_name: str, custom_group: bool, environment: str = "") -> str:
    """Our filter's name; in a custom group (which several functions may share) it also names the function."""
    prefix = filter_prefix(environment)
    return f"{prefix}{kind}@{function_name}" if custom_group else f"{prefix}{kind}"


def owns_filter(name: str, function_name: str, custom_group: bool, environment: str = "") -> bool:
    """Whether a filter of the function's log group is one of this function's (see ``filter_name``)."""
    prefix = filter_prefix(environment)
    if not name.startswith(prefix) or (not environment and "." in name):
        return False
    return name.endswith(f"@{function_name}") if custom_group else "@" not in name


def alarm_names(function_name: str, environment: str = "") -> list[str]:
    """``lambda-<kind>-alarm-<fn>-<env>``: no environment's name ends another's, so the names cannot collide."""
    return [f"lambda-{kind}-alarm-{function_name}{suffix(environment)}"
            for kind in ("duration", "errors", "timeout", "memory")]


def desired_alarms(
    fn: str, settings: TargetSettings, actions: Iterable[str], *, kinds: Iterable[str] | None = None
) -> list[dict[str, Any]]:
    """PutMetricAlarm arguments (without tags) of the function's alarms, in ``alarm_names`` order."""
    check_function_name(fn)
    by_function = [{"Name": "FunctionName", "Value": fn}]
    own = namespace(fn, settings.environment)
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
                "AlarmName": f"lambda-{kind}-alarm-{fn}{suffix(settings.environment)}",
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
    env = settings.environment
    ns, group = namespace(fn.name, env), fn.log_group
    custom = bool(fn.custom_log_group)
    json_format = fn.log_format.upper() == "JSON"

    def metric(name: str, value: str, unit: str) -> list[dict[str, Any]]:
        return [{"metricName": name, "metricNamespace": ns, "metricValue": value, "unit": unit}]

    timeout_pattern = '{ $.type = "platform.report" && $.record.status = "timeout" }' if json_format \
        else TIMEOUT_PATTERN
    filters = [
        {"filterName": filter_name("timeouts", fn.name, custom, env), "filterPattern": timeout_pattern,
         "metricTransformations": metric("Timeouts", "1", "Count")},
        {"filterName": filter_name("out-of-memory", fn.name, custom, env), "filterPattern": OOM_PATTERN,
         "metricTransformations": metric("OutOfMemory", "1", "Count")},
    ]
    if json_format:
        filters.append({"filterName": filter_name("max-memory-used", fn.name, custom, env),
                        "filterPattern": f"{{ {JSON_REPORT} && {JSON_USED} >= 0 }}",
                        "metricTransformations": metric("MaxMemoryUsed", JSON_USED, "Megabytes")})
    else:
        filters.append({"filterName": filter_name("max-memory-used", fn.name, custom, env), "filterPattern": report_pattern(),
                        "metricTransformations": metric("MaxMemoryUsed", "$used", "Megabytes")})
    for percent, low, high in utilisation_bands(fn.memory_size, settings.memory_utilization_threshold):
        if json_format:
            used = [f"{JSON_USED} >= {low}"] if low > 0 else []
            used += [f"{JSON_USED} < {high}"] if high is not None else []
            pattern = "{ " + " && ".join([JSON_REPORT, f"{JSON_SIZE} = {fn.memory_size}", *used]) + " }"
        else:
            pattern = report_pattern(f"={fn.memory_size}", _band_conditions(low, high))
        filters.append({"filterName": filter_name(f"memory-utilization-{percent:03d}", fn.name, custom, env), "filterPattern": pattern,
                        "metricTransformations": metric("MemoryUtilization", str(percent), "Percent")})
    for f in filters:
        f["logGroupName"] = group
    return filters
