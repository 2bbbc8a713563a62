"""The proactive memory sweep: which onboarded functions came close to their memory, as workflow events; and the
settle half (issue 13): trims of memory our workflow raised and the function proved it does not use."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ..alarm_event import SWEEP_SOURCE
from ..clock import alarm_time, iso_seconds
from ..settle import TRIM_ALARM_PREFIX
from .constants import SWEEP_ALARM_PREFIX, SWEEP_LOOKBACK, SWEEP_PERIOD_SECONDS
from .desired import namespace, suffix


@dataclass(frozen=True)
class Finding:
    function: str
    peak: float  # highest MemoryUtilization (percent) in the lookback
    at: datetime  # end of the most recent period at or above the threshold
    periods_above: int
    periods: int


def sweep_queries(functions: list[str], environment: str = "") -> list[dict[str, Any]]:
    """GetMetricData queries: hourly peak MaxMemoryUsed (MB) of each function (ids f0, f1, ...)."""
    return [
        {
            "Id": f"f{i}",
            "Label": fn,
            "MetricStat": {"Metric": {"Namespace": namespace(fn, environment), "MetricName": "MaxMemoryUsed"},
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


def sweep_execution_name(function_name: str, now: datetime) -> str:
    """One sweep incident per function per day: the name makes a second start that day fail (idempotent)."""
    return f"sweep-{function_name}-{now.astimezone(UTC):%Y%m%d}"[:80]


def sweep_event(
    finding: Finding, *, threshold: float, account: str, region: str, now: datetime, environment: str = ""
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
        "queryDate": alarm_time(now),
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
        "time": iso_seconds(now),
        "region": region,
        "resources": [],
        "detail": {
            "alarmName": f"{SWEEP_ALARM_PREFIX}{fn}{suffix(environment)}"[:255],
            "state": {"value": "ALARM", "reason": reason, "reasonData": json.dumps(reason_data),
                      "timestamp": alarm_time(min(finding.at, now))},
            "previousState": {"value": "OK", "reason": "below the threshold", "timestamp": alarm_time(now)},
            "configuration": {
                "description": "Lambda Auto-Repair proactive memory sweep",
                "metrics": [{"id": "sweep", "metricStat": {
                    "metric": {"namespace": namespace(fn, environment), "name": "MemoryUtilization", "dimensions": {}},
                    "period": SWEEP_PERIOD_SECONDS, "stat": "Maximum"}, "returnData": True}],
            },
        },
    }


def trim_execution_name(function_name: str, now: datetime) -> str:
    """One trim per function per day, named apart from the day's sweep incident (which may have raised it)."""
    return f"trim-{function_name}-{now.astimezone(UTC):%Y%m%d}"[:80]


def trim_event(function_name: str, trim: dict[str, Any], *, account: str, region: str, now: datetime
               ) -> dict[str, Any]:
    """The workflow event of a trim proposal (``auto_repair.settle``): the sweep's event shape, a name of its own
    (``lambda-memory-trim-<fn>``, no such alarm exists) and the proposal in ``detail.trim``, which DiagnoseIssue
    turns into a decision to lower the memory."""
    finding = Finding(function=function_name, peak=0.0, at=now, periods_above=0, periods=0)
    event = sweep_event(finding, threshold=100.0, account=account, region=region, now=now)
    detail = event["detail"]
    detail["alarmName"] = f"{TRIM_ALARM_PREFIX}{function_name}"[:255]
    detail["state"]["reason"] = (f"Settle: {function_name} has run healthy at {trim['configured']} MB since "
                                 f"{trim['healthySince']}; {trim['reason']}")
    detail["configuration"]["description"] = "Lambda Auto-Repair settle: trim memory proven unused"
    detail["trim"] = trim
    return event
