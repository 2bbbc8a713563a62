"""The error of target onboarding."""

from __future__ import annotations


class TargetsError(ValueError):
    """Onboarding cannot proceed: a bad function name, a system function, or unusable settings."""
