"""Applies plans through the clients it is given, so the command line and the targets Lambda share it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..alarm_event import TARGET_NAMESPACE_PREFIX
from ..errors import error_code
from ..guards import OPT_IN, in_scope
from .constants import (
    _FUNCTION_NAME,
    DESCRIBE_ALARMS_MAX_NAMES,
    FILTER_PREFIX,
    MANAGED_BY,
    MANAGED_TAG,
    MEMORY_ALARM_PREFIX,
    OPT_IN_TAG,
    OPT_IN_VALUE,
    SWEEP_LOOKBACK,
    SYSTEM_PREFIX,
)
from .desired import (
    FunctionInfo,
    alarm_names,
    check_function_name,
    desired_alarms,
    desired_filters,
    owns_filter,
)
from .exceptions import TargetsError
from .plans import ADOPT, CREATE, DELETE, TAG, UNTAG, UPDATE, Change, Observed, plan_offboard, plan_onboard
from .settings import TargetSettings
from .sweep import Finding, sweep_findings, sweep_queries


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
            if error_code(exc) == "ResourceNotFoundException":
                return None
            if error_code(exc) != "AccessDeniedException":
                raise
        # The member role reads a configuration only in scope (its tag condition, as the central repair roles);
        # onboarding still has to see a function whose tag is gone (to remove its alarms and filters), so it reads
        # it from the listing ListFunctions gives it (that action has no resource-level permissions).
        for page in self.lambda_client.get_paginator("list_functions").paginate():
            for config in page.get("Functions", []):
                if config.get("FunctionName") == name:
                    return FunctionInfo.from_configuration(config)
        return None

    def observe(self, name: str, info: FunctionInfo | None = None) -> Observed:
        custom = info.custom_log_group if info is not None else ""
        env = self.settings.environment
        observed = Observed(function=name, exists=info is not None, custom_log_group=custom, environment=env,
                            plain_scope_tag=self.settings.plain_scope_tag)
        names = alarm_names(name, env)
        found = self.cloudwatch.describe_alarms(AlarmNames=names).get("MetricAlarms", [])
        observed.alarms = {a["AlarmName"]: a for a in found if a.get("AlarmName") in names}
        for alarm in observed.alarms.values():
            tags = self.cloudwatch.list_tags_for_resource(ResourceARN=alarm["AlarmArn"]).get("Tags", [])
            if any(t.get("Key") == MANAGED_TAG and t.get("Value") == MANAGED_BY for t in tags):
                observed.managed.add(alarm["AlarmName"])
        try:
            pages = self._metric_filters(observed.log_group)
            observed.filters = {f["filterName"]: f for f in pages if owns_filter(f["filterName"], name, bool(custom), env)}
        except Exception as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
            observed.log_group_exists = False
        if info is not None and info.arn:
            tags = self.lambda_client.list_tags(Resource=info.arn).get("Tags", {})
            observed.scope_value = tags.get(OPT_IN_TAG)
            observed.tagged = self._in_scope(tags)
        return observed

    def _in_scope(self, tags: dict[str, str]) -> bool:
        """Whether the function's tags put it in this environment's scope (as ParseAlarmEvent and the executor role
        read them; without an environment, the tag of before environment scoping)."""
        if not self.settings.environment:
            return tags.get(OPT_IN_TAG) == OPT_IN_VALUE
        return in_scope(tags, OPT_IN, self.settings.environment, plain_tag=self.settings.plain_scope_tag)[0]

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
        """Functions with this environment's memory alarm (the one alarm only onboarding creates), sorted."""
        names: set[str] = set()
        env = self.settings.environment
        own = f"{TARGET_NAMESPACE_PREFIX}{env}/" if env else TARGET_NAMESPACE_PREFIX
        kwargs: dict[str, Any] = {"AlarmNamePrefix": MEMORY_ALARM_PREFIX, "AlarmTypes": ["MetricAlarm"]}
        while True:
            page = self.cloudwatch.describe_alarms(**kwargs)
            for alarm in page.get("MetricAlarms", []):
                ns = alarm.get("Namespace") or ""
                fn = ns[len(own):] if ns.startswith(own) else ""
                if fn and "/" not in fn and alarm.get("AlarmName") == alarm_names(fn, env)[-1]:
                    names.add(fn)
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
                if self._in_scope(self.lambda_client.list_tags(Resource=config["FunctionArn"]).get("Tags", {})):
                    names.append(name)
        return sorted(names)

    def is_opted_in(self, name: str, info: FunctionInfo | None = None) -> bool:
        """``info``: the configuration when the caller has it (in a member account each read may be a listing)."""
        info = info or self.function(name)
        if info is None or not info.arn:
            return False
        return self._in_scope(self.lambda_client.list_tags(Resource=info.arn).get("Tags", {}))

    def describe(self, name: str) -> dict[str, Any]:
        """One onboarded (or opted-in) function: its alarms with state, its filters, and whether all is in sync."""
        info = self.function(name)
        observed = self.observe(name, info)
        alarms = []
        for alarm_name in alarm_names(name, self.settings.environment):
            alarm = observed.alarms.get(alarm_name)
            if alarm is None:
                continue
            comparison = {"GreaterThanThreshold": ">", "GreaterThanOrEqualToThreshold": ">="}.get(
                alarm.get("ComparisonOperator", ""), alarm.get("ComparisonOperator", ""))
            alarms.append({
                "name": alarm_name, "state": alarm.get("StateValue", ""), "managed": alarm_name in observed.managed,
                "condition": f"{alarm.get('MetricName')} {alarm.get('Statistic', '')} {comparison} "
                             f"{alarm.get('Threshold', 0):g} ({alarm.get('Period')} s x {alarm.get('EvaluationPeriods')})",
            })
        if info is None:
            status = "function deleted: run `targets remove` to clean up"
        else:
            changes, _ = self.plan_add(name, tag_function=True)
            status = "in sync" if not changes else f"drift: {len(changes)} change(s) - run `targets add {name}`"
        return {
            "function": name,
            "memorySize": info.memory_size if info else None,
            "tagged": observed.tagged,
            "status": status,
            "alarms": alarms,
            "filters": sorted(observed.filters),
            "logGroup": observed.log_group,
        }

    def listing(self) -> list[dict[str, Any]]:
        """Every onboarded or opted-in function, described (``auto-repair targets list``)."""
        return [self.describe(name) for name in sorted(set(self.onboarded()) | set(self.opted_in()))]

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
                    if error_code(exc) != "ResourceNotFoundException":
                        raise
                    # The group appeared missing only now (deleted meanwhile); Lambda would create it anyway.
                    self._create_log_group(change.spec["logGroupName"])
                    self.logs.put_metric_filter(**change.spec)
            elif change.kind == "filter" and change.action == DELETE:
                assert change.spec is not None
                try:
                    self.logs.delete_metric_filter(logGroupName=change.spec["logGroupName"], filterName=change.name)
                except Exception as exc:
                    if error_code(exc) != "ResourceNotFoundException":
                        raise
            elif change.kind == "function" and change.action == TAG and info is not None:
                assert change.spec is not None
                self.lambda_client.tag_resource(Resource=info.arn, Tags={OPT_IN_TAG: change.spec[OPT_IN_TAG]})
            elif change.kind == "function" and change.action == UNTAG:
                config = self.lambda_client.get_function_configuration(FunctionName=change.name)
                rest = (change.spec or {}).get(OPT_IN_TAG)
                if rest:  # other environments the tag names keep it
                    self.lambda_client.tag_resource(Resource=config["FunctionArn"], Tags={OPT_IN_TAG: rest})
                else:
                    self.lambda_client.untag_resource(Resource=config["FunctionArn"], TagKeys=[OPT_IN_TAG])

    def _create_log_group(self, group: str) -> None:
        try:
            self.logs.create_log_group(logGroupName=group)
        except Exception as exc:
            if error_code(exc) != "ResourceAlreadyExistsException":
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
            kwargs: dict[str, Any] = {"MetricDataQueries": sweep_queries(chunk, self.settings.environment), "StartTime": now - SWEEP_LOOKBACK,
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
        states: dict[str, str] = {}
        # DescribeAlarms takes at most 100 AlarmNames per call (ValidationError beyond): a sweep with more
        # findings than that asks in batches.
        for start in range(0, len(names), DESCRIBE_ALARMS_MAX_NAMES):
            batch = names[start:start + DESCRIBE_ALARMS_MAX_NAMES]
            for alarm in self.cloudwatch.describe_alarms(AlarmNames=batch).get("MetricAlarms", []):
                states[alarm["AlarmName"]] = alarm.get("StateValue", "")
        return states
