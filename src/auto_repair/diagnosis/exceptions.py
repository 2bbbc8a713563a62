"""The error of the diagnosis engine."""

from __future__ import annotations


class DiagnosisError(ValueError):
    """The request cannot be diagnosed (missing functionName, bad currentMemorySize ...)."""
