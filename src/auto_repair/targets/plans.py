"""The diff between what exists and what should: the changes that make applying idempotent (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..guards import ENABLED, scope_names
from .constants import OPT_IN_TAG, OPT_IN_VALUE
from .desired import alarm_names, log_group

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
    tagged: bool = False  # the function's auto-repair tag puts it in this environment's scope
    exists: bool = True
    custom_log_group: str = ""  # LoggingConfig.LogGroup when not /aws/lambda/<function>
    environment: str = ""  # the onboarding environment ("" = the names of before environment scoping)
    scope_value: str | None = None  # the function's auto-repair tag, as it is
    plain_scope_tag: bool = True

    def tag_value_with(self) -> str:
        """The auto-repair tag that adds this environment, keeping the others the value names."""
        if not self.environment:
            return OPT_IN_VALUE
        kept = [n for n in scope_names(self.scope_value) if n and n != "disabled" and n != self.environment]
        return ",".join([*kept, self.environment])

    def tag_value_without(self) -> str:
        """The auto-repair tag without this environment (empty: remove the tag)."""
        if not self.environment:
            return ""
        return ",".join(n for n in scope_names(self.scope_value)
                        if n and n != self.environment and not (self.plain_scope_tag and n == ENABLED))

    @property
    def log_group(self) -> str:
        return self.custom_log_group or log_group(self.function)


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
        changes.append(Change(CREATE_LOG_GROUP, "log-group", observed.log_group,
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
        changes.append(Change(DELETE, "filter", name, {"logGroupName": observed.log_group},
                              why="no longer part of the desired state"))
    if tag_function and not observed.tagged:
        changes.append(Change(TAG, "function", observed.function, {OPT_IN_TAG: observed.tag_value_with()}))
    return changes


def plan_offboard(observed: Observed, *, untag_function: bool = True) -> list[Change]:
    """Delete what onboarding created: our tagged alarms and our filters; untag the function."""
    changes = [Change(DELETE, "alarm", name) for name in alarm_names(observed.function, observed.environment)
               if name in observed.alarms and name in observed.managed]
    changes += [Change(DELETE, "filter", name, {"logGroupName": observed.log_group})
                for name in sorted(observed.filters)]
    if untag_function and observed.tagged and observed.exists:
        changes.append(Change(UNTAG, "function", observed.function, {OPT_IN_TAG: observed.tag_value_without()}))
    return changes
