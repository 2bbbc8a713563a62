"""Target onboarding (auto_repair.targets): settings, desired alarms and filters, plans, the sweep event.

The filter patterns are checked against real log lines with the local cloud's implementation of the CloudWatch
Logs filter-pattern language (auto_repair_local.log_metric_filters), which is tested here as well.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cfnlint.decode import decode

from auto_repair import targets as t
from auto_repair.alarm_event import parse_alarm_event
from auto_repair.diagnosis import diagnose
from auto_repair.evidence import SIGNATURES, classify_message
from auto_repair.outcomes import AlarmOutcome
from auto_repair_local.events_delivery import matches
from auto_repair_local.log_metric_filters import (
    FilterPatternError,
    compile_pattern,
    metric_datum,
    split_delimited,
    validate_filter,
)

REPO = Path(__file__).resolve().parents[2]
SETTINGS = t.TargetSettings(duration_threshold=45000, error_threshold=2, timeout_threshold=2,
                            memory_utilization_threshold=80, period=300, evaluation_periods=2)
TOPIC = "arn:aws:sns:us-east-1:123456789012:lambda-auto-repair-notifications-dev"


def request_id(*parts: object) -> str:
    # Deterministic: these lines become test ids, which must be the same in every pytest-xdist worker.
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(map(str, parts))))


def report(used: int, size: int, *, extra: str = "") -> str:
    return (f"REPORT RequestId: {request_id(used, size, extra)}\tDuration: 1234.56 ms\tBilled Duration: 1235 ms\t"
            f"Memory Size: {size} MB\tMax Memory Used: {used} MB\t{extra}")


def json_report(used: int, size: int, status: str = "success") -> str:
    return json.dumps({"time": "2025-01-01T00:00:00.000Z", "type": "platform.report", "record": {
        "requestId": request_id(used, size, status), "status": status,
        "metrics": {"durationMs": 12.3, "billedDurationMs": 13, "memorySizeMB": size, "maxMemoryUsedMB": used}}})


@functools.cache
def _compiled(text: str):
    return compile_pattern(text)


def published(filters: list[dict], message: str) -> dict[str, list[float]]:
    """What the filters publish for one log line: metric name -> values."""
    out: dict[str, list[float]] = {}
    for f in filters:
        pattern = _compiled(f["filterPattern"])
        for transformation in f["metricTransformations"]:
            datum = metric_datum(transformation, pattern, pattern.match(message))
            if datum is not None:
                out.setdefault(datum["MetricName"], []).append(datum["Value"])
    return out


# ---------------------------------------------------------------------------------------------- settings


def test_settings_come_from_the_functions_stack_parameter_json():
    # GIVEN the TargetSettings parameter's value WHEN parsed THEN every threshold is taken, numbers as numbers
    s = t.TargetSettings.from_json(json.dumps({
        "DurationThreshold": 45000, "ErrorThreshold": 2, "TimeoutThreshold": "2", "MemoryUtilizationThreshold": 85,
        "AlarmPeriodSeconds": 10, "AlarmEvaluationPeriods": 1}))
    assert (s.duration_threshold, s.error_threshold, s.timeout_threshold) == (45000.0, 2.0, 2.0)
    assert (s.memory_utilization_threshold, s.period, s.evaluation_periods) == (85.0, 10, 1)
    # AND missing keys keep the guide's defaults (period 300, 2 evaluation periods)
    assert t.TargetSettings.from_json("{}") == t.TargetSettings()


@pytest.mark.parametrize(
    "text, message",
    [
        ("not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        ('{"DurationThreshold": "fast"}', "DurationThreshold must be a number"),
        ('{"DurationThreshold": true}', "DurationThreshold must be a number"),
        ('{"DurationThreshold": 0}', "DurationThreshold must be positive"),
        ('{"ErrorThreshold": -1}', "must not be negative"),
        ('{"MemoryUtilizationThreshold": 150}', "percentage"),
        ('{"AlarmPeriodSeconds": 45}', "AlarmPeriodSeconds"),
        ('{"AlarmPeriodSeconds": 60.5}', "integer"),
        ('{"AlarmEvaluationPeriods": 0}', "AlarmEvaluationPeriods"),
        ('{"DurationThreshold": NaN}', "finite"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_error(text, message):
    with pytest.raises(t.TargetsError, match=message):
        t.TargetSettings.from_json(text)


@pytest.mark.parametrize(
    "environment, period, refused",
    [("dev", 10, True), ("prod", 30, True), ("staging", 30, True), ("dev", 60, False), ("prod", 300, False),
     ("local", 10, False), ("local", 30, False)],
)
def test_sub_minute_alarm_periods_are_for_the_local_environment_only(environment, period, refused):
    """AWS/Lambda metrics are one-minute metrics (https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics.html):
    onboarding outside the local cloud refuses a period a real alarm would not evaluate as intended."""
    # GIVEN the environment's target settings WHEN onboarding checks them for the environment
    settings = t.TargetSettings(period=period)
    if refused:
        # THEN a sub-minute (or non-minute) period is refused, naming the parameter and the reason
        with pytest.raises(t.TargetsError, match="AlarmPeriodSeconds .* multiple of 60"):
            settings.for_environment(environment)
    else:
        # (the copy carries the environment, which every name onboarding creates ends with)
        assert settings.for_environment(environment) == dataclasses.replace(settings, environment=environment)


@pytest.mark.parametrize(
    "name, message",
    [
        ("", "not a Lambda function name"),
        ("arn:aws:lambda:us-east-1:123456789012:function:orders", "not a Lambda function name"),
        ("orders:prod", "not a Lambda function name"),
        ("orders fn", "not a Lambda function name"),
        ("x" * 65, "not a Lambda function name"),
        ("lambda-auto-repair-parse-alarm-dev", "system's own functions"),
    ],
)
def test_only_plain_names_of_other_functions_can_be_onboarded(name, message):
    with pytest.raises(t.TargetsError, match=message):
        t.check_function_name(name)


# ---------------------------------------------------------------------------------------------- alarms


def test_duration_alarm_is_the_guides_put_metric_alarm_with_the_environments_threshold():
    # GIVEN the guide's command (Duration, AWS/Lambda, Average, 300 s, GreaterThanThreshold, 2 periods, topic)
    alarms = {a["AlarmName"]: a for a in t.desired_alarms("my-target-function", SETTINGS, [TOPIC])}
    duration = alarms["lambda-duration-alarm-my-target-function"]
    # THEN onboarding creates exactly that alarm, with dev's DurationThreshold
    assert {k: duration[k] for k in ("MetricName", "Namespace", "Statistic", "Period", "EvaluationPeriods",
                                     "Threshold", "ComparisonOperator", "Dimensions", "AlarmActions",
                                     "AlarmDescription")} == {
        "MetricName": "Duration", "Namespace": "AWS/Lambda", "Statistic": "Average", "Period": 300,
        "EvaluationPeriods": 2, "Threshold": 45000.0, "ComparisonOperator": "GreaterThanThreshold",
        "Dimensions": [{"Name": "FunctionName", "Value": "my-target-function"}], "AlarmActions": [TOPIC],
        "AlarmDescription": "Lambda function duration alarm"}
    # AND the other three alarms use the environment's thresholds on their metrics
    assert list(alarms) == t.alarm_names("my-target-function")
    errors, timeout, memory = (alarms[f"lambda-{k}-alarm-my-target-function"] for k in ("errors", "timeout", "memory"))
    assert (errors["MetricName"], errors["Statistic"], errors["Threshold"]) == ("Errors", "Sum", 2.0)
    assert errors["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert (timeout["Namespace"], timeout["MetricName"], timeout["Threshold"]) == (
        "LambdaAutoRepair/Targets/my-target-function", "Timeouts", 2.0)
    assert (memory["MetricName"], memory["Statistic"], memory["Threshold"]) == ("MemoryUtilization", "Maximum", 80.0)
    assert all(a["TreatMissingData"] == "notBreaching" for a in alarms.values())


def _state_change(alarm: dict, account: str = "123456789012") -> dict:
    """The event CloudWatch sends for a single-metric alarm (the shape the local alarms extension emits)."""
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch", "account": account, "time": "2025-01-01T00:00:00Z", "region": "us-east-1",
        "resources": [f"arn:aws:cloudwatch:us-east-1:{account}:alarm:{alarm['AlarmName']}"],
        "detail": {
            "alarmName": alarm["AlarmName"],
            "state": {"value": "ALARM", "reason": "Threshold Crossed", "timestamp": "2025-01-01T00:00:00.000+0000",
                      "reasonData": json.dumps({"threshold": alarm["Threshold"], "recentDatapoints": [1.0]})},
            "previousState": {"value": "OK"},
            "configuration": {"description": alarm["AlarmDescription"], "metrics": [{
                "id": "m1", "returnData": True, "metricStat": {
                    "metric": {"namespace": alarm["Namespace"], "name": alarm["MetricName"],
                               "dimensions": {d["Name"]: d["Value"] for d in alarm["Dimensions"]}},
                    "period": alarm["Period"], "stat": alarm["Statistic"]}}]},
        },
    }


def test_every_onboarding_alarm_reaches_the_workflow_and_names_its_function():
    # GIVEN the main stack's default-bus forwarding rule
    main, problems = decode(str(REPO / "lambda-auto-repair-main.yaml"))
    assert not problems
    pattern = main["Resources"]["AlarmForwardingRule"]["Properties"]["EventPattern"]
    for alarm in t.desired_alarms("orders-api", SETTINGS, [TOPIC]):
        event = _state_change(alarm)
        # THEN each alarm's state change is forwarded to the auto-repair bus, like the guide's alarm
        assert matches(json.loads(json.dumps(pattern)), event), alarm["AlarmName"]
        # AND ParseAlarmEvent attributes it to the function (own metrics: by their namespace)
        model = parse_alarm_event(event, account="123456789012", region="us-east-1")
        assert (model["outcome"], model["functionName"], model["metricName"]) == (
            AlarmOutcome.PROCEED, "orders-api", alarm["MetricName"])


# ---------------------------------------------------------------------------------------------- filters


def test_filters_are_named_by_convention_on_the_functions_log_group():
    filters = t.desired_filters(t.FunctionInfo("orders-api", 512), SETTINGS)
    assert {f["logGroupName"] for f in filters} == {"/aws/lambda/orders-api"}
    assert all(f["filterName"].startswith("auto-repair-") for f in filters)
    names = [f["filterName"] for f in filters]
    assert names[:3] == ["auto-repair-timeouts", "auto-repair-out-of-memory", "auto-repair-max-memory-used"]
    assert len(names) == len(set(names)) == 3 + 11
    assert {tr["metricNamespace"] for f in filters for tr in f["metricTransformations"]} == {
        "LambdaAutoRepair/Targets/orders-api"}
    # AND every pattern is valid filter syntax and within PutMetricFilter's 1,024 characters
    for f in filters:
        validate_filter(f["filterPattern"], f["metricTransformations"])
        assert len(f["filterPattern"]) <= 1024


@pytest.mark.parametrize(
    "line",
    [
        report(75, 128),
        report(75, 128, extra="Init Duration: 187.22 ms"),
        report(128, 128, extra="Status: error\tError Type: Runtime.OutOfMemory"),
        report(75, 128, extra="Init Duration: 187.22 ms\tXRAY TraceId: 1-5e1b4151-43a0913a12345678901234567\t"
                              "SegmentId: 6b1e2d5f0c2f1b3a\tSampled: true"),
        # the local cloud's runtime writes exactly Lambda's format
        "REPORT RequestId: 7d3c\tDuration: 3.10 ms\tBilled Duration: 4 ms\tMemory Size: 128 MB\tMax Memory Used: 75 MB",
        "REPORT RequestId: 7d3c Duration: 3.10 ms Billed Duration: 4 ms Memory Size: 128 MB Max Memory Used: 75 MB",
    ],
)
def test_max_memory_used_is_published_from_every_form_of_report_line(line):
    filters = t.desired_filters(t.FunctionInfo("f", 128), SETTINGS)
    values = published(filters, line)
    used = 128 if "Runtime.OutOfMemory" in line else 75
    assert values["MaxMemoryUsed"] == [used]
    assert len(values["MemoryUtilization"]) == 1  # exactly one band per REPORT line


@pytest.mark.parametrize(
    "line",
    [
        "START RequestId: 7d3c Version: $LATEST",
        "END RequestId: 7d3c",
        "REPORT generated for customer 42 in 12 ms",
        "[INFO] REPORT RequestId: 7d3c Duration: 3 ms Billed Duration: 4 ms Memory Size: 128 MB Max Memory Used: 75 MB",
        "INIT_REPORT Init Duration: 10000.00 ms Phase: init Status: timeout",
        '{"level": "INFO", "message": "done"}',
    ],
)
def test_other_lines_publish_no_memory_metric(line):
    values = published(t.desired_filters(t.FunctionInfo("f", 128), SETTINGS), line)
    assert "MaxMemoryUsed" not in values and "MemoryUtilization" not in values


@pytest.mark.parametrize("size", [128, 129, 200, 1000, 3008])
@pytest.mark.parametrize("threshold", [80, 83])
def test_memory_utilization_is_the_band_of_used_over_configured_and_exact_at_the_threshold(size, threshold):
    # GIVEN a function of `size` MB onboarded with utilisation threshold `threshold`
    settings = t.TargetSettings(memory_utilization_threshold=threshold)
    filters = [f for f in t.desired_filters(t.FunctionInfo("f", size), settings)
               if f["filterName"].startswith("auto-repair-memory-utilization-")]
    edges = t.band_edges(threshold)
    assert threshold in edges
    for used in range(0, size + 2):
        # WHEN an invocation reports `used` MB
        values = published(filters, report(used, size)).get("MemoryUtilization", [])
        # THEN exactly one band publishes, the highest edge not above the true percentage ...
        assert len(values) == 1, (used, size, values)
        true_percent = min(used / size * 100, 100)
        assert values[0] == max(e for e in edges if e <= true_percent + 1e-9), (used, size, values)
        # ... so "MemoryUtilization >= threshold" holds exactly when used/size does
        assert (values[0] >= threshold) == (used * 100 >= threshold * size), (used, size)


def test_utilisation_bands_ignore_reports_of_another_memory_size():
    # GIVEN bands written for 256 MB WHEN the function runs at 512 MB after a repair (not yet re-onboarded)
    filters = t.desired_filters(t.FunctionInfo("f", 256), SETTINGS)
    values = published(filters, report(230, 512))
    # THEN no utilisation is published (230 MB would be a false 89% of 256) but MaxMemoryUsed still is
    assert "MemoryUtilization" not in values and values["MaxMemoryUsed"] == [230]


def test_json_log_format_functions_get_json_patterns():
    filters = t.desired_filters(t.FunctionInfo("f", 256, log_format="JSON"), SETTINGS)
    values = published(filters, json_report(210, 256))
    assert values == {"MaxMemoryUsed": [210], "MemoryUtilization": [80]}
    assert published(filters, json_report(100, 256, status="timeout"))["Timeouts"] == [1]
    assert published(filters, json_report(100, 512)) == {"MaxMemoryUsed": [100]}
    assert published(filters, report(210, 256)) == {}


# out-of-memory lines of each runtime, as they appear in CloudWatch Logs
OOM_LINES = {
    "Runtime.OutOfMemory": "RequestId: 7d3c Error: Runtime exited with error: signal: killed\nRuntime.OutOfMemory",
    "Python MemoryError": "[ERROR] MemoryError\nTraceback (most recent call last):",
    "numpy _ArrayMemoryError": "[ERROR] _ArrayMemoryError: Unable to allocate 7.45 GiB for an array with shape (10,)",
    "Node.js heap exhausted": "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory",
    "Node.js buffer allocation failed": "RangeError: Array buffer allocation failed",
    "Java OutOfMemoryError": "Exception in thread \"main\" java.lang.OutOfMemoryError: Java heap space",
    ".NET OutOfMemoryException": "Unhandled exception. System.OutOfMemoryException: Insufficient memory",
    "Go runtime out of memory": "fatal error: runtime: out of memory",
    "Ruby NoMemoryError": "failed to allocate memory (NoMemoryError)",
    "allocation failure (ENOMEM)": "OSError: [Errno 12] Cannot allocate memory",
    "bad_alloc": "terminate called after throwing an instance of 'std::bad_alloc'",
    "REPORT error type": report(128, 128, extra="Status: error\tError Type: Runtime.OutOfMemory"),
}
NOT_OOM_LINES = [
    "memory usage is fine: 12 MB",
    "2025-01-01T00:00:00.000Z 7d3c Task timed out after 3.00 seconds",
    "RequestId: 7d3c Error: Runtime exited with error: signal: killed",  # weak: not proof on its own
    "[ERROR] KeyError: 'amount'",
    report(75, 128),
]


@pytest.mark.parametrize("label", sorted(OOM_LINES))
def test_out_of_memory_filter_matches_every_runtimes_signature(label):
    line = OOM_LINES[label]
    assert published(t.desired_filters(t.FunctionInfo("f", 128), SETTINGS), line)["OutOfMemory"] == [1]
    # AND the diagnosis classifies the same line as a strong out-of-memory signature
    assert any(r.kind == "oom" and r.strength == "strong" for r in classify_message(line)) or "REPORT" in line


def test_numpy_allocation_failures_count_as_out_of_memory():
    # numpy's _ArrayMemoryError is a MemoryError: the process could not get the memory it asked for
    line = "numpy.core._exceptions._ArrayMemoryError: Unable to allocate 2.50 GiB for an array"
    assert published(t.desired_filters(t.FunctionInfo("f", 128), SETTINGS), line)["OutOfMemory"] == [1]


def test_every_strong_oom_signature_of_the_diagnosis_has_a_filter_sample():
    # GIVEN the diagnosis' strong OOM rules WHEN a rule is added THEN this table (and OOM_TERMS) must follow
    covered = {r.label for line in OOM_LINES.values() for r in classify_message(line) if r.kind == "oom"}
    strong = {r.label for r in SIGNATURES if r.kind == "oom" and r.strength == "strong"}
    assert strong <= covered, strong - covered


@pytest.mark.parametrize("line", NOT_OOM_LINES)
def test_out_of_memory_filter_ignores_other_lines(line):
    assert "OutOfMemory" not in published(t.desired_filters(t.FunctionInfo("f", 128), SETTINGS), line)


@pytest.mark.parametrize(
    "line, hit",
    [
        ("2025-01-01T00:00:00.000Z 7d3c-11 Task timed out after 3.00 seconds", True),
        ("2025-01-01T00:00:00.000Z 7d3c-11 Task timed out after 10.00 seconds", True),
        ("task timed out", False),
        ("Task failed", False),
    ],
)
def test_timeouts_filter_counts_lambda_timeout_lines(line, hit):
    values = published(t.desired_filters(t.FunctionInfo("f", 128), SETTINGS), line)
    assert values.get("Timeouts") == ([1] if hit else None)


# ---------------------------------------------------------------------------------------------- plans


def _existing(fn: str = "f", size: int = 256, settings: t.TargetSettings = SETTINGS) -> t.Observed:
    """What AWS would describe right after onboarding (DescribeAlarms / DescribeMetricFilters shapes)."""
    alarms = {a["AlarmName"]: {**a, "AlarmArn": f"arn:{a['AlarmName']}", "StateValue": "OK"}
              for a in t.desired_alarms(fn, settings, [TOPIC])}
    filters = {f["filterName"]: {**f, "creationTime": 1} for f in t.desired_filters(t.FunctionInfo(fn, size), settings)}
    return t.Observed(function=fn, alarms=alarms, managed=set(alarms), filters=filters, tagged=True)


def _plan(observed: t.Observed, size: int = 256, settings: t.TargetSettings = SETTINGS) -> list[t.Change]:
    return t.plan_onboard(t.desired_alarms("f", settings, [TOPIC]),
                          t.desired_filters(t.FunctionInfo("f", size), settings), observed)


def test_onboarding_from_nothing_creates_everything_and_tags_the_function():
    changes = _plan(t.Observed(function="f", log_group_exists=False))
    kinds = [(c.action, c.kind) for c in changes]
    assert kinds[0] == ("create-log-group", "log-group")
    assert kinds.count(("create", "alarm")) == 4 and kinds.count(("create", "filter")) == 14
    assert kinds[-1] == ("tag", "function") and changes[-1].spec == {"auto-repair": "enabled"}


def test_onboarding_twice_changes_nothing():
    assert _plan(_existing()) == []


def test_changed_thresholds_update_only_the_affected_alarms():
    stricter = t.TargetSettings(duration_threshold=30000, error_threshold=2, timeout_threshold=2,
                                memory_utilization_threshold=80, period=300, evaluation_periods=2)
    changes = _plan(_existing(), settings=stricter)
    assert [(c.action, c.name, c.why) for c in changes] == [
        ("update", "lambda-duration-alarm-f", "changed: Threshold")]


def test_a_memory_change_replaces_the_utilisation_bands():
    # GIVEN a function onboarded at 256 MB WHEN it now has 512 MB (a repair) THEN the bands move, nothing else
    changes = _plan(_existing(size=256), size=512)
    assert {c.kind for c in changes} == {"filter"}
    assert all(c.name.startswith("auto-repair-memory-utilization-") for c in changes)
    assert {c.action for c in changes} == {"update"}


def test_a_new_threshold_adds_its_band_edge_and_drops_the_old_one():
    changes = _plan(_existing(settings=t.TargetSettings(memory_utilization_threshold=83)))
    actions = {(c.action, c.name) for c in changes if c.kind == "filter"}
    assert ("delete", "auto-repair-memory-utilization-083") in actions


def test_a_users_own_alarm_of_the_same_name_is_adopted_not_duplicated():
    observed = _existing()
    observed.managed.discard("lambda-duration-alarm-f")
    changes = _plan(observed)
    assert [(c.action, c.name) for c in changes] == [("adopt", "lambda-duration-alarm-f")]


def test_offboarding_deletes_exactly_what_onboarding_created():
    observed = _existing()
    observed.managed.discard("lambda-errors-alarm-f")  # the user's own, never adopted
    changes = t.plan_offboard(observed)
    deleted_alarms = {c.name for c in changes if c.kind == "alarm"}
    assert deleted_alarms == set(t.alarm_names("f")) - {"lambda-errors-alarm-f"}
    assert {c.name for c in changes if c.kind == "filter"} == set(observed.filters)
    assert changes[-1].action == "untag"
    # AND offboarding what is not onboarded changes nothing
    assert t.plan_offboard(t.Observed(function="f")) == []


# ---------------------------------------------------------------------------------------------- sweep


def _metric_results(values_by_fn: dict[str, list[float]], end: datetime) -> list[dict]:
    return [{"Id": f"f{i}", "Timestamps": [end - timedelta(hours=len(v) - k) for k in range(len(v))], "Values": v}
            for i, v in enumerate(values_by_fn.values())]


def test_sweep_finds_functions_whose_memory_use_reached_the_threshold_of_their_current_size():
    # GIVEN hourly peaks of Max Memory Used (MB) over the last day and the functions' memory now
    now = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)
    data = {"busy": [100, 210, 150], "calm": [100, 204], "idle": [], "gone": [250]}
    sizes = {"busy": 256, "calm": 256, "idle": 128}
    findings = t.sweep_findings(list(data), _metric_results(data, now), threshold=80, sizes=sizes)
    # THEN only "busy" reached 80 % (210 of 256 MB = 82 %; 204 MB is 79.7 %), deleted functions are skipped
    assert [(f.function, f.peak, f.periods_above, f.periods) for f in findings] == [("busy", 82.0, 1, 3)]
    # AND the finding points at the end of the latest hour above the threshold
    assert findings[0].at == now - timedelta(hours=1)


def test_sweep_judges_yesterdays_use_against_todays_memory():
    now = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)
    data = {"repaired": [240, 240], "downsized": [240, 240]}
    results = _metric_results(data, now)
    # GIVEN 240 MB peaks WHEN one function was raised to 512 MB and the other lowered to 256 MB
    findings = t.sweep_findings(list(data), results, threshold=80, sizes={"repaired": 512, "downsized": 256})
    # THEN the repaired one is left alone and the downsized one is reported (94 % of what it has now)
    assert [(f.function, f.peak) for f in findings] == [("downsized", 93.8)]


def test_sweep_event_is_parsed_by_the_workflow_as_a_memory_utilisation_alarm():
    now = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)
    finding = t.Finding("orders-api", 91.0, now - timedelta(hours=2), 3, 24)
    event = t.sweep_event(finding, threshold=80, account="123456789012", region="us-east-1", now=now)
    model = parse_alarm_event(event, account="123456789012", region="us-east-1")
    assert model["outcome"] == AlarmOutcome.PROCEED and model["functionName"] == "orders-api"
    assert (model["metricName"], model["threshold"], model["currentValue"]) == ("MemoryUtilization", 80.0, 91.0)
    assert model["alarmName"] == "lambda-memory-sweep-orders-api"  # not the real alarm: its OK cannot close this
    assert model["stateChangeTime"].startswith("2025-03-04T10:00:00")
    # AND the event never looks like CloudWatch's own (the alarm rules do not pick it up)
    assert event["source"] == "lambda-auto-repair.sweep"


def test_sweep_execution_names_are_daily_and_valid():
    day = datetime(2025, 3, 4, 23, 59, tzinfo=UTC)
    assert t.sweep_execution_name("orders-api", day) == "sweep-orders-api-20250304"
    assert t.sweep_execution_name("orders-api", day + timedelta(minutes=2)) == "sweep-orders-api-20250305"
    assert len(t.sweep_execution_name("x" * 64, day)) <= 80


# ---------------------------------------------------------------------------------------------- the pattern language


@pytest.mark.parametrize(
    "pattern, message, hit",
    [
        ("ERROR", "Exiting with ERRORCODE: -1", True),  # the documentation's substring example
        ("ERROR", "error", False),  # case-sensitive
        ('"Failed to process"', "[WARN] Failed to process the request", True),
        ("Failed to process", "[WARN] Failed the process to", True),  # unquoted words: all must appear
        ("?ERROR ?WARN", "WARN message", True),
        ("?ERROR ?WARN", "INFO message", False),
        ("ERROR -Exiting", "Exiting with ERRORCODE", False),
        ("%Err[a-z]r%", "an Error here", True),
        ("", "anything", True),
        ('{ $.eventType = "UpdateTrail" }', '{"eventType": "UpdateTrail"}', True),
        ("{ $.sourceIPAddress != 123.123.* }", '{"sourceIPAddress": "111.111.111.111"}', True),
        ("{ $.arrayKey[0] = value }", '{"arrayKey": ["value", "x"]}', True),
        ("{ $.objectList[1].id = 2 }", '{"objectList": [{"id": 1}, {"id": 2}]}', True),
        ("{ $.SomeObject IS NULL }", '{"SomeObject": null}', True),
        ("{ $.SomeOtherObject NOT EXISTS }", '{"a": 1}', True),
        ("{ $.ThisFlag IS TRUE }", '{"ThisFlag": true}', True),
        ("{ $.latency >= 500 }", '{"latency": 499}', False),
        ("{ $.latency = * }", '{"latency": 50}', True),
        ("{ $.users = 1 }", '{"users": [1, 2, 3]}', False),
        ("{ $.users != 1 }", '{"users": [1, 2, 3]}', False),
        ('{ ($.user.id = 2 && $.users[0].email = "nonmatch") || $.actions[2] = "GET" }',
         '{"user": {"id": 1}, "users": [{"email": "a"}], "actions": ["GET", "PUT", "DELETE"]}', False),
        ('{ $.user.email = "a@b.c" || $.c[0][1] = nonmatch && $.actions[2] = nomatch }',
         '{"user": {"email": "a@b.c"}, "c": [[0, 1]], "actions": []}', True),
        ("{ $.a = 1 }", "not json", False),
        ("[ip, user, username, timestamp, request, status_code, bytes > 1000]",
         '127.0.0.1 - frank [10/Oct/2000:13:25:15 -0700] "GET /apache_pb.gif HTTP/1.0" 200 1534', True),
        ("[ip, user, username, timestamp, request = *html*, status_code = 4*, bytes]",
         '127.0.0.1 - frank [10/Oct/2000:13:25:15 -0700] "GET /index.html HTTP/1.0" 404 1534', True),
        ("[ip, user, username, timestamp, request, status_code = 4* && status_code != 403, bytes]",
         '127.0.0.1 - frank [10/Oct/2000:13:25:15 -0700] "GET /x HTTP/1.0" 403 1534', False),
        ("[..., status_code, bytes]", "a b c 200 1534", True),
        ("[ip, user, ...]", "127.0.0.1", False),
        ("[ip, ...]", "127.0.0.1", True),
        ("[w1=ERROR || w1=WARN, w2]", "WARN message", True),
        ("[w1=ERROR || w1=WARN, w2]", "ERROR WARN message", False),  # three fields, not two
        ("[a, b]", "one", False),
    ],
)
def test_filter_pattern_language(pattern, message, hit):
    assert (compile_pattern(pattern).match(message) is not None) is hit


@pytest.mark.parametrize(
    "pattern",
    ['"unterminated', "{ $.a = }", "{ a = 1 }", "{ $.a = 1", "[a b]", "[1x]", "[a, a]", "{ $.a ~ 1 }",
     "%unterminated", "[]"],
)
def test_invalid_filter_patterns_are_rejected(pattern):
    with pytest.raises(FilterPatternError):
        compile_pattern(pattern)


def test_delimited_fields_keep_quoted_and_bracketed_text_together():
    line = '127.0.0.1 - frank [10/Oct/2000:13:25:15 -0700] "GET /index.html HTTP/1.0" 404 1534'
    assert split_delimited(line) == ["127.0.0.1", "-", "frank", "10/Oct/2000:13:25:15 -0700",
                                     "GET /index.html HTTP/1.0", "404", "1534"]
    match = compile_pattern("[..., request=*.html*, status_code=4*,]").match(line)
    assert match is not None and match.fields["$status_code"] == "404" and match.fields["$7"] == "1534"


def test_metric_values_defaults_and_dimensions():
    pattern = compile_pattern("[ip, user, ..., status, bytes]")
    hit = pattern.match("1.2.3.4 bob GET 200 1534")
    assert metric_datum({"metricName": "Bytes", "metricValue": "$bytes", "unit": "Bytes",
                         "dimensions": {"Status": "$status"}}, pattern, hit) == {
        "MetricName": "Bytes", "Dimensions": [{"Name": "Status", "Value": "200"}], "Value": 1534.0, "Unit": "Bytes"}
    # a field that is not a number publishes nothing; a miss publishes the default value when there is one
    assert metric_datum({"metricName": "U", "metricValue": "$user"}, pattern, hit) is None
    assert metric_datum({"metricName": "E", "metricValue": "1", "defaultValue": 0}, pattern, None)["Value"] == 0.0
    assert metric_datum({"metricName": "E", "metricValue": "1"}, pattern, None) is None


@pytest.mark.parametrize(
    "pattern, transformation, message",
    [
        ("ERROR", {"dimensions": {"Fn": "$fn"}}, "does not support dimensions"),
        ("[a, b]", {"dimensions": {"FunctionName": "orders-api"}}, "dimension value is a \\$field"),
        ("[a, b]", {"dimensions": {"A": "$a"}, "defaultValue": 0}, "default value"),
        ("[a, b", {}, "Invalid metric filter pattern"),
    ],
)
def test_put_metric_filter_is_validated_as_cloudwatch_logs_does(pattern, transformation, message):
    # (why per-function metrics use a namespace: a constant FunctionName dimension is not allowed)
    with pytest.raises(FilterPatternError, match=message):
        validate_filter(pattern, [{"metricName": "M", "metricNamespace": "N", "metricValue": "1", **transformation}])


# ---------------------------------------------------------------------------------------------- the diagnosis


def _utilisation_request(used: list[int], *, size: int = 256, threshold: float = 80.0, extra: list[str] = ()) -> dict:
    logs = [{"timestamp": "2025-01-01T00:00:00.000Z", "message": report(u, size)} for u in used]
    logs += [{"timestamp": "2025-01-01T00:00:01.000Z", "message": line} for line in extra]
    return {"functionName": "f", "currentMemorySize": size, "timeoutSeconds": 30, "metrics": [], "logs": logs,
            "alarmDetails": {"alarmName": "lambda-memory-alarm-f", "metricName": "MemoryUtilization",
                             "threshold": threshold}}


@pytest.mark.parametrize(
    "used, threshold, cause, confidence, memory",
    [
        ([215] * 10, 80, "memory_pressure", 0.8, 320),  # sustained 84 %: act (above the usual 0.7 bar)
        ([150] * 9 + [220], 80, "memory_pressure", 0.65, 320),  # one peak: a human decides
        ([165] * 10, 60, "memory_pressure", 0.8, 320),  # the sweep's own threshold; the peak lands below it
        ([150] * 10, 80, "insufficient_data", None, 256),  # below the threshold in the evidence: no action
    ],
)
def test_high_utilisation_without_failures_is_memory_pressure(used, threshold, cause, confidence, memory):
    # GIVEN a MemoryUtilization alarm (target onboarding or the sweep) and REPORT lines without failures
    result = diagnose(_utilisation_request(used, threshold=threshold))
    # THEN the diagnosis calls it memory pressure, with confidence by how sustained it is, sized under the threshold
    assert result["cause"] == cause
    assert result["recommendedMemorySize"] == memory
    if confidence is not None:
        assert result["confidence"] == confidence and result["isMemoryIssue"] is True
        assert max(used) / memory * 100 < threshold * 0.95


def test_high_utilisation_with_code_errors_is_not_called_pressure():
    result = diagnose(_utilisation_request([215] * 5, extra=["[ERROR] KeyError: 'amount'"] * 5))
    assert result["cause"] == "code_error" and result["isMemoryIssue"] is False


# ---------------------------------------------------------------------------------------------- the handler's events

FN_ARN = "arn:aws:lambda:us-east-1:123456789012:function:orders-api"


@pytest.mark.parametrize(
    "event, expected",
    [
        ({"action": "scheduled"}, ("scheduled", None, {})),
        ({"version": "0", "source": "aws.events", "detail-type": "Scheduled Event", "detail": {}},
         ("scheduled", None, {})),
        ({"action": "sweep", "threshold": 70, "functions": ["a"]}, ("sweep", ["a"], {"threshold": 70.0})),
        ({"source": "aws.tag", "detail-type": "Tag Change on Resource", "resources": [FN_ARN],
          "detail": {"service": "lambda", "resource-type": "function", "tags": {}}}, ("reconcile", ["orders-api"], {})),
        ({"source": "aws.lambda", "detail-type": "AWS API Call via CloudTrail",
          "detail": {"eventName": "UpdateFunctionConfiguration20150331v2",
                     "requestParameters": {"functionName": FN_ARN}}}, ("reconcile", ["orders-api"], {})),
        ({"source": "aws.lambda", "detail-type": "AWS API Call via CloudTrail",
          "detail": {"eventName": "UpdateFunctionConfiguration20150331v2",
                     "requestParameters": {"functionName": "orders-api"}}}, ("reconcile", ["orders-api"], {})),
    ],
)
def test_targets_function_events(event, expected):
    from auto_repair.handlers.targets import what_to_do

    assert what_to_do(event) == expected


@pytest.mark.parametrize(
    "event",
    [
        "not an object",
        {"source": "aws.tag", "detail": {"service": "ec2"}, "resources": ["arn:aws:ec2:us-east-1:1:instance/i-1"]},
        {"source": "aws.tag", "detail": {"service": "lambda"},
         "resources": ["arn:aws:lambda:us-east-1:123456789012:function:lambda-auto-repair-notify-dev"]},
        {"source": "aws.lambda", "detail": {"eventName": "Invoke"}},
        {"source": "aws.cloudwatch", "detail-type": "CloudWatch Alarm State Change", "detail": {}},
    ],
)
def test_targets_function_ignores_what_is_not_its_business(event):
    from auto_repair.handlers.targets import what_to_do

    assert what_to_do(event)[0] == "ignore"


@pytest.mark.parametrize(
    "event, message",
    [
        ({"action": "sweep", "threshold": 150}, "percentage"),
        ({"action": "sweep", "threshold": True}, "percentage"),
        ({"action": "reconcile", "functions": "orders-api"}, "list of function names"),
    ],
)
def test_targets_function_refuses_bad_requests(event, message):
    from auto_repair.handlers.targets import what_to_do

    with pytest.raises(t.TargetsError, match=message):
        what_to_do(event)


# ---------------------------------------------------------------------------------------------- the targets stack

# The targets function, its log group and rules are in the monitoring stack; its role in the main stack (the guide
# creates the monitoring stack without IAM capabilities).
TARGETS_TEMPLATE = REPO / "lambda-auto-repair-monitoring.yaml"


def test_targets_function_lives_in_the_monitoring_stack_and_its_role_in_the_main_stack():
    monitoring, problems = decode(str(TARGETS_TEMPLATE))
    assert not problems
    assert {"TargetsFunction", "TargetsLogGroup", "TargetsScheduleRule", "TargetsChangeRule"} <= set(
        monitoring["Resources"])
    assert not [r for r in monitoring["Resources"].values() if r["Type"].startswith("AWS::IAM::")]
    main, _ = decode(str(REPO / "lambda-auto-repair-main.yaml"))
    assert main["Resources"]["TargetsRole"]["Type"] == "AWS::IAM::Role"
    assert monitoring["Resources"]["TargetsFunction"]["Properties"]["Role"] == {
        "Fn::ImportValue": {"Fn::Sub": "${MainStackName}-TargetsRoleArn"}}


def test_monitoring_parameters_are_defaulted_for_the_guide_s_manual_create_stack():
    template, _ = decode(str(TARGETS_TEMPLATE))
    # the guide's manual create-stack passes only Environment and MainStackName
    assert {n for n, p in template["Parameters"].items() if "Default" not in p} == {"Environment", "MainStackName"}


@pytest.mark.parametrize(
    "expression, valid",
    [("rate(1 day)", True), ("rate(12 hours)", True), ("rate(30 minutes)", True), ("cron(0 6 * * ? *)", True),
     ("rate(1 days)", False), ("rate(2 day)", False), ("rate(0 minutes)", False), ("daily", False)],
)
def test_sweep_schedule_accepts_what_eventbridge_accepts(expression, valid):
    template, _ = decode(str(TARGETS_TEMPLATE))
    pattern = template["Parameters"]["SweepSchedule"]["AllowedPattern"]
    assert bool(re.match(pattern, expression)) is valid


def test_target_settings_of_the_functions_stack_parse_with_the_templates_defaults():
    # GIVEN the functions stack's TargetSettings value with every parameter at its default
    functions, _ = decode(str(REPO / "lambda-auto-repair-functions.yaml"))
    value = functions["Resources"]["TargetSettings"]["Properties"]["Value"]["Fn::Sub"][0]
    # P: the main stack's PlainScopeTag export, default true
    defaults = {n: p.get("Default") for n, p in functions["Parameters"].items()} | {"P": "true"}
    text = re.sub(r"\$\{(\w+)\}", lambda m: str(defaults[m.group(1)]), value)
    # THEN onboarding reads the guide's alarm (300 s, 2 periods) and an 80 % memory threshold from it
    settings = t.TargetSettings.from_json(text)
    assert (settings.period, settings.evaluation_periods, settings.memory_utilization_threshold) == (300, 2, 80.0)
    assert settings.plain_scope_tag is True


def test_the_targets_function_execute_repair_asks_for_a_resync_is_the_one_the_stacks_create_and_allow():
    # GIVEN the name ExecuteRepair invokes (Settings.targets_function), for each environment
    from auto_repair.settings import Settings

    main, problems = decode(str(REPO / "lambda-auto-repair-main.yaml"))
    monitoring, more = decode(str(TARGETS_TEMPLATE))
    assert not problems and not more
    for env in ("dev", "staging", "prod", "local"):
        name = Settings(environment=env).targets_function
        # THEN the monitoring stack creates the function under that name
        assert monitoring["Resources"]["TargetsFunction"]["Properties"]["FunctionName"]["Fn::Sub"].replace(
            "${Environment}", env) == name
    # AND the execution role may invoke exactly that function, and the targets role may delete only re-sync markers
    policy = {s.get("Sid"): s for p in main["Resources"]["ExecuteRepairRole"]["Properties"]["Policies"]
              for s in p["PolicyDocument"]["Statement"]}
    assert policy["ResyncOnboarding"]["Action"] == "lambda:InvokeFunction"
    assert policy["ResyncOnboarding"]["Resource"]["Fn::Sub"].endswith(":function:lambda-auto-repair-targets-${Environment}")
    targets_policy = {s.get("Sid"): s for p in main["Resources"]["TargetsRole"]["Properties"]["Policies"]
                      for s in p["PolicyDocument"]["Statement"]}
    assert targets_policy["ResyncMarkers"]["Condition"] == {
        "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["RESYNC"]}}
