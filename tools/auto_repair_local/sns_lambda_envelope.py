"""SNS-to-Lambda deliveries carry the real envelope: the topic, the subscription, the message id and time.

moto 5.2.5 invokes a subscribed function with a fixed placeholder record (``TopicArn`` and ``EventSubscriptionArn``
``arn:aws:sns:EXAMPLE``, one ``MessageId`` for every message, a 1970 timestamp, made-up message attributes). The
topic ARN is the one part of an SNS delivery that SNS itself vouches for (the message body is whatever the publisher
wrote), and the workflow's trust check believes an SNS message only for the topic's own account, so the local cloud
delivers what AWS delivers: https://docs.aws.amazon.com/lambda/latest/dg/with-sns.html (the event) and
https://docs.aws.amazon.com/sns/latest/dg/sns-message-and-json-formats.html (the fields).

Patches (see ``MOTO_TOUCHPOINTS``): wraps ``moto.sns.models.Subscription.publish`` (moto still decides the filter
policy, the message structure and the endpoint) to note the delivery, and replaces
``moto.awslambda.models.LambdaBackend.send_sns_message``, which builds the record from it.
Written for moto ``>=5.2.5,<5.3`` (``MOTO_VERSIONS``).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from typing import Any

MOTO_VERSIONS = ">=5.2.5,<5.3"
MOTO_TOUCHPOINTS = (
    "moto.sns.models.Subscription.publish(message, message_id, subject, message_attributes, message_structure)",
    "moto.sns.models.Subscription#protocol",
    "moto.sns.models.Subscription#arn",
    "moto.sns.models.Subscription#topic",
    "moto.awslambda.models.LambdaBackend.send_sns_message(function_name, message, subject, qualifier)",
    "moto.awslambda.models.LambdaBackend#_lambdas",
)

_DELIVERY = threading.local()


def _attributes(raw: Any) -> dict[str, dict[str, str]]:
    """Message attributes as Lambda receives them: ``{name: {Type, Value}}``."""
    out: dict[str, dict[str, str]] = {}
    for name, attribute in (raw or {}).items():
        if isinstance(attribute, dict):
            kind = str(attribute.get("DataType") or attribute.get("Type") or "String")
            value = attribute.get("StringValue", attribute.get("BinaryValue", attribute.get("Value", "")))
            out[name] = {"Type": kind, "Value": value if isinstance(value, str) else str(value)}
    return out


def record(*, message: str, subject: str | None, topic_arn: str, subscription_arn: str, message_id: str,
           attributes: Any, now: dt.datetime) -> dict[str, Any]:
    """The event Lambda receives for one SNS message."""
    return {"Records": [{
        "EventVersion": "1.0", "EventSubscriptionArn": subscription_arn, "EventSource": "aws:sns",
        "Sns": {"Type": "Notification", "MessageId": message_id, "TopicArn": topic_arn, "Subject": subject,
                "Message": message, "Timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
                "SignatureVersion": "1", "Signature": "", "SigningCertUrl": "", "UnsubscribeUrl": "",
                "MessageAttributes": _attributes(attributes)}}]}


def install(ctx: Any) -> None:
    from moto.awslambda.models import LambdaBackend
    from moto.sns.models import Subscription

    if getattr(LambdaBackend.send_sns_message, "__auto_repair_envelope__", False):
        return
    orig_publish = Subscription.publish

    def publish(self: Any, message: str, message_id: str, subject: str | None = None,
                message_attributes: Any = None, *args: Any, **kwargs: Any) -> Any:
        if self.protocol != "lambda":
            return orig_publish(self, message, message_id, subject, message_attributes, *args, **kwargs)
        _DELIVERY.current = {"topic_arn": self.topic.arn, "subscription_arn": self.arn, "message_id": message_id,
                             "attributes": message_attributes}
        try:
            return orig_publish(self, message, message_id, subject, message_attributes, *args, **kwargs)
        finally:
            _DELIVERY.current = None

    def send_sns_message(self: Any, function_name: str, message: str, subject: str | None = None,
                         qualifier: str | None = None) -> None:
        delivery = getattr(_DELIVERY, "current", None) or {}
        event = record(message=message, subject=subject, topic_arn=delivery.get("topic_arn", ""),
                       subscription_arn=delivery.get("subscription_arn", ""),
                       message_id=delivery.get("message_id", ""), attributes=delivery.get("attributes"),
                       now=dt.datetime.now(dt.UTC))
        func = self._lambdas.get_function_by_name_or_arn_with_qualifier(function_name, qualifier)
        func.invoke(json.dumps(event), {}, {})

    send_sns_message.__auto_repair_envelope__ = True  # type: ignore[attr-defined]
    Subscription.publish = publish  # type: ignore[method-assign]
    LambdaBackend.send_sns_message = send_sns_message  # type: ignore[method-assign]
