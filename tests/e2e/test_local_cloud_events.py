"""EventBridge delivery in the local cloud: Step Functions targets, input shaping, DLQ, bus forwarding, patterns."""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile
from collections.abc import Callable
from typing import Any

import pytest

from auto_repair_local.lambda_role_trust import LAMBDA_TRUST_POLICY

PASS_MACHINE = json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
ROLE = "arn:aws:iam::123456789012:role/events"


def poll(fetch: Callable[[], Any], deadline: float = 20.0) -> Any:
    """Call ``fetch`` until it returns something truthy or the deadline passes."""
    end = time.monotonic() + deadline
    while True:
        value = fetch()
        if value or time.monotonic() > end:
            return value
        time.sleep(0.1)


def _queue(cloud: Any) -> tuple[str, str]:
    sqs = cloud.client("sqs")
    url = sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def _receive(cloud: Any, url: str) -> list[dict[str, Any]]:
    return (
        cloud.client("sqs")
        .receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
        )
        .get("Messages", [])
    )


ALARM_DETAIL = {
    "alarmName": "fn-errors",
    "state": {"value": "ALARM"},
    "configuration": {
        "metrics": [
            {
                "id": "m1",
                "metricStat": {
                    "metric": {
                        "namespace": "AWS/Lambda",
                        "name": "Errors",
                        "dimensions": {"FunctionName": "my-fn"},
                    }
                },
            }
        ]
    },
}


def test_step_functions_target_gets_transformed_input(local_cloud: Any) -> None:
    # GIVEN a Pass state machine behind a rule with an InputTransformer
    sfn, events = local_cloud.client("stepfunctions"), local_cloud.client("events")
    machine = sfn.create_state_machine(
        name=f"sm-{uuid.uuid4().hex[:8]}", definition=PASS_MACHINE, roleArn=ROLE
    )
    rule = f"r-{uuid.uuid4().hex[:8]}"
    source = f"test.{rule}"
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": [source]}))
    events.put_targets(
        Rule=rule,
        Targets=[
            {
                "Id": "sm",
                "Arn": machine["stateMachineArn"],
                "RoleArn": ROLE,
                "InputTransformer": {
                    "InputPathsMap": {
                        "name": "$.detail.alarmName",
                        "state": "$.detail.state",
                        "fn": "$.detail.configuration.metrics[0].metricStat.metric.dimensions.FunctionName",
                    },
                    "InputTemplate": '{"alarm": <name>, "state": <state>, "text": "fn <fn> is <name>"}',
                },
            }
        ],
    )
    # WHEN an event is put on the default bus
    events.put_events(Entries=[{"Source": source, "DetailType": "t", "Detail": json.dumps(ALARM_DETAIL)}])
    # THEN an execution starts with the transformed input
    executions = poll(lambda: sfn.list_executions(stateMachineArn=machine["stateMachineArn"])["executions"])
    assert len(executions) == 1
    described = sfn.describe_execution(executionArn=executions[0]["executionArn"])
    assert json.loads(described["input"]) == {
        "alarm": "fn-errors",
        "state": {"value": "ALARM"},
        "text": "fn my-fn is fn-errors",
    }


@pytest.mark.parametrize(
    "target_extra,expected",
    [
        ({"Input": '{"fixed": true}'}, {"fixed": True}),
        ({"InputPath": "$.detail.state"}, {"value": "ALARM"}),
        ({}, None),  # whole event
        (
            {
                "InputTransformer": {
                    "InputPathsMap": {"metric": "$.detail.configuration.metrics[0].metricStat.metric.name"},
                    "InputTemplate": '{"rule": "<aws.events.rule-name>", "metric": <metric>}',
                }
            },
            {"rule": "RULE", "metric": "Errors"},
        ),
    ],
    ids=["Input", "InputPath", "whole-event", "reserved-variables"],
)
def test_input_and_input_path(local_cloud: Any, target_extra: dict[str, Any], expected: Any) -> None:
    sfn, events = local_cloud.client("stepfunctions"), local_cloud.client("events")
    machine = sfn.create_state_machine(
        name=f"sm-{uuid.uuid4().hex[:8]}", definition=PASS_MACHINE, roleArn=ROLE
    )
    rule = f"r-{uuid.uuid4().hex[:8]}"
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": [f"test.{rule}"]}))
    events.put_targets(
        Rule=rule, Targets=[{"Id": "sm", "Arn": machine["stateMachineArn"], "RoleArn": ROLE, **target_extra}]
    )
    events.put_events(
        Entries=[
            {
                "Source": f"test.{rule}",
                "DetailType": "t",
                "Detail": json.dumps(ALARM_DETAIL),
                "Resources": ["arn:x"],
            }
        ]
    )
    executions = poll(lambda: sfn.list_executions(stateMachineArn=machine["stateMachineArn"])["executions"])
    payload = json.loads(sfn.describe_execution(executionArn=executions[0]["executionArn"])["input"])
    if expected is None:
        # the whole event, as AWS sends it
        assert payload["detail"] == ALARM_DETAIL and payload["source"] == f"test.{rule}"
        assert payload["resources"] == ["arn:x"] and payload["detail-type"] == "t"
        assert payload["time"].endswith("Z") and payload["account"] == "123456789012"
    else:
        assert payload == json.loads(json.dumps(expected).replace("RULE", rule))


def test_failing_target_goes_to_dead_letter_queue(local_cloud: Any) -> None:
    # GIVEN a rule whose Step Functions target does not exist, with a DLQ
    events = local_cloud.client("events")
    dlq_url, dlq_arn = _queue(local_cloud)
    rule = f"r-{uuid.uuid4().hex[:8]}"
    missing = "arn:aws:states:us-east-1:123456789012:stateMachine:does-not-exist"
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": [f"test.{rule}"]}))
    events.put_targets(
        Rule=rule,
        Targets=[
            {
                "Id": "sm",
                "Arn": missing,
                "RoleArn": ROLE,
                "DeadLetterConfig": {"Arn": dlq_arn},
                "RetryPolicy": {"MaximumRetryAttempts": 1},
            }
        ],
    )
    # WHEN an event matches
    events.put_events(Entries=[{"Source": f"test.{rule}", "DetailType": "t", "Detail": "{}"}])
    # THEN the event lands in the DLQ with the attributes EventBridge adds
    messages = poll(lambda: _receive(local_cloud, dlq_url))
    assert len(messages) == 1
    attributes = {k: v["StringValue"] for k, v in messages[0]["MessageAttributes"].items()}
    assert attributes["TARGET_ARN"] == missing
    assert attributes["RULE_ARN"].endswith(f":rule/{rule}")
    assert attributes["ERROR_CODE"] and attributes["ERROR_MESSAGE"]
    assert "RETRY_ATTEMPTS" in attributes
    assert json.loads(messages[0]["Body"])["source"] == f"test.{rule}"


def test_default_bus_rule_forwards_whole_event_to_custom_bus(local_cloud: Any) -> None:
    # GIVEN default-bus rule -> custom bus, and a custom-bus rule -> SQS
    events = local_cloud.client("events")
    bus = f"bus-{uuid.uuid4().hex[:8]}"
    bus_arn = events.create_event_bus(Name=bus)["EventBusArn"]
    url, arn = _queue(local_cloud)
    source = f"test.{bus}"
    events.put_rule(Name=f"fwd-{bus}", EventPattern=json.dumps({"source": [source]}))
    events.put_targets(Rule=f"fwd-{bus}", Targets=[{"Id": "bus", "Arn": bus_arn, "RoleArn": ROLE}])
    events.put_rule(Name=f"on-{bus}", EventBusName=bus, EventPattern=json.dumps({"source": [source]}))
    events.put_targets(Rule=f"on-{bus}", EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])
    # WHEN an event is put on the default bus
    entry = events.put_events(
        Entries=[
            {
                "Source": source,
                "DetailType": "t",
                "Detail": '{"a": 1}',
                "Resources": ["arn:aws:cloudwatch:us-east-1:123456789012:alarm:x"],
            }
        ]
    )
    # THEN it reaches the custom bus's rule unchanged (same id, resources kept)
    messages = poll(lambda: _receive(local_cloud, url))
    body = json.loads(messages[0]["Body"])
    assert body["id"] == entry["Entries"][0]["EventId"]
    assert body["resources"] == ["arn:aws:cloudwatch:us-east-1:123456789012:alarm:x"]
    assert body["detail"] == {"a": 1}


PATTERN_CASES = [
    (
        {"detail": {"configuration": {"metrics": {"metricStat": {"metric": {"namespace": ["AWS/Lambda"]}}}}}},
        True,
    ),
    (
        {"detail": {"configuration": {"metrics": {"metricStat": {"metric": {"namespace": ["AWS/EC2"]}}}}}},
        False,
    ),
    ({"detail": {"alarmName": [{"prefix": "fn-"}]}}, True),
    ({"detail": {"alarmName": [{"prefix": "xx-"}]}}, False),
    ({"detail": {"alarmName": [{"anything-but": ["other"]}]}}, True),
    ({"detail": {"alarmName": [{"anything-but": ["fn-errors"]}]}}, False),
    ({"detail": {"alarmName": [{"anything-but": {"prefix": "fn-"}}]}}, False),
    ({"detail": {"state": {"value": ["ALARM"]}}}, True),
    ({"detail": {"missing": [{"exists": False}]}}, True),
]


@pytest.mark.parametrize("pattern,should_match", PATTERN_CASES)
def test_event_patterns(local_cloud: Any, pattern: dict[str, Any], should_match: bool) -> None:
    # GIVEN a rule with the pattern (+ source) delivering to SQS
    events = local_cloud.client("events")
    url, arn = _queue(local_cloud)
    rule = f"r-{uuid.uuid4().hex[:8]}"
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": [f"test.{rule}"], **pattern}))
    events.put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": arn}])
    # WHEN the alarm-shaped event is put, followed by a marker that always matches a second rule to the same queue
    events.put_rule(Name=f"{rule}-m", EventPattern=json.dumps({"source": [f"marker.{rule}"]}))
    events.put_targets(Rule=f"{rule}-m", Targets=[{"Id": "q", "Arn": arn}])
    events.put_events(
        Entries=[
            {"Source": f"test.{rule}", "DetailType": "t", "Detail": json.dumps(ALARM_DETAIL)},
            {"Source": f"marker.{rule}", "DetailType": "t", "Detail": "{}"},
        ]
    )
    # THEN the alarm event is delivered iff the pattern matches
    received: list[dict[str, Any]] = []

    def got_marker() -> bool:
        received.extend(_receive(local_cloud, url))
        return any(json.loads(m["Body"])["source"] == f"marker.{rule}" for m in received)

    assert poll(got_marker)
    sources = [json.loads(m["Body"])["source"] for m in received]
    assert (f"test.{rule}" in sources) is should_match


def _zip(source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("app.py", source)
    return buffer.getvalue()


def test_lambda_target_is_invoked_asynchronously_with_transformed_input(local_cloud: Any) -> None:
    # GIVEN a function that logs its event, behind a rule with an InputTransformer
    iam, lam, events = local_cloud.client("iam"), local_cloud.client("lambda"), local_cloud.client("events")
    role = f"events-target-{uuid.uuid4().hex[:8]}"
    role_arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=LAMBDA_TRUST_POLICY)["Role"]["Arn"]
    name = f"fn-{uuid.uuid4().hex[:8]}"
    source = "import json\n\ndef handler(event, context):\n    print('EVENT ' + json.dumps(event))\n"
    fn_arn = lam.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=role_arn,
        Handler="app.handler",
        Code={"ZipFile": _zip(source)},
        Timeout=10,
    )["FunctionArn"]
    rule = f"r-{uuid.uuid4().hex[:8]}"
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": [f"test.{rule}"]}))
    events.put_targets(
        Rule=rule,
        Targets=[
            {
                "Id": "fn",
                "Arn": fn_arn,
                "InputTransformer": {
                    "InputPathsMap": {"n": "$.detail.alarmName"},
                    "InputTemplate": '{"alarm": <n>}',
                },
            }
        ],
    )
    # WHEN a matching event is put
    events.put_events(
        Entries=[{"Source": f"test.{rule}", "DetailType": "t", "Detail": json.dumps(ALARM_DETAIL)}]
    )

    # THEN the function ran with the transformed event (its log line shows it)
    def logged() -> list[str]:
        try:
            found = local_cloud.client("logs").filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
        except local_cloud.client("logs").exceptions.ResourceNotFoundException:
            return []
        return [e["message"] for e in found if "EVENT " in e["message"]]

    lines = poll(logged, deadline=30)
    assert lines, "the Lambda target was not invoked"
    assert json.loads(lines[0].split("EVENT ", 1)[1]) == {"alarm": "fn-errors"}


@pytest.mark.parametrize("state,delivered", [("ENABLED", True), ("DISABLED", False)])
def test_log_group_target_and_rule_state(local_cloud: Any, state: str, delivered: bool) -> None:
    # GIVEN a rule (enabled or disabled) whose targets are a log group and, as a marker, an always-enabled queue rule
    events, logs = local_cloud.client("events"), local_cloud.client("logs")
    group = f"/aws/events/{uuid.uuid4().hex[:8]}"
    logs.create_log_group(logGroupName=group)
    rule = f"r-{uuid.uuid4().hex[:8]}"
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": [f"test.{rule}"]}), State=state)
    events.put_targets(
        Rule=rule, Targets=[{"Id": "logs", "Arn": f"arn:aws:logs:us-east-1:123456789012:log-group:{group}"}]
    )
    url, arn = _queue(local_cloud)
    events.put_rule(Name=f"{rule}-m", EventPattern=json.dumps({"source": [f"test.{rule}"]}))
    events.put_targets(Rule=f"{rule}-m", Targets=[{"Id": "q", "Arn": arn}])
    # WHEN a matching event is put
    events.put_events(
        Entries=[{"Source": f"test.{rule}", "DetailType": "t", "Detail": json.dumps({"k": "v"})}]
    )
    # THEN (once the marker shows the event was processed) the log group has it iff the rule is enabled
    assert poll(lambda: _receive(local_cloud, url))
    messages = [json.loads(e["message"]) for e in logs.filter_log_events(logGroupName=group)["events"]]
    assert bool(messages) is delivered
    if delivered:
        assert messages[0]["detail"] == {"k": "v"} and messages[0]["time"].endswith("Z")
