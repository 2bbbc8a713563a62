"""CloudWatch alarm evaluation in the local cloud and the exact alarm state-change event."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest


def poll(fetch: Callable[[], Any], deadline: float = 40.0) -> Any:
    end = time.monotonic() + deadline
    while True:
        value = fetch()
        if value or time.monotonic() > end:
            return value
        time.sleep(0.2)


def _capture_alarm_events(cloud: Any, alarm_name: str) -> str:
    """A default-bus rule for this alarm's state-change events -> a fresh SQS queue; returns the queue URL."""
    sqs, events = cloud.client("sqs"), cloud.client("events")
    url = sqs.create_queue(QueueName=f"alarm-events-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rule = f"alarm-{uuid.uuid4().hex[:8]}"
    events.put_rule(
        Name=rule,
        EventPattern=json.dumps(
            {
                "source": ["aws.cloudwatch"],
                "detail-type": ["CloudWatch Alarm State Change"],
                "detail": {"alarmName": [alarm_name]},
            }
        ),
    )
    events.put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": arn}])
    return url


def _events(cloud: Any, url: str) -> list[dict[str, Any]]:
    messages = cloud.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


def _assert_aws_shape(event: dict[str, Any], alarm: dict[str, Any]) -> None:
    assert event["source"] == "aws.cloudwatch"
    assert event["detail-type"] == "CloudWatch Alarm State Change"
    assert event["resources"] == [alarm["AlarmArn"]]
    assert event["account"] == "123456789012" and event["region"] == "us-east-1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", event["time"])
    detail = event["detail"]
    assert set(detail) == {"alarmName", "state", "previousState", "configuration"}
    assert detail["alarmName"] == alarm["AlarmName"]
    for block in (detail["state"], detail["previousState"]):
        assert {"value", "reason", "timestamp"} <= set(block)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", block["timestamp"])
    metric = detail["configuration"]["metrics"][0]
    assert metric["returnData"] is True and metric["id"]
    assert metric["metricStat"]["metric"] == {
        "namespace": "Local/Test",
        "name": "Errors",
        "dimensions": {"FunctionName": alarm["Dimensions"][0]["Value"]},
    }
    assert metric["metricStat"]["period"] == 10 and metric["metricStat"]["stat"] == "Sum"
    assert detail["configuration"]["description"] == "local alarm"


def _put_alarm(cloud: Any, name: str, fn: str, **extra: Any) -> dict[str, Any]:
    cw = cloud.client("cloudwatch")
    cw.put_metric_alarm(
        AlarmName=name,
        AlarmDescription="local alarm",
        Namespace="Local/Test",
        MetricName="Errors",
        Dimensions=[{"Name": "FunctionName", "Value": fn}],
        Statistic="Sum",
        Period=10,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanThreshold",
        **extra,
    )
    return cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]


def test_metric_data_drives_alarm_to_alarm_state_and_emits_event(local_cloud: Any) -> None:
    # GIVEN an alarm on Sum(Errors) > 1 over 10 s, and a rule capturing its events
    name, fn = f"alarm-{uuid.uuid4().hex[:8]}", f"fn-{uuid.uuid4().hex[:6]}"
    url = _capture_alarm_events(local_cloud, name)
    alarm = _put_alarm(local_cloud, name, fn, TreatMissingData="notBreaching")
    cw = local_cloud.client("cloudwatch")
    # WHEN datapoints totalling 3 arrive
    cw.put_metric_data(
        Namespace="Local/Test",
        MetricData=[
            {"MetricName": "Errors", "Dimensions": [{"Name": "FunctionName", "Value": fn}], "Value": 1.0},
            {"MetricName": "Errors", "Dimensions": [{"Name": "FunctionName", "Value": fn}], "Value": 2.0},
        ],
    )
    # THEN the alarm goes to ALARM with AWS's reason wording
    state = poll(lambda: cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"] == "ALARM")
    assert state
    described = cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]
    assert re.fullmatch(
        r"Threshold Crossed: 1 out of the last 1 datapoints \[3\.0 \(\d\d/\d\d/\d\d \d\d:\d\d:\d\d\)\] was greater than "
        r"the threshold \(1\.0\) \(minimum 1 datapoint for OK -> ALARM transition\)\.",
        described["StateReason"],
    ), described["StateReason"]
    reason_data = json.loads(described["StateReasonData"])
    assert reason_data["recentDatapoints"] == [3.0] and reason_data["threshold"] == 1.0
    # AND the exact AWS event reached the default bus
    received: list[dict[str, Any]] = []
    assert poll(
        lambda: (
            received.extend(_events(local_cloud, url))
            or any(e["detail"]["state"]["value"] == "ALARM" for e in received)
        )
    )
    event = next(e for e in received if e["detail"]["state"]["value"] == "ALARM")
    _assert_aws_shape(event, alarm)
    assert event["detail"]["state"]["reason"] == described["StateReason"]
    assert json.loads(event["detail"]["state"]["reasonData"]) == reason_data
    assert event["detail"]["previousState"]["value"] in ("OK", "INSUFFICIENT_DATA")


def test_set_alarm_state_emits_the_same_event_shape(local_cloud: Any) -> None:
    # GIVEN an alarm without data (INSUFFICIENT_DATA, as on AWS)
    name, fn = f"alarm-{uuid.uuid4().hex[:8]}", f"fn-{uuid.uuid4().hex[:6]}"
    url = _capture_alarm_events(local_cloud, name)
    alarm = _put_alarm(local_cloud, name, fn)
    assert alarm["StateValue"] == "INSUFFICIENT_DATA"
    # WHEN the state is set by hand
    local_cloud.client("cloudwatch").set_alarm_state(
        AlarmName=name, StateValue="ALARM", StateReason="Testing auto-repair system"
    )
    # THEN the same AWS-shaped event is delivered, with the given reason
    received: list[dict[str, Any]] = []
    assert poll(lambda: received.extend(_events(local_cloud, url)) or received, deadline=10)
    event = received[0]
    _assert_aws_shape(event, alarm)
    assert event["detail"]["state"]["value"] == "ALARM"
    assert event["detail"]["state"]["reason"] == "Testing auto-repair system"
    assert event["detail"]["previousState"]["value"] == "INSUFFICIENT_DATA"


def test_alarm_actions_publish_to_sns(local_cloud: Any) -> None:
    # GIVEN an alarm whose AlarmActions is a topic with an SQS subscriber
    sns, sqs = local_cloud.client("sns"), local_cloud.client("sqs")
    topic = sns.create_topic(Name=f"t-{uuid.uuid4().hex[:8]}")["TopicArn"]
    url = sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    name, fn = f"alarm-{uuid.uuid4().hex[:8]}", f"fn-{uuid.uuid4().hex[:6]}"
    _put_alarm(local_cloud, name, fn, AlarmActions=[topic])
    # WHEN it goes to ALARM
    local_cloud.client("cloudwatch").set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="x")
    # THEN exactly one alarm notification is published
    messages = poll(lambda: sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []), 10)
    assert len(messages) == 1
    body = json.loads(json.loads(messages[0]["Body"])["Message"])
    assert (
        body["AlarmName"] == name
        and body["NewStateValue"] == "ALARM"
        and body["OldStateValue"] == "INSUFFICIENT_DATA"
    )


def test_metric_math_alarm(local_cloud: Any) -> None:
    # GIVEN a metric-math alarm: 100 * errors / invocations > 50
    name, fn = f"math-{uuid.uuid4().hex[:8]}", f"fn-{uuid.uuid4().hex[:6]}"
    cw = local_cloud.client("cloudwatch")
    dims = [{"Name": "FunctionName", "Value": fn}]
    cw.put_metric_alarm(
        AlarmName=name,
        EvaluationPeriods=1,
        Threshold=50.0,
        ComparisonOperator="GreaterThanThreshold",
        Metrics=[
            {"Id": "rate", "Expression": "100 * errors / invocations", "ReturnData": True},
            {
                "Id": "errors",
                "ReturnData": False,
                "MetricStat": {
                    "Metric": {"Namespace": "Local/Test", "MetricName": "Errors", "Dimensions": dims},
                    "Period": 10,
                    "Stat": "Sum",
                },
            },
            {
                "Id": "invocations",
                "ReturnData": False,
                "MetricStat": {
                    "Metric": {"Namespace": "Local/Test", "MetricName": "Invocations", "Dimensions": dims},
                    "Period": 10,
                    "Stat": "Sum",
                },
            },
        ],
    )
    # WHEN 3 of 4 invocations fail
    cw.put_metric_data(
        Namespace="Local/Test",
        MetricData=[
            {"MetricName": "Errors", "Dimensions": dims, "Value": 3.0},
            {"MetricName": "Invocations", "Dimensions": dims, "Value": 4.0},
        ],
    )
    # THEN the alarm goes to ALARM on 75.0
    assert poll(lambda: cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"] == "ALARM")
    assert "[75.0 (" in cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateReason"]


def _bucket_start(period: int, back: int) -> datetime:
    now = time.time()
    return datetime.fromtimestamp((now // period - back) * period + 1, tz=UTC)


# (id, alarm settings, datapoints as (periods back, values, dimensions override), expected state)
EVALUATION_CASES: list[
    tuple[str, dict[str, Any], list[tuple[int, list[float], list[dict[str, str]] | None]], str]
] = [
    (
        "p95",
        {"ExtendedStatistic": "p95", "Threshold": 90.0},
        [(0, [float(v) for v in range(1, 101)], None)],
        "ALARM",
    ),
    (
        "p95-below",
        {"ExtendedStatistic": "p95", "Threshold": 99.0},
        [(0, [float(v) for v in range(1, 101)], None)],
        "OK",
    ),
    (
        "2-of-3",
        {"EvaluationPeriods": 3, "DatapointsToAlarm": 2},
        [(0, [5.0], None), (1, [0.0], None), (2, [5.0], None)],
        "ALARM",
    ),
    (
        "1-of-3-needs-2",
        {"EvaluationPeriods": 3, "DatapointsToAlarm": 2},
        [(0, [5.0], None), (1, [0.0], None), (2, [0.0], None)],
        "OK",
    ),
    (
        "missing-as-breaching",
        {"EvaluationPeriods": 2, "DatapointsToAlarm": 2, "TreatMissingData": "breaching"},
        [(0, [5.0], None)],
        "ALARM",
    ),
    ("missing-as-not-breaching", {"TreatMissingData": "notBreaching"}, [], "OK"),
    ("less-than", {"ComparisonOperator": "LessThanThreshold"}, [(0, [0.5], None)], "ALARM"),
    (
        "other-dimension-set-ignored",
        {"TreatMissingData": "notBreaching"},
        [(0, [50.0], [{"Name": "FunctionName", "Value": "FN"}, {"Name": "Resource", "Value": "FN:1"}])],
        "OK",
    ),
    ("average", {"Statistic": "Average", "Threshold": 2.0}, [(0, [1.0, 2.0, 6.0], None)], "ALARM"),
]


@pytest.mark.parametrize(
    "case_id,settings,datapoints,expected", EVALUATION_CASES, ids=[c[0] for c in EVALUATION_CASES]
)
def test_alarm_evaluation_table(
    local_cloud: Any, case_id: str, settings: dict[str, Any], datapoints: list[Any], expected: str
) -> None:
    period = 60
    # Stay clear of a period boundary so the buckets the data lands in are the ones evaluated.
    assert poll(lambda: time.time() % period < period - 15, deadline=20)
    # GIVEN an alarm with the case's settings
    name, fn = f"eval-{case_id}-{uuid.uuid4().hex[:6]}", f"fn-{uuid.uuid4().hex[:6]}"
    cw = local_cloud.client("cloudwatch")
    params: dict[str, Any] = {
        "AlarmName": name,
        "Namespace": "Local/Eval",
        "MetricName": "Duration",
        "Dimensions": [{"Name": "FunctionName", "Value": fn}],
        "Statistic": "Maximum",
        "Period": period,
        "EvaluationPeriods": 1,
        "Threshold": 1.0,
        "ComparisonOperator": "GreaterThanThreshold",
        **settings,
    }
    if "ExtendedStatistic" in params:
        params.pop("Statistic")
    cw.put_metric_alarm(**params)
    # WHEN the datapoints arrive (timestamps inside the chosen periods)
    for back, values, dims in datapoints:
        dims = (
            [{**d, "Value": fn if d["Value"] == "FN" else d["Value"].replace("FN", fn)} for d in dims]
            if dims
            else None
        )
        cw.put_metric_data(
            Namespace="Local/Eval",
            MetricData=[
                {
                    "MetricName": "Duration",
                    "Dimensions": dims or [{"Name": "FunctionName", "Value": fn}],
                    "Timestamp": _bucket_start(period, back),
                    "Values": values[i : i + 50],
                }
                for i in range(0, len(values), 50)
            ],
        )
    # THEN the alarm reaches the expected state
    state = poll(
        lambda: cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"] == expected, 20
    )
    assert state, cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateReason"]


def test_composite_alarm_follows_its_rule(local_cloud: Any) -> None:
    # GIVEN two metric alarms and a composite alarm over them
    cw = local_cloud.client("cloudwatch")
    a, b = f"child-a-{uuid.uuid4().hex[:6]}", f"child-b-{uuid.uuid4().hex[:6]}"
    for name in (a, b):
        _put_alarm(local_cloud, name, f"fn-{uuid.uuid4().hex[:6]}")
    composite = f"composite-{uuid.uuid4().hex[:6]}"
    url = _capture_alarm_events(local_cloud, composite)
    cw.put_composite_alarm(AlarmName=composite, AlarmRule=f'ALARM("{a}") OR (ALARM({b}) AND NOT OK({a}))')

    def state() -> str:
        return cw.describe_alarms(AlarmNames=[composite], AlarmTypes=["CompositeAlarm"])["CompositeAlarms"][
            0
        ]["StateValue"]

    # THEN with no child in ALARM it settles in OK
    assert poll(lambda: state() == "OK", deadline=15)
    # WHEN a child goes to ALARM
    cw.set_alarm_state(AlarmName=a, StateValue="ALARM", StateReason="test")
    # THEN the composite goes to ALARM and its event names the rule and the triggering alarm
    assert poll(lambda: state() == "ALARM", deadline=15)
    received: list[dict[str, Any]] = []
    assert poll(
        lambda: (
            received.extend(_events(local_cloud, url))
            or any(e["detail"]["state"]["value"] == "ALARM" for e in received)
        )
    )
    event = next(e for e in received if e["detail"]["state"]["value"] == "ALARM")
    assert event["detail"]["configuration"]["alarmRule"].startswith(f'ALARM("{a}")')
    triggering = json.loads(event["detail"]["state"]["reasonData"])["triggeringAlarms"]
    assert [t["arn"].rsplit(":", 1)[-1] for t in triggering] == [a]
