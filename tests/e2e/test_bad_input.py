"""Unusual and malformed events through the deployed workflow: none crashes, each leaves a record and its outcome.

Every event is handed to the state machine the way the EventBridge target does (the event is the execution
input), all at once. For each: the execution must not fail, the incident record must exist with the right
outcome and reason, and a notification must have been sent exactly when a human is needed.
"""

from __future__ import annotations

import copy
import itertools
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from auto_repair.records import IncidentStore

EVENT = json.loads((Path(__file__).parents[1] / "events" / "alarm_lambda_errors.json").read_text())
GONE = "bad-input-no-such-function"
_SEQUENCE = itertools.count(1)


def event_with(**changes: Any) -> dict:
    """The sample event with dotted-path (``__``) changes; value ``DELETE`` removes the key."""
    event = copy.deepcopy(EVENT)
    event["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"]["dimensions"]["FunctionName"] = GONE
    # Each case is its own state change: the idempotency guard would rightly call copies duplicates.
    event["id"] = str(uuid.uuid4())
    event["detail"]["state"]["timestamp"] = f"2026-11-22T10:00:00.{next(_SEQUENCE):03d}+0000"
    for path, value in changes.items():
        keys = path.split("__")
        node = event
        for key in keys[:-1]:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if value == "DELETE":
            node.pop(keys[-1], None)
        else:
            node[keys[-1]] = value
    return event


def metric(namespace: str, name: str, dims: dict, mid: str = "m1") -> dict:
    return {"id": mid, "metricStat": {"metric": {"namespace": namespace, "name": name, "dimensions": dims},
                                      "period": 60, "stat": "Sum"}, "returnData": False}


M = "detail__configuration__metrics"
DIMS = f"{M}__0__metricStat__metric__dimensions"


@dataclass
class Case:
    event: Any
    outcome: str  # the incident's final outcome
    reason: str  # part of the recorded reason (case-insensitive)
    notified: bool  # a human is told


INVALID = "INVALID_EVENT"
IGNORED = "IGNORED"

CASES: dict[str, Case] = {
    # not an event at all
    "empty-object": Case({}, INVALID, "source", True),
    "json-string": Case("an alarm fired", INVALID, "must be an object", True),
    "json-array": Case([EVENT, EVENT], INVALID, "must be an object", True),
    "json-number": Case(42, INVALID, "must be an object", True),
    "sns-envelope-not-an-alarm": Case({"Records": [{"Sns": {"Message": "an alarm fired"}}]}, INVALID, "source", True),
    # an EventBridge event that reached us through an SNS topic (a rule targeting a team's topic) is accepted
    "sns-envelope-of-eventbridge-event": Case({"Records": [{"Sns": {"Message": json.dumps(event_with())}}]}, IGNORED,
                                              "does not exist", False),
    # missing fields and wrong types
    "no-detail": Case(event_with(detail="DELETE"), INVALID, "'detail'", True),
    "detail-string": Case(event_with(detail="ALARM"), INVALID, "'detail'", True),
    "no-alarm-name": Case(event_with(detail__alarmName="DELETE"), INVALID, "alarmName", True),
    "empty-alarm-name": Case(event_with(detail__alarmName=""), INVALID, "alarmName", True),
    "alarm-name-number": Case(event_with(detail__alarmName=7), INVALID, "alarmName", True),
    "no-state": Case(event_with(detail__state="DELETE"), INVALID, "detail.state", True),
    "state-list": Case(event_with(detail__state=["ALARM"]), INVALID, "detail.state", True),
    "previous-state-number": Case(event_with(detail__previousState=5), INVALID, "previousState", True),
    "metrics-string": Case(event_with(**{M: "m1"}), INVALID, "must be a list", True),
    "metrics-of-strings": Case(event_with(**{M: ["m1"]}), INVALID, "metrics[0]", True),
    "metric-null": Case(event_with(**{f"{M}__0__metricStat__metric": None}), INVALID, "metric", True),
    "dimensions-list": Case(event_with(**{DIMS: ["FunctionName"]}), INVALID, "dimensions", True),
    "configuration-string": Case(event_with(detail__configuration="x"), INVALID, "configuration", True),
    "wrong-source": Case(event_with(source="aws.ec2"), INVALID, "source", True),
    "wrong-detail-type": Case(event_with(**{"detail-type": "Scheduled Event"}), INVALID, "detail-type", True),
    # unknown state values
    "state-unknown": Case(event_with(detail__state__value="BROKEN"), INVALID, "unknown alarm state", True),
    "state-lowercase": Case(event_with(detail__state__value="alarm"), INVALID, "unknown alarm state", True),
    "state-number": Case(event_with(detail__state__value=1), INVALID, "unknown alarm state", True),
    # transitions that are not a new failure
    "ok-to-ok": Case(event_with(detail__state__value="OK"), IGNORED, "only ALARM starts a repair", False),
    "alarm-to-ok": Case(event_with(detail__state__value="OK", detail__previousState__value="ALARM"), IGNORED,
                        "only ALARM starts a repair", False),
    "insufficient-data": Case(event_with(detail__state__value="INSUFFICIENT_DATA"), IGNORED,
                              "only ALARM starts a repair", False),
    # alarms that do not name exactly one Lambda function
    "composite": Case(event_with(detail__configuration={"alarmRule": "ALARM(a) OR ALARM(b)"}), IGNORED,
                      "composite alarm", False),
    "metric-math-two-functions": Case(
        event_with(**{M: [{"id": "e1", "expression": "m1+m2", "returnData": True},
                          metric("AWS/Lambda", "Errors", {"FunctionName": GONE}),
                          metric("AWS/Lambda", "Errors", {"FunctionName": GONE + "-2"}, "m2")]}),
        IGNORED, "spans 2 functions", True),
    "metric-math-one-function": Case(
        event_with(**{M: [{"id": "e1", "expression": "m1/m2*100", "returnData": True},
                          metric("AWS/Lambda", "Errors", {"FunctionName": GONE}),
                          metric("AWS/Lambda", "Invocations", {"FunctionName": GONE}, "m2")]}),
        IGNORED, "does not exist", False),
    "ec2-metric": Case(event_with(**{M: [metric("AWS/EC2", "CPUUtilization", {"InstanceId": "i-0abc"})]}),
                       IGNORED, "not about a Lambda function", False),
    "sqs-metric": Case(event_with(**{M: [metric("AWS/SQS", "ApproximateAgeOfOldestMessage",
                                                {"QueueName": "orders"})]}), IGNORED, "AWS/SQS", False),
    "alias-qualified": Case(event_with(**{DIMS: {"FunctionName": GONE, "Resource": f"{GONE}:live"}}), IGNORED,
                            "does not exist", False),
    "deleted-function": Case(event_with(), IGNORED, "does not exist", False),
    "own-function": Case(event_with(**{DIMS: {"FunctionName": "lambda-auto-repair-diagnose-local"}}), IGNORED,
                         "auto-repair system's own functions", False),
    # hostile or broken text
    "huge-reason": Case(event_with(detail__state__reason="x" * 200_000), IGNORED, "does not exist", False),
    "non-utf8-reason": Case(event_with(detail__state__reason="bad bytes \udcff\udcfe \ud800 end"), IGNORED,
                            "does not exist", False),
    "control-characters": Case(event_with(detail__alarmName="alarm\u0000\u0007\n\t<script>"), IGNORED,
                               "does not exist", False),
    "reason-data-not-json": Case(event_with(detail__state__reasonData="{not json"), IGNORED, "does not exist",
                                 False),
    "very-long-function-name": Case(event_with(**{DIMS: {"FunctionName": "f" * 5000}}), INVALID,
                                    "not a Lambda function name", True),
    "function-name-with-spaces": Case(event_with(**{DIMS: {"FunctionName": "orders api; drop"}}), INVALID,
                                      "not a Lambda function name", True),
    # someone else's event
    "other-account": Case(event_with(account="999999999999"), IGNORED, "account 999999999999", False),
    "other-region": Case(event_with(region="eu-west-3"), IGNORED, "region eu-west-3", False),
}


def start(sfn, machine_arn: str, name: str, event: Any) -> str:
    # json.dumps escapes lone surrogates (\udcff), which is how such bytes arrive in a JSON event.
    return sfn.start_execution(stateMachineArn=machine_arn, name=f"bad-{name}-{uuid.uuid4().hex[:8]}",
                               input=json.dumps(event))["executionArn"]


@pytest.fixture(scope="module")
def runs(deployed):
    sfn = deployed.cloud.client("stepfunctions")
    arns = {name: start(sfn, deployed.state_machine_arn, name, case.event) for name, case in CASES.items()}
    pending, done = dict(arns), {}
    deadline = time.monotonic() + 240
    while pending and time.monotonic() < deadline:
        for name, arn in list(pending.items()):
            described = sfn.describe_execution(executionArn=arn)
            if described["status"] != "RUNNING":
                done[name] = described
                del pending[name]
        time.sleep(1.0)
    assert not pending, f"still running: {sorted(pending)}"
    table = boto3.resource("dynamodb", endpoint_url=deployed.cloud.endpoint, region_name="us-east-1",
                           aws_access_key_id="test", aws_secret_access_key="test").Table(
        f"lambda-auto-repair-incidents-{deployed.environment}")
    store = IncidentStore(table)
    return {name: (done[name], store.get_incident(arn.rsplit(":", 1)[-1])) for name, arn in arns.items()}


def test_the_corpus_is_big_enough():
    assert len(CASES) >= 30


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_recorded_with_its_outcome_and_never_crashes(runs, name):
    case = CASES[name]
    execution, incident = runs[name]
    # THEN the execution ended normally (no crash, no failure path) ...
    assert execution["status"] == "SUCCEEDED", execution
    # ... the incident record exists with the right outcome and a reason a human can read ...
    alarm = incident.get("alarm")
    assert alarm, f"no incident record for {name}"
    assert alarm["outcome"] == case.outcome, alarm
    assert case.reason.lower() in alarm["reason"].lower(), alarm["reason"]
    assert len(json.dumps(alarm)) < 20_000  # huge input is bounded before it reaches the table
    json.dumps(alarm, ensure_ascii=False).encode("utf-8")  # and stored text is valid UTF-8
    # ... and a human is told exactly when one is needed
    statuses = [n["notificationStatus"] for n in incident["notifications"]]
    assert statuses == (["SENT"] if case.notified else ["NOT_REQUIRED"]), statuses
