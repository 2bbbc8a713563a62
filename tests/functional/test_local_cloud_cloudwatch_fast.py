"""The local cloud's faster GetMetricData answers exactly what moto answers, only without scanning everything."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import boto3
from moto import mock_aws
from moto.cloudwatch import models as cw_models

from auto_repair_local import cloudwatch_fast

QUERIES = [
    {"Id": "errors", "MetricStat": {"Metric": {"Namespace": "AWS/Lambda", "MetricName": "Errors",
                                               "Dimensions": [{"Name": "FunctionName", "Value": "fn-1"}]},
                                    "Period": 10, "Stat": "Sum"}},
    {"Id": "alias", "MetricStat": {"Metric": {"Namespace": "AWS/Lambda", "MetricName": "Errors",
                                              "Dimensions": [{"Name": "FunctionName", "Value": "fn-1"},
                                                             {"Name": "Resource", "Value": "fn-1:live"}]},
                                   "Period": 60, "Stat": "Sum"}},
    {"Id": "all", "MetricStat": {"Metric": {"Namespace": "AWS/Lambda", "MetricName": "Duration"},
                                 "Period": 30, "Stat": "Maximum"}},
    {"Id": "custom", "MetricStat": {"Metric": {"Namespace": "LambdaAutoRepair", "MetricName": "MemoryUtilization",
                                               "Dimensions": [{"Name": "FunctionName", "Value": "fn-2"}]},
                                    "Period": 10, "Stat": "Average"}},
    {"Id": "rate", "Expression": "errors * 2", "ReturnData": True},
]


def answers(now: datetime) -> list[dict]:
    rng = random.Random(5)
    cw = boto3.client("cloudwatch", region_name="us-east-1")
    for _ in range(400):
        fn = f"fn-{rng.randint(1, 8)}"
        dims = [{"Name": "FunctionName", "Value": fn}]
        if rng.random() < 0.3:
            dims.append({"Name": "Resource", "Value": f"{fn}:live"})
        namespace, name = rng.choice([("AWS/Lambda", "Errors"), ("AWS/Lambda", "Duration"),
                                      ("LambdaAutoRepair", "MemoryUtilization"), ("AWS/Lambda", "Invocations")])
        cw.put_metric_data(Namespace=namespace, MetricData=[{
            "MetricName": name, "Dimensions": dims, "Value": rng.random() * 100,
            "Timestamp": now - timedelta(seconds=rng.randint(0, 3000))}])
    response = cw.get_metric_data(MetricDataQueries=QUERIES, StartTime=now - timedelta(hours=1),
                                  EndTime=now + timedelta(minutes=1))
    return sorted(response["MetricDataResults"], key=lambda r: r["Id"])


def test_narrowed_get_metric_data_returns_moto_s_own_answers(monkeypatch):
    # GIVEN many functions' datapoints WHEN the same queries run with and without the narrowing
    now = datetime.now(UTC).replace(microsecond=0)
    with mock_aws():
        plain = answers(now)
    monkeypatch.setattr(cw_models.CloudWatchBackend, "get_metric_data", cw_models.CloudWatchBackend.get_metric_data)
    monkeypatch.setattr(cw_models.CloudWatchBackend, "get_all_metrics", cw_models.CloudWatchBackend.get_all_metrics)
    cloudwatch_fast.install(None)
    with mock_aws():
        fast = answers(now)
    # THEN the answers are identical, and not trivially empty
    assert fast == plain
    assert all(r["Values"] for r in plain if r["Id"] != "rate")  # moto's math support is its own business
