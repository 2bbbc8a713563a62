"""Scheduled EventBridge rules that fire in the local cloud, and a way to fire one now.

moto 5.2.5 stores a rule's ``ScheduleExpression`` but has no scheduler, so a scheduled rule never fires; worse, a
rule without an event pattern matches *every* event put on its bus, so a scheduled rule's target received every
alarm state change on the default bus. This module:

* ticks every ``AUTO_REPAIR_LOCAL_SCHEDULE_TICK`` seconds (default 1; a tick only compares due times) and fires
  each enabled scheduled rule when due: ``rate(N minute|minutes|hour|hours|day|days)`` every N units from the
  moment the local cloud first saw the rule (as AWS starts a rate from the rule's creation), and
  ``cron(minutes hours day-of-month month day-of-week year)`` in UTC with ``*``, ``?``, lists, ranges, steps and
  month/day names (``L``, ``W`` and ``#`` are not supported: such a rule never fires and a warning is logged);
* delivers AWS's ``Scheduled Event`` (source ``aws.events``, resources = the rule ARN, empty detail) through the
  ``events_delivery`` extension, so Input / InputPath / InputTransformer, Lambda and Step Functions targets,
  retries and dead-letter queues behave as for any event;
* stops scheduled rules without a pattern from receiving ordinary events, as on AWS;
* fires a rule at once when asked with an ordinary ``PutEvents`` call (nothing like it exists on AWS, where the
  event just matches no rule)::

      aws events put-events --entries '[{"Source": "auto-repair.local", "DetailType": "Run Scheduled Rule",
                                        "Detail": "{\\"rule\\": \\"my-rule\\"}"}]'

  The entry fails with ``ResourceNotFoundException`` when no scheduled rule of that name is on the default bus.

Patches (see ``MOTO_TOUCHPOINTS``): replaces ``moto.events.models.Rule.send_to_targets`` (after
``events_delivery``) and wraps ``moto.events.models.EventsBackend.put_events``. AWS behaviour:
https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-create-rule-schedule.html
Written for moto ``>=5.2.5,<5.3`` (``MOTO_VERSIONS``).
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import logging
import os
import re
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from .ticker import start_ticker

# What this module relies on in moto: checked at server start and by tests/unit/test_local_cloud_contracts.py
# (auto_repair_local.moto_contract; upgrade procedure in docs/ARCHITECTURE.md, "Upgrading moto").
MOTO_VERSIONS = ">=5.2.5,<5.3"
MOTO_TOUCHPOINTS = (
    "moto.events.models.Rule.send_to_targets(original_event, transform_input)",
    "moto.events.models.Rule#scheduled_expression",
    "moto.events.models.Rule#event_pattern",
    "moto.events.models.Rule#arn",
    "moto.events.models.Rule#name",
    "moto.events.models.EventPattern.get_pattern()",
    "moto.events.models.EventsBackend.put_events(events)",
    "moto.events.models.EventsBackend#event_buses",
    "moto.events.models.EventBus#rules",
    "moto.events.models.events_backends",
)

log = logging.getLogger("auto_repair_local.scheduler")

FIRE_SOURCE = "auto-repair.local"
FIRE_DETAIL_TYPE = "Run Scheduled Rule"
_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_MONTHS = {name.upper(): i for i, name in enumerate(calendar.month_abbr) if name}
_DAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}


class ScheduleError(ValueError):
    """A schedule expression the local scheduler cannot evaluate."""


def rate_seconds(expression: str) -> int | None:
    """Seconds between fires of a ``rate(...)`` expression; None for other expressions."""
    match = _RATE.match(expression.strip())
    if not match:
        return None
    value, unit = int(match.group(1)), match.group(2)
    if value <= 0:
        raise ScheduleError(f"{expression}: the value must be positive")
    if (value == 1) != (not unit.endswith("s")):
        raise ScheduleError(f"{expression}: use the singular unit for 1 and the plural otherwise")
    return value * _UNIT_SECONDS[unit.rstrip("s")]


def _field(text: str, low: int, high: int, names: dict[str, int] | None = None) -> set[int] | None:
    """The values a cron field allows; None for "any" (* or ?)."""
    if text in ("*", "?"):
        return None
    values: set[int] = set()
    for part in text.split(","):
        step, stepped = 1, "/" in part
        if stepped:
            part, step_text = part.split("/", 1)
            step = int(step_text)
            if step <= 0:
                raise ScheduleError(f"bad step in cron field {text!r}")
        if part in ("*", ""):
            start, end = low, high
        elif "-" in part:
            a, b = part.split("-", 1)
            start, end = _value(a, names), _value(b, names)
        else:
            start = _value(part, names)
            end = high if stepped else start
        if not (low <= start <= high and low <= end <= high):
            raise ScheduleError(f"cron field {text!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return values


def _value(text: str, names: dict[str, int] | None) -> int:
    if names and text.upper() in names:
        return names[text.upper()]
    if not text.isdigit():
        raise ScheduleError(f"unsupported cron value {text!r} (L, W and # are not supported locally)")
    return int(text)


@dataclass(frozen=True)
class Cron:
    minutes: set[int] | None
    hours: set[int] | None
    days: set[int] | None
    months: set[int] | None
    weekdays: set[int] | None  # 1 = Sunday ... 7 = Saturday, as AWS numbers them
    years: set[int] | None

    @classmethod
    def parse(cls, expression: str) -> Cron:
        text = expression.strip()
        if not (text.startswith("cron(") and text.endswith(")")):
            raise ScheduleError(f"{expression} is not a cron expression")
        fields = text[5:-1].split()
        if len(fields) != 6:
            raise ScheduleError(f"{expression}: cron takes 6 fields (minutes hours day month weekday year)")
        minute, hour, day, month, weekday, year = fields
        if (day == "?") == (weekday == "?"):
            raise ScheduleError(f"{expression}: exactly one of day-of-month and day-of-week must be ?")
        return cls(_field(minute, 0, 59), _field(hour, 0, 23), _field(day, 1, 31), _field(month, 1, 12, _MONTHS),
                   _field(weekday, 1, 7, _DAYS), _field(year, 1970, 2199))

    def _day_matches(self, day: dt.date) -> bool:
        weekday = (day.isoweekday() % 7) + 1  # Monday=1 in ISO -> 2 here; Sunday=7 in ISO -> 1 here
        return ((self.years is None or day.year in self.years) and (self.months is None or day.month in self.months)
                and (self.days is None or day.day in self.days)
                and (self.weekdays is None or weekday in self.weekdays))

    def next_after(self, after: dt.datetime) -> dt.datetime | None:
        """The first matching minute strictly after ``after`` (UTC), within about four years."""
        start = (after.astimezone(dt.UTC) + dt.timedelta(minutes=1)).replace(second=0, microsecond=0)
        hours = sorted(self.hours) if self.hours is not None else list(range(24))
        minutes = sorted(self.minutes) if self.minutes is not None else list(range(60))
        day = start.date()
        for _ in range(4 * 366):
            if self._day_matches(day):
                for hour in hours:
                    for minute in minutes:
                        candidate = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=dt.UTC)
                        if candidate >= start:
                            return candidate
            day += dt.timedelta(days=1)
        return None


def next_fire(expression: str, after: dt.datetime) -> dt.datetime | None:
    seconds = rate_seconds(expression)
    if seconds is not None:
        return after + dt.timedelta(seconds=seconds)
    return Cron.parse(expression).next_after(after)


def scheduled_event(rule: Any, now: dt.datetime | None = None) -> dict[str, Any]:
    now = now or dt.datetime.now(dt.UTC)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": rule.account_id,
        "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": rule.region_name,
        "resources": [rule.arn],
        "detail": {},
    }


class Scheduler:
    def __init__(self) -> None:
        self._due: dict[str, tuple[str, dt.datetime | None]] = {}  # rule ARN -> (expression, next fire)
        self._lock = threading.Lock()

    @staticmethod
    def _scheduled_rules() -> list[Any]:
        from moto.events.models import events_backends

        rules = []
        for regions in list(events_backends.values()):
            for backend in list(regions.values()):
                for bus in list(backend.event_buses.values()):
                    rules.extend(r for r in list(bus.rules.values()) if r.scheduled_expression)
        return rules

    def fire(self, rule: Any, now: dt.datetime | None = None) -> None:
        from auto_repair_local import events_delivery

        log.info("scheduled rule %s fires", rule.name)
        events_delivery.send_to_targets(rule, scheduled_event(rule, now))

    def tick(self, now: dt.datetime | None = None) -> int:
        """Fire the rules that are due; the number fired."""
        now = now or dt.datetime.now(dt.UTC)
        fired = 0
        with self._lock:
            seen = set()
            for rule in self._scheduled_rules():
                seen.add(rule.arn)
                expression = rule.scheduled_expression
                known = self._due.get(rule.arn)
                if known is None or known[0] != expression:
                    try:
                        self._due[rule.arn] = (expression, next_fire(expression, now))
                    except (ScheduleError, ValueError) as exc:
                        log.warning("rule %s will not fire locally: %s", rule.name, exc)
                        self._due[rule.arn] = (expression, None)
                    continue
                due = known[1]
                if due is None or now < due or not str(rule.state).startswith("ENABLED"):
                    continue
                try:
                    self.fire(rule, now)
                    fired += 1
                except Exception:  # one rule's failure must not stop the others
                    log.exception("scheduled rule %s failed to fire", rule.name)
                # The next fire follows the schedule, not the (possibly late) tick.
                following = next_fire(expression, due)
                while following is not None and following <= now:
                    following = next_fire(expression, following)
                self._due[rule.arn] = (expression, following)
            for arn in set(self._due) - seen:
                del self._due[arn]
        return fired

    def due(self, rule_arn: str) -> dt.datetime | None:
        known = self._due.get(rule_arn)
        return known[1] if known else None


_scheduler = Scheduler()


def _patch_events() -> None:
    from moto.events.models import EventsBackend, Rule

    from auto_repair_local import events_delivery

    def send_to_targets(self: Any, event: dict[str, Any], transform_input: bool = True) -> None:
        # A rule with a schedule and no pattern matches no event on AWS; it only fires on its schedule.
        if self.scheduled_expression and not self.event_pattern.get_pattern():
            return
        events_delivery.send_to_targets(self, event, transform_input)

    original_put_events = EventsBackend.put_events

    def put_events(self: Any, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        entries = original_put_events(self, events)
        for i, event in enumerate(events):
            if event.get("Source") != FIRE_SOURCE or event.get("DetailType") != FIRE_DETAIL_TYPE:
                continue
            if i >= len(entries) or "ErrorCode" in entries[i]:
                continue
            try:
                name = json.loads(event.get("Detail") or "{}").get("rule")
            except ValueError:
                name = None
            bus = self.event_buses.get("default")
            rule = bus.rules.get(name) if bus is not None and isinstance(name, str) else None
            if rule is None or not rule.scheduled_expression:
                entries[i] = {"ErrorCode": "ResourceNotFoundException",
                              "ErrorMessage": f"No scheduled rule {name!r} on the default event bus."}
                continue
            _scheduler.fire(rule)
        return entries

    Rule.send_to_targets = send_to_targets  # type: ignore[method-assign]
    EventsBackend.put_events = put_events  # type: ignore[method-assign]


_installed = False


def install(ctx: Any) -> None:
    global _installed
    if _installed:
        return
    _installed = True
    _patch_events()
    interval = float(os.environ.get("AUTO_REPAIR_LOCAL_SCHEDULE_TICK", "1"))

    start_ticker(ctx, "event-scheduler", interval, _scheduler.tick)
