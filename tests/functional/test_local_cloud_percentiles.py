"""Percentile statistics in the local cloud's GetMetricData (moto answers only the five basic statistics and fails
with HTTP 500 on the rest). CloudWatch percentiles: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/
cloudwatch_concepts.html#Percentiles ; Stat names: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/
Statistics-definitions.html"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws
from moto.cloudwatch import models as cw_models

from auto_repair_local import cloudwatch_percentiles
from auto_repair_local.cloudwatch_percentiles import percentile


@pytest.mark.parametrize(("values", "p", "expected"), [
    ([], 95, None),
    ([7.0], 95, 7.0),
    ([float(v) for v in range(1, 101)], 95, 95.0),
    ([float(v) for v in range(1, 101)], 50, 50.0),
    ([float(v) for v in range(1, 101)], 99.9, 100.0),
    ([float(v) for v in range(1, 21)], 95, 19.0),
    ([30.0, 10.0, 20.0], 100, 30.0),
    ([30.0, 10.0, 20.0], 0, 10.0),
])
def test_nearest_rank_percentile(values, p, expected):
    assert percentile(values, p) == expected


def test_get_metric_data_answers_percentiles_and_keeps_the_basic_statistics(monkeypatch):
    monkeypatch.setattr(cw_models.Statistics, "get_statistics_for_type", cw_models.Statistics.get_statistics_for_type)
    cloudwatch_percentiles.install(None)
    with mock_aws():
        # GIVEN 100 Duration values of one function in one minute
        cw = boto3.client("cloudwatch", region_name="us-east-1")
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        dims = [{"Name": "FunctionName", "Value": "orders"}]
        for chunk in range(0, 100, 20):
            cw.put_metric_data(Namespace="AWS/Lambda", MetricData=[
                {"MetricName": "Duration", "Dimensions": dims, "Value": float(v), "Unit": "Milliseconds",
                 "Timestamp": now + timedelta(seconds=10)} for v in range(chunk + 1, chunk + 21)])

        def ask(stat: str) -> list[float]:
            result = cw.get_metric_data(MetricDataQueries=[{"Id": "m", "MetricStat": {"Metric": {
                "Namespace": "AWS/Lambda", "MetricName": "Duration", "Dimensions": dims}, "Period": 60, "Stat": stat}}],
                StartTime=now - timedelta(minutes=1), EndTime=now + timedelta(minutes=2))
            return result["MetricDataResults"][0]["Values"]
        # WHEN percentiles are asked THEN they are answered (moto alone fails with HTTP 500)
        assert ask("p95") == [95.0] and ask("p50") == [50.0] and ask("p99.9") == [100.0]
        # AND the basic statistics stay moto's
        assert ask("Average") == [50.5] and ask("Maximum") == [100.0] and ask("SampleCount") == [100.0]
