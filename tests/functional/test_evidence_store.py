"""Evidence bulk in the evidence bucket, the state carrying a reference: stored, read back, checked."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from auto_repair.evidence_store import (
    BULK_FIELDS,
    EvidenceStoreError,
    evidence_key,
    load,
    series_average,
    stash,
    state_bytes,
    window_before,
)
from auto_repair.verification import window_stats

BUCKET = "kb-bucket"
LINE = "ERROR обработка заказа не удалась — 注文の処理に失敗しました " + "ошибка" * 50
REPORT = ("REPORT RequestId: 11111111-1111-4111-8111-111111111111\tDuration: 800.0 ms\tBilled Duration: 800 ms\t"
          "Memory Size: 128 MB\tMax Memory Used: 128 MB")


def big_evidence(points: int = 3000, lines: int = 180) -> dict:
    series = {key: [{"timestamp": f"2026-01-01T00:00:{i % 60:02d}.000Z", "value": float(i)} for i in range(points)]
              for key in ("Duration.Average", "Errors.Sum", "Invocations.Sum")}
    return {
        "functionName": "orders-api", "currentMemorySize": 128, "runtime": "python3.12",
        "alarmDetails": {"alarmName": "orders-api-errors", "metricName": "Errors"},
        "metrics": series["Errors.Sum"], "metricSeries": series, "baselineSeries": series,
        "logs": [{"timestamp": "2026-01-01T00:00:00.000Z", "message": LINE if i % 2 else REPORT}
                 for i in range(lines)],
        "dataComplete": True, "missingData": [], "window": {"periodSeconds": 10},
    }


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def test_bulk_goes_to_the_bucket_and_comes_back_unchanged(s3):
    # GIVEN evidence whose series and non-ASCII log lines are far over the state quota
    evidence = big_evidence()
    assert state_bytes(evidence) > 256 * 1024

    # WHEN it is stashed for the state and loaded back by the diagnosis
    kept = stash(evidence, s3, BUCKET, evidence_key("exec-1", "CollectMetricsAndLogs"))
    loaded = load(kept, s3)

    # THEN the state keeps a small reference and summaries, and the diagnosis request is whole again
    assert state_bytes(kept) < 4 * 1024
    assert not set(BULK_FIELDS) & set(kept)
    assert kept["bulk"]["key"] == "evidence/exec-1/CollectMetricsAndLogs.json"
    assert kept["bulk"]["size"] == s3.head_object(Bucket=BUCKET, Key=kept["bulk"]["key"])["ContentLength"]
    assert window_before(kept) == window_stats(evidence["metricSeries"], evidence["logs"])
    assert kept["logLineCount"] == 180
    assert series_average(kept, "Duration.Average") == pytest.approx(1499.5)
    assert {k: v for k, v in loaded.items() if k in evidence} == evidence


def test_log_lines_with_lone_surrogates_are_stored_and_read_back_unchanged(s3):
    # GIVEN evidence whose log lines carry invalid text (lone surrogates), as a bad alarm reason or log line can
    evidence = big_evidence(points=3, lines=2)
    evidence["logs"][0]["message"] = "ERROR bad bytes \udcff\udcfe \ud800 end"

    # WHEN it is stashed and loaded back
    kept = stash(evidence, s3, BUCKET, evidence_key("exec-2", "CollectMetricsAndLogs"))

    # THEN nothing failed and the text is the same (the surrogates travel as JSON escapes)
    assert state_bytes(evidence) > 0
    assert load(kept, s3)["logs"] == evidence["logs"]


def test_without_a_bucket_the_bulk_stays_inline_with_the_same_summaries():
    evidence = big_evidence(points=5, lines=4)
    kept = stash(evidence, None, "", "unused")
    assert "bulk" not in kept
    assert load(kept, None) == kept
    assert window_before(kept) == window_before(evidence) == window_stats(evidence["metricSeries"], evidence["logs"])
    assert series_average(evidence, "Duration.Average") == series_average(kept, "Duration.Average") == 2.0


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda s3, ref: s3.put_object(Bucket=BUCKET, Key=ref["key"], Body=b"{}"), "does not match its digest"),
        (lambda s3, ref: s3.delete_object(Bucket=BUCKET, Key=ref["key"]), "cannot read evidence"),
    ],
    ids=["changed", "missing"],
)
def test_evidence_that_is_not_what_the_reference_says_is_refused(s3, tamper, message):
    # GIVEN stashed evidence whose object was then changed or removed
    kept = stash(big_evidence(points=5, lines=4), s3, BUCKET, evidence_key("exec-2", "Collect"))
    tamper(s3, kept["bulk"])

    # WHEN the diagnosis loads it THEN it fails loudly rather than diagnose from other data
    with pytest.raises(EvidenceStoreError, match=message):
        load(kept, s3)


def test_state_size_counts_utf8_bytes_not_ascii_escapes():
    assert state_bytes({"m": "é"}) == len('{"m":"é"}'.encode())
    assert state_bytes({"m": "注"}) == 11  # {"m":""} is 8 bytes, 注 is 3
