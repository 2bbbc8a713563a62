"""DetermineAction's policy: what the workflow may do with a diagnosis."""

from __future__ import annotations

import pytest

from auto_repair.outcomes import PolicyAction
from auto_repair.policy import alias_update_allowed, decide, from_tags
from auto_repair.settings import Settings


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


@pytest.mark.parametrize(
    ("diagnosis", "probe", "action", "target"),
    [
        # an undiagnosable request: a human, never silence
        ({"isMemoryIssue": False, "cause": "insufficient_data", "error": "no functionName"}, True,
         PolicyAction.HUMAN_REVIEW, 128),
        # the ambiguity: probe off by default -> human review; on -> one step toward one vCPU, capped
        ({"isMemoryIssue": False, "cause": "downstream_timeout", "confidence": 0.5,
          "alternativeCause": {"cause": "cpu_starvation", "probeMemorySize": 1769}}, False, PolicyAction.HUMAN_REVIEW,
         128),
        ({"isMemoryIssue": False, "cause": "downstream_timeout", "confidence": 0.5,
          "alternativeCause": {"cause": "cpu_starvation", "probeMemorySize": 1769}}, True, PolicyAction.REPAIR, 1024),
        # a probe size that is not a size: no probe
        ({"isMemoryIssue": False, "cause": "downstream_timeout",
          "alternativeCause": {"cause": "cpu_starvation", "probeMemorySize": "1769"}}, True,
         PolicyAction.HUMAN_REVIEW, 128),
    ],
)
def test_undiagnosable_and_ambiguous_diagnoses(diagnosis, probe, action, target):
    decision = decide(diagnosis, current_memory=128, max_memory=1024, min_confidence=0.7, dry_run=False,
                      approval_required=False, probe_cpu_starvation=probe)
    assert (decision["action"], decision["targetMemory"]) == (action, target)
    assert decision.get("probe") == ("cpu_starvation" if action == PolicyAction.REPAIR else None)


# ------------------------------------------------------------------------------------------- tag policy
ENV = Settings(environment="prod", max_memory_mb=2048, min_confidence=0.7, approval_required=True, dry_run=False)


LOOSE = "ignored: loosens"
BAD = "ignored: malformed"


@pytest.mark.parametrize(
    ("tags", "changed", "overrides", "ignored"),
    [
        ({}, {}, {}, {}),
        ({"auto-repair:dry-run": "TRUE"}, {"dryRun": True}, {"auto-repair:dry-run": "true"}, {}),
        # before: approval=none removed production's approval (the first finding)
        ({"auto-repair:approval": "none"}, {}, {}, {"auto-repair:approval": LOOSE}),
        ({"auto-repair:min-confidence": "0.9"}, {"minConfidence": 0.9}, {"auto-repair:min-confidence": "0.9"}, {}),
        ({"auto-repair:min-confidence": "7"}, {"minConfidence": 1.0}, {"auto-repair:min-confidence": "7"}, {}),
        ({"auto-repair:min-confidence": "0"}, {}, {}, {"auto-repair:min-confidence": LOOSE}),
        ({"auto-repair:max-memory": "1024"}, {"maxMemory": 1024}, {"auto-repair:max-memory": "1024"}, {}),
        # never widened past the environment's MaxMemory (before: recorded as an override, silently capped)
        ({"auto-repair:max-memory": "8192"}, {}, {}, {"auto-repair:max-memory": LOOSE}),
        # malformed: not applied, and named (before: silently dropped); unknown and foreign tags: not ours
        ({"auto-repair:dry-run": "maybe", "auto-repair:min-confidence": "high", "auto-repair:max-memory": "-1",
          "auto-repair:colour": "blue", "team": "orders"}, {}, {},
         {"auto-repair:dry-run": BAD, "auto-repair:min-confidence": BAD, "auto-repair:max-memory": BAD}),
    ],
)
def test_policy_from_tags(tags: dict[str, str], changed: dict, overrides: dict, ignored: dict) -> None:
    # GIVEN the environment's settings and a function's tags / WHEN the policy is read / THEN tags only tighten it
    policy = from_tags(ENV, tags)
    expected = {"environment": "prod", "approvalRequired": True, "dryRun": False, "maxMemory": 2048,
                "minConfidence": 0.7, **changed, "overrides": overrides}
    assert {k: v for k, v in policy.items() if k != "ignoredTags"} == expected
    assert set(policy["ignoredTags"]) == set(ignored)
    for key, why in ignored.items():
        assert why in policy["ignoredTags"][key] and repr(tags[key]) in policy["ignoredTags"][key]


@pytest.mark.parametrize(
    ("allowed", "tags", "expected"),
    [
        (True, {}, True),
        (True, {"auto-repair:alias-update": " Deny "}, False),
        (True, {"auto-repair:alias-update": "no"}, False),
        (True, {"auto-repair:alias-update": "false"}, False),
        (True, {"auto-repair:alias-update": "true"}, True),
        (False, {"auto-repair:alias-update": "true"}, False),  # a tag never grants what the stack withholds
    ],
)
def test_alias_update_allowed(allowed: bool, tags: dict[str, str], expected: bool) -> None:
    assert alias_update_allowed(allowed, tags) is expected
