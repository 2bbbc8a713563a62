"""Time in one place: the current instant, the product's timestamp formats, and parsing them back.

Two ISO 8601 formats are in use and both are part of stored or published records, so neither may change:

* :func:`iso_millis` (``2026-01-02T03:04:05.678Z``): incident and audit records, notification times, evidence
  series and log timestamps, the collection window;
* :func:`iso_seconds` (``2026-01-02T03:04:05Z``): the guards' lock, cooldown and event-claim times, knowledge
  entries' ``createdAt``, the sweep event's ``time``.

:func:`alarm_time` is CloudWatch's own alarm-event format (``2026-01-02T03:04:05.678+0000``), used where the
product writes an event that must look like CloudWatch's.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso_millis(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def now_iso() -> str:
    """The current instant as :func:`iso_millis` writes it (every record's timestamp)."""
    return iso_millis(utc_now())


def iso_seconds(ts: datetime | float) -> str:
    """A datetime, or epoch seconds, to the second (the guards' and the knowledge base's format)."""
    moment = ts if isinstance(ts, datetime) else datetime.fromtimestamp(ts, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def alarm_time(ts: datetime) -> str:
    ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}+0000"


def epoch_in(seconds: int) -> int:
    """Whole epoch seconds ``seconds`` from now: DynamoDB TTL attributes."""
    return int(time.time()) + seconds


def parse_time(value: str | None, default: datetime) -> datetime:
    """An ISO 8601 timestamp (``Z``, ``+00:00`` or CloudWatch's ``+0000``; naive means UTC), else ``default``."""
    if not value:
        return default
    text = value.strip().replace("Z", "+00:00")
    # CloudWatch writes "+0000"; fromisoformat wants "+00:00".
    text = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return default
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
