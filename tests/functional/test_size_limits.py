"""AWS's size and count limits, enforced by the local cloud as AWS answers, and the product living within them.

Quotas cited per test; the local cloud's side is ``auto_repair_local.limits`` (SNS, EventBridge, CloudWatch) and
moto's own DynamoDB item check.
"""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError
from moto.cloudwatch.responses import CloudWatchResponse
from moto.events.responses import EventsHandler
from moto.sns.models import SNSBackend

from auto_repair.notifier import notify
from auto_repair.outcomes import Notice, RecordType
from auto_repair.records import AuditLog, IncidentStore
from auto_repair.targets import Targets, TargetSettings
from auto_repair_local import limits

BIG_NON_ASCII = "é" * 150_000  # 150,000 characters, 300,000 UTF-8 bytes: over SNS's 256 KB
HUGE_NON_ASCII = "é" * 220_000  # 440,000 UTF-8 bytes: over DynamoDB's 400 KB


@pytest.fixture
def local_limits(aws, monkeypatch):
    """The local cloud's limit patches, undone after the test (monkeypatch restores the replaced methods)."""
    monkeypatch.setattr(SNSBackend, "publish", SNSBackend.publish)
    monkeypatch.setattr(EventsHandler, "put_events", EventsHandler.put_events)
    monkeypatch.setattr(CloudWatchResponse, "describe_alarms", CloudWatchResponse.describe_alarms)
    limits.install(None)
    return aws


def _topic(session) -> str:
    return session.client("sns").create_topic(Name="notices")["TopicArn"]


# ---- SNS Publish: 256 KB message (bytes, attributes included), subject < 100 printable ASCII characters

@pytest.mark.parametrize(("message", "subject", "why"), [
    (BIG_NON_ASCII, "ok", "150,000 characters are 300,000 UTF-8 bytes: over 262,144"),
    ("x" * 262_145, "ok", "one byte over"),
    ("small", "é-subject", "non-ASCII subject"),
    ("small", "line\nbreak", "line break in the subject"),
    ("small", "s" * 100, "100 characters: must be less than 100"),
])
def test_sns_publish_refuses_what_aws_refuses(local_limits, message, subject, why):
    """SNS Publish: "messages must be UTF-8 encoded strings and at most 256 KB in size (262,144 bytes, not
    262,144 characters)"; "Subjects must be UTF-8 text with no line breaks or control characters, and must be
    less than 100 characters long." https://docs.aws.amazon.com/sns/latest/api/API_Publish.html and
    https://docs.aws.amazon.com/general/latest/gr/sns.html (quotas)."""
    sns = local_limits.client("sns")
    with pytest.raises(ClientError) as caught:
        sns.publish(TopicArn=_topic(local_limits), Message=message, Subject=subject)
    assert caught.value.response["Error"]["Code"] == "InvalidParameter", why


def test_sns_publish_accepts_exactly_the_limit(local_limits):
    sns = local_limits.client("sns")
    assert sns.publish(TopicArn=_topic(local_limits), Message="x" * 262_144, Subject="s" * 99)["MessageId"]


def test_a_notice_about_a_huge_diagnosis_is_shortened_not_lost(local_limits):
    """GIVEN a diagnosis whose reasoning and evidence are far over SNS's 256 KB (non-ASCII text)
    WHEN the notice is sent
    THEN it is published, says it was shortened and where the full record is, and the record is stored."""
    store = IncidentStore(local_limits.resource("dynamodb").Table("incidents"))
    context = {
        "alarm": {"functionName": "orders", "executionId": "exec-big", "alarmName": "a", "stateReason": "r"},
        "diagnosisResult": {"cause": "memory", "confidence": 0.9, "reasoning": BIG_NON_ASCII,
                            "evidencePoints": [BIG_NON_ASCII[:20_000]] * 30},
    }
    sent = notify(context, Notice.HUMAN_REVIEW, environment="dev", sns=local_limits.client("sns"),
                  topic_arn=_topic(local_limits), store=store, incident_id="exec-big")
    assert sent["messageId"] and sent["recorded"]
    notification = store.get_incident("exec-big")["notifications"][0]
    assert notification["notificationStatus"] == "SENT"


def test_fit_message_says_where_the_full_record_is():
    from auto_repair.notifier import fit_message

    small = {"summary": "fine"}
    assert fit_message(small, "exec-1") is small
    fitted = fit_message({"summary": "s", "diagnosis": {"reasoning": BIG_NON_ASCII}}, "exec-1")
    assert "auto-repair incidents show exec-1" in fitted["truncated"]
    assert len(json.dumps(fitted, indent=2).encode()) < 262_144


# ---- DynamoDB: 400 KB items

def test_dynamodb_refuses_an_item_over_400_kb(aws):
    """DynamoDB: "The maximum item size in DynamoDB is 400 KB, which includes both attribute name binary length
    (UTF-8 length) and attribute value lengths (again binary length)."
    https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html#limits-items
    (moto's own check, ValidationException "Item size has exceeded the maximum allowed size")."""
    table = aws.resource("dynamodb").Table("incidents")
    with pytest.raises(ClientError) as caught:
        table.put_item(Item={"incidentId": "i", "recordType": "X", "blob": HUGE_NON_ASCII})
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert "Item size has exceeded the maximum allowed size" in caught.value.response["Error"]["Message"]


@pytest.mark.parametrize("data", [
    {"reasoning": HUGE_NON_ASCII, "confidence": 0.9},
    {"evidencePoints": [{"description": HUGE_NON_ASCII[:5_000]}] * 100},
    {"logs": ["x" * 1_000] * 300, "reasoning": HUGE_NON_ASCII},
], ids=["long reasoning", "many evidence points", "raw logs and long reasoning"])
def test_an_oversized_incident_record_is_shrunk_and_written(aws, data):
    """GIVEN a record over DynamoDB's 400 KB item limit WHEN stored THEN it is written, marked truncated."""
    store = IncidentStore(aws.resource("dynamodb").Table("incidents"))
    store.put("exec-1", RecordType.DIAGNOSIS, data)
    stored = store.get_incident("exec-1")["diagnosis"]
    assert stored["truncated"] is True
    assert set(stored) - {"incidentId", "recordType", "expiresAt", "truncated", "logs"} == set(data) - {"logs"}


def test_an_oversized_incident_update_is_shrunk_and_written(aws):
    store = IncidentStore(aws.resource("dynamodb").Table("incidents"))
    store.start_incident("exec-1", {"functionName": "orders", "outcome": "PROCEED"}, execution_arn="arn",
                         start_time="2026-12-04T00:00:00Z")
    store.update_incident("exec-1", summary=HUGE_NON_ASCII, outcome="REPAIRED")
    alarm = store.get_incident("exec-1")["alarm"]
    assert alarm["outcome"] == "REPAIRED" and alarm["summary"].endswith("[truncated]")


def test_an_oversized_audit_entry_is_shrunk_and_written(aws):
    audit = AuditLog(aws.resource("dynamodb").Table("audit"))
    audit.record(function_name="orders", execution_id="exec-1", phase="before", action="update", actor="x",
                 reason=HUGE_NON_ASCII, details={"response": HUGE_NON_ASCII})
    [entry] = audit.for_execution("exec-1")
    assert entry["truncated"] is True and entry["functionName"] == "orders"


# ---- EventBridge PutEvents: 256 KB per request

def test_put_events_refuses_entries_over_256_kb(local_limits):
    """EventBridge PutEvents: "The total entry size must be less than 256KB", counted as Time (14 bytes),
    Source, DetailType, Detail and each Resource in UTF-8 bytes; over it the request fails with
    ValidationException "Total size of the entries in the request is over the limit."
    https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-putevent-size.html"""
    events = local_limits.client("events")
    entry = {"Source": "app", "DetailType": "t", "Detail": json.dumps({"text": "é" * 70_000}, ensure_ascii=False)}  # ~140 KB
    assert events.put_events(Entries=[entry])["FailedEntryCount"] == 0
    with pytest.raises(ClientError) as caught:
        events.put_events(Entries=[entry, entry])
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert "over the limit" in caught.value.response["Error"]["Message"]


# ---- CloudWatch DescribeAlarms: at most 100 AlarmNames

def test_describe_alarms_refuses_more_than_100_names(local_limits):
    """CloudWatch DescribeAlarms: AlarmNames "Array Members: Maximum number of 100 items."
    https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_DescribeAlarms.html"""
    cloudwatch = local_limits.client("cloudwatch")
    assert cloudwatch.describe_alarms(AlarmNames=[f"a{i}" for i in range(100)])["MetricAlarms"] == []
    with pytest.raises(ClientError) as caught:
        cloudwatch.describe_alarms(AlarmNames=[f"a{i}" for i in range(101)])
    assert caught.value.response["Error"]["Code"] == "ValidationError"


def test_the_sweep_reads_the_states_of_more_than_100_alarms(local_limits):
    """GIVEN 150 memory alarms, the last one in ALARM WHEN the sweep asks for their states THEN it gets all 150
    (batched by 100), not a ValidationError."""
    cloudwatch = local_limits.client("cloudwatch")
    names = [f"lambda-memory-alarm-fn{i}" for i in range(150)]
    for name in names:
        cloudwatch.put_metric_alarm(AlarmName=name, MetricName="m", Namespace="n", Statistic="Maximum",
                                    Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold")
    cloudwatch.set_alarm_state(AlarmName=names[-1], StateValue="ALARM", StateReason="test")
    targets = Targets(lambda_client=None, cloudwatch=cloudwatch, logs=None,
                      settings=TargetSettings.from_json("{}"), actions=[])
    states = targets.alarm_states(names)
    assert len(states) == 150 and states[names[-1]] == "ALARM"
