"""Request validation: what a diagnosis request must contain (bad log content is never an error)."""

from __future__ import annotations

from typing import Any

from auto_repair.sizing import LAMBDA_MAX_MB, LAMBDA_MIN_MB

from .exceptions import DiagnosisError


def validate_request(request: Any) -> None:
    if not isinstance(request, dict):
        raise DiagnosisError("diagnosis request must be a JSON object")
    name = request.get("functionName")
    if not isinstance(name, str) or not name.strip():
        raise DiagnosisError("diagnosis request needs a non-empty string functionName")
    memory = request.get("currentMemorySize")
    if isinstance(memory, bool) or not isinstance(memory, int | float) or memory != int(memory):
        raise DiagnosisError("diagnosis request needs an integer currentMemorySize (MB)")
    if not LAMBDA_MIN_MB <= int(memory) <= LAMBDA_MAX_MB:
        raise DiagnosisError(f"currentMemorySize must be between {LAMBDA_MIN_MB} and {LAMBDA_MAX_MB} MB, got {memory}")
    for key in ("logs", "metrics"):
        if key in request and request[key] is not None and not isinstance(request[key], list):
            raise DiagnosisError(f"{key} must be a list when present")
    for key in ("alarmDetails", "metricSeries", "baselineSeries"):
        if key in request and request[key] is not None and not isinstance(request[key], dict):
            raise DiagnosisError(f"{key} must be an object when present")
