"""The product's timestamp formats are stored and published: each must stay exactly as it is."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from auto_repair import clock

MOMENT = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
PLUS_TWO = timezone(timedelta(hours=2))
DEFAULT = datetime(2000, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (MOMENT, "2026-01-02T03:04:05.678Z"),
        (MOMENT.astimezone(PLUS_TWO), "2026-01-02T03:04:05.678Z"),  # written in UTC whatever the zone
        (MOMENT.replace(microsecond=999999), "2026-01-02T03:04:05.999Z"),  # truncated, never rounded up
        (MOMENT.replace(microsecond=0), "2026-01-02T03:04:05.000Z"),
    ],
)
def test_iso_millis(ts: datetime, expected: str) -> None:
    assert clock.iso_millis(ts) == expected


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (MOMENT, "2026-01-02T03:04:05Z"),
        (MOMENT.astimezone(PLUS_TWO), "2026-01-02T03:04:05Z"),
        (MOMENT.timestamp(), "2026-01-02T03:04:05Z"),  # epoch seconds, as the guards pass them
        (int(MOMENT.timestamp()), "2026-01-02T03:04:05Z"),
        (0, "1970-01-01T00:00:00Z"),
    ],
)
def test_iso_seconds(ts: datetime | float, expected: str) -> None:
    assert clock.iso_seconds(ts) == expected


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (MOMENT, "2026-01-02T03:04:05.678+0000"),
        (MOMENT.astimezone(PLUS_TWO), "2026-01-02T03:04:05.678+0000"),
        (MOMENT.replace(microsecond=1000), "2026-01-02T03:04:05.001+0000"),
    ],
)
def test_alarm_time(ts: datetime, expected: str) -> None:
    assert clock.alarm_time(ts) == expected


def test_now_iso_is_the_current_instant_in_millis() -> None:
    # GIVEN the clock before and after WHEN now_iso is read THEN it is between them, in the records' format
    before = clock.utc_now()
    stamp = clock.now_iso()
    after = clock.utc_now()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp)
    assert clock.iso_millis(before) <= stamp <= clock.iso_millis(after)
    assert clock.utc_now().tzinfo is UTC


def test_epoch_in() -> None:
    now = int(clock.utc_now().timestamp())
    assert now + 86400 <= clock.epoch_in(86400) <= now + 86401


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-02T03:04:05.678Z", MOMENT.replace(microsecond=678000)),
        ("2026-01-02T03:04:05.678+0000", MOMENT.replace(microsecond=678000)),  # CloudWatch's offset
        ("2026-01-02T05:04:05+02:00", MOMENT.replace(microsecond=0)),
        ("2026-01-02T03:04:05", MOMENT.replace(microsecond=0)),  # naive means UTC
        (" 2026-01-02T03:04:05Z ", MOMENT.replace(microsecond=0)),
        ("", DEFAULT),
        (None, DEFAULT),
        ("yesterday", DEFAULT),
        ("2026-13-02T03:04:05Z", DEFAULT),
    ],
)
def test_parse_time(text: str | None, expected: datetime) -> None:
    parsed = clock.parse_time(text, DEFAULT)
    assert parsed == expected and parsed.tzinfo is not None


@pytest.mark.parametrize("fmt", [clock.iso_millis, clock.iso_seconds, clock.alarm_time])
def test_every_format_parses_back(fmt: Callable[[datetime], str]) -> None:
    # GIVEN a timestamp the product wrote WHEN parsed back THEN it is the same instant (to the format's precision)
    parsed = clock.parse_time(fmt(MOMENT), DEFAULT)
    assert timedelta(0) <= MOMENT - parsed < timedelta(seconds=1)
