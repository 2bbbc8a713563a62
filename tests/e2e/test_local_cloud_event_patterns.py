"""EventBridge pattern semantics through a running local cloud: PutRule, TestEventPattern and PutEvents agree.

AWS matches patterns with Event Ruler (https://github.com/aws/event-ruler; operators:
https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-create-pattern-operators.html). A field both outside
and inside ``$or`` is not ANDed there (see tests/unit/test_event_patterns.py), so the local cloud refuses such a
pattern as AWS refuses an invalid one: InvalidEventPatternException
(https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutRule.html#API_PutRule_Errors).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from cfnlint.decode import decode

REPO = Path(__file__).resolve().parents[2]
CASES = json.loads((REPO / "tests/events/alarm_forwarding_cases.json").read_text())["cases"]
FORWARDING_RULE = json.loads(
    json.dumps(
        decode(str(REPO / "lambda-auto-repair-main.yaml"))[0]["Resources"]["AlarmForwardingRule"][
            "Properties"
        ]["EventPattern"]
    )
)
# The pre-issue-12 rule: detail.alarmName both outside and inside $or.
OLD_RULE = {
    "source": ["aws.cloudwatch"],
    "detail-type": ["CloudWatch Alarm State Change"],
    "detail": {
        "alarmName": [{"anything-but": {"prefix": "lambda-auto-repair-"}}],
        "$or": [
            {"configuration": {"metrics": {"metricStat": {"metric": {"namespace": ["AWS/Lambda"]}}}}},
            {"alarmName": [{"prefix": "lambda-"}]},
        ],
    },
}


def test_put_rule_refuses_a_field_both_outside_and_inside_or(local_cloud: Any) -> None:
    # GIVEN the old forwarding rule's pattern WHEN it is put THEN the local cloud refuses it as AWS refuses
    # a pattern it cannot take, instead of matching it with a meaning AWS does not give it
    events = local_cloud.client("events")
    with pytest.raises(ClientError) as caught:
        events.put_rule(Name=f"old-{uuid.uuid4().hex[:8]}", EventPattern=json.dumps(OLD_RULE))
    assert caught.value.response["Error"]["Code"] == "InvalidEventPatternException"
    assert "detail.alarmName" in caught.value.response["Error"]["Message"]
    # AND TestEventPattern refuses it the same way
    with pytest.raises(ClientError) as caught:
        events.test_event_pattern(EventPattern=json.dumps(OLD_RULE), Event=json.dumps(CASES[0]["event"]))
    assert caught.value.response["Error"]["Code"] == "InvalidEventPatternException"


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_test_event_pattern_reads_the_forwarding_rule_as_the_table_says(local_cloud: Any, case: dict) -> None:
    # GIVEN the main template's forwarding rule WHEN TestEventPattern is asked about an alarm state change
    result = local_cloud.client("events").test_event_pattern(
        EventPattern=json.dumps(FORWARDING_RULE), Event=json.dumps(case["event"])
    )
    # THEN it answers as the table says (own alarms and non-Lambda alarms are not forwarded)
    assert result["Result"] is case["forwarded"], case["why"]


def test_put_events_forwards_exactly_the_tables_lambda_alarms(local_cloud: Any) -> None:
    # GIVEN the forwarding rule on the default bus delivering to a queue
    events, sqs = local_cloud.client("events"), local_cloud.client("sqs")
    url = sqs.create_queue(QueueName=f"fwd-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rule = f"fwd-{uuid.uuid4().hex[:8]}"
    events.put_rule(Name=rule, EventPattern=json.dumps(FORWARDING_RULE))
    events.put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": arn}])
    # WHEN every alarm state change of the table is put (ids tell them apart), then one more that must arrive
    marker = {**CASES[0]["event"], "detail": {**CASES[0]["event"]["detail"], "alarmName": "lambda-marker"}}
    entries = [
        {
            "Source": c["event"]["source"],
            "DetailType": c["event"]["detail-type"],
            "Resources": c["event"]["resources"],
            "Detail": json.dumps(c["event"]["detail"]),
        }
        for c in [*CASES, {"event": marker}]
    ]
    for start in range(0, len(entries), 10):
        assert events.put_events(Entries=entries[start : start + 10])["FailedEntryCount"] == 0
    # THEN the queue holds exactly the forwarded ones
    received: list[str] = []
    deadline = time.monotonic() + 20
    while "lambda-marker" not in received and time.monotonic() < deadline:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
            "Messages", []
        )
        received += [json.loads(m["Body"])["detail"]["alarmName"] for m in messages]
    assert "lambda-marker" in received
    expected = {c["event"]["detail"]["alarmName"] for c in CASES if c["forwarded"]}
    assert set(received) - {"lambda-marker"} == expected
