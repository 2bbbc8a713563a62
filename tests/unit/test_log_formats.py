"""Lambda's JSON log format (LoggingConfig.LogFormat = JSON) read like the text format.

The records are AWS's documented examples: the JSON log format page
https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-advanced.html and the Telemetry API schema
of platform.start / platform.report / platform.initReport
https://docs.aws.amazon.com/lambda/latest/dg/telemetry-schema-reference.html
(status "success" | "failure" | "error" | "timeout"; metrics durationMs, billedDurationMs, memorySizeMB,
maxMemoryUsedMB, initDurationMs).
"""

from __future__ import annotations

import json

import pytest

from auto_repair.collect import MAX_LINE_CHARS, _line, log_group_of
from auto_repair.evidence import compact_platform_record, extract_evidence, parse_report_line
from auto_repair.verification import window_stats

RID = "6d68ca91-49c9-448d-89b8-7ca3e6dc66aa"
# The Telemetry API reference's platform.report example (tracing and spans included).
DOC_REPORT = {
    "time": "2022-10-12T00:01:15.000Z",
    "type": "platform.report",
    "record": {
        "requestId": RID,
        "metrics": {"durationMs": 2.47, "billedDurationMs": 3, "memorySizeMB": 128, "maxMemoryUsedMB": 67,
                    "initDurationMs": 180.63},
        "tracing": {"spanId": "54565fb41ac79632", "type": "X-Amzn-Trace-Id",
                    "value": "Root=1-62e900b2-710d76f009d6e7785905449a;Parent=0efbd19962d95b05;Sampled=1"},
        "spans": [{"name": "extensionOverhead", "start": "2022-08-02T12:01:23.521Z", "durationMs": 0.0}],
        "status": "success",
    },
}
DOC_START = {"time": "2022-10-12T00:00:15.064Z", "type": "platform.start",
             "record": {"requestId": RID, "version": "$LATEST",
                        "tracing": {"spanId": "54565fb41ac79632", "type": "X-Amzn-Trace-Id",
                                    "value": "Root=1-62e900b2-710d76f009d6e7785905449a;Sampled=1"}}}
# A Python function's uncaught exception in JSON format (the JSON log format page's example shape).
PY_ERROR = {"timestamp": "2023-10-27T19:17:45.586Z", "log_level": "ERROR", "errorMessage": "",
            "errorType": "MemoryError", "requestId": RID, "stackTrace": ['  File "/var/task/app.py", line 3\n']}


def failed_report(status: str, error_type: str | None, used: int = 128) -> str:
    record = json.loads(json.dumps(DOC_REPORT))
    record["record"].update(status=status, **({"errorType": error_type} if error_type else {}))
    record["record"]["metrics"]["maxMemoryUsedMB"] = used
    return json.dumps(record)


def test_platform_report_parses_like_a_report_line():
    # GIVEN the documented platform.report WHEN parsed THEN the REPORT line's fields, same names and types
    assert parse_report_line(json.dumps(DOC_REPORT)) == {
        "requestId": RID, "durationMs": 2.47, "billedDurationMs": 3.0, "memorySizeMb": 128, "maxMemoryUsedMb": 67,
        "initDurationMs": 180.63, "status": "success", "errorType": None}
    text = (f"REPORT RequestId: {RID}\tDuration: 2.47 ms\tBilled Duration: 3 ms\tMemory Size: 128 MB\t"
            f"Max Memory Used: 67 MB\tInit Duration: 180.63 ms")
    assert parse_report_line(text) == {**parse_report_line(json.dumps(DOC_REPORT)), "status": None}


@pytest.mark.parametrize("line", [
    json.dumps(DOC_START),                                   # a platform record, not a report
    json.dumps({"type": "platform.report", "record": {}}),   # no metrics
    json.dumps({"type": "platform.report", "record": {"metrics": {"durationMs": 1}}}),  # no memory size
    '{"type": "platform.report", "record": {"metrics": ',     # cut short
    json.dumps({"level": "INFO", "message": "platform.report"}),  # an app log that mentions it
    json.dumps(["platform.report"]),
])
def test_what_is_not_a_platform_report(line):
    assert parse_report_line(line) is None


def test_json_format_out_of_memory_is_one_failing_invocation():
    # GIVEN platform.start, the runtime's JSON MemoryError and platform.report status error / Runtime.OutOfMemory
    logs = [{"message": json.dumps(DOC_START), "logStreamName": "s"},
            {"message": json.dumps(PY_ERROR), "logStreamName": "s"},
            {"message": failed_report("error", "Runtime.OutOfMemory"), "logStreamName": "s"}]
    # WHEN evidence is extracted
    ev = extract_evidence({"functionName": "fn", "currentMemorySize": 128, "runtime": "python3.12", "logs": logs})
    # THEN one invocation, failed, out of memory at the limit
    assert ev.failing_invocations == 1 and ev.strong_oom >= 1 and ev.counts["oom"] >= 1
    assert ev.invocations[0].at_limit


@pytest.mark.parametrize(("status", "error_type", "failed"), [
    ("success", None, 0), ("timeout", None, 1), ("error", "Runtime.OutOfMemory", 1), ("failure", "Runtime.ExitError", 1),
])
def test_verification_counts_json_failures(status, error_type, failed):
    stats = window_stats({}, [{"message": failed_report(status, error_type, used=60)}], memory_size=128)
    assert (stats.invocations, stats.errors) == (1, failed)


def test_platform_init_report_failure_counts_as_init_oom():
    line = json.dumps({"time": "2022-10-12T00:00:15.064Z", "type": "platform.initReport",
                       "record": {"initializationType": "on-demand", "phase": "init", "status": "error",
                                  "errorType": "Runtime.OutOfMemory", "metrics": {"durationMs": 125.33}}})
    ev = extract_evidence({"functionName": "fn", "currentMemorySize": 128, "logs": [{"message": line}]})
    assert ev.init_failures == 1 and ev.strong_oom == 1


def test_collected_platform_report_is_compacted_not_cut():
    # GIVEN a platform.report longer than the collector's line cap (many spans)
    big = json.loads(json.dumps(DOC_REPORT))
    big["record"]["spans"] = big["record"]["spans"] * 20
    assert len(json.dumps(big)) > MAX_LINE_CHARS
    # WHEN collected THEN it still parses to the same report (spans and tracing dropped)
    entry = _line({"timestamp": 0, "message": json.dumps(big)}, None)
    assert entry and len(entry["message"]) <= MAX_LINE_CHARS
    assert parse_report_line(entry["message"]) == parse_report_line(json.dumps(DOC_REPORT))
    assert compact_platform_record("REPORT RequestId: x") is None


@pytest.mark.parametrize(("config", "group"), [
    ({"FunctionName": "fn"}, "/aws/lambda/fn"),
    ({"FunctionName": "fn", "LoggingConfig": {"LogFormat": "Text", "LogGroup": "/aws/lambda/fn"}}, "/aws/lambda/fn"),
    ({"FunctionName": "fn", "LoggingConfig": {"LogFormat": "JSON", "LogGroup": "/shared/team-a"}}, "/shared/team-a"),
])
def test_log_group_follows_logging_config(config, group):
    assert log_group_of(config) == group


@pytest.mark.parametrize(("stream", "owner", "kept"), [
    ("2026/12/04/fn[$LATEST]abc", "fn", True),
    ("2026/12/04/fn[3]abc", "fn", True),
    ("2026/12/04/other-fn[$LATEST]abc", "fn", False),   # another function of a shared custom group
    ("2026/12/04/fn-2[$LATEST]abc", "fn", False),
    ("2026/12/04/[$LATEST]abc", None, True),            # the default group: every stream is the function's
])
def test_shared_custom_group_keeps_only_the_function_s_streams(stream, owner, kept):
    """https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-loggroups.html: in a custom group,
    stream names are YYYY/MM/DD/<function_name>[<function_version>][<execution_environment_GUID>]."""
    event = {"timestamp": 0, "message": json.dumps(DOC_REPORT), "logStreamName": stream}
    assert (_line(event, None, owner) is not None) is kept


# -- onboarding (auto_repair.targets): JSON records and custom log groups ---------------------------------------

def _matching(filters: list[dict], line: str) -> set[str]:
    from auto_repair_local.log_metric_filters import compile_pattern

    return {f["metricTransformations"][0]["metricName"] for f in filters
            if compile_pattern(f["filterPattern"]).match(line) is not None}


def test_json_out_of_memory_records_reach_the_out_of_memory_and_utilisation_filters():
    from auto_repair import targets as t

    filters = t.desired_filters(t.FunctionInfo("f", 128, log_format="JSON"), t.TargetSettings())
    assert _matching(filters, failed_report("error", "Runtime.OutOfMemory")) == {
        "OutOfMemory", "MaxMemoryUsed", "MemoryUtilization"}
    assert "OutOfMemory" in _matching(filters, json.dumps(PY_ERROR))      # the runtime's JSON MemoryError
    assert _matching(filters, failed_report("timeout", None, used=60)) >= {"Timeouts"}


def test_custom_group_filters_go_there_and_name_their_function():
    from auto_repair import targets as t

    config = {"FunctionName": "orders", "MemorySize": 256, "FunctionArn": "arn:aws:lambda:us-east-1:1:function:orders",
              "LoggingConfig": {"LogFormat": "JSON", "LogGroup": "/aws/lambda/shared/apps"}}
    info = t.FunctionInfo.from_configuration(config)
    filters = t.desired_filters(info, t.TargetSettings())
    assert {f["logGroupName"] for f in filters} == {"/aws/lambda/shared/apps"}
    assert all(f["filterName"].endswith("@orders") for f in filters)
    default = t.FunctionInfo.from_configuration({**config, "LoggingConfig": {"LogGroup": "/aws/lambda/orders"}})
    assert default.custom_log_group == "" and "@" not in t.desired_filters(default, t.TargetSettings())[0]["filterName"]


@pytest.mark.parametrize(("name", "function", "custom", "owned"), [
    ("auto-repair-timeouts@orders", "orders", True, True),
    ("auto-repair-timeouts@orders-v2", "orders", True, False),   # another function sharing the group
    ("auto-repair-timeouts", "orders", True, False),
    ("auto-repair-timeouts", "orders", False, True),
    ("auto-repair-timeouts@x", "orders", False, False),
    ("team-filter", "orders", False, False),
])
def test_a_shared_group_s_other_filters_are_never_ours(name, function, custom, owned):
    from auto_repair import targets as t

    assert t.owns_filter(name, function, custom) is owned


def test_onboarding_one_function_of_a_shared_group_leaves_the_other_s_filters():
    from auto_repair import targets as t
    from auto_repair.targets.plans import Observed

    info = t.FunctionInfo("a", 128, log_format="JSON", custom_log_group="/aws/lambda/shared/apps")
    desired = t.desired_filters(info, t.TargetSettings())
    # GIVEN the group already holds function b's filters, which observe() does not count as a's
    observed = Observed(function="a", custom_log_group=info.custom_log_group, tagged=True)
    changes = t.plan_onboard([], desired, observed)
    # THEN only creations of a's filters in the shared group, no deletions
    assert {(c.action, c.kind) for c in changes} == {(t.CREATE, "filter")}
    assert all(c.spec and c.spec["logGroupName"] == "/aws/lambda/shared/apps" for c in changes)


class _SteppedLogs:
    """FilterLogEvents as AWS may answer it: a page with fewer events than asked (even none) plus a nextToken,
    while it searches the rest of the range."""

    def __init__(self, events: list[dict]) -> None:
        self.events, self.calls = events, 0

    def filter_log_events(self, startTime, endTime, nextToken=None, limit=10000, **_):
        self.calls += 1
        hits = [e for e in self.events if startTime <= e["timestamp"] <= endTime]
        step = int(nextToken or 0)
        if step < 2:  # two empty search steps first
            return {"events": [], "nextToken": str(step + 1)}
        return {"events": hits[:limit]}


def test_partial_pages_with_a_token_are_continued_not_split():
    from datetime import UTC, datetime

    from auto_repair.collect import get_log_lines

    now = datetime(2026, 12, 4, 1, 0, tzinfo=UTC)
    at = int(now.timestamp() * 1000) - 5000
    logs = _SteppedLogs([{"timestamp": at, "message": failed_report("error", "Runtime.OutOfMemory"),
                          "logStreamName": "2026/12/04/[$LATEST]a"}])
    lines, missing = get_log_lines(logs, "fn", now.replace(minute=0, hour=0), now)
    assert len(lines) == 1 and missing == [] and logs.calls == 3
