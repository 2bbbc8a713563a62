"""Percentile statistics (p50, p95, p99.9, ...) in GetMetricData and GetMetricStatistics' Statistics objects.

moto computes only SampleCount, Sum, Minimum, Maximum and Average; for any other statistic it returns None for
the period, which its serializer then fails on (HTTP 500): the workflow's ``Duration p95`` query, asked for every
incident, came back as an error and the evidence was marked incomplete. CloudWatch answers percentiles of
individually published values (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/
cloudwatch_concepts.html#Percentiles; the Stat syntax: https://docs.aws.amazon.com/AmazonCloudWatch/latest/
monitoring/Statistics-definitions.html). Here pNN is the nearest-rank percentile of the period's raw values; a
period with only statistic sets (no raw values) has no percentile, as on AWS, and yields no datapoint.

Patches (see ``MOTO_TOUCHPOINTS``): wraps ``moto.cloudwatch.models.Statistics.get_statistics_for_type``; with
``cloudwatch_fast`` narrowing the data first, the other statistics stay moto's own.
Written for moto ``>=5.2.5,<5.3`` (``MOTO_VERSIONS``).
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any

MOTO_VERSIONS = ">=5.2.5,<5.3"
MOTO_TOUCHPOINTS = (
    "moto.cloudwatch.models.Statistics.get_statistics_for_type(stat)",
    "moto.cloudwatch.models.Statistics#metric_single_values_list",
)

# p0..p100 with up to two decimals (CloudWatch's percentile statistic names).
_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d{1,2})?|100(?:\.0{1,2})?)$")


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least p % of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


def install(ctx: Any) -> None:
    from moto.cloudwatch.models import Statistics

    if getattr(Statistics.get_statistics_for_type, "__auto_repair_percentiles__", False):
        return
    original = Statistics.get_statistics_for_type

    @functools.wraps(original)
    def get_statistics_for_type(self: Any, stat: str) -> Any:
        match = _PERCENTILE.match(stat or "")
        if not match:
            return original(self, stat)
        return percentile(list(self.metric_single_values_list), float(match.group(1)))

    get_statistics_for_type.__auto_repair_percentiles__ = True  # type: ignore[attr-defined]
    Statistics.get_statistics_for_type = get_statistics_for_type
