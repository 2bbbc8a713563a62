"""DetermineAction's policy: what the workflow may do with a diagnosis."""

from __future__ import annotations

import pytest

from auto_repair.outcomes import PolicyAction
from auto_repair.policy import decide


def diag(is_memory=True, confidence=0.9, size=512, cause="memory_exhaustion"):
    return {
        "isMemoryIssue": is_memory,
        "confidence": confidence,
        "recommendedMemorySize": size,
        "cause": cause,
    }


@pytest.mark.parametrize(
    ("diagnosis", "kwargs", "action", "target"),
    [
        (diag(), {}, PolicyAction.REPAIR, 512),
        (diag(is_memory=False, cause="downstream_timeout"), {}, PolicyAction.NO_ACTION, 128),
        (diag(confidence=0.5), {}, PolicyAction.HUMAN_REVIEW, 128),
        (diag(size=20000), {}, PolicyAction.REPAIR, 1024),  # capped at MaxMemory
        (diag(size=64), {}, PolicyAction.HUMAN_REVIEW, 128),  # never lower
        (diag(), {"current_memory": 1024}, PolicyAction.HUMAN_REVIEW, 1024),  # already at the cap
        (diag(), {"dry_run": True}, PolicyAction.DRY_RUN, 512),
        (diag(size=None) | {"recommendedMemoryIncrease": 256}, {}, PolicyAction.REPAIR, 384),
    ],
)
def test_decisions(diagnosis, kwargs, action, target):
    # GIVEN a diagnosis and the environment's policy WHEN deciding THEN the action and memory are bounded
    args = {
        "current_memory": 128,
        "max_memory": 1024,
        "min_confidence": 0.7,
        "dry_run": False,
        "approval_required": False,
    } | kwargs
    decision = decide(diagnosis, **args)
    assert decision["action"] == action
    assert decision["targetMemory"] == target
    assert decision["reason"]


def test_approval_flag_only_on_real_repairs():
    common = {"current_memory": 128, "max_memory": 1024, "min_confidence": 0.7, "approval_required": True}
    assert decide(diag(), dry_run=False, **common)["approvalRequired"] is True
    assert decide(diag(), dry_run=True, **common)["approvalRequired"] is False
    assert decide(diag(is_memory=False), dry_run=False, **common)["approvalRequired"] is False
