"""The environment's target-alarm thresholds and the names of what the main stack creates."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .constants import SETTINGS_PARAMETER
from .exceptions import TargetsError

# The only environment whose alarms may use sub-minute periods (10 s, 30 s): the local cloud.
LOCAL_ENVIRONMENT = "local"


@dataclass(frozen=True)
class TargetSettings:
    """The environment's thresholds for target alarms (the functions stack's TargetSettings parameter)."""

    duration_threshold: float = 30000.0
    error_threshold: float = 1.0
    timeout_threshold: float = 1.0
    memory_utilization_threshold: float = 80.0
    period: int = 300
    evaluation_periods: int = 2
    # auto-repair=enabled counts in this environment (the main stack's PlainScopeTag, guards.in_scope)
    plain_scope_tag: bool = True
    # Set by for_environment: every name onboarding creates carries it, so environments sharing an account keep
    # apart (empty: the names of before environment scoping, for pure tests).
    environment: str = ""

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

    def for_environment(self, environment: str) -> TargetSettings:
        """These settings, if the environment may use them: AWS/Lambda metrics are one-minute metrics, so a 10 s or
        30 s alarm period only behaves as intended in the local cloud (which speeds its metrics up)."""
        if environment != LOCAL_ENVIRONMENT and self.period % 60:
            raise TargetsError(
                f"AlarmPeriodSeconds {self.period} is for the local environment only; {environment} needs a multiple"
                " of 60 (AWS/Lambda metrics are one-minute metrics)"
            )
        return dataclasses.replace(self, environment=environment)

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
        if "PlainScopeTag" in data:
            if not isinstance(data["PlainScopeTag"], bool):
                raise TargetsError(f"PlainScopeTag must be true or false, got {data['PlainScopeTag']!r}")
            values["plain_scope_tag"] = data["PlainScopeTag"]
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
