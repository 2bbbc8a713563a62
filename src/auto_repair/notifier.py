"""Publishing notifications and recording that they were sent (or why not)."""

from __future__ import annotations

import json
import logging
from typing import Any

from .clock import now_iso
from .notification import NEEDS_HUMAN, build
from .outcomes import DeliveryStatus
from .records import NOTIFICATION_PREFIX, IncidentStore
from .sizes import SNS_MESSAGE_BYTES, shrink
from .workflow import WorkflowContext

# Room left under SNS's 256 KB for the attributes and the note on a shortened message.
_MESSAGE_BUDGET = SNS_MESSAGE_BYTES - 4_096


def _message_text(message: dict[str, Any]) -> str:
    return json.dumps(message, indent=2, default=str)


def _message_bytes(message: dict[str, Any]) -> int:
    return len(_message_text(message).encode("utf-8"))


def fit_message(message: dict[str, Any], incident_id: str) -> dict[str, Any]:
    """The message, shortened to fit one SNS message when it does not, saying so and where the full record is.

    SNS refuses a message over 256 KB (InvalidParameter "Message too long"); a notice must never fail for the
    size of what it reports, so the longest texts and lists are cut instead.
    """
    fitted, cut = shrink(message, _MESSAGE_BUDGET, _message_bytes)
    if not cut:
        return message
    return {**fitted, "truncated": (
        "This notice was shortened to fit an SNS message (256 KB). The full record: "
        f"auto-repair incidents show {incident_id or fitted.get('executionId') or '(execution id)'}")}


def publish(sns: Any, topic_arn: str, built: dict[str, Any], incident_id: str = "") -> str:
    attributes = {k: {"DataType": "String", "StringValue": str(v)} for k, v in built["attributes"].items()}
    response = sns.publish(
        TopicArn=topic_arn,
        Subject=built["subject"],
        Message=_message_text(fit_message(built["message"], incident_id)),
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
        record["messageId"] = publish(sns, topic_arn, built, incident_id)
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
