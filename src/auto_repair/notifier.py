"""Publishing notifications and recording that they were sent (or why not)."""

from __future__ import annotations

import json
import logging
from typing import Any

from .clock import now_iso
from .notification import NEEDS_HUMAN, build
from .outcomes import DeliveryStatus
from .records import NOTIFICATION_PREFIX, IncidentStore
from .workflow import WorkflowContext


def publish(sns: Any, topic_arn: str, built: dict[str, Any]) -> str:
    attributes = {k: {"DataType": "String", "StringValue": str(v)} for k, v in built["attributes"].items()}
    response = sns.publish(
        TopicArn=topic_arn,
        Subject=built["subject"],
        Message=json.dumps(built["message"], indent=2, default=str),
        MessageAttributes=attributes,
    )
    return response["MessageId"]


def notify(
    context: WorkflowContext,
    outcome: str,
    *,
    environment: str,
    sns: Any,
    topic_arn: str,
    store: IncidentStore,
    incident_id: str,
    send: bool = True,
) -> dict[str, Any]:
    """Build, publish (unless ``send`` is false: a deliberate 'no notification needed') and record."""
    built = build(context, outcome, environment)
    record: dict[str, Any] = {"subject": built["subject"], "outcome": outcome, "sentAt": now_iso(),
                              "message": built["message"]}
    if send:
        record["messageId"] = publish(sns, topic_arn, built)
        record["notificationStatus"] = DeliveryStatus.SENT
    else:
        record["notificationStatus"] = DeliveryStatus.NOT_REQUIRED
    recorded = True
    try:
        store.put(incident_id, f"{NOTIFICATION_PREFIX}{record['sentAt']}#{outcome}", record)
    except Exception:  # the message is out; a lost record must not make the caller send it twice
        logging.getLogger(__name__).exception("notification sent but not recorded")
        recorded = False
    return {"outcome": outcome, "subject": built["subject"], "messageId": record.get("messageId"),
            "notificationStatus": record["notificationStatus"], "needsHuman": outcome in NEEDS_HUMAN,
            "recorded": recorded}
