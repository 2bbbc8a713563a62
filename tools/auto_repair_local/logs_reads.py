"""CloudWatch Logs reads that page and order as AWS does.

moto 5.2.5's ``FilterLogEvents`` concatenates stream after stream (oldest first only *within* a stream unless the
deprecated ``interleaved`` flag is sent), counts only events against ``limit`` (no 1 MB page cap), and applies
only plain terms of the filter pattern: a JSON or space-delimited pattern matches every event. ``GetLogEvents``
has no 1 MB cap either. A reader that relied on those answers would see more, and in another order, than AWS
gives it. This module:

* ``FilterLogEvents``: events of every searched stream merged oldest first (timestamp, then ingestion order), as
  AWS always answers now; a page ends at ``limit`` events (default and maximum 10,000) or 1 MB of events, with a
  ``nextToken`` while more match; the filter pattern is the documented language (``log_metric_filters.
  compile_pattern``: terms, JSON, space-delimited), an invalid one is ``InvalidParameterException``;
* ``GetLogEvents``: a page also ends at 1 MB, keeping the events at the side the read starts from (the newest
  ones for the default ``startFromHead=false``), with tokens that continue from there.

Event size counts as in PutLogEvents: UTF-8 bytes of the message plus 26 bytes.
AWS behaviour: https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_FilterLogEvents.html and
https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_GetLogEvents.html
Written for moto ``>=5.2.5,<5.3`` (``MOTO_VERSIONS``).
"""

from __future__ import annotations

import functools
from typing import Any

from auto_repair_local.log_metric_filters import FilterPatternError, compile_pattern

MOTO_VERSIONS = ">=5.2.5,<5.3"
MOTO_TOUCHPOINTS = (
    "moto.logs.models.LogGroup.filter_log_events(log_group_name, log_stream_names, start_time, end_time, limit, "
    "next_token, filter_pattern, interleaved)",
    "moto.logs.models.LogGroup#streams",
    "moto.logs.models.LogStream.get_log_events(start_time, end_time, limit, next_token, start_from_head)",
    "moto.logs.models.LogStream#events",
    "moto.logs.models.LogStream#log_stream_name",
    "moto.logs.models.LogEvent#timestamp",
    "moto.logs.models.LogEvent#message",
    "moto.logs.models.LogEvent#event_id",
    "moto.logs.models.LogEvent.to_filter_dict()",
    "moto.logs.exceptions.InvalidParameterException(msg)",
)

MAX_EVENTS_PER_PAGE = 10_000
MAX_PAGE_BYTES = 1_048_576
EVENT_OVERHEAD_BYTES = 26


def event_bytes(message: str) -> int:
    return len(message.encode("utf-8")) + EVENT_OVERHEAD_BYTES


def page_size(sizes: list[int], limit: int) -> int:
    """How many of the events (in read order) one page holds: at most ``limit`` and 1 MB, at least one."""
    total = 0
    for count, size in enumerate(sizes[:limit]):
        total += size
        if total > MAX_PAGE_BYTES:
            return max(count, 1)
    return min(len(sizes), limit)


@functools.lru_cache(maxsize=256)
def _compiled(text: str) -> Any:
    return compile_pattern(text)


def _token(group: str, key: tuple[int, int]) -> str:
    return f"{group}@{key[0]}@{key[1]}"


def _after(token: str | None, group: str) -> tuple[int, int] | None:
    """The sort key a token continues after; None for no token. A foreign or garbled token reads nothing (AWS)."""
    if not token:
        return None
    parts = token.split("@")
    if len(parts) != 3 or parts[0] != group or not (parts[1].lstrip("-").isdigit() and parts[2].isdigit()):
        return (2**62, 2**62)
    return int(parts[1]), int(parts[2])


def filter_events(
    group: Any, group_name: str, stream_names: list[str] | None, start: int | None, end: int | None,
    limit: int | None, token: str | None, pattern_text: str | None,
) -> tuple[list[dict[str, Any]], str | None, list[dict[str, Any]]]:
    from moto.logs.exceptions import InvalidParameterException

    try:
        pattern = _compiled(pattern_text or "")
    except FilterPatternError as exc:
        raise InvalidParameterException(f"Invalid filter pattern: {exc}") from exc
    streams = [s for name, s in group.streams.items() if not stream_names or name in stream_names]
    after = _after(token, group_name)
    found: list[tuple[tuple[int, int], Any, str]] = []
    for stream in streams:
        for event in stream.events:
            key = (int(event.timestamp), int(event.event_id))
            if (start is not None and key[0] < start) or (end is not None and key[0] > end):
                continue
            if after is not None and key <= after:
                continue
            if pattern.match(event.message) is not None:
                found.append((key, event, stream.log_stream_name))
    found.sort(key=lambda item: item[0])
    count = page_size([event_bytes(e.message) for _, e, _ in found], min(limit or MAX_EVENTS_PER_PAGE,
                                                                          MAX_EVENTS_PER_PAGE))
    page = []
    for _, event, stream_name in found[:count]:
        page.append({**event.to_filter_dict(), "logStreamName": stream_name})
    next_token = _token(group_name, found[count - 1][0]) if count < len(found) else None
    searched = [{"logStreamName": s.log_stream_name, "searchedCompletely": next_token is None} for s in streams]
    return page, next_token, searched


def cap_stream_page(
    page: list[dict[str, Any]], backward: str | None, forward: str | None, from_head: bool,
) -> tuple[list[dict[str, Any]], str | None, str | None]:
    """GetLogEvents' page cut to 1 MB: a forward read keeps its first events, a backward read its last."""
    sizes = [event_bytes(str(e.get("message", ""))) for e in page]
    if sum(sizes) <= MAX_PAGE_BYTES or not backward or not forward:
        return page, backward, forward
    first = int(backward[2:])
    if from_head:
        keep = page_size(sizes, len(page))
        return page[:keep], backward, f"f/{first + keep - 1:056d}"
    keep = page_size(sizes[::-1], len(page))
    return page[-keep:], f"b/{first + len(page) - keep:056d}", forward


def install(ctx: Any) -> None:
    from moto.logs.models import LogGroup, LogStream

    original_get = LogStream.get_log_events

    def filter_log_events(
        self: Any, log_group_name: str, log_stream_names: list[str], start_time: int, end_time: int,
        limit: int | None, next_token: str | None, filter_pattern: str, interleaved: bool,
    ) -> tuple[list[dict[str, Any]], str | None, list[dict[str, Any]]]:
        # ``interleaved`` is deprecated and ignored by AWS: results are always merged across streams.
        return filter_events(self, log_group_name, log_stream_names, start_time, end_time, limit, next_token,
                             filter_pattern)

    def get_log_events(
        self: Any, start_time: str, end_time: str, limit: int, next_token: str | None, start_from_head: str,
    ) -> tuple[list[dict[str, Any]], str | None, str | None]:
        page, backward, forward = original_get(self, start_time, end_time, limit, next_token, start_from_head)
        from_head = bool(start_from_head) if not next_token else next_token.startswith("f")
        return cap_stream_page(page, backward, forward, from_head)

    LogGroup.filter_log_events = filter_log_events  # type: ignore[method-assign]
    LogStream.get_log_events = get_log_events  # type: ignore[method-assign]
