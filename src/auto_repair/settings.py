"""Runtime settings of the workflow functions, read once from the environment the template sets."""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import AutoRepairError


class SettingsError(AutoRepairError, ValueError):
    """An environment variable the template should have set is missing or malformed."""


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from exc


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from exc


@dataclass(frozen=True)
class Settings:
    environment: str = "dev"
    incidents_table: str = ""
    audit_table: str = ""
    state_table: str = ""
    topic_arn: str = ""
    max_memory_mb: int = 10240
    min_confidence: float = 0.7
    approval_required: bool = False
    dry_run: bool = False
    record_ttl_days: int = 90
    system_prefix: str = "lambda-auto-repair-"
    analysis_window_minutes: int = 15
    baseline_window_minutes: int = 60
    min_invocations_for_verdict: int = 3
    notify_ignored: bool = False
    # Guards (auto_repair.guards)
    scope_mode: str = "opt-in"
    repair_cooldown_minutes: int = 60
    max_repairs_per_hour: int = 10
    paused_parameter: str = ""
    verification_wait_seconds: int = 600
    approval_timeout_seconds: int = 3600
    # Rollback and versions (auto_repair.repair)
    rollback_on_failure: bool = True
    allow_alias_update: bool = False

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            environment=env.get("ENVIRONMENT", "dev"),
            incidents_table=env.get("INCIDENTS_TABLE", ""),
            audit_table=env.get("AUDIT_TABLE", ""),
            state_table=env.get("STATE_TABLE", ""),
            topic_arn=env.get("NOTIFICATION_TOPIC_ARN", ""),
            max_memory_mb=_int("MAX_MEMORY_MB", 10240),
            min_confidence=_float("MIN_CONFIDENCE", 0.7),
            approval_required=_bool(env.get("APPROVAL_REQUIRED")),
            dry_run=_bool(env.get("DRY_RUN")),
            record_ttl_days=_int("RECORD_TTL_DAYS", 90),
            system_prefix=env.get("SYSTEM_FUNCTION_PREFIX", "lambda-auto-repair-"),
            analysis_window_minutes=_int("ANALYSIS_WINDOW_MINUTES", 15),
            baseline_window_minutes=_int("BASELINE_WINDOW_MINUTES", 60),
            min_invocations_for_verdict=_int("MIN_INVOCATIONS_FOR_VERDICT", 3),
            notify_ignored=_bool(env.get("NOTIFY_IGNORED")),
            scope_mode=env.get("SCOPE_MODE", "opt-in"),
            repair_cooldown_minutes=_int("REPAIR_COOLDOWN_MINUTES", 60),
            max_repairs_per_hour=_int("MAX_REPAIRS_PER_HOUR", 10),
            paused_parameter=env.get("PAUSED_PARAMETER") or f"/lambda-auto-repair/{env.get('ENVIRONMENT', 'dev')}/paused",
            verification_wait_seconds=_int("VERIFICATION_WAIT_SECONDS", 600),
            approval_timeout_seconds=_int("APPROVAL_TIMEOUT_SECONDS", 3600),
            rollback_on_failure=_bool(env.get("ROLLBACK_ON_FAILURE"), True),
            allow_alias_update=_bool(env.get("ALLOW_ALIAS_UPDATE")),
        )
