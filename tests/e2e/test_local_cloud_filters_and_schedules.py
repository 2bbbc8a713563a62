"""The local cloud's metric filters, scheduled rules and Lambda change events (log_metric_filters, scheduler,
lambda_changes): through the AWS APIs, as a user sees them, plus the scheduler's clock logic without a clock."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from auto_repair.targets import report_pattern
from auto_repair_cli.scenario import zip_source
from auto_repair_local.lambda_role_trust import LAMBDA_TRUST_POLICY
from auto_repair_local.scheduler import Cron, ScheduleError, Scheduler, next_fire, rate_seconds


def poll(fetch: Callable[[], Any], timeout: float = 20.0) -> Any:
    end = time.monotonic() + timeout
    while True:
        value = fetch()
        if value or time.monotonic() > end:
            return value
        time.sleep(0.2)


def _group(cloud: Any) -> str:
    logs = cloud.client("logs")
    group = f"/probe/{uuid.uuid4().hex[:8]}"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    return group


def _queue(cloud: Any) -> tuple[str, str]:
    sqs = cloud.client("sqs")
    url = sqs.create_queue(QueueName=f"probe-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def _messages(cloud: Any, url: str) -> list[dict[str, Any]]:
    found = cloud.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    return [json.loads(m["Body"]) for m in found.get("Messages", [])]


def _values(cloud: Any, namespace: str, name: str, dims: list[dict[str, str]] | None = None) -> list[float]:
    now = dt.datetime.now(dt.UTC)
    stat = {"Metric": {"Namespace": namespace, "MetricName": name, "Dimensions": dims or []}, "Period": 60,
            "Stat": "Sum"}
    result = cloud.client("cloudwatch").get_metric_data(
        MetricDataQueries=[{"Id": "m", "MetricStat": stat}], StartTime=now - dt.timedelta(minutes=5),
        EndTime=now + dt.timedelta(minutes=1))
    return result["MetricDataResults"][0]["Values"]


# ---------------------------------------------------------------------------------------------- metric filters


def test_log_events_publish_metrics_through_metric_filters(local_cloud):
    # GIVEN a space-delimited filter taking a value and a dimension, and a term filter with a default value
    logs, group = local_cloud.client("logs"), _group(local_cloud)
    ns = f"Probe/{uuid.uuid4().hex[:6]}"
    logs.put_metric_filter(logGroupName=group, filterName="bytes", filterPattern="[ip, user, status, bytes]",
                           metricTransformations=[{"metricName": "Bytes", "metricNamespace": ns,
                                                   "metricValue": "$bytes", "dimensions": {"Status": "$status"}}])
    logs.put_metric_filter(logGroupName=group, filterName="errors", filterPattern="?ERROR ?FATAL",
                           metricTransformations=[{"metricName": "Errors", "metricNamespace": ns,
                                                   "metricValue": "1", "defaultValue": 0}])
    # WHEN events arrive through PutLogEvents
    now = int(time.time() * 1000)
    logs.put_log_events(logGroupName=group, logStreamName="s", logEvents=[
        {"timestamp": now, "message": "1.2.3.4 bob 200 1500"},
        {"timestamp": now + 1, "message": "1.2.3.4 bob 200 500"},
        {"timestamp": now + 2, "message": "ERROR something broke"}])
    # THEN the metrics hold the extracted values (per dimension) and the counts with their defaults
    assert poll(lambda: _values(local_cloud, ns, "Bytes", [{"Name": "Status", "Value": "200"}])) == [2000.0]
    assert _values(local_cloud, ns, "Errors") == [1.0]


def test_put_metric_filter_replaces_by_name_and_validates_like_cloudwatch_logs(local_cloud):
    logs, group = local_cloud.client("logs"), _group(local_cloud)
    transformation = {"metricName": "M", "metricNamespace": "Probe", "metricValue": "1"}
    for pattern in ("ERROR", "WARN"):
        logs.put_metric_filter(logGroupName=group, filterName="f", filterPattern=pattern,
                               metricTransformations=[transformation])
    filters = logs.describe_metric_filters(logGroupName=group)["metricFilters"]
    assert [(f["filterName"], f["filterPattern"]) for f in filters] == [("f", "WARN")]
    cases = [
        (group, "[a, b", transformation, "InvalidParameterException"),
        (group, "ERROR", {**transformation, "dimensions": {"Fn": "$fn"}}, "InvalidParameterException"),
        (group, "[a, b]", {**transformation, "dimensions": {"FunctionName": "orders"}}, "InvalidParameterException"),
        ("/probe/no-such-group", "ERROR", transformation, "ResourceNotFoundException"),
    ]
    for log_group, pattern, t, code in cases:
        with pytest.raises(ClientError) as caught:
            logs.put_metric_filter(logGroupName=log_group, filterName="g", filterPattern=pattern,
                                   metricTransformations=[t])
        assert caught.value.response["Error"]["Code"] == code, (pattern, t)
    with pytest.raises(ClientError) as caught:
        logs.delete_metric_filter(logGroupName=group, filterName="never-created")
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_lambda_report_lines_feed_metric_filters(local_cloud):
    # GIVEN a function whose log group has a REPORT-line filter (the runtime writes through PutLogEvents' path)
    lam, logs = local_cloud.client("lambda"), local_cloud.client("logs")
    name = f"probe-fn-{uuid.uuid4().hex[:6]}"
    role = local_cloud.client("iam").create_role(RoleName=name,
                                                 AssumeRolePolicyDocument=LAMBDA_TRUST_POLICY)["Role"]["Arn"]
    lam.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="app.handler", MemorySize=128,
                        Code={"ZipFile": zip_source("def handler(event, context):\n    return 1\n")})
    logs.create_log_group(logGroupName=f"/aws/lambda/{name}")
    logs.put_metric_filter(logGroupName=f"/aws/lambda/{name}", filterName="used",
                           filterPattern=report_pattern(),
                           metricTransformations=[{"metricName": "Used", "metricNamespace": f"Probe/{name}",
                                                   "metricValue": "$used"}])
    # WHEN it runs THEN Max Memory Used of its REPORT line becomes a datapoint
    lam.invoke(FunctionName=name, Payload=b"{}")
    values = poll(lambda: _values(local_cloud, f"Probe/{name}", "Used"))
    assert values and 1 <= values[0] <= 128


# ---------------------------------------------------------------------------------------------- scheduled rules


def test_a_scheduled_rule_fires_on_request_with_the_aws_scheduled_event(local_cloud):
    events = local_cloud.client("events")
    url, arn = _queue(local_cloud)
    rule = f"probe-schedule-{uuid.uuid4().hex[:6]}"
    rule_arn = events.put_rule(Name=rule, ScheduleExpression="rate(1 day)")["RuleArn"]
    events.put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": arn}])
    # GIVEN ordinary events on the default bus THEN the scheduled rule (no pattern) does not receive them
    events.put_events(Entries=[{"Source": "probe", "DetailType": "Something", "Detail": "{}"}])
    assert _messages(local_cloud, url) == []
    # WHEN asked to fire now THEN its target gets AWS's Scheduled Event
    fired = events.put_events(Entries=[{"Source": "auto-repair.local", "DetailType": "Run Scheduled Rule",
                                        "Detail": json.dumps({"rule": rule})}])
    assert fired["FailedEntryCount"] == 0
    message = poll(lambda: _messages(local_cloud, url))[0]
    assert (message["source"], message["detail-type"], message["resources"], message["detail"]) == (
        "aws.events", "Scheduled Event", [rule_arn], {})
    # AND a target's Input replaces the event, as on AWS
    events.put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": arn, "Input": '{"action": "scheduled"}'}])
    events.put_events(Entries=[{"Source": "auto-repair.local", "DetailType": "Run Scheduled Rule",
                                "Detail": json.dumps({"rule": rule})}])
    assert poll(lambda: _messages(local_cloud, url)) == [{"action": "scheduled"}]
    # AND an unknown rule is a failed entry
    missing = events.put_events(Entries=[{"Source": "auto-repair.local", "DetailType": "Run Scheduled Rule",
                                          "Detail": json.dumps({"rule": "no-such-rule"})}])
    assert missing["FailedEntryCount"] == 1
    assert missing["Entries"][0]["ErrorCode"] == "ResourceNotFoundException"


@pytest.mark.parametrize(
    "expression, seconds",
    [("rate(1 minute)", 60), ("rate(5 minutes)", 300), ("rate(1 hour)", 3600), ("rate(2 days)", 172800),
     ("cron(0 6 * * ? *)", None)],
)
def test_rate_expressions(expression, seconds):
    assert rate_seconds(expression) == seconds


@pytest.mark.parametrize("expression", ["rate(1 minutes)", "rate(5 minute)", "rate(0 minutes)"])
def test_rate_expressions_aws_rejects_are_rejected(expression):
    with pytest.raises(ScheduleError):
        rate_seconds(expression)


@pytest.mark.parametrize(
    "expression, after, expected",
    [
        ("cron(0 6 * * ? *)", "2025-03-04T05:59:30", "2025-03-04T06:00"),
        ("cron(0 6 * * ? *)", "2025-03-04T06:00:00", "2025-03-05T06:00"),
        ("cron(*/15 * * * ? *)", "2025-03-04T10:16:00", "2025-03-04T10:30"),
        ("cron(0 9 ? * MON-FRI *)", "2025-03-07T10:00:00", "2025-03-10T09:00"),  # Friday -> Monday
        ("cron(0 0 1 JAN ? 2026)", "2025-03-04T00:00:00", "2026-01-01T00:00"),
        ("cron(30 12 ? * 1 *)", "2025-03-04T00:00:00", "2025-03-09T12:30"),  # 1 = Sunday
    ],
)
def test_cron_next_fire_in_utc(expression, after, expected):
    start = dt.datetime.fromisoformat(after).replace(tzinfo=dt.UTC)
    assert Cron.parse(expression).next_after(start) == dt.datetime.fromisoformat(expected).replace(tzinfo=dt.UTC)


@pytest.mark.parametrize("expression", ["cron(0 6 * * * *)", "cron(0 6 ? * ? *)", "cron(0 6 L * ? *)",
                                        "cron(0 25 * * ? *)", "cron(0 6 * *)"])
def test_cron_expressions_the_local_scheduler_cannot_run_are_refused(expression):
    with pytest.raises(ScheduleError):
        Cron.parse(expression)


class _Rule:
    def __init__(self, expression: str, state: str = "ENABLED") -> None:
        self.arn, self.name, self.scheduled_expression, self.state = f"arn:rule/{expression}", expression, expression, state


class _FakeScheduler(Scheduler):
    def __init__(self, rules: list[_Rule]) -> None:
        super().__init__()
        self.rules, self.fired = rules, []

    def _scheduled_rules(self) -> list[Any]:
        return self.rules

    def fire(self, rule: Any, now: dt.datetime | None = None) -> None:
        self.fired.append((rule.name, now))


def test_scheduler_fires_rates_from_first_sight_on_schedule_and_skips_disabled_rules():
    t0 = dt.datetime(2025, 3, 4, 12, 0, tzinfo=dt.UTC)
    every_5, disabled = _Rule("rate(5 minutes)"), _Rule("rate(1 minute)", state="DISABLED")
    scheduler = _FakeScheduler([every_5, disabled])
    assert scheduler.tick(t0) == 0  # first sight: the schedule starts now
    assert scheduler.due(every_5.arn) == t0 + dt.timedelta(minutes=5)
    assert scheduler.tick(t0 + dt.timedelta(minutes=4, seconds=59)) == 0
    assert scheduler.tick(t0 + dt.timedelta(minutes=5, seconds=1)) == 1
    # a late tick (the process was busy) fires once and keeps the schedule's grid
    assert scheduler.tick(t0 + dt.timedelta(minutes=17)) == 1
    assert scheduler.due(every_5.arn) == t0 + dt.timedelta(minutes=20)
    assert [name for name, _ in scheduler.fired] == ["rate(5 minutes)", "rate(5 minutes)"]
    # a changed expression restarts the schedule; a deleted rule is forgotten
    every_5.scheduled_expression = "rate(1 hour)"
    scheduler.tick(t0 + dt.timedelta(minutes=18))
    assert scheduler.due(every_5.arn) == t0 + dt.timedelta(minutes=78)
    scheduler.rules = []
    scheduler.tick(t0 + dt.timedelta(minutes=19))
    assert scheduler.due(every_5.arn) is None


def test_next_fire_of_a_rate_is_relative():
    t0 = dt.datetime(2025, 3, 4, 12, 0, tzinfo=dt.UTC)
    assert next_fire("rate(1 day)", t0) == t0 + dt.timedelta(days=1)


# ---------------------------------------------------------------------------------------------- Lambda changes


def test_tag_changes_of_functions_become_aws_tag_change_events(local_cloud):
    lam, events = local_cloud.client("lambda"), local_cloud.client("events")
    url, arn = _queue(local_cloud)
    rule = f"probe-tags-{uuid.uuid4().hex[:6]}"
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": ["aws.tag"], "detail": {"service": ["lambda"]}}))
    events.put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": arn}])
    name = f"probe-tagged-{uuid.uuid4().hex[:6]}"
    role = local_cloud.client("iam").create_role(RoleName=name,
                                                 AssumeRolePolicyDocument=LAMBDA_TRUST_POLICY)["Role"]["Arn"]
    fn_arn = lam.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="app.handler",
                                 Code={"ZipFile": zip_source("def handler(e, c):\n    return 1\n")},
                                 Tags={"team": "a"})["FunctionArn"]
    # WHEN a tag is added, changed to the same value, and removed
    lam.tag_resource(Resource=fn_arn, Tags={"auto-repair": "enabled"})
    lam.tag_resource(Resource=fn_arn, Tags={"auto-repair": "enabled"})  # no change: no event
    lam.untag_resource(Resource=fn_arn, TagKeys=["auto-repair"])
    received: list[dict[str, Any]] = []
    poll(lambda: received.extend(_messages(local_cloud, url)) or len(received) >= 2)
    time.sleep(0.5)
    received.extend(_messages(local_cloud, url))
    # THEN two AWS-shaped events, with the changed keys and the tags after each change
    assert [e["detail-type"] for e in received] == ["Tag Change on Resource"] * 2
    assert all(e["resources"] == [fn_arn] and e["detail"]["resource-type"] == "function" for e in received)
    assert [e["detail"]["changed-tag-keys"] for e in received] == [["auto-repair"], ["auto-repair"]]
    assert [e["detail"]["tags"] for e in received] == [{"team": "a", "auto-repair": "enabled"}, {"team": "a"}]
    assert [e["detail"]["version"] for e in received] == [1, 2]


def test_update_function_configuration_moves_last_modified(local_cloud):
    lam = local_cloud.client("lambda")
    name = f"probe-modified-{uuid.uuid4().hex[:6]}"
    role = local_cloud.client("iam").create_role(RoleName=name,
                                                 AssumeRolePolicyDocument=LAMBDA_TRUST_POLICY)["Role"]["Arn"]
    created = lam.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="app.handler",
                                  Code={"ZipFile": zip_source("def handler(e, c):\n    return 1\n")})["LastModified"]
    time.sleep(0.01)
    updated = lam.update_function_configuration(FunctionName=name, MemorySize=256)["LastModified"]
    assert updated > created
