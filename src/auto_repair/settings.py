"""Runtime settings of the workflow functions: the one reader of the environment the templates set.

Every module asks :func:`get_settings` (resolved on first use, then cached for the warm environment) instead of
reading ``os.environ``; tests set the environment and call ``get_settings.cache_clear()``. The code defaults equal the
template parameter defaults that feed each variable (``tests/unit/test_settings.py`` compares them).
"""

from __future__ import annotations

import functools
import os
import re
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
    # Organisation mode (issue 15; auto_repair.accounts): empty ORGANIZATION_ID = single-account mode.
    "ORGANIZATION_ID": "organization_id",
    "MEMBER_ACCOUNTS": "member_accounts",
    "MEMBER_REGIONS": "member_regions",
    "MEMBER_ROLE_NAME": "member_role_name",
    "MEMBER_MAX_REPAIRS_PER_HOUR": "member_max_repairs_per_hour",
}

# The functions template's parameter patterns, repeated so that a hand-set environment fails here, in words.
_ORGANIZATION_ID = re.compile(r"o-[a-z0-9]{10,32}\Z")
_ACCOUNT_ID = re.compile(r"\d{12}\Z")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}\Z")
# IAM role names: https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html (RoleName).
_ROLE_NAME = re.compile(r"[\w+=,.@-]{1,64}\Z", re.ASCII)
# Settings fields that hold a comma list: field -> (pattern of one element, what an element is).
_LISTS: dict[str, tuple[re.Pattern[str], str]] = {
    "member_accounts": (_ACCOUNT_ID, "a 12-digit account id"),
    "member_regions": (_REGION, "a region name like eu-west-1"),
}


def _list(env: Mapping[str, str], name: str, field: str) -> tuple[str, ...]:
    pattern, what = _LISTS[field]
    items = tuple(item.strip() for item in (env.get(name) or "").split(",") if item.strip())
    bad = [item for item in items if not pattern.match(item)]
    if bad:
        raise SettingsError(f"{name} must be a comma list of {what}s, got {', '.join(map(repr, bad))}")
    return items


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
    # Organisation mode (auto_repair.accounts)
    organization_id: str = ""
    member_accounts: tuple[str, ...] = ()  # empty: any account ACTIVE in the organisation
    member_regions: tuple[str, ...] = ()  # empty: any region
    member_role_name: str = ""  # empty: lambda-auto-repair-member-<environment>
    member_max_repairs_per_hour: int = 0  # per member account and hour; 0: only the global MAX_REPAIRS_PER_HOUR

    def __post_init__(self) -> None:
        if not self.paused_parameter:  # frozen: the derived defaults are set once, here
            object.__setattr__(self, "paused_parameter", f"/lambda-auto-repair/{self.environment}/paused")
        if not self.member_role_name:
            object.__setattr__(self, "member_role_name", f"lambda-auto-repair-member-{self.environment}")
        if self.organization_id and not _ORGANIZATION_ID.match(self.organization_id):
            raise SettingsError(f"ORGANIZATION_ID must look like o-abcdefghij (o- and 10-32 lowercase letters or "
                                f"digits), got {self.organization_id!r}")
        if not _ROLE_NAME.match(self.member_role_name):
            raise SettingsError(f"MEMBER_ROLE_NAME must be an IAM role name (1-64 of letters, digits and +=,.@_-), "
                                f"got {self.member_role_name!r}")
        if not self.organization_id and (self.member_accounts or self.member_regions):
            # Members without an organisation would be silently ignored: say so instead.
            raise SettingsError("MEMBER_ACCOUNTS and MEMBER_REGIONS need ORGANIZATION_ID (organisation mode); "
                                "leave them empty in single-account mode")
        if self.member_max_repairs_per_hour < 0:
            raise SettingsError(f"MEMBER_MAX_REPAIRS_PER_HOUR must be 0 or more, got {self.member_max_repairs_per_hour}")

    @property
    def organization_mode(self) -> bool:
        """Organisation mode: the workflow repairs functions of member accounts (empty ORGANIZATION_ID: it does not)."""
        return bool(self.organization_id)

    @property
    def targets_function(self) -> str:
        """The targets function of this environment (onboarding; ExecuteRepair asks it to re-sync, see
        ``auto_repair.handlers.targets``)."""
        return f"lambda-auto-repair-targets-{self.environment}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``env`` (default: the process environment); unset or empty variables keep the default."""
        env = os.environ if env is None else env
        defaults = {f.name: f.default for f in fields(cls)}
        values: dict[str, object] = {}
        for name, field in ENV_VARS.items():
            default = defaults[field]
            if field in _LISTS:
                values[field] = _list(env, name, field)
            elif isinstance(default, bool):
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
