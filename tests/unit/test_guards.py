"""The guards' pure rules: idempotency keys, scope, lock expiry, budget buckets, the kill switch's values,
and how each guard outcome reads in a notification."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from auto_repair import guards
from auto_repair import notification as n
from auto_repair.outcomes import GuardOutcome, Notice

ALARM_ARN = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:lambda-errors-alarm-orders"
ALARM = {"alarmId": ALARM_ARN, "alarmName": "lambda-errors-alarm-orders", "functionName": "orders",
         "stateChangeTime": "2026-11-22T10:00:00.123+0000", "outcome": "PROCEED"}


def event(state_timestamp=None, event_id="evt-1") -> dict:
    state = {"value": "ALARM"}
    if state_timestamp is not None:
        state["timestamp"] = state_timestamp
    return {"id": event_id, "detail": {"alarmName": "lambda-errors-alarm-orders", "state": state}}


# ---------------------------------------------------------------------------------------------- idempotency key
@pytest.mark.parametrize(
    ("raw", "alarm", "expected"),
    [
        # the state change's own timestamp identifies it, whatever the event id
        (event("2026-11-22T10:00:00.123+0000", "a"), ALARM, f"EVENT#{ALARM_ARN}#2026-11-22T10:00:00.123+0000"),
        (event("2026-11-22T10:00:00.123+0000", "b"), ALARM, f"EVENT#{ALARM_ARN}#2026-11-22T10:00:00.123+0000"),
        # no state timestamp: fall back to the event id
        (event(None, "evt-9"), ALARM, f"EVENT#{ALARM_ARN}#id:evt-9"),
        (event("", "evt-9"), ALARM, f"EVENT#{ALARM_ARN}#id:evt-9"),
        # no ARN in resources: the alarm name still scopes the key
        (event("t1"), {**ALARM, "alarmId": ""}, "EVENT#lambda-errors-alarm-orders#t1"),
        # a non-string timestamp is still a key, made text
        (event(1700000000), ALARM, f"EVENT#{ALARM_ARN}#1700000000"),
        # nothing to key on
        (event(None, None), ALARM, None),
        (event(None, ""), ALARM, None),
        ("not an event", ALARM, None),
        ({"detail": "garbage"}, ALARM, None),
        ({"detail": {"state": ["x"]}, "id": "e"}, ALARM, f"EVENT#{ALARM_ARN}#id:e"),
    ],
)
def test_idempotency_key(raw, alarm, expected) -> None:
    assert guards.idempotency_key(raw, alarm) == expected


def test_idempotency_keys_differ_per_alarm_and_per_state_change() -> None:
    # GIVEN two alarms of one function, and two state changes of one alarm THEN each is its own key
    other_alarm = {**ALARM, "alarmId": ALARM_ARN.replace("errors", "duration")}
    keys = {
        guards.idempotency_key(event("t1"), ALARM),
        guards.idempotency_key(event("t2"), ALARM),
        guards.idempotency_key(event("t1"), other_alarm),
    }
    assert len(keys) == 3


def test_idempotency_key_is_bounded_for_huge_input() -> None:
    key = guards.idempotency_key(event("9" * 10_000), {**ALARM, "alarmId": "a" * 10_000})
    assert key is not None and len(key.encode()) < 2048  # DynamoDB's partition-key limit


# ---------------------------------------------------------------------------------------------- scope
@pytest.mark.parametrize(
    ("mode", "tags", "in_scope", "why"),
    [
        ("opt-in", {"auto-repair": "enabled"}, True, "opted in"),
        # values are exact, as the executor role's StringLike compares them (before: " Enabled " passed here and was
        # then denied by IAM)
        ("opt-in", {"auto-repair": " Enabled "}, False, "needs auto-repair=enabled"),
        ("opt-in", {}, False, "no auto-repair tag"),
        ("opt-in", {"auto-repair": "disabled"}, False, "auto-repair='disabled'"),
        ("opt-in", {"auto-repair": "yes"}, False, "needs auto-repair=enabled"),
        ("opt-in", {"auto-repair:dry-run": "true"}, False, "no auto-repair tag"),
        ("opt-in", {"auto-repair": "prod"}, True, "names prod"),
        ("opt-in", {"auto-repair": "dev,prod"}, True, "names prod"),
        ("opt-in", {"auto-repair": "dev"}, False, "needs auto-repair=enabled or auto-repair=prod"),
        ("opt-out", {}, True, "no auto-repair tag"),
        ("opt-out", {"auto-repair": "enabled"}, True, "opted in"),
        ("opt-out", {"auto-repair": "disabled"}, False, "ScopeMode opt-out"),
        ("opt-out", {"auto-repair": "dev"}, False, "not in the prod environment's scope"),
    ],
)
def test_scope(mode, tags, in_scope, why) -> None:
    # GIVEN a function's tags in the prod environment WHEN its scope is read THEN exact values decide
    ok, reason = guards.in_scope(tags, mode, "prod")
    assert ok is in_scope and why in reason, reason


@pytest.mark.parametrize("mode", ["", "opt_in", "OPT-IN", "all", None])
def test_unknown_scope_mode_is_an_error_not_a_guess(mode) -> None:
    with pytest.raises(guards.ScopeModeError, match="ScopeMode"):
        guards.in_scope({"auto-repair": "enabled"}, mode, "prod")


# ---------------------------------------------------------------------------------------------- lock, budget, switch
@pytest.mark.parametrize(
    ("wait", "approval", "required", "expected"),
    [
        (20, 60, False, 40 + guards.LOCK_MARGIN_SECONDS),
        (20, 60, True, 100 + guards.LOCK_MARGIN_SECONDS),
        (900, 86400, True, 1800 + 86400 + guards.LOCK_MARGIN_SECONDS),
        (-5, -5, True, guards.LOCK_MARGIN_SECONDS),
    ],
)
def test_lock_expiry_covers_the_longest_path(wait, approval, required, expected) -> None:
    assert guards.lock_ttl_seconds(wait, approval, required) == expected


@pytest.mark.parametrize(
    ("wait", "approval", "required", "steps", "expected"),
    [
        (20, 60, False, 1, 40 + guards.LOCK_MARGIN_SECONDS),
        (20, 60, False, 3, 120 + guards.LOCK_MARGIN_SECONDS + 2 * guards.STEP_TASKS_SECONDS),
        (900, 86400, True, 5, 9000 + 86400 + guards.LOCK_MARGIN_SECONDS + 4 * guards.STEP_TASKS_SECONDS),
        (20, 60, False, 0, 40 + guards.LOCK_MARGIN_SECONDS),
    ],
)
def test_lock_expiry_covers_every_step_of_one_incident(wait, approval, required, steps, expected) -> None:
    # GIVEN MaxRepairSteps steps, each with up to two verification waits and its tasks
    # THEN the lock taken at admission outlives them all (one incident never loses its lock between steps)
    assert guards.lock_ttl_seconds(wait, approval, required, max_steps=steps) == expected


@pytest.mark.parametrize(
    ("when", "bucket"),
    [
        (datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC), "2026-11-22T10"),
        (datetime(2026, 11, 22, 10, 59, 59, tzinfo=UTC), "2026-11-22T10"),
        (datetime(2026, 11, 22, 11, 0, 0, tzinfo=UTC), "2026-11-22T11"),
        (datetime(2026, 12, 31, 23, 30, tzinfo=UTC), "2026-12-31T23"),
    ],
)
def test_budget_bucket_is_the_utc_clock_hour(when, bucket) -> None:
    assert guards.hour_bucket(when.timestamp()) == bucket


@pytest.mark.parametrize(
    ("value", "paused"),
    [("true", True), ("TRUE", True), (" true\n", True), ("1", True), ("on", True), ("paused", True),
     ("false", False), ("", False), (None, False), ("no", False), ("off", False), ("maybe", False)],
)
def test_kill_switch_values(value, paused) -> None:
    assert guards.is_paused(value) is paused


@pytest.mark.parametrize(
    ("repair", "expected"),
    [
        ({"status": "SUCCEEDED", "endTime": "2026-11-22T10:00:00.000Z"},
         datetime(2026, 11, 22, 10, tzinfo=UTC).timestamp()),
        ({"status": "SUCCEEDED", "timestamp": "2026-11-22T10:00:00Z"}, datetime(2026, 11, 22, 10, tzinfo=UTC).timestamp()),
        ({"status": "DRY_RUN", "endTime": "2026-11-22T10:00:00Z"}, None),
        ({"status": "PAUSED"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_only_an_applied_repair_starts_a_cooldown(repair, expected) -> None:
    assert guards.repaired_at(repair) == expected


def test_blocked_repair_changes_nothing_and_says_why() -> None:
    request = {"functionName": "orders", "targetMemory": 512, "executionId": "e1", "diagnosisId": "d1"}
    result = guards.blocked_repair(request, {"status": GuardOutcome.PAUSED, "reason": "kill switch on"},
                                   current_memory=128, started="2026-11-22T10:00:00.000Z")
    assert result["status"] == "PAUSED" and result["reason"] == "kill switch on"
    assert result["originalMemory"] == result["newMemory"] == 128 and result["targetMemory"] == 512
    assert result["repairId"] and result["dryRun"] is False


# ---------------------------------------------------------------------------------------------- notifications
def context(alarm_extra=None, repair=None) -> dict:
    return {
        "alarm": {"functionName": "orders", "alarmName": "lambda-errors-alarm-orders", "executionId": "e2",
                  "stateChangeTime": "2026-11-22T10:05:00Z", **(alarm_extra or {})},
        "diagnosisResult": {"decision": {"currentMemory": 128, "targetMemory": 512}} if repair else {},
        **({"repair": repair} if repair else {}),
    }


@pytest.mark.parametrize(
    ("outcome", "alarm_extra", "repair", "in_summary", "guard_fields", "needs_human"),
    [
        (Notice.DUPLICATE, {"outcome": "DUPLICATE", "duplicateOf": "e1", "reason": "already handled by execution e1"},
         None, "already handled by execution e1", {"duplicateOf": "e1"}, False),
        (Notice.LOCKED, {"outcome": "LOCKED", "lockHolder": "e1", "lockExpiresAt": "2026-11-22T11:00:00Z",
                    "reason": "a repair of orders is already in flight (execution e1, ...)"},
         None, "execution e1", {"lockHolder": "e1", "lockExpiresAt": "2026-11-22T11:00:00Z"}, False),
        (Notice.COOLDOWN, {"outcome": "COOLDOWN", "cooldownEndsAt": "2026-11-22T11:00:00Z",
                      "lastRepairAt": "2026-11-22T10:00:00Z", "lastRepairExecution": "e1", "reason": "r"},
         None, "cooldown ends at 2026-11-22T11:00:00Z", {"cooldownEndsAt": "2026-11-22T11:00:00Z"}, False),
        (Notice.OUT_OF_SCOPE, {"outcome": "OUT_OF_SCOPE", "reason": "orders is out of scope: not opted in"},
         None, "not opted in", {}, False),
        (Notice.PAUSED, {"outcome": "PROCEED"},
         {"status": "PAUSED", "originalMemory": 128, "newMemory": 128, "targetMemory": 512,
          "reason": "repairs are paused: the kill switch /x is on"},
         "128 -> 512 MB, but repairs are paused", {}, True),
        (Notice.BUDGET_EXHAUSTED, {"outcome": "PROCEED"},
         {"status": "BUDGET_EXHAUSTED", "originalMemory": 128, "newMemory": 128, "targetMemory": 512,
          "reason": "the hourly repair budget is exhausted (3 of MaxRepairsPerHour=3 used)"},
         "budget is exhausted", {}, True),
    ],
)
def test_guard_outcomes_read_clearly(outcome, alarm_extra, repair, in_summary, guard_fields, needs_human) -> None:
    built = n.build(context(alarm_extra, repair), outcome, "prod")
    message = built["message"]
    # THEN the summary says what happened, the guard block carries the details, nothing claims a change
    assert in_summary in message["summary"], message["summary"]
    assert message["guard"]["outcome"] == outcome and message["guard"]["reason"]
    for key, value in guard_fields.items():
        assert message["guard"][key] == value
    assert message["needsHuman"] is needs_human
    assert message["repair"]["action"].startswith("NONE") and message["repair"]["executedAt"] == ""
    assert built["subject"].startswith("[prod] orders: ") and len(built["subject"]) < 100
    assert built["attributes"]["outcome"] == outcome
    json.dumps(message)  # SNS carries it as JSON
