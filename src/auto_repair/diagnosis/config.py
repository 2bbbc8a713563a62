"""The engine's tunables (memory bounds, headroom, the optional Bedrock review)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from auto_repair.sizing import LAMBDA_MAX_MB, LAMBDA_MIN_MB

from .exceptions import DiagnosisError

if TYPE_CHECKING:
    from auto_repair.settings import Settings


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
    def from_settings(cls, settings: Settings) -> DiagnosisConfig:
        """The diagnose function's configuration: MaxMemory and the Bedrock ids from the environment's settings."""
        return cls(
            max_memory=settings.max_memory_mb,
            bedrock_model_id=settings.bedrock_model_id or None,
            guardrail_id=settings.bedrock_guardrail_id or None,
            guardrail_version=settings.bedrock_guardrail_version,
            knowledge_base_id=settings.knowledge_base_id or None,
            use_bedrock=settings.use_bedrock,
        )
