"""The causes the engine can name, the action each one calls for, and its fixed thresholds."""

from __future__ import annotations

CAUSES = (
    "memory_exhaustion",
    "memory_pressure",
    "cpu_starvation",
    "downstream_timeout",
    "code_error",
    "init_error",
    "throttling",
    "permissions",
    "insufficient_data",
)
MEMORY_CAUSES = frozenset(CAUSES[:3])

ACTIONS = {
    "memory_exhaustion": "INCREASE_MEMORY",
    "memory_pressure": "INCREASE_MEMORY",
    "cpu_starvation": "INCREASE_MEMORY",
    "downstream_timeout": "INVESTIGATE_DOWNSTREAM",
    "code_error": "FIX_CODE",
    "init_error": "FIX_DEPLOYMENT",
    "throttling": "REVIEW_CONCURRENCY",
    "permissions": "FIX_PERMISSIONS",
    "insufficient_data": "COLLECT_MORE_DATA",
}
AT_MAX_ACTION = "ESCALATE_AT_MAX_MEMORY"

# Memory utilisation above which the environment is under pressure (GC thrash, swapping of caches).
PRESSURE_UTILISATION = 0.9
# Confidence a model review may leave at most when it disagrees or misbehaves: below the auto-repair bar.
REVIEW_CONFIDENCE_CAP = 0.6
TOOL_NAME = "submit_diagnosis_review"
