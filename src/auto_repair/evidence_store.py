"""Evidence bulk out of the workflow state: metric series and log lines go to the knowledge bucket, the state
carries a reference and small summaries.

Step Functions fails an execution whose state passes 256 KiB of UTF-8 (``States.DataLimitExceeded``, which a
``States.ALL`` Catch does not catch: no failure notice, the lock stays until it expires). The series of two
windows and the log lines grow with the windows and with what the target function logs, so they never travel in
the state: ``stash`` writes them to ``evidence/<incident>/<state>.json`` (encrypted by the bucket's KMS default)
and leaves ``bulk`` = {bucket, key, size, sha256} plus ``windowStats`` (what verification compares against) and
``seriesSummary``. ``load`` rebuilds the design's diagnosis request from the reference.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any, cast

from botocore.exceptions import BotoCoreError, ClientError

from .errors import AutoRepairError
from .verification import WindowStats, window_stats
from .workflow import Evidence

# The fields of the diagnosis request whose size grows with the windows and the function's logging.
BULK_FIELDS = ("metrics", "logs", "metricSeries", "baselineSeries")
PREFIX = "evidence"


class EvidenceStoreError(AutoRepairError, RuntimeError):
    """The stored evidence is missing or is not what the state's reference says it is."""


def state_bytes(value: Any) -> int:
    """Size as Step Functions counts it: the JSON text, UTF-8 encoded (log lines may be any language)."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass"))


def evidence_key(incident_id: str, state_name: str) -> str:
    return f"{PREFIX}/{incident_id or 'unknown'}/{state_name or 'evidence'}.json"


def _series_summary(series: Mapping[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for key, points in series.items():
        values = [float(p["value"]) for p in points if p.get("value") is not None]
        summary[key] = {"points": len(values), "average": sum(values) / len(values) if values else None,
                        "maximum": max(values) if values else None}
    return summary


def summarise(evidence: Mapping[str, Any]) -> dict[str, Any]:
    """The small figures later states read instead of the bulk."""
    return {
        "windowStats": asdict(window_stats(evidence.get("metricSeries") or {}, evidence.get("logs") or [])),
        "seriesSummary": _series_summary(evidence.get("metricSeries") or {}),
        "logLineCount": len(evidence.get("logs") or []),
    }


def stash(evidence: Mapping[str, Any], s3: Any, bucket: str, key: str) -> Evidence:
    """Write the bulk to ``bucket``/``key`` and return the evidence to keep in the state.

    Without a bucket (unit and functional runs without the main stack) the bulk stays inline, summaries added.
    """
    small = {k: v for k, v in evidence.items() if k not in BULK_FIELDS}
    if not bucket:
        return cast(Evidence, {**evidence, **summarise(evidence)})
    # A lone surrogate in a log line becomes its JSON escape (backslashreplace): the body stays valid JSON and
    # reads back to the same text, where strict UTF-8 would fail the whole collection.
    body = json.dumps({k: evidence.get(k) for k in BULK_FIELDS}, ensure_ascii=False,
                      separators=(",", ":")).encode("utf-8", "backslashreplace")
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
    reference = {"bucket": bucket, "key": key, "size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    return cast(Evidence, {**small, **summarise(evidence), "bulk": reference})


def load(evidence: Mapping[str, Any], s3: Any) -> Evidence:
    """The full diagnosis request: the state's evidence with its bulk read back and checked by its digest."""
    reference = evidence.get("bulk")
    if not reference:
        return cast(Evidence, dict(evidence))
    try:
        body = s3.get_object(Bucket=reference["bucket"], Key=reference["key"])["Body"].read()
    except (ClientError, BotoCoreError) as exc:
        raise EvidenceStoreError(f"cannot read evidence s3://{reference['bucket']}/{reference['key']}: "
                                 f"{type(exc).__name__}") from exc
    if hashlib.sha256(body).hexdigest() != reference.get("sha256"):
        raise EvidenceStoreError(f"evidence s3://{reference['bucket']}/{reference['key']} does not match its digest")
    bulk = json.loads(body)
    return cast(Evidence, {**{k: v for k, v in evidence.items() if k != "bulk"},
                           **{k: bulk.get(k) for k in BULK_FIELDS}})


def series_average(evidence: Mapping[str, Any], key: str) -> float | None:
    """Average of one analysis-window series, from the summary (or the inline series of an older state)."""
    summary = (evidence.get("seriesSummary") or _series_summary(evidence.get("metricSeries") or {})).get(key)
    return (summary or {}).get("average")


def window_before(evidence: Mapping[str, Any]) -> WindowStats:
    """The analysis window's figures verification compares against (inline series in an older state)."""
    stats = evidence.get("windowStats")
    if stats:
        return WindowStats(**stats)
    return window_stats(evidence.get("metricSeries") or {}, evidence.get("logs") or [])
