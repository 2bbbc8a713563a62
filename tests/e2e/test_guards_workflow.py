"""The admission and mutation guards, end to end through the deployed workflow in the local cloud.

Alarm state changes are put on the default event bus exactly as CloudWatch puts them (the main stack forwards
them to the auto-repair bus, whose rule starts the workflow), so EventBridge's at-least-once delivery can be
reproduced: the same state change put twice, and the same input started again as a retried StartExecution.

One timeline, to keep wall time low: the duplicate deliveries start one repair; while it verifies, a second
alarm finds the function LOCKED, the kill switch stops another function's repair (PAUSED), and a spent hourly
budget stops a third (BUDGET_EXHAUSTED); once the repair has finished, the next alarm lands in its COOLDOWN.
An untagged function is OUT_OF_SCOPE meanwhile. The kill switch and the budget are global, so they are only
switched on after the one real repair has changed its function.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.dynamodb.conditions import Key

from auto_repair import guards
from auto_repair.clock import iso_seconds
from auto_repair.records import IncidentStore
from auto_repair_cli import scenario

REPO = Path(__file__).resolve().parents[2]
ACCOUNT, REGION = "123456789012", "us-east-1"
MAIN, PAUSED_FN, BUDGET_FN, SCOPE_FN = "guard-main", "guard-paused", "guard-budget", "guard-scope"


def table(deployed, kind: str):
    resource = boto3.resource("dynamodb", endpoint_url=deployed.cloud.endpoint, region_name=REGION,
                              aws_access_key_id="test", aws_secret_access_key="test")
    return resource.Table(f"lambda-auto-repair-{kind}-{deployed.environment}")


def alarm_detail(function_name: str, stamp: datetime) -> tuple[str, dict[str, Any]]:
    """The alarm ARN and the ``detail`` of an Errors alarm entering ALARM at ``stamp``, as CloudWatch sends it."""
    event = json.loads((REPO / "tests" / "events" / "alarm_lambda_errors.json").read_text())
    name = f"lambda-errors-alarm-{function_name}"
    detail = event["detail"]
    detail["alarmName"] = name
    detail["state"]["timestamp"] = stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}+0000"
    stat = detail["configuration"]["metrics"][0]["metricStat"]
    stat["metric"]["dimensions"] = {"FunctionName": function_name}
    stat["period"] = 10
    return f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{name}", detail


def put_alarm(deployed, function_name: str, stamp: datetime | None = None) -> datetime:
    stamp = stamp or datetime.now(UTC)
    arn, detail = alarm_detail(function_name, stamp)
    answer = deployed.cloud.client("events").put_events(Entries=[{
        "Source": "aws.cloudwatch", "DetailType": "CloudWatch Alarm State Change", "Resources": [arn],
        "Detail": json.dumps(detail), "EventBusName": "default"}])
    assert answer["FailedEntryCount"] == 0, answer
    return stamp


def incidents(deployed, function_name: str) -> list[dict]:
    return IncidentStore(table(deployed, "incidents")).list_incidents(function_name=function_name, limit=100)


def wait_incidents(deployed, function_name: str, count: int, timeout: float = 120) -> list[dict]:
    """The function's incidents once ``count`` of them exist and every one of their executions has ended."""
    sfn = deployed.cloud.client("stepfunctions")

    def done() -> list[dict] | None:
        found = incidents(deployed, function_name)
        if len(found) < count:
            return None
        for item in found:
            if sfn.describe_execution(executionArn=item["executionArn"])["status"] == "RUNNING":
                return None
        return incidents(deployed, function_name)  # re-read: terminal handlers have written their outcome

    return scenario.wait_for(done, timeout, 1.0, f"{count} finished incident(s) of {function_name}")


def failing(traffic: scenario.Traffic, n: int = 5) -> bool:
    return sum(1 for r in traffic.results if not r.ok) >= n


def set_kill_switch(deployed, value: str) -> None:
    deployed.cloud.client("ssm").put_parameter(Name=f"/lambda-auto-repair/{deployed.environment}/paused",
                                               Value=value, Type="String", Overwrite=True)


def spend_budget(deployed) -> dict[str, Any]:
    """Use up this hour's (and, in case the hour turns, the next hour's) repair budget; return what to restore."""
    config = deployed.cloud.client("lambda").get_function_configuration(
        FunctionName=f"lambda-auto-repair-execute-repair-{deployed.environment}")
    limit = int(config["Environment"]["Variables"]["MAX_REPAIRS_PER_HOUR"])
    state, now, saved = table(deployed, "state"), time.time(), {}
    for bucket in {guards.hour_bucket(now), guards.hour_bucket(now + 3600)}:
        saved[bucket] = state.get_item(Key={"pk": "BUDGET", "sk": bucket}).get("Item")
        state.put_item(Item={"pk": "BUDGET", "sk": bucket, "repairs": limit, "expiresAt": int(now) + 86400})
    return {"limit": limit, "saved": saved}


def restore_budget(deployed, spent: dict[str, Any]) -> None:
    state = table(deployed, "state")
    for bucket, item in spent["saved"].items():
        if item is None:
            state.delete_item(Key={"pk": "BUDGET", "sk": bucket})
        else:
            state.put_item(Item=item)


@pytest.fixture(scope="module")
def timeline(deployed):
    cloud = deployed.cloud
    lam, iam, sfn = (cloud.client(s) for s in ("lambda", "iam", "stepfunctions"))
    facts: dict[str, Any] = {}
    traffic = {}
    for name in (MAIN, PAUSED_FN, BUDGET_FN, SCOPE_FN):
        scenario.create_target(lam, iam, name, scenario.MEMORY_HOG, memory=128, env={"WORK_MB": "150"})
    scope_arn = lam.get_function_configuration(FunctionName=SCOPE_FN)["FunctionArn"]
    lam.untag_resource(Resource=scope_arn, TagKeys=["auto-repair"])
    for name in (MAIN, PAUSED_FN, BUDGET_FN):
        traffic[name] = scenario.Traffic(lam, name, interval=1.0)
        traffic[name].start()
    spent = None
    try:
        # An untagged function under ScopeMode=opt-in: recorded, never repaired (runs meanwhile).
        put_alarm(deployed, SCOPE_FN)

        # The same state change delivered three times: twice by PutEvents, once more as a retried StartExecution.
        scenario.wait_for(lambda: failing(traffic[MAIN]), 60, 0.5, f"{MAIN} failing")
        stamp = put_alarm(deployed, MAIN)
        put_alarm(deployed, MAIN, stamp)
        started = scenario.wait_for(lambda: len(incidents(deployed, MAIN)) >= 2 and incidents(deployed, MAIN),
                                    60, 0.5, "two executions of the duplicated event")
        first_input = sfn.describe_execution(executionArn=started[0]["executionArn"])["input"]
        sfn.start_execution(stateMachineArn=deployed.state_machine_arn, input=first_input)
        facts["delivered"] = 3

        # The admitted run repairs; as soon as its change is applied, another alarm of the function arrives.
        def repaired() -> dict | None:
            for item in incidents(deployed, MAIN):
                repair = IncidentStore(table(deployed, "incidents")).get_incident(item["incidentId"]).get("repair")
                if repair and repair.get("status") == "SUCCEEDED":
                    return item
            return None

        winner = scenario.wait_for(repaired, 120, 0.5, f"the repair of {MAIN}")
        facts["winner"] = winner["incidentId"]
        facts["winner_running_at_second_alarm"] = (
            sfn.describe_execution(executionArn=winner["executionArn"])["status"] == "RUNNING")
        put_alarm(deployed, MAIN)

        # Kill switch on: the next repair is recorded and reported, nothing changes. Then off again.
        scenario.wait_for(lambda: failing(traffic[PAUSED_FN]), 60, 0.5, f"{PAUSED_FN} failing")
        set_kill_switch(deployed, "true")
        try:
            put_alarm(deployed, PAUSED_FN)
            wait_incidents(deployed, PAUSED_FN, 1)
        finally:
            set_kill_switch(deployed, "false")

        # The hour's budget spent: the next repair is refused, nothing changes. Then the budget is given back.
        scenario.wait_for(lambda: failing(traffic[BUDGET_FN]), 60, 0.5, f"{BUDGET_FN} failing")
        spent = spend_budget(deployed)
        facts["budget"] = spent["limit"]
        put_alarm(deployed, BUDGET_FN)
        wait_incidents(deployed, BUDGET_FN, 1)
        restore_budget(deployed, spent)
        spent = None

        # The repair has finished: an alarm now falls in its cooldown.
        wait_incidents(deployed, MAIN, 4, timeout=180)
        put_alarm(deployed, MAIN)
        wait_incidents(deployed, MAIN, 5)
        wait_incidents(deployed, SCOPE_FN, 1)
    finally:
        if spent:
            restore_budget(deployed, spent)
        set_kill_switch(deployed, "false")
        for t in traffic.values():
            t.stop()
    return facts


def by_outcome(deployed, function_name: str) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for item in incidents(deployed, function_name):
        found.setdefault(item["outcome"], []).append(item)
    return found


def memory(deployed, function_name: str) -> int:
    return deployed.cloud.client("lambda").get_function_configuration(FunctionName=function_name)["MemorySize"]


def audit(deployed, function_name: str) -> list[dict]:
    page = table(deployed, "audit").query(KeyConditionExpression=Key("functionName").eq(function_name))
    return page["Items"]


def run_cli(deployed, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "auto_repair_cli.main", *args, "--local"], cwd=REPO,
                          env=deployed.cloud.env(), capture_output=True, text=True, timeout=60)


def test_the_same_alarm_delivered_three_times_repairs_once(deployed, timeline):
    # GIVEN one alarm state change delivered three times
    outcomes = by_outcome(deployed, MAIN)
    # THEN one run repaired, the two others were recorded as duplicates of it and said nothing
    assert [i["incidentId"] for i in outcomes["REPAIRED"]] == [timeline["winner"]]
    duplicates = outcomes["DUPLICATE"]
    assert len(duplicates) == 2 and {d["duplicateOf"] for d in duplicates} == {timeline["winner"]}
    assert all(d["status"] == "CLOSED" for d in duplicates)
    kinds = [m["body"]["type"] for m in deployed.notifications(MAIN)]
    assert kinds.count("REPAIRED") == 1 and "DUPLICATE" not in kinds
    # AND the function was changed exactly once, with a BEFORE and an AFTER audit entry
    assert sorted(a["phase"] for a in audit(deployed, MAIN)) == ["AFTER", "BEFORE"]
    assert memory(deployed, MAIN) > 128


def test_an_alarm_while_a_repair_is_in_flight_is_locked_and_reported(deployed, timeline):
    assert timeline["winner_running_at_second_alarm"]
    [locked] = by_outcome(deployed, MAIN)["LOCKED"]
    assert locked["lockHolder"] == timeline["winner"] and timeline["winner"] in locked["reason"]
    note = [m for m in deployed.notifications(MAIN) if m["body"]["type"] == "LOCKED"]
    assert len(note) == 1 and note[0]["body"]["guard"]["lockHolder"] == timeline["winner"]
    assert note[0]["subject"] == f"[local] {MAIN}: repair already in progress, alarm recorded"


def test_an_alarm_after_the_repair_falls_in_the_cooldown(deployed, timeline):
    [cooled] = by_outcome(deployed, MAIN)["COOLDOWN"]
    repair = IncidentStore(table(deployed, "incidents")).get_incident(timeline["winner"])["repair"]
    repaired = datetime.fromisoformat(repair["endTime"].replace("Z", "+00:00")).timestamp()
    minutes = json.loads((REPO / "parameters" / "local.json").read_text())["RepairCooldownMinutes"]
    # THEN the record and the notice say when the cooldown ends: the repair time + RepairCooldownMinutes
    assert cooled["lastRepairExecution"] == timeline["winner"]
    assert cooled["cooldownEndsAt"] == iso_seconds(int(repaired) + minutes * 60)
    [note] = [m for m in deployed.notifications(MAIN) if m["body"]["type"] == "COOLDOWN"]
    assert f"cooldown ends at {cooled['cooldownEndsAt']}" in note["body"]["summary"]
    assert note["body"]["guard"]["cooldownEndsAt"] == cooled["cooldownEndsAt"]
    # AND nothing changed after the one repair
    assert sorted(a["phase"] for a in audit(deployed, MAIN)) == ["AFTER", "BEFORE"]


def test_the_kill_switch_stops_the_change_and_says_so(deployed, timeline):
    [incident] = incidents(deployed, PAUSED_FN)
    full = IncidentStore(table(deployed, "incidents")).get_incident(incident["incidentId"])
    assert incident["outcome"] == "PAUSED" and incident["status"] == "ESCALATED"
    assert full["repair"]["status"] == "PAUSED" and full["repair"]["targetMemory"] > 128
    assert memory(deployed, PAUSED_FN) == 128 and audit(deployed, PAUSED_FN) == []
    [note] = deployed.notifications(PAUSED_FN)
    assert note["body"]["type"] == "PAUSED" and note["body"]["needsHuman"] is True
    assert "/lambda-auto-repair/local/paused" in note["body"]["guard"]["reason"]


def test_a_spent_hourly_budget_stops_the_change_and_says_so(deployed, timeline):
    [incident] = incidents(deployed, BUDGET_FN)
    full = IncidentStore(table(deployed, "incidents")).get_incident(incident["incidentId"])
    assert incident["outcome"] == "BUDGET_EXHAUSTED" and incident["status"] == "ESCALATED"
    assert full["repair"]["status"] == "BUDGET_EXHAUSTED"
    assert f"MaxRepairsPerHour={timeline['budget']}" in full["repair"]["reason"]
    assert memory(deployed, BUDGET_FN) == 128 and audit(deployed, BUDGET_FN) == []
    [note] = deployed.notifications(BUDGET_FN)
    assert note["body"]["type"] == "BUDGET_EXHAUSTED" and note["body"]["needsHuman"] is True


def test_an_untagged_function_is_out_of_scope_under_opt_in(deployed, timeline):
    [incident] = incidents(deployed, SCOPE_FN)
    assert incident["outcome"] == "OUT_OF_SCOPE" and incident["status"] == "CLOSED"
    assert "auto-repair=enabled" in incident["reason"]
    # THEN no diagnosis ran, nothing changed, and no notice went out (NOTIFY_IGNORED is not set)
    full = IncidentStore(table(deployed, "incidents")).get_incident(incident["incidentId"])
    assert "diagnosis" not in full and memory(deployed, SCOPE_FN) == 128
    assert deployed.notifications(SCOPE_FN) == []
    assert [n["notificationStatus"] for n in full["notifications"]] == ["NOT_REQUIRED"]


def test_each_guard_outcome_is_a_metric(deployed, timeline):
    logs = deployed.cloud.client("logs")

    def emitted(function: str, metric: str) -> bool:
        group = f"/aws/lambda/lambda-auto-repair-{function}-{deployed.environment}"
        return bool(logs.filter_log_events(logGroupName=group, filterPattern=f'"{metric}"')["events"])

    for function, metric in (("parse-alarm", "AlarmsDuplicate"), ("parse-alarm", "AlarmsLocked"),
                             ("parse-alarm", "AlarmsCooldown"), ("parse-alarm", "AlarmsOutOfScope"),
                             ("execute-repair", "RepairsPaused"), ("execute-repair", "RepairsBudgetExhausted"),
                             ("notify", "OutcomeLocked"), ("notify", "OutcomeCooldown")):
        assert emitted(function, metric), f"{metric} not in {function}'s logs"


def test_operators_see_the_guards_in_the_cli(deployed, timeline):
    listed = run_cli(deployed, "incidents", "list", "--function", MAIN)
    assert listed.returncode == 0, listed.stderr
    for outcome in ("REPAIRED", "DUPLICATE", "LOCKED", "COOLDOWN"):
        assert outcome in listed.stdout, outcome
    [locked] = by_outcome(deployed, MAIN)["LOCKED"]
    shown = run_cli(deployed, "incidents", "show", locked["incidentId"])
    assert shown.returncode == 0 and f"locked by:    {timeline['winner']}" in shown.stdout
    [paused] = incidents(deployed, PAUSED_FN)
    shown = run_cli(deployed, "incidents", "show", paused["incidentId"])
    assert shown.returncode == 0 and "not applied:  repairs are paused" in shown.stdout
