"""The engine's tunables (memory bounds, headroom, the optional Bedrock review)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from auto_repair.sizing import LAMBDA_MAX_MB, LAMBDA_MIN_MB

from .exceptions import DiagnosisError


def _env_bool(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


@dataclass
class DiagnosisConfig:
    max_memory: int = LAMBDA_MAX_MB
    min_memory_step: int = 64
    headroom: float = 0.25
    oom_headroom: float = 0.2
    bedrock_model_id: str | None = None
    guardrail_id: str | None = None
    guardrail_version: str = "DRAFT"
    knowledge_base_id: str | None = None
    use_bedrock: bool = False
    max_prompt_chars: int = 12000
    max_tokens: int = 1024
    knowledge_k: int = 3

    def __post_init__(self) -> None:
        if not LAMBDA_MIN_MB <= int(self.max_memory) <= LAMBDA_MAX_MB:
            raise DiagnosisError(f"max_memory must be between {LAMBDA_MIN_MB} and {LAMBDA_MAX_MB} MB")
        if self.min_memory_step <= 0 or not 0 <= self.headroom <= 2 or not 0 <= self.oom_headroom <= 2:
            raise DiagnosisError("min_memory_step must be positive and headroom within [0, 2]")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DiagnosisConfig:
        env = os.environ if env is None else env
        kwargs: dict[str, Any] = {}
        if env.get("MAX_MEMORY_MB"):
            try:
                kwargs["max_memory"] = int(env["MAX_MEMORY_MB"])
            except ValueError as exc:
                raise DiagnosisError(f"MAX_MEMORY_MB must be an integer, got {env['MAX_MEMORY_MB']!r}") from exc
        kwargs["bedrock_model_id"] = env.get("BEDROCK_MODEL_ID") or None
        kwargs["guardrail_id"] = env.get("BEDROCK_GUARDRAIL_ID") or None
        if env.get("BEDROCK_GUARDRAIL_VERSION"):
            kwargs["guardrail_version"] = env["BEDROCK_GUARDRAIL_VERSION"]
        kwargs["knowledge_base_id"] = env.get("KNOWLEDGE_BASE_ID") or None
        kwargs["use_bedrock"] = _env_bool(env.get("USE_BEDROCK"))
        return cls(**kwargs)
