"""SNS e-mail subscriptions deliver to the local cloud's outbox, honouring filter policies."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any


def _outbox_for(cloud: Any, topic_arn: str) -> list[dict[str, Any]]:
    outbox = cloud.state_dir / "outbox"
    if not outbox.exists():
        return []
    records = [json.loads(p.read_text()) for p in sorted(outbox.glob("*.json"))]
    return [r for r in records if r["topicArn"] == topic_arn]


def test_email_subscription_gets_filtered_messages_in_outbox(local_cloud: Any) -> None:
    # GIVEN a topic with an SQS subscriber and an e-mail subscriber filtering on severity=high
    sns, sqs = local_cloud.client("sns"), local_cloud.client("sqs")
    topic = sns.create_topic(Name=f"t-{uuid.uuid4().hex[:8]}")["TopicArn"]
    sub = sns.subscribe(
        TopicArn=topic,
        Protocol="email",
        Endpoint="ops@example.com",
        Attributes={"FilterPolicy": json.dumps({"severity": ["high"]})},
        ReturnSubscriptionArn=True,
    )
    url = sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    q_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=q_arn)
    # THEN the e-mail subscription is confirmed (no inbox to click a link in)
    attrs = sns.get_subscription_attributes(SubscriptionArn=sub["SubscriptionArn"])["Attributes"]
    assert attrs["PendingConfirmation"] == "false"

    # AND an unfiltered email-json subscriber
    sns.subscribe(TopicArn=topic, Protocol="email-json", Endpoint="audit@example.com")

    # WHEN two messages are published, only one matching the filter
    high = sns.publish(
        TopicArn=topic,
        Subject="Repair done",
        Message="memory raised",
        MessageAttributes={"severity": {"DataType": "String", "StringValue": "high"}},
    )
    sns.publish(
        TopicArn=topic,
        Message="ignored",
        MessageAttributes={"severity": {"DataType": "String", "StringValue": "low"}},
    )

    # THEN exactly the matching one is in the outbox for the filtered subscription, with its details
    records = [r for r in _outbox_for(local_cloud, topic) if r["subscriptionArn"] == sub["SubscriptionArn"]]
    assert len(records) == 1
    record = records[0]
    assert record["messageId"] == high["MessageId"]
    assert record["endpoint"] == "ops@example.com" and record["protocol"] == "email"
    assert record["subject"] == "Repair done" and record["message"] == "memory raised"
    assert record["messageAttributes"]["severity"]["Value"] == "high"
    assert record["timestamp"].endswith("Z")
    # AND the unfiltered subscriber got both, in files named <timestamp>-<messageid>[-n].json
    unfiltered = [r for r in _outbox_for(local_cloud, topic) if r["endpoint"] == "audit@example.com"]
    assert sorted(r["message"] for r in unfiltered) == ["ignored", "memory raised"]
    names = [p.name for p in (local_cloud.state_dir / "outbox").glob(f"*-{high['MessageId']}*.json")]
    assert len(names) == 2 and len(set(names)) == 2
    # AND SNS -> SQS still gets both messages, as in moto
    received: list[Any] = []
    end = time.monotonic() + 10
    while len(received) < 2 and time.monotonic() < end:
        received += sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    assert sorted(json.loads(m["Body"])["Message"] for m in received) == ["ignored", "memory raised"]
