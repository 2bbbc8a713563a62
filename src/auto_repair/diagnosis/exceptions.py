"""The error of the diagnosis engine."""

from __future__ import annotations

from ..errors import AutoRepairError


class DiagnosisError(AutoRepairError, ValueError):
    """The request cannot be diagnosed (missing functionName, bad currentMemorySize ...)."""
