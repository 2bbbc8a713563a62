"""CloudWatch Logs reads as AWS answers them, and a collector that reads the minutes before the alarm.

AWS: FilterLogEvents returns the matching events of all searched streams oldest first, a page holds at most
``limit`` (≤ 10,000) events and 1 MB, with ``nextToken`` while more match; GetLogEvents pages at 1 MB too.
https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_FilterLogEvents.html
https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_GetLogEvents.html
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.logs import models as logs_models

from auto_repair.collect import get_log_lines
from auto_repair.evidence import extract_evidence
from auto_repair_local import logs_reads

GROUP = "/aws/lambda/busy-fn"
OK_RID = "00000000-0000-4000-8000-{:012d}"
BAD_RID = "11111111-1111-4111-8111-{:012d}"


@pytest.fixture()
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    # Restored after the test: the patch replaces moto's methods for the whole process.
    monkeypatch.setattr(logs_models.LogGroup, "filter_log_events", logs_models.LogGroup.filter_log_events)
    monkeypatch.setattr(logs_models.LogStream, "get_log_events", logs_models.LogStream.get_log_events)
    logs_reads.install(None)
    with mock_aws():
        client = boto3.client("logs", region_name="us-east-1")
        client.create_log_group(logGroupName=GROUP)
        yield client


def put(client, stream: str, events: list[tuple[datetime, str]]) -> None:
    if stream not in {s["logStreamName"] for s in client.describe_log_streams(logGroupName=GROUP)["logStreams"]}:
        client.create_log_stream(logGroupName=GROUP, logStreamName=stream)
    for i in range(0, len(events), 5000):
        client.put_log_events(logGroupName=GROUP, logStreamName=stream, logEvents=[
            {"timestamp": int(t.timestamp() * 1000), "message": m} for t, m in events[i:i + 5000]])


def report(rid: str, used: int, status: str = "") -> str:
    return (f"REPORT RequestId: {rid}\tDuration: 812.00 ms\tBilled Duration: 813 ms\tMemory Size: 256 MB\t"
            f"Max Memory Used: {used} MB\t{status}")


def test_filter_log_events_merges_streams_oldest_first(logs):
    # GIVEN two streams whose events interleave in time
    now = datetime.now(UTC)
    put(logs, "2026/01/01/[$LATEST]a", [(now - timedelta(seconds=s), f"a{s}") for s in (50, 30, 10)])
    put(logs, "2026/01/01/[$LATEST]b", [(now - timedelta(seconds=s), f"b{s}") for s in (40, 20)])
    # WHEN the group is filtered without the deprecated interleaved flag
    events = logs.filter_log_events(logGroupName=GROUP)["events"]
    # THEN one oldest-first sequence across both streams
    assert [e["message"] for e in events] == ["a50", "b40", "a30", "b20", "a10"]


def test_filter_log_events_pages_at_one_megabyte_and_continues(logs):
    # GIVEN 3,000 events of ~1 KB (3 MB in all)
    now = datetime.now(UTC)
    put(logs, "s", [(now - timedelta(milliseconds=3000 - i), f"{i:05d} " + "x" * 994) for i in range(3000)])
    # WHEN the group is read page by page
    pages, token = [], None
    while True:
        page = logs.filter_log_events(logGroupName=GROUP, **({"nextToken": token} if token else {}))
        pages.append(page["events"])
        token = page.get("nextToken")
        if not token:
            break
    # THEN every page fits in 1 MB (1,000 bytes + 26 per event), and together they are every event once, in order
    assert len(pages) == 3
    assert all(len(p) * 1026 <= 1_048_576 for p in pages)
    assert [e["message"][:5] for p in pages for e in p] == [f"{i:05d}" for i in range(3000)]


@pytest.mark.parametrize(("pattern", "expected"), [
    ('{ $.type = "platform.report" }', ['{"type": "platform.report", "record": {}}']),
    ("[a, b=2]", ["1 2"]),
    ('?"1 2" ?zzz', ["1 2"]),
])
def test_filter_log_events_applies_json_and_delimited_patterns(logs, pattern, expected):
    # GIVEN a JSON record, a plain line WHEN filtered with a JSON / space-delimited / term pattern
    now = datetime.now(UTC)
    put(logs, "s", [(now - timedelta(seconds=2), '{"type": "platform.report", "record": {}}'), (now, "1 2")])
    # THEN only the matching events (moto matched every event for the first two)
    assert [e["message"] for e in logs.filter_log_events(logGroupName=GROUP, filterPattern=pattern)["events"]] \
        == expected


def test_filter_log_events_refuses_an_invalid_pattern_as_aws_does(logs):
    with pytest.raises(ClientError) as caught:
        logs.filter_log_events(logGroupName=GROUP, filterPattern='{ $.type = "x" ')
    assert caught.value.response["Error"]["Code"] == "InvalidParameterException"


def test_get_log_events_pages_at_one_megabyte_from_the_newest_end(logs):
    # GIVEN 2,000 events of ~1 KB in one stream
    now = datetime.now(UTC)
    put(logs, "s", [(now - timedelta(milliseconds=2000 - i), f"{i:05d} " + "x" * 994) for i in range(2000)])
    # WHEN read without startFromHead (AWS: the newest events first)
    page = logs.get_log_events(logGroupName=GROUP, logStreamName="s")
    # THEN one MB of the newest events, and the backward token reaches the older rest
    assert len(page["events"]) * 1026 <= 1_048_576 < (len(page["events"]) + 1) * 1026
    assert page["events"][-1]["message"].startswith("01999")
    older = logs.get_log_events(logGroupName=GROUP, logStreamName="s", nextToken=page["nextBackwardToken"])
    assert older["events"][-1]["message"][:5] == f"{1999 - len(page['events']):05d}"


def test_collector_reads_the_minutes_before_the_alarm_of_a_flooded_function(logs):
    """20,000 successful invocations early in the window, out-of-memory failures in its last minute: an
    oldest-first read of the window spends its budget on the successes; the newest-first read finds the failures."""
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(minutes=15)
    flood = [(start + timedelta(milliseconds=25 * i), report(OK_RID.format(i), 90)) for i in range(20_000)]
    put(logs, "2026/01/01/[$LATEST]early", flood)
    failures = []
    for i in range(6):
        at = now - timedelta(seconds=50 - 5 * i)
        failures += [(at, f"[ERROR] MemoryError {BAD_RID.format(i)}"),
                     (at + timedelta(milliseconds=5),
                      report(BAD_RID.format(i), 256, "Status: error\tError Type: Runtime.OutOfMemory"))]
    put(logs, "2026/01/01/[$LATEST]late", failures)
    # WHEN the collector reads the analysis window
    lines, missing = get_log_lines(logs, "busy-fn", start, now)
    # THEN the failures are among the lines and the diagnosis sees out-of-memory
    messages = [line["message"] for line in lines]
    assert sum("Runtime.OutOfMemory" in m for m in messages) == 6
    assert sum(m.startswith("[ERROR] MemoryError") for m in messages) == 6
    evidence = extract_evidence({"functionName": "busy-fn", "currentMemorySize": 256, "logs": lines})
    assert evidence.strong_oom >= 6
    # ... the newest successes are kept too (up to the cap), and the read says it stopped early
    assert lines[-1]["message"].startswith("REPORT") and len(lines) <= 180
    assert missing and "newest first" in missing[0]
