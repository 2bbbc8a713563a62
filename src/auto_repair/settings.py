"""Runtime settings of the workflow functions: the one reader of the environment the templates set.

Every module asks :func:`get_settings` (resolved on first use, then cached for the warm environment) instead of
reading ``os.environ``; tests set the environment and call ``get_settings.cache_clear()``. The code defaults equal the
template parameter defaults that feed each variable (``tests/unit/test_settings.py`` compares them).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from aws_lambda_powertools.shared.functions import strtobool

from .errors import AutoRepairError


class SettingsError(AutoRepairError, ValueError):
    """An environment variable the template should have set is missing or malformed."""


def parse_bool(name: str, raw: str | None, default: bool) -> bool:
    """The one boolean parser: Powertools' ``strtobool`` (1/0, true/false, yes/no, on/off, y/n, t/f)."""
    if raw is None or not raw.strip():
        return default
    try:
        return strtobool(raw.strip())
    except ValueError as exc:
        raise SettingsError(f"{name} must be true or false, got {raw!r}") from exc


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from exc


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from exc


# Environment variable -> Settings field. The test that compares code and template defaults reads this table.
ENV_VARS: dict[str, str] = {
    "ENVIRONMENT": "environment",
    "INCIDENTS_TABLE": "incidents_table",
    "AUDIT_TABLE": "audit_table",
    "STATE_TABLE": "state_table",
    "NOTIFICATION_TOPIC_ARN": "topic_arn",
    "KNOWLEDGE_BUCKET": "knowledge_bucket",
    "DEAD_LETTER_QUEUE_URL": "dead_letter_queue_url",
    "MAX_MEMORY_MB": "max_memory_mb",
    "MIN_CONFIDENCE": "min_confidence",
    "APPROVAL_REQUIRED": "approval_required",
    "DRY_RUN": "dry_run",
    "RECORD_TTL_DAYS": "record_ttl_days",
    "AUDIT_RETENTION_DAYS": "audit_retention_days",
    "SYSTEM_FUNCTION_PREFIX": "system_prefix",
    "ANALYSIS_WINDOW_MINUTES": "analysis_window_minutes",
    "BASELINE_WINDOW_MINUTES": "baseline_window_minutes",
    "MIN_INVOCATIONS_FOR_VERDICT": "min_invocations_for_verdict",
    "NOTIFY_IGNORED": "notify_ignored",
    "SCOPE_MODE": "scope_mode",
    "PLAIN_SCOPE_TAG": "plain_scope_tag",
    "REPAIR_COOLDOWN_MINUTES": "repair_cooldown_minutes",
    "MAX_REPAIRS_PER_HOUR": "max_repairs_per_hour",
    "MAX_REPAIR_STEPS": "max_repair_steps",
    "PAUSED_PARAMETER": "paused_parameter",
    "VERIFICATION_WAIT_SECONDS": "verification_wait_seconds",
    "APPROVAL_TIMEOUT_SECONDS": "approval_timeout_seconds",
    "ROLLBACK_ON_FAILURE": "rollback_on_failure",
    "ALLOW_ALIAS_UPDATE": "allow_alias_update",
    "BEDROCK_MODEL_ID": "bedrock_model_id",
    "BEDROCK_GUARDRAIL_ID": "bedrock_guardrail_id",
    "BEDROCK_GUARDRAIL_VERSION": "bedrock_guardrail_version",
    "KNOWLEDGE_BASE_ID": "knowledge_base_id",
    "USE_BEDROCK": "use_bedrock",
    "PROBE_CPU_STARVATION": "probe_cpu_starvation",
    "AWS_LAMBDA_FUNCTION_NAME": "function_name",
    "POWERTOOLS_SERVICE_NAME": "service_name",
    "POWERTOOLS_METRICS_NAMESPACE": "metrics_namespace",
    # Settle (auto_repair.settle): when the targets function's sweep may propose a trim.
    "TRIM_MIN_HEALTHY_SECONDS": "trim_min_healthy_seconds",
    "TRIM_MIN_REPORTS": "trim_min_reports",
    "TRIM_HEADROOM_PERCENT": "trim_headroom_percent",
    "RIGHT_SIZE_GENERALLY": "right_size_generally",
}


@dataclass(frozen=True)
class Settings:
    environment: str = "dev"
    incidents_table: str = ""
    audit_table: str = ""
    state_table: str = ""
    topic_arn: str = ""
    knowledge_bucket: str = ""
    dead_letter_queue_url: str = ""
    max_memory_mb: int = 3008
    min_confidence: float = 0.7
    approval_required: bool = False
    dry_run: bool = False
    record_ttl_days: int = 90
    audit_retention_days: int = 0  # 0 = audit entries never expire (always so in staging and prod)
    system_prefix: str = "lambda-auto-repair-"
    analysis_window_minutes: int = 15
    baseline_window_minutes: int = 60
    min_invocations_for_verdict: int = 3
    notify_ignored: bool = False
    # Guards (auto_repair.guards)
    scope_mode: str = "opt-in"
    plain_scope_tag: bool = True  # auto-repair=enabled counts in this environment (guards.in_scope)
    repair_cooldown_minutes: int = 60
    max_repairs_per_hour: int = 10
    # Step-up inside one incident (auto_repair.controller): memory changes one execution may make.
    max_repair_steps: int = 3
    paused_parameter: str = ""  # empty: /lambda-auto-repair/<environment>/paused
    verification_wait_seconds: int = 600
    approval_timeout_seconds: int = 3600
    # Rollback and versions (auto_repair.repair)
    rollback_on_failure: bool = True
    allow_alias_update: bool = False
    # Diagnosis (auto_repair.diagnosis.DiagnosisConfig.from_settings)
    bedrock_model_id: str = ""
    bedrock_guardrail_id: str = ""
    bedrock_guardrail_version: str = "DRAFT"
    knowledge_base_id: str = ""
    use_bedrock: bool = False
    # All invocations timing out at low memory use: one step toward one vCPU (policy.decide) instead of a human.
    probe_cpu_starvation: bool = False
    # The Lambda runtime's and Powertools' own variables.
    function_name: str = "lambda-auto-repair"
    service_name: str = "lambda-auto-repair"
    metrics_namespace: str = "LambdaAutoRepair"
    # Settle (auto_repair.settle)
    trim_min_healthy_seconds: int = 86400
    trim_min_reports: int = 100
    trim_headroom_percent: int = 25
    right_size_generally: bool = False

    def __post_init__(self) -> None:
        if not self.paused_parameter:  # frozen: the one derived default is set once, here
            object.__setattr__(self, "paused_parameter", f"/lambda-auto-repair/{self.environment}/paused")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``env`` (default: the process environment); unset or empty variables keep the default."""
        env = os.environ if env is None else env
        defaults = {f.name: f.default for f in fields(cls)}
        values: dict[str, object] = {}
        for name, field in ENV_VARS.items():
            default = defaults[field]
            if isinstance(default, bool):
                values[field] = parse_bool(name, env.get(name), default)
            elif isinstance(default, int):
                values[field] = _int(env, name, default)
            elif isinstance(default, float):
                values[field] = _float(env, name, default)
            elif env.get(name):
                values[field] = env[name]
        return cls(**values)  # type: ignore[arg-type]


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read on first use (never at import) and kept for the warm environment."""
    return Settings.from_env()
