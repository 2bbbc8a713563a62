"""The guards against DynamoDB and SSM (moto in-process): conditional writes under concurrency, lock expiry,
cooldowns, the hourly budget, the kill switch, and the handlers that use them."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
from botocore.exceptions import ClientError

from auto_repair import guards
from auto_repair.clock import iso_seconds
from auto_repair.handlers import execute_repair, notify, parse_alarm

REPO = Path(__file__).resolve().parents[2]
NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def store(aws) -> guards.GuardStore:
    return guards.GuardStore(aws.resource("dynamodb").Table("state"))


@pytest.fixture
def atomic_dynamodb(monkeypatch):
    """DynamoDB applies each conditional write atomically; moto evaluates the condition and writes in separate
    steps (20 threads racing for a budget of 5 got 10 in). Serialise moto's writes as DynamoDB does, so the races
    below test our conditions rather than moto's missing item-level atomicity."""
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    for name in ("put_item", "update_item", "delete_item"):
        original = getattr(DynamoDBBackend, name)

        def atomic(self, *args, __original=original, **kwargs):
            with lock:
                return __original(self, *args, **kwargs)

        monkeypatch.setattr(DynamoDBBackend, name, atomic)


def race(n: int, work) -> list:
    """Run ``work(i, store)`` in n threads released at once; each thread has its own session (boto3 resources
    are not thread-safe)."""
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(i: int) -> None:
        own = guards.GuardStore(boto3.session.Session(region_name="us-east-1").resource("dynamodb").Table("state"))
        barrier.wait()
        results[i] = work(i, own)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


# ---------------------------------------------------------------------------------------------- idempotency
def test_one_state_change_is_claimed_once_even_by_concurrent_deliveries(aws, atomic_dynamodb):
    # GIVEN 16 executions started for the same alarm state change at the same moment
    results = race(16, lambda i, s: s.claim_event("EVENT#arn#t1", owner=f"exec-{i}", function_name="orders", now=NOW))
    # THEN exactly one wins, and every loser is told the winner's id
    winners = [r.owner for r in results if r.first]
    assert len(winners) == 1
    assert {r.owner for r in results if not r.first} == set(winners)


def test_a_retry_of_the_winning_execution_is_not_a_duplicate(aws):
    s = store(aws)
    assert s.claim_event("EVENT#arn#t1", owner="exec-1", function_name="orders", now=NOW).first
    # WHEN Step Functions retries ParseAlarmEvent in the same execution THEN it still owns the event
    assert s.claim_event("EVENT#arn#t1", owner="exec-1", function_name="orders", now=NOW + 5).first
    again = s.claim_event("EVENT#arn#t1", owner="exec-2", function_name="orders", now=NOW + 6)
    assert (again.first, again.owner) == (False, "exec-1")
    # AND a different state change of the same alarm is its own event
    assert s.claim_event("EVENT#arn#t2", owner="exec-2", function_name="orders", now=NOW + 7).first


def test_admit_event_marks_the_duplicate_with_the_original(aws):
    alarm = {"outcome": "PROCEED", "alarmId": "arn", "alarmName": "a", "functionName": "orders",
             "stateChangeTime": "t1"}
    raw = {"id": "e", "detail": {"state": {"timestamp": "t1"}}}
    first = guards.admit_event(alarm, raw, store(aws), owner="exec-1", now=NOW)
    second = guards.admit_event(alarm, {**raw, "id": "other-id"}, store(aws), owner="exec-2", now=NOW)
    assert first["outcome"] == "PROCEED"
    assert second["outcome"] == "DUPLICATE" and second["duplicateOf"] == "exec-1"
    assert "already handled by execution exec-1" in second["reason"]
    # an event that is not PROCEED is left alone (and claims nothing)
    ignored = guards.admit_event({**alarm, "outcome": "IGNORED"}, raw, store(aws), owner="exec-3", now=NOW)
    assert ignored["outcome"] == "IGNORED"


# ---------------------------------------------------------------------------------------------- lock
def test_concurrent_alarms_for_one_function_get_one_lock(aws, atomic_dynamodb):
    results = race(12, lambda i, s: s.acquire_lock("orders", owner=f"exec-{i}", ttl_seconds=600, now=NOW))
    holders = [r.holder for r in results if r.acquired]
    assert len(holders) == 1
    assert all(r.holder == holders[0] and r.expires_at == NOW + 600 for r in results if not r.acquired)


def test_a_lock_expires_so_a_crashed_run_cannot_hold_it_forever(aws):
    s = store(aws)
    assert s.acquire_lock("orders", owner="crashed", ttl_seconds=100, now=NOW).acquired
    # WHILE it is valid nobody else gets it; its owner gets it again (a retried step)
    assert not s.acquire_lock("orders", owner="exec-2", ttl_seconds=100, now=NOW + 99).acquired
    assert s.acquire_lock("orders", owner="crashed", ttl_seconds=100, now=NOW + 50).acquired  # now until +150
    # WHEN it has expired THEN the next run takes it over (TTL deletion is lazy; the condition checks the time)
    assert not s.acquire_lock("orders", owner="exec-2", ttl_seconds=100, now=NOW + 149).acquired
    assert s.acquire_lock("orders", owner="exec-2", ttl_seconds=100, now=NOW + 151).acquired
    # AND the crashed run, if it ever finishes, cannot release the new owner's lock
    assert s.release_lock("orders", owner="crashed") is False
    assert not s.acquire_lock("orders", owner="exec-3", ttl_seconds=100, now=NOW + 152).acquired
    assert s.release_lock("orders", owner="exec-2") is True
    assert s.release_lock("orders", owner="exec-2") is False  # nothing left to release
    assert s.acquire_lock("orders", owner="exec-3", ttl_seconds=100, now=NOW + 153).acquired


def test_locks_are_per_function(aws):
    s = store(aws)
    assert s.acquire_lock("orders", owner="a", ttl_seconds=60, now=NOW).acquired
    assert s.acquire_lock("payments", owner="b", ttl_seconds=60, now=NOW).acquired


# ---------------------------------------------------------------------------------------------- cooldown
def test_cooldown_follows_the_current_setting_and_never_moves_backwards(aws):
    s = store(aws)
    assert s.active_cooldown("orders", minutes=30, now=NOW) is None
    assert s.start_cooldown("orders", repaired_at=NOW, execution_id="exec-1")
    active = s.active_cooldown("orders", minutes=30, now=NOW + 60)
    assert active == {"endsAt": iso_seconds(NOW + 1800), "repairedAt": iso_seconds(NOW), "repairedBy": "exec-1"}
    assert s.active_cooldown("orders", minutes=30, now=NOW + 1800) is None  # ended
    assert s.active_cooldown("orders", minutes=0, now=NOW + 1) is None  # RepairCooldownMinutes=0 switches it off
    assert s.active_cooldown("orders", minutes=60, now=NOW + 1800)["endsAt"] == iso_seconds(NOW + 3600)
    # an older repair's late write does not shorten a newer cooldown; the same write twice is fine
    assert s.start_cooldown("orders", repaired_at=NOW + 100, execution_id="exec-2")
    assert s.start_cooldown("orders", repaired_at=NOW + 100, execution_id="exec-2")
    assert s.start_cooldown("orders", repaired_at=NOW, execution_id="exec-1") is False
    assert s.active_cooldown("orders", minutes=30, now=NOW + 60)["repairedBy"] == "exec-2"


def test_admit_function_checks_the_cooldown_under_the_lock_and_lets_go_of_it(aws):
    s = store(aws)
    alarm = {"outcome": "PROCEED", "functionName": "orders", "alarmName": "a"}
    s.start_cooldown("orders", repaired_at=NOW, execution_id="exec-1")
    cooled = guards.admit_function(alarm, s, owner="exec-2", lock_ttl=600, cooldown_minutes=10, now=NOW + 60)
    assert cooled["outcome"] == "COOLDOWN" and cooled["cooldownEndsAt"] == iso_seconds(NOW + 600)
    assert cooled["lastRepairExecution"] == "exec-1" and "cooldown ends at" in cooled["reason"]
    # the lock it took to look was given back
    assert s.acquire_lock("orders", owner="exec-3", ttl_seconds=1000, now=NOW + 61).acquired
    locked = guards.admit_function(alarm, s, owner="exec-4", lock_ttl=600, cooldown_minutes=10, now=NOW + 700)
    assert locked["outcome"] == "LOCKED" and locked["lockHolder"] == "exec-3"
    s.release_lock("orders", owner="exec-3")
    admitted = guards.admit_function(alarm, s, owner="exec-5", lock_ttl=600, cooldown_minutes=10, now=NOW + 700)
    assert admitted["outcome"] == "PROCEED" and admitted["lockOwner"] == "exec-5"


# ---------------------------------------------------------------------------------------------- budget
def test_budget_allows_exactly_the_limit_under_concurrency(aws, atomic_dynamodb):
    results = race(20, lambda i, s: s.consume_budget(limit=5, now=NOW))
    assert sum(1 for allowed, _ in results if allowed) == 5
    assert all(used == 5 for allowed, used in results if not allowed)


def test_budget_resets_each_clock_hour_and_zero_means_none(aws):
    s = store(aws)
    assert [s.consume_budget(limit=2, now=NOW)[0] for _ in range(3)] == [True, True, False]
    assert s.consume_budget(limit=2, now=NOW + 3600) == (True, 1)
    assert s.consume_budget(limit=0, now=NOW + 7200) == (False, 0)
    # raising the limit takes effect at once for the hour in progress
    assert s.consume_budget(limit=3, now=NOW) == (True, 3)


# ---------------------------------------------------------------------------------------------- kill switch
def test_kill_switch_is_read_on_every_call_and_paused_spends_no_budget(aws):
    ssm = aws.client("ssm")
    ssm.put_parameter(Name="/lambda-auto-repair/dev/paused", Value="false", Type="String")
    s = store(aws)
    gate = dict(ssm=ssm, parameter="/lambda-auto-repair/dev/paused", store=s, limit=1, now=NOW)
    ssm.put_parameter(Name="/lambda-auto-repair/dev/paused", Value="true", Type="String", Overwrite=True)
    blocked = guards.mutation_gate(**gate)
    assert blocked["status"] == "PAUSED" and "/lambda-auto-repair/dev/paused" in blocked["reason"]
    ssm.put_parameter(Name="/lambda-auto-repair/dev/paused", Value="false", Type="String", Overwrite=True)
    assert guards.mutation_gate(**gate) is None  # the one budget slot was still there
    blocked = guards.mutation_gate(**gate)
    assert blocked["status"] == "BUDGET_EXHAUSTED" and "1 of MaxRepairsPerHour=1" in blocked["reason"]


def test_an_unreadable_kill_switch_blocks_the_change(aws):
    with pytest.raises(guards.KillSwitchError, match="ParameterNotFound"):
        guards.read_kill_switch(aws.client("ssm"), "/lambda-auto-repair/dev/paused")


# ---------------------------------------------------------------------------------------------- end of a run
class FailingCooldownTable:
    """The state table, except that cooldown writes fail (DynamoDB throttling, say)."""

    def __init__(self, table):
        self._table = table

    def put_item(self, **kwargs):
        if kwargs["Item"]["pk"].startswith("COOLDOWN#"):
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "PutItem")
        return self._table.put_item(**kwargs)

    def __getattr__(self, name):
        return getattr(self._table, name)


def test_finish_run_starts_the_cooldown_then_releases_the_lock(aws):
    s = store(aws)
    workflow = {"alarm": {"outcome": "PROCEED", "functionName": "orders"},
                "repair": {"status": "SUCCEEDED", "endTime": iso_seconds(NOW)}}
    s.acquire_lock("orders", owner="exec-1", ttl_seconds=600, now=NOW)
    assert guards.finish_run(s, workflow, owner="exec-1") == {"cooldownStarted": True, "lockReleased": True}
    assert s.active_cooldown("orders", minutes=5, now=NOW + 1)["repairedBy"] == "exec-1"
    # a run that only recorded the alarm (duplicate, locked ...) touches neither
    s.acquire_lock("orders", owner="exec-2", ttl_seconds=600, now=NOW)
    for outcome in ("DUPLICATE", "LOCKED", "COOLDOWN", "OUT_OF_SCOPE", "IGNORED", "INVALID"):
        assert guards.finish_run(s, {"alarm": {"outcome": outcome, "functionName": "orders"}}, owner="exec-2") == {
            "cooldownStarted": False, "lockReleased": False}
    assert not s.acquire_lock("orders", owner="exec-3", ttl_seconds=600, now=NOW).acquired


def test_a_run_whose_later_step_failed_cools_down_from_the_last_applied_step(aws):
    # GIVEN step 1 applied at NOW, then step 2 failed (the run ends in HandleFailure with a FAILED repair)
    s = store(aws)
    s.acquire_lock("orders", owner="exec-1", ttl_seconds=600, now=NOW)
    workflow = {"alarm": {"outcome": "PROCEED", "functionName": "orders"}, "repair": {"status": "FAILED"},
                "verification": {"steps": [{"step": 1, "memoryBefore": 128, "memoryAfter": 256,
                                            "at": iso_seconds(NOW)}]}}
    # WHEN the run finishes THEN the cooldown starts from step 1 and the lock is released
    assert guards.finish_run(s, workflow, owner="exec-1") == {"cooldownStarted": True, "lockReleased": True}
    assert s.active_cooldown("orders", minutes=5, now=NOW + 1)["repairedBy"] == "exec-1"


def test_a_failed_cooldown_write_keeps_the_lock(aws):
    table = aws.resource("dynamodb").Table("state")
    s = guards.GuardStore(FailingCooldownTable(table))
    s.acquire_lock("orders", owner="exec-1", ttl_seconds=600, now=NOW)
    workflow = {"alarm": {"outcome": "PROCEED", "functionName": "orders"},
                "repair": {"status": "SUCCEEDED", "endTime": iso_seconds(NOW)}}
    with pytest.raises(guards.GuardError, match="ProvisionedThroughputExceeded"):
        guards.finish_run(s, workflow, owner="exec-1")
    # THEN the lock stands in for the cooldown until it expires
    assert not guards.GuardStore(table).acquire_lock("orders", owner="exec-2", ttl_seconds=60, now=NOW + 1).acquired


# ---------------------------------------------------------------------------------------------- handlers
@pytest.fixture
def handlers(aws, function_env):
    topic = aws.client("sns").create_topic(Name="notes")["TopicArn"]
    function_env(SCOPE_MODE="opt-in", REPAIR_COOLDOWN_MINUTES="30", MAX_REPAIRS_PER_HOUR="1",
                 VERIFICATION_WAIT_SECONDS="20", APPROVAL_TIMEOUT_SECONDS="60", NOTIFICATION_TOPIC_ARN=topic)
    return SimpleNamespace(parse_alarm=parse_alarm, notify=notify, execute_repair=execute_repair, topic=topic)


def lambda_context(request_id: str = "req-1") -> SimpleNamespace:
    return SimpleNamespace(function_name="lambda-auto-repair-parse-alarm-dev", memory_limit_in_mb=256,
                           invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:x",
                           aws_request_id=request_id)


def alarm_event(function_name: str, timestamp: str, event_id: str = "e-1") -> dict:
    event = json.loads((REPO / "tests" / "events" / "alarm_lambda_errors.json").read_text())
    event["id"] = event_id
    event["detail"]["state"]["timestamp"] = timestamp
    event["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"]["dimensions"]["FunctionName"] = function_name
    return event


def parse(handlers, event: dict, execution_id: str) -> dict:
    return handlers.parse_alarm.lambda_handler({"context": event, "meta": {"executionId": execution_id}},
                                               lambda_context())


def tag(aws, name: str, value: str | None) -> None:
    lam = aws.client("lambda")
    arn = lam.get_function_configuration(FunctionName=name)["FunctionArn"]
    if value is None:
        lam.untag_resource(Resource=arn, TagKeys=["auto-repair"])
    else:
        lam.tag_resource(Resource=arn, Tags={"auto-repair": value})


def test_parse_alarm_admits_once_then_records_duplicate_locked_and_out_of_scope(aws, handlers, target_function):
    tag(aws, "orders", "enabled")
    first = parse(handlers, alarm_event("orders", "2026-11-22T10:00:00.000+0000", "e-1"), "exec-1")
    # GIVEN the same state change delivered again (new event id), and a later state change of the same alarm
    again = parse(handlers, alarm_event("orders", "2026-11-22T10:00:00.000+0000", "e-2"), "exec-2")
    later = parse(handlers, alarm_event("orders", "2026-11-22T10:05:00.000+0000", "e-3"), "exec-3")
    assert first["outcome"] == "PROCEED" and first["lockOwner"] == "exec-1" and first["scopeMode"] == "opt-in"
    assert again["outcome"] == "DUPLICATE" and again["duplicateOf"] == "exec-1"
    assert later["outcome"] == "LOCKED" and later["lockHolder"] == "exec-1"
    # AND an untagged function under opt-in is out of scope, recorded with why
    tag(aws, "orders", None)
    other = parse(handlers, alarm_event("orders", "2026-11-22T10:06:00.000+0000", "e-4"), "exec-4")
    assert other["outcome"] == "OUT_OF_SCOPE" and "needs auto-repair=enabled" in other["reason"]
    incidents = aws.resource("dynamodb").Table("incidents")
    outcomes = {i: incidents.get_item(Key={"incidentId": i, "recordType": "ALARM"})["Item"]["outcome"]
                for i in ("exec-1", "exec-2", "exec-3", "exec-4")}
    assert outcomes == {"exec-1": "PROCEED", "exec-2": "DUPLICATE", "exec-3": "LOCKED", "exec-4": "OUT_OF_SCOPE"}


def test_terminal_notify_releases_the_lock_and_starts_the_cooldown(aws, handlers, target_function):
    tag(aws, "orders", "enabled")
    alarm = parse(handlers, alarm_event("orders", "2026-11-22T10:00:00.000+0000"), "exec-1")
    # GIVEN the admitted run applied its repair just now
    workflow = {"alarm": alarm, "repair": {"repairId": "r1", "status": "SUCCEEDED", "originalMemory": 128,
                                           "newMemory": 256, "endTime": alarm["receivedAt"]},
                "verification": {"status": "IMPROVED"}}
    handlers.notify.lambda_handler({"context": workflow, "meta": {"executionId": "exec-1"}, "outcome": "RESULT"},
                                   lambda_context())
    cooled = parse(handlers, alarm_event("orders", "2026-11-22T10:07:00.000+0000", "e-9"), "exec-2")
    assert cooled["outcome"] == "COOLDOWN" and cooled["lastRepairExecution"] == "exec-1"
    # WHEN the COOLDOWN run reaches NotifyIgnored THEN the message says when the cooldown ends
    sent = handlers.notify.lambda_handler({"context": {"alarm": cooled}, "meta": {"executionId": "exec-2"},
                                           "outcome": "IGNORED"}, lambda_context())
    assert sent["outcome"] == "COOLDOWN" and sent["notificationStatus"] == "SENT"
    record = aws.resource("dynamodb").Table("incidents").get_item(
        Key={"incidentId": "exec-2", "recordType": "ALARM"})["Item"]
    assert record["outcome"] == "COOLDOWN" and cooled["cooldownEndsAt"] in record["summary"]


def test_duplicates_are_recorded_silently(aws, handlers, target_function):
    alarm = {"outcome": "DUPLICATE", "functionName": "orders", "duplicateOf": "exec-1", "reason": "dup",
             "executionId": "exec-2"}
    sent = handlers.notify.lambda_handler({"context": {"alarm": alarm}, "meta": {"executionId": "exec-2"},
                                           "outcome": "IGNORED"}, lambda_context())
    assert sent["outcome"] == "DUPLICATE" and sent["notificationStatus"] == "NOT_REQUIRED"
    assert sent["messageId"] is None


def repair_workflow(alarm: dict) -> dict:
    return {"alarm": alarm, "evidence": {"function": {}},
            "diagnosisResult": {"cause": "memory_exhaustion", "confidence": 0.9, "diagnosisId": "d1",
                                "decision": {"action": "REPAIR", "currentMemory": 128, "targetMemory": 256,
                                             "reason": "raise"}}}


def test_execute_repair_honours_the_kill_switch_then_the_budget(aws, handlers, target_function):
    ssm, lam = aws.client("ssm"), aws.client("lambda")
    alarm = {"functionName": "orders", "settings": {"maxMemory": 3008}}
    run = handlers.execute_repair.lambda_handler
    # GIVEN the kill switch on WHEN a repair is due THEN nothing changes and the result says PAUSED
    ssm.put_parameter(Name="/lambda-auto-repair/dev/paused", Value="true", Type="String", Overwrite=True)
    paused = run({"context": repair_workflow(alarm), "meta": {"executionId": "exec-1"}}, lambda_context())
    assert paused["status"] == "PAUSED" and lam.get_function_configuration(FunctionName="orders")["MemorySize"] == 128
    # GIVEN it is off again and MaxRepairsPerHour=1: one repair goes through, the next one is over budget
    ssm.put_parameter(Name="/lambda-auto-repair/dev/paused", Value="false", Type="String", Overwrite=True)
    done = run({"context": repair_workflow(alarm), "meta": {"executionId": "exec-2"}}, lambda_context())
    assert done["status"] == "SUCCEEDED" and done["newMemory"] == 256
    over = repair_workflow(alarm)
    over["diagnosisResult"]["decision"].update(currentMemory=256, targetMemory=512)
    refused = run({"context": over, "meta": {"executionId": "exec-3"}}, lambda_context())
    assert refused["status"] == "BUDGET_EXHAUSTED" and "MaxRepairsPerHour=1" in refused["reason"]
    assert lam.get_function_configuration(FunctionName="orders")["MemorySize"] == 256
    repair = aws.resource("dynamodb").Table("incidents").get_item(
        Key={"incidentId": "exec-3", "recordType": "REPAIR"})["Item"]
    assert repair["status"] == "BUDGET_EXHAUSTED" and repair["newMemory"] == repair["originalMemory"] == 256
    # AND a dry run changes nothing, so it needs no budget even when the hour's budget is spent
    dry = repair_workflow(alarm)
    dry["diagnosisResult"]["decision"].update(action="DRY_RUN", dryRun=True, currentMemory=256, targetMemory=512)
    assert run({"context": dry, "meta": {"executionId": "exec-4"}}, lambda_context())["status"] == "DRY_RUN"
