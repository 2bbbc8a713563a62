"""Request validation: what makes a diagnosis request undiagnosable, and what the engine can do without.

The design's request is ``functionName``, ``alarmDetails``, ``metrics`` and ``logs``; ``currentMemorySize``,
``runtime``, ``timeoutSeconds`` and the series are extras the collector adds. Only a request that names no
function cannot be diagnosed; a wrong or missing extra is noted (``inputProblems``) and read from the logs
instead where they allow (``auto_repair.evidence``). Bad log content is never a problem worth naming.
"""

from __future__ import annotations

from typing import Any

from auto_repair.evidence import _num, memory_size_mb
from auto_repair.sizing import LAMBDA_MAX_MB, LAMBDA_MIN_MB

from .exceptions import DiagnosisError

_LISTS = ("logs", "metrics")
_OBJECTS = ("alarmDetails", "metricSeries", "baselineSeries")
_STRINGS = ("runtime", "architecture")


def _shown(value: Any) -> str:
    # A problem names the value it ignored, never all of it (it may be a megabyte of junk).
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def request_problems(request: Any) -> tuple[str | None, list[str]]:
    """(why the request cannot be diagnosed at all, else None; the fields that were ignored and why)."""
    if not isinstance(request, dict):
        return f"diagnosis request must be a JSON object, got {type(request).__name__}", []
    name = request.get("functionName")
    if not isinstance(name, str) or not name.strip():
        return f"diagnosis request needs a non-empty string functionName, got {_shown(name)}", []
    problems: list[str] = []
    memory = request.get("currentMemorySize")
    if memory is not None and memory_size_mb(memory) is None:
        problems.append(f"currentMemorySize {_shown(memory)} is not a Lambda memory size (a whole number of MB "
                        f"from {LAMBDA_MIN_MB} to {LAMBDA_MAX_MB})")
    timeout = request.get("timeoutSeconds")
    if timeout is not None and ((_num(timeout) or 0) <= 0 or isinstance(timeout, str)):
        problems.append(f"timeoutSeconds {_shown(timeout)} is not a positive number")
    for key in _LISTS:
        if request.get(key) is not None and not isinstance(request[key], list):
            problems.append(f"{key} must be a list, got {type(request[key]).__name__}")
    for key in _OBJECTS:
        if request.get(key) is not None and not isinstance(request[key], dict):
            problems.append(f"{key} must be an object, got {type(request[key]).__name__}")
    for key in _STRINGS:
        if request.get(key) is not None and not isinstance(request[key], str):
            problems.append(f"{key} must be a string, got {type(request[key]).__name__}")
    logs = request.get("logs")
    if isinstance(logs, list):
        textless = sum(1 for entry in logs if not isinstance(entry.get("message") if isinstance(entry, dict)
                                                             else entry, str))
        if textless:
            problems.append(f"{textless} of {len(logs)} log entries have no text message")
    return None, problems


def validate_request(request: Any) -> None:
    """Raise DiagnosisError when the request cannot be diagnosed at all (``diagnose`` itself returns a result)."""
    fatal, _ = request_problems(request)
    if fatal:
        raise DiagnosisError(fatal)
