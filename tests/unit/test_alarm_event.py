"""ParseAlarmEvent's pure core: every event becomes a model with an outcome; nothing raises."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from auto_repair.alarm_event import parse_alarm_event
from auto_repair.outcomes import AlarmOutcome

EVENT = json.loads((Path(__file__).parents[1] / "events" / "alarm_lambda_errors.json").read_text())


def event_with(**changes):
    """A copy of the sample event with dotted-path changes; value None deletes the key."""
    event = copy.deepcopy(EVENT)
    for path, value in changes.items():
        keys = path.split("__")
        node = event
        for key in keys[:-1]:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if value is None:
            node.pop(keys[-1], None)
        else:
            node[keys[-1]] = value
    return event


def test_lambda_alarm_proceeds_with_function_from_dimensions():
    # GIVEN an Errors alarm on function "orders" WHEN parsed
    model = parse_alarm_event(EVENT, account="123456789012", region="us-east-1")
    # THEN the design's alarm-event fields are filled from the event, the function from the dimension
    assert model["outcome"] == AlarmOutcome.PROCEED
    assert model["functionName"] == "orders"
    assert model["alarmId"] == "arn:aws:cloudwatch:us-east-1:123456789012:alarm:lambda-errors-alarm-orders"
    assert model["metricName"] == "Errors"
    assert model["threshold"] == 1.0
    assert model["currentValue"] == 3.0
    assert model["previousState"] == "OK" and model["currentState"] == "ALARM"
    assert model["stateChangeTime"] == "2026-11-22T10:00:00.123+0000"


def test_function_name_never_comes_from_alarm_name():
    # GIVEN an alarm whose name mentions another function
    event = event_with(detail__alarmName="lambda-errors-alarm-payments")
    # THEN the dimension wins
    assert parse_alarm_event(event)["functionName"] == "orders"


def test_alias_qualified_resource_dimension():
    metrics = [
        {
            "id": "m1",
            "metricStat": {
                "metric": {
                    "namespace": "AWS/Lambda",
                    "name": "Errors",
                    "dimensions": {"Resource": "orders:live"},
                },
                "period": 60,
                "stat": "Sum",
            },
        }
    ]
    model = parse_alarm_event(event_with(detail__configuration__metrics=metrics))
    assert model["outcome"] == AlarmOutcome.PROCEED
    assert (model["functionName"], model["qualifier"]) == ("orders", "live")


def test_alias_alarm_with_both_dimensions_keeps_the_qualifier():
    # GIVEN the metric CloudWatch publishes for an alias: both FunctionName and Resource "name:alias"
    dims = {"FunctionName": "orders", "Resource": "orders:live"}
    model = parse_alarm_event(event_with(detail__configuration__metrics__0__metricStat__metric__dimensions=dims))
    # THEN the alias is not lost (repairing $LATEST alone would fix nothing)
    assert (model["functionName"], model["qualifier"]) == ("orders", "live")


def test_metric_math_over_one_function_proceeds_and_over_two_is_ignored_for_a_human():
    def stat(fn, mid):
        return {
            "id": mid,
            "metricStat": {
                "metric": {"namespace": "AWS/Lambda", "name": "Errors", "dimensions": {"FunctionName": fn}},
                "period": 60,
                "stat": "Sum",
            },
            "returnData": False,
        }

    one = [
        {"id": "e1", "expression": "m1/m2*100", "returnData": True},
        stat("orders", "m1"),
        stat("orders", "m2"),
    ]
    two = [
        {"id": "e1", "expression": "m1+m2", "returnData": True},
        stat("orders", "m1"),
        stat("payments", "m2"),
    ]
    assert parse_alarm_event(event_with(detail__configuration__metrics=one))["outcome"] == AlarmOutcome.PROCEED
    model = parse_alarm_event(event_with(detail__configuration__metrics=two))
    assert model["outcome"] == AlarmOutcome.IGNORED and model["needsHuman"] is True
    assert model["functionNames"] == ["orders", "payments"]


@pytest.mark.parametrize(
    ("changes", "outcome", "reason_part"),
    [
        ({"detail__state__value": "OK"}, AlarmOutcome.IGNORED, "only ALARM"),
        ({"detail__state__value": "INSUFFICIENT_DATA"}, AlarmOutcome.IGNORED, "only ALARM"),
        (
            {"detail__configuration__metrics__0__metricStat__metric__namespace": "AWS/EC2"},
            AlarmOutcome.IGNORED,
            "not about a Lambda",
        ),
        (
            {"detail__configuration__metrics__0__metricStat__metric__dimensions": {}},
            AlarmOutcome.IGNORED,
            "not about a Lambda",
        ),
        ({"detail__configuration": {"alarmRule": "ALARM(a) OR ALARM(b)"}}, AlarmOutcome.IGNORED, "composite"),
        ({"account": "999999999999"}, AlarmOutcome.IGNORED, "not this account"),
        ({"region": "eu-west-1"}, AlarmOutcome.IGNORED, "region"),
        ({"detail__state__value": "BROKEN"}, AlarmOutcome.INVALID, "unknown alarm state"),
        ({"detail__state": None}, AlarmOutcome.INVALID, "detail.state"),
        ({"detail__state": "ALARM"}, AlarmOutcome.INVALID, "detail.state"),
        ({"detail": None}, AlarmOutcome.INVALID, "'detail'"),
        ({"detail": []}, AlarmOutcome.INVALID, "'detail'"),
        ({"detail__alarmName": None}, AlarmOutcome.INVALID, "alarmName"),
        ({"detail__alarmName": 42}, AlarmOutcome.INVALID, "alarmName"),
        ({"source": "aws.ec2"}, AlarmOutcome.INVALID, "source"),
        ({"detail-type": "EC2 Instance State-change Notification"}, AlarmOutcome.INVALID, "detail-type"),
        ({"detail__configuration__metrics": "m1"}, AlarmOutcome.INVALID, "must be a list"),
        ({"detail__configuration__metrics": ["m1"]}, AlarmOutcome.INVALID, "metrics[0]"),
        ({"detail__configuration__metrics__0__metricStat__metric": None}, AlarmOutcome.INVALID, "metric"),
        ({"detail__configuration__metrics__0__metricStat__metric__namespace": None}, AlarmOutcome.INVALID, "namespace"),
        (
            {"detail__configuration__metrics__0__metricStat__metric__dimensions": ["FunctionName"]},
            AlarmOutcome.INVALID,
            "dimensions",
        ),
        ({"detail__configuration": "x"}, AlarmOutcome.INVALID, "configuration"),
        ({"detail__previousState": 5}, AlarmOutcome.INVALID, "previousState"),
    ],
)
def test_unusual_and_malformed_events(changes, outcome, reason_part):
    # GIVEN a variation of a valid event WHEN parsed THEN it gets the right outcome and a reason, never raises
    model = parse_alarm_event(event_with(**changes), account="123456789012", region="us-east-1")
    assert model["outcome"] == outcome
    assert reason_part.lower() in model["reason"].lower()


@pytest.mark.parametrize("event", [None, 42, "text", [], {}, {"detail": {}}, b"bytes"])
def test_non_events_are_invalid_not_crashes(event):
    model = parse_alarm_event(event)
    assert model["outcome"] == AlarmOutcome.INVALID
    assert model["needsHuman"] is True


def test_huge_and_non_utf8_reason_is_bounded_and_clean():
    # GIVEN a 1 MB reason with a lone surrogate (not encodable as UTF-8)
    event = event_with(detail__state__reason="\ud800" + "x" * 1_000_000)
    model = parse_alarm_event(event)
    # THEN it is kept, bounded, and encodable
    assert model["outcome"] == AlarmOutcome.PROCEED
    assert len(model["stateReason"]) < 2100
    model["stateReason"].encode("utf-8")


def test_wrong_typed_threshold_data_is_tolerated():
    event = event_with(detail__state__reasonData="not json")
    model = parse_alarm_event(event)
    assert model["outcome"] == AlarmOutcome.PROCEED and model["threshold"] is None and model["currentValue"] is None


@pytest.mark.parametrize(
    "name",
    ["f" * 65, "orders api", "orders/api", "", "arn:aws:lambda:us-east-1:1:function:x", "orders:live:extra",
     "orders:bad alias"],
)
def test_dimension_that_is_not_a_function_name_is_invalid(name):
    # GIVEN a Lambda metric whose FunctionName dimension cannot name a function WHEN parsed
    event = event_with(detail__configuration__metrics__0__metricStat__metric__dimensions={"Resource": name})
    model = parse_alarm_event(event)
    # THEN the event is invalid with a reason (empty names are simply not a target), never an API call later
    if name:
        assert model["outcome"] == AlarmOutcome.INVALID and "not a Lambda function name" in model["reason"]
    else:
        assert model["outcome"] == AlarmOutcome.IGNORED


@pytest.mark.parametrize("resource", ["orders", "orders:live", "orders:42", "orders:$LATEST", "a_b-C9:prod_1"])
def test_valid_function_names_and_qualifiers(resource):
    event = event_with(detail__configuration__metrics__0__metricStat__metric__dimensions={"Resource": resource})
    model = parse_alarm_event(event)
    assert model["outcome"] == AlarmOutcome.PROCEED and model["functionName"] == resource.partition(":")[0]
