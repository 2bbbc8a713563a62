"""AWS size and count limits the product runs into, enforced as AWS answers (moto checks fewer or counts otherwise).

* SNS ``Publish``: the message plus its attributes is at most 262,144 bytes of UTF-8 (moto counts characters, so a
  message of non-ASCII text passed locally and failed on AWS); the subject is printable ASCII without line breaks,
  under 100 characters (moto raised a plain ``ValueError``, a 500). Both answer ``InvalidParameter`` as AWS does.
  https://docs.aws.amazon.com/sns/latest/api/API_Publish.html
* EventBridge ``PutEvents``: the entries of one request total at most 256 KB, counted as AWS counts them (Time 14
  bytes, Source, DetailType, Detail and each Resource in UTF-8 bytes); over it the whole request fails with
  ``ValidationException`` "Total size of the entries in the request is over the limit." (moto had no limit).
  https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-putevent-size.html
* CloudWatch ``DescribeAlarms``: at most 100 ``AlarmNames`` per call, ``ValidationError`` beyond (moto took any
  number). https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_DescribeAlarms.html

Lambda's 6 MB invoke payloads are enforced in ``lambda_runtime`` (it owns Invoke); DynamoDB's 400 KB item limit is
moto's own (``LimitedSizeDict``, ValidationException "Item size has exceeded the maximum allowed size").

Patches (see ``MOTO_TOUCHPOINTS``): wraps ``SNSBackend.publish``, ``EventsHandler.put_events`` (the API, so the
local cloud's own internal events are not counted) and ``CloudWatchResponse.describe_alarms``.
Written for moto ``>=5.2.5,<5.3`` (``MOTO_VERSIONS``).
"""

from __future__ import annotations

from typing import Any

# What this module relies on in moto: checked at server start and by tests/unit/test_local_cloud_contracts.py
# (auto_repair_local.moto_contract; upgrade procedure in docs/ARCHITECTURE.md, "Upgrading moto").
MOTO_VERSIONS = ">=5.2.5,<5.3"
MOTO_TOUCHPOINTS = (
    "moto.sns.models.SNSBackend.publish(message, arn, subject, message_attributes)",
    "moto.sns.exceptions.InvalidParameterValue",
    "moto.events.responses.EventsHandler.put_events",
    "moto.events.responses.EventsHandler._get_param(param_name)",
    "moto.events.exceptions.ValidationException",
    "moto.cloudwatch.responses.CloudWatchResponse.describe_alarms",
    "moto.cloudwatch.responses.CloudWatchResponse._get_param(param_name)",
    "moto.cloudwatch.exceptions.ValidationError",
)

SNS_MESSAGE_BYTES = 262_144
SNS_SUBJECT_CHARS = 100
PUT_EVENTS_BYTES = 262_144
PUT_EVENTS_TIME_BYTES = 14
DESCRIBE_ALARMS_NAMES = 100


def _utf8(text: Any) -> int:
    return len(str(text).encode("utf-8")) if text is not None else 0


def sns_message_bytes(message: str, attributes: dict[str, Any] | None) -> int:
    """The message and every attribute's name, type and value, as SNS counts them."""
    size = _utf8(message)
    for name, attribute in (attributes or {}).items():
        size += _utf8(name)
        if isinstance(attribute, dict):
            size += _utf8(attribute.get("DataType") or attribute.get("Type"))
            size += _utf8(attribute.get("StringValue") or attribute.get("Value") or attribute.get("BinaryValue"))
        else:
            size += _utf8(attribute)
    return size


def subject_problem(subject: str | None) -> str | None:
    if subject is None:
        return None
    if not subject or len(subject) >= SNS_SUBJECT_CHARS:
        return "Subject must be non-empty and less than 100 characters"
    if any(not (32 <= ord(c) < 127) for c in subject):
        return "Subject must be ASCII text that begins with a letter, number, or punctuation mark; must not " \
               "include line breaks or control characters"
    return None


def put_events_entry_bytes(entry: dict[str, Any]) -> int:
    size = PUT_EVENTS_TIME_BYTES if entry.get("Time") is not None else 0
    size += _utf8(entry.get("Source")) + _utf8(entry.get("DetailType")) + _utf8(entry.get("Detail"))
    return size + sum(_utf8(r) for r in entry.get("Resources") or [])


def _install_sns() -> None:
    from moto.sns.exceptions import InvalidParameterValue
    from moto.sns.models import SNSBackend

    original = SNSBackend.publish

    def publish(self: Any, message: str, *args: Any, **kwargs: Any) -> Any:
        problem = subject_problem(kwargs.get("subject"))
        if problem:
            raise InvalidParameterValue(f"Invalid parameter: Subject ({problem})")
        if sns_message_bytes(message, kwargs.get("message_attributes")) > SNS_MESSAGE_BYTES:
            raise InvalidParameterValue("Invalid parameter: Message too long")
        return original(self, message, *args, **kwargs)

    SNSBackend.publish = publish  # type: ignore[method-assign]


def _install_events() -> None:
    from moto.events.exceptions import ValidationException
    from moto.events.responses import EventsHandler

    original = EventsHandler.put_events

    def put_events(self: Any) -> Any:
        entries = self._get_param("Entries") or []
        if sum(put_events_entry_bytes(e) for e in entries if isinstance(e, dict)) > PUT_EVENTS_BYTES:
            raise ValidationException("Total size of the entries in the request is over the limit.")
        return original(self)

    EventsHandler.put_events = put_events  # type: ignore[method-assign]


def _install_cloudwatch() -> None:
    from moto.cloudwatch.exceptions import ValidationError
    from moto.cloudwatch.responses import CloudWatchResponse

    original = CloudWatchResponse.describe_alarms

    def describe_alarms(self: Any) -> Any:
        names = self._get_param("AlarmNames", []) or []
        if len(names) > DESCRIBE_ALARMS_NAMES:
            raise ValidationError(
                f"1 validation error detected: Value '{names}' at 'alarmNames' failed to satisfy constraint: "
                f"Member must have length less than or equal to {DESCRIBE_ALARMS_NAMES}")
        return original(self)

    CloudWatchResponse.describe_alarms = describe_alarms  # type: ignore[method-assign]


def install(ctx: Any) -> None:
    _install_sns()
    _install_events()
    _install_cloudwatch()
