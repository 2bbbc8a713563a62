"""Notifications: the design's format, a subject readable at a glance, attributes for filtering."""

from __future__ import annotations

import pytest

from auto_repair import notification as n
from auto_repair.outcomes import Notice


def context(**extra):
    base = {
        "alarm": {
            "functionName": "orders",
            "alarmName": "orders-errors",
            "stateReason": "Threshold Crossed",
            "stateChangeTime": "2026-11-22T10:00:00Z",
            "executionId": "exec-1",
        },
        "diagnosisResult": {
            "cause": "memory_exhaustion",
            "confidence": 0.92,
            "reasoning": "OOM in 6 of 10",
            "decision": {"action": "REPAIR", "currentMemory": 128, "targetMemory": 512, "reason": "raise"},
        },
        "repair": {
            "status": "SUCCEEDED",
            "originalMemory": 128,
            "newMemory": 512,
            "timestamp": "2026-11-22T10:02Z",
        },
        "verification": {
            "status": "IMPROVED",
            "metricsComparison": {"before": 60.0, "after": 0.0, "improvement": "+100% better"},
        },
    }
    base.update(extra)
    return base


def test_repaired_message_has_every_design_field():
    built = n.build(context(), Notice.REPAIRED, "prod")
    msg = built["message"]
    assert set(msg) >= {"type", "functionName", "issue", "diagnosis", "repair", "verification"}
    assert set(msg["issue"]) >= {"description", "alarmName", "detectedAt"}
    assert set(msg["diagnosis"]) >= {"result", "confidence", "reasoning"}
    assert set(msg["repair"]) >= {"action", "originalMemory", "newMemory", "executedAt"}
    assert set(msg["verification"]["metricsComparison"]) >= {"before", "after", "improvement"}
    assert msg["repair"] == {
        "action": "INCREASE_MEMORY",
        "originalMemory": 128,
        "newMemory": 512,
        "executedAt": "2026-11-22T10:02Z",
    }
    assert built["subject"] == "[prod] orders: memory 128->512 MB, recovered"
    assert built["attributes"] == {"environment": "prod", "functionName": "orders", "outcome": "REPAIRED"}


@pytest.mark.parametrize("outcome", sorted(n._SUBJECT_TAIL))
def test_every_outcome_has_a_valid_sns_subject(outcome):
    subject = n.build(context(), outcome, "staging")["subject"]
    assert subject.startswith("[staging] orders:")
    assert len(subject) < 100 and all(32 <= ord(c) < 127 for c in subject)


def test_no_action_report_says_nothing_changed():
    ctx = context(repair={}, verification={})
    ctx["diagnosisResult"]["decision"] = {
        "action": "NO_ACTION",
        "currentMemory": 128,
        "targetMemory": 128,
        "reason": "diagnosis: downstream_timeout; memory is not the cause",
    }
    msg = n.build(ctx, Notice.NO_ACTION, "dev")["message"]
    assert msg["repair"]["action"] == "NONE" and msg["repair"]["newMemory"] == 128
    assert "No change" in msg["summary"]


def test_long_function_name_and_unicode_keep_subject_valid():
    ctx = context()
    ctx["alarm"]["functionName"] = "f" * 140 + "é"
    subject = n.build(ctx, Notice.NOT_IMPROVED, "prod")["subject"]
    assert len(subject) < 100


# -------------------------------------------------------------------- the outcome of a run, and its status
@pytest.mark.parametrize(
    ("repair", "verification", "expected"),
    [
        ({"status": "DRY_RUN"}, {}, Notice.DRY_RUN),
        ({"status": "SKIPPED"}, {}, Notice.SKIPPED),
        ({"status": "PAUSED"}, {}, Notice.PAUSED),
        ({"status": "BUDGET_EXHAUSTED"}, {}, Notice.BUDGET_EXHAUSTED),
        ({"status": "SUCCEEDED"}, {"status": "IMPROVED"}, Notice.REPAIRED),
        ({"status": "SUCCEEDED"}, {"status": "NOT_IMPROVED"}, Notice.NOT_IMPROVED),
        ({"status": "SUCCEEDED"}, {"status": "INSUFFICIENT_DATA"}, Notice.INCONCLUSIVE),
        ({"status": "SUCCEEDED"}, {}, Notice.INCONCLUSIVE),
    ],
)
def test_result_outcome(repair: dict, verification: dict, expected: str) -> None:
    # GIVEN a run that reached NotifyResult / WHEN its notice is worked out / THEN repair first, then the verdict
    assert n.requested_outcome("RESULT", {"repair": repair, "verification": verification},
                               notify_ignored=False) == (expected, True)


@pytest.mark.parametrize(
    ("alarm", "notify_ignored", "expected"),
    [
        ({"outcome": "INVALID"}, False, (Notice.INVALID_EVENT, True)),
        ({"outcome": "DUPLICATE"}, True, (Notice.DUPLICATE, False)),
        ({"outcome": "LOCKED"}, False, (Notice.LOCKED, True)),
        ({"outcome": "COOLDOWN"}, False, (Notice.COOLDOWN, True)),
        ({"outcome": "OUT_OF_SCOPE"}, False, (Notice.OUT_OF_SCOPE, False)),
        ({"outcome": "OUT_OF_SCOPE"}, True, (Notice.OUT_OF_SCOPE, True)),
        ({"outcome": "IGNORED"}, False, (Notice.IGNORED, False)),
        ({"outcome": "IGNORED", "needsHuman": True}, False, (Notice.IGNORED, True)),
        ({"outcome": "IGNORED"}, True, (Notice.IGNORED, True)),
        # A refusal (auto_repair.guards.admit_refusal): notified once, a repeat or a withheld one only recorded
        ({"outcome": "REFUSED"}, False, (Notice.REFUSED, True)),
        ({"outcome": "REFUSED", "refusalNotice": "SENT"}, False, (Notice.REFUSED, True)),
        ({"outcome": "REFUSED", "refusalNotice": "REPEATED"}, True, (Notice.REFUSED, False)),
        ({"outcome": "REFUSED", "refusalNotice": "WITHHELD"}, True, (Notice.REFUSED, False)),
    ],
)
def test_ignored_outcome(alarm: dict, notify_ignored: bool, expected: tuple[str, bool]) -> None:
    assert n.requested_outcome("IGNORED", {"alarm": alarm}, notify_ignored=notify_ignored) == expected


def test_a_requested_notice_is_sent_as_is() -> None:
    assert n.requested_outcome("APPROVAL_TIMEOUT", {}, notify_ignored=False) == (Notice.APPROVAL_TIMEOUT, True)


def test_every_notice_has_an_incident_status() -> None:
    # GIVEN every notice a run can end with / THEN the incident closes, resolves or escalates as before
    assert n.incident_status(Notice.REPAIRED) == "RESOLVED"
    assert {str(o) for o in Notice if n.incident_status(o) == "ESCALATED"} == {
        "NOT_IMPROVED", "INCONCLUSIVE", "HUMAN_REVIEW", "PAUSED", "BUDGET_EXHAUSTED", "APPROVAL_REFUSED"}
    assert n.incident_status("SOMETHING_NEW") == "CLOSED"


def test_a_refused_approval_says_why_and_that_nothing_changed() -> None:
    # GIVEN ExecuteRepair refused the approved change because the alarm went back to OK
    why = "the alarm 'orders-errors' is OK since 2026-11-22T10:05Z: the function recovered after the approval was requested"
    ctx = context(repair={"status": "APPROVAL_REFUSED", "reason": why, "originalMemory": 128, "newMemory": 128,
                          "targetMemory": 512}, verification={})
    # WHEN the result notice is built THEN it is APPROVAL_REFUSED, needs a human, and says why, not "still failing"
    outcome, send = n.requested_outcome("RESULT", ctx, notify_ignored=False)
    built = n.build(ctx, outcome, "prod")
    assert outcome == Notice.APPROVAL_REFUSED and send and built["message"]["needsHuman"] is True
    assert built["subject"] == "[prod] orders: approval REFUSED, no change"
    assert why in built["message"]["summary"] and "still failing" not in built["message"]["summary"]
    assert built["message"]["guard"] == {"outcome": "APPROVAL_REFUSED", "reason": why}
    assert n.incident_status(outcome) == "ESCALATED"
