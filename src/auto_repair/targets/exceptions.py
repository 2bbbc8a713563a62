"""The error of target onboarding."""

from __future__ import annotations

from ..errors import AutoRepairError


class TargetsError(AutoRepairError, ValueError):
    """Onboarding cannot proceed: a bad function name, a system function, or unusable settings."""
