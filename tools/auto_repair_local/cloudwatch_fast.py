"""GetMetricData that stays fast when the local cloud holds many functions' metrics.

moto answers a MetricStat query by scanning every datapoint in the time range once per period: a 75-minute
window at a 10-second period over 50 busy functions is hundreds of thousands of comparisons per query, and
the workflow asks several per incident. Here each call first narrows the datapoints to the metrics its
queries name (namespace, metric name, dimensions), then lets moto compute the statistics as before, so the
answers are moto's own. Calls with a Metrics Insights (SELECT) query are left untouched.

Patches (see ``MOTO_TOUCHPOINTS``): wraps ``moto.cloudwatch.models.CloudWatchBackend.get_metric_data`` and
``.get_all_metrics``. A speed-up only: answers stay moto's; the API it serves:
https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_GetMetricData.html
Written for moto ``>=5.2.5,<5.3`` (``MOTO_VERSIONS``).
"""

from __future__ import annotations

import functools
import threading
from typing import Any

# What this module relies on in moto: checked at server start and by tests/unit/test_local_cloud_contracts.py
# (auto_repair_local.moto_contract; upgrade procedure in docs/ARCHITECTURE.md, "Upgrading moto").
MOTO_VERSIONS = ">=5.2.5,<5.3"
MOTO_TOUCHPOINTS = (
    "moto.cloudwatch.models.CloudWatchBackend.get_metric_data(queries)",
    "moto.cloudwatch.models.CloudWatchBackend.get_all_metrics()",
    "moto.cloudwatch.models.MetricDatumBase#namespace",
    "moto.cloudwatch.models.MetricDatumBase#name",
    "moto.cloudwatch.models.MetricDatumBase#dimensions",
    "moto.cloudwatch.models.Dimension#name",
    "moto.cloudwatch.models.Dimension#value",
)

_SCOPE = threading.local()


Wanted = tuple[set[tuple[str, str]], set[tuple[str, tuple[tuple[str, str], ...]]]]


def _dims(pairs: Any) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(pairs))


def _wanted(queries: list[dict[str, Any]]) -> Wanted | None:
    """What the queries can match: (namespace, name) for queries without dimensions (moto then takes every
    dimension combination), (name, dimensions) for the others (moto matches those on name and dimensions)."""
    any_dims: set[tuple[str, str]] = set()
    exact: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for query in queries:
        if "Expression" in query:
            if str(query["Expression"]).lstrip().upper().startswith("SELECT"):
                return None
            continue
        metric = (query.get("MetricStat") or {}).get("Metric") or {}
        dims = metric.get("Dimensions") or []
        if dims:
            exact.add((metric.get("MetricName", ""), _dims((d["Name"], d["Value"]) for d in dims)))
        else:
            any_dims.add((metric.get("Namespace", ""), metric.get("MetricName", "")))
    return any_dims, exact


def _selected(datum: Any, wanted: Wanted) -> bool:
    any_dims, exact = wanted
    if (datum.namespace, datum.name) in any_dims:
        return True
    return bool(exact) and (datum.name, _dims((d.name, d.value) for d in datum.dimensions)) in exact


def install(ctx: Any) -> None:
    from moto.cloudwatch.models import CloudWatchBackend

    if getattr(CloudWatchBackend.get_metric_data, "__auto_repair_fast__", False):
        return
    original_get = CloudWatchBackend.get_metric_data
    original_all = CloudWatchBackend.get_all_metrics

    @functools.wraps(original_all)
    def get_all_metrics(self: Any) -> list[Any]:
        data = original_all(self)
        wanted = getattr(_SCOPE, "wanted", None)
        if wanted is None:
            return data
        return [datum for datum in data if _selected(datum, wanted)]

    @functools.wraps(original_get)
    def get_metric_data(self: Any, queries: list[dict[str, Any]], *args: Any, **kwargs: Any) -> Any:
        _SCOPE.wanted = _wanted(queries)
        try:
            return original_get(self, queries, *args, **kwargs)
        finally:
            _SCOPE.wanted = None

    get_metric_data.__auto_repair_fast__ = True  # type: ignore[attr-defined]
    CloudWatchBackend.get_all_metrics = get_all_metrics
    CloudWatchBackend.get_metric_data = get_metric_data
