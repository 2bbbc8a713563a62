"""SNS e-mail in the local cloud: every message for an ``email``/``email-json`` subscription lands in an outbox.

moto 5.2.5 accepts e-mail subscriptions but delivers nothing to them (``moto.sns.models.Subscription.publish``
handles sqs, http(s) and lambda only). The local cloud has no mail server and no inbox, so:

* each message a subscription would receive is written to ``<state>/outbox/<timestamp>-<messageid>.json`` with
  topicArn, subscriptionArn, protocol, endpoint, subject, message, messageAttributes, timestamp; the subscription's
  filter policy is honoured with moto's own matcher (``FilterPolicyMatcher``);
* e-mail subscriptions are confirmed at once (moto already reports ``PendingConfirmation: false``): nobody could
  click the confirmation link. Deliveries to other protocols (SQS, Lambda, HTTP) are left to moto unchanged.

Patches (see ``MOTO_TOUCHPOINTS``): wraps ``moto.sns.models.Subscription.publish``. AWS behaviour:
https://docs.aws.amazon.com/sns/latest/dg/sns-email-notifications.html
Written for moto ``>=5.2.5,<5.3`` (``MOTO_VERSIONS``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

# What this module relies on in moto: checked at server start and by tests/unit/test_local_cloud_contracts.py
# (auto_repair_local.moto_contract; upgrade procedure in docs/ARCHITECTURE.md, "Upgrading moto").
MOTO_VERSIONS = ">=5.2.5,<5.3"
MOTO_TOUCHPOINTS = (
    "moto.sns.models.Subscription.publish(message, message_id, subject, message_attributes, message_structure)",
    "moto.sns.models.Subscription._parse_message_structure(message, protocol)",
    "moto.sns.models.Subscription#_filter_policy_matcher",
    "moto.sns.models.Subscription#protocol",
    "moto.sns.models.Subscription#endpoint",
    "moto.sns.models.Subscription#topic",
    "moto.sns.utils.FilterPolicyMatcher.matches(message_attributes, message)",
)

log = logging.getLogger("auto_repair_local.sns_outbox")
_EMAIL = ("email", "email-json")
_lock = threading.Lock()


def _write(
    outbox: Path, subscription: Any, message: str, message_id: str, subject: str | None, attrs: Any
) -> Path:
    now = dt.datetime.now(dt.UTC)
    record = {
        "topicArn": subscription.topic_arn,
        "subscriptionArn": subscription.arn,
        "protocol": subscription.protocol,
        "endpoint": subscription.endpoint,
        "messageId": message_id,
        "subject": subject,
        "message": message,
        "messageAttributes": attrs or {},
        "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
    }
    outbox.mkdir(parents=True, exist_ok=True)
    with _lock:
        # <timestamp>-<messageid>.json; the same message to a second e-mail subscription gets a -<n> suffix.
        stem = f"{now.strftime('%Y%m%dT%H%M%S%fZ')}-{message_id}"
        path, n = outbox / f"{stem}.json", 1
        while path.exists():
            path, n = outbox / f"{stem}-{n}.json", n + 1
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True))
        os.replace(tmp, path)  # readers never see a half-written file
    return path


def install(ctx: Any) -> None:
    from moto.sns.models import Subscription

    outbox = Path(ctx.state_dir) / "outbox"
    orig_publish = Subscription.publish

    def publish(
        self: Any,
        message: str,
        message_id: str,
        subject: str | None = None,
        message_attributes: Any = None,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        if self.protocol not in _EMAIL:
            return orig_publish(self, message, message_id, subject, message_attributes, *args, **kwargs)
        matcher = self._filter_policy_matcher
        if matcher is not None and not matcher.matches(message_attributes, message):
            return None
        if kwargs.get("message_structure") == "json":
            message = self._parse_message_structure(message, self.protocol)
        try:
            _write(outbox, self, message, message_id, subject, message_attributes)
        except OSError:  # a full disk must not fail the Publish call
            log.exception("could not write outbox message %s", message_id)
        return None

    Subscription.publish = publish  # type: ignore[method-assign]
