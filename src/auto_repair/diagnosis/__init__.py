"""The diagnosis engine: is memory the cause, and how much memory fixes it in one step?

Rules decide; Bedrock (optional) reviews. The rules read the evidence (``auto_repair.evidence``) and produce a
cause, a confidence and a size (``auto_repair.sizing``). A Bedrock Converse call with a forced tool-use answer may
then *lower* the confidence (sending the case to a human), add to the reasoning and the knowledge references, or
move the memory size *within* the bounds the evidence allows. It can never turn "not memory" into a repair, and
every failure of the call falls back to the rules, with ``diagnosisMethod`` recording what ran and why.

Pure core: no AWS calls at import; clients are passed in by the handler or the CLI.
"""

from __future__ import annotations

from .bedrock import (
    ReviewRejectedError,
    build_prompt,
    parse_review,
)
from .config import (
    DiagnosisConfig,
)

# One module per section (constants, config, validation, rules, evidence points, knowledge query, bedrock,
# engine); the names are re-exported here so that ``from auto_repair.diagnosis import X`` keeps working.
from .constants import (
    ACTIONS,
    AT_MAX_ACTION,
    CAUSES,
    MEMORY_CAUSES,
    PRESSURE_UTILISATION,
    REVIEW_CONFIDENCE_CAP,
    TOOL_NAME,
)
from .engine import (
    diagnose,
)
from .exceptions import (
    DiagnosisError,
)
from .rules import (
    Verdict,
)
from .validation import (
    validate_request,
)

__all__ = [
    "ACTIONS",
    "AT_MAX_ACTION",
    "CAUSES",
    "DiagnosisConfig",
    "DiagnosisError",
    "MEMORY_CAUSES",
    "PRESSURE_UTILISATION",
    "REVIEW_CONFIDENCE_CAP",
    "ReviewRejectedError",
    "TOOL_NAME",
    "Verdict",
    "build_prompt",
    "diagnose",
    "parse_review",
    "validate_request",
]
