"""The ``auto-repair diagnose`` command, run as a subprocess like an operator would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).with_name("auto-repair"))
CORPUS = ROOT / "bench" / "diagnosis" / "corpus"


def _run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1"}
    return subprocess.run(
        [CLI, "diagnose", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )


def test_single_request_prints_the_result(tmp_path: Path) -> None:
    # GIVEN one request file
    case = json.loads((CORPUS / "real-python-clickops-memoryerror.json").read_text())
    path = tmp_path / "req.json"
    path.write_text(json.dumps(case["request"]))
    # WHEN diagnosed offline
    proc = _run("--input", str(path))
    # THEN the result JSON is printed and offline knowledge still gives references
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["cause"] == "memory_exhaustion" and result["isMemoryIssue"] is True
    assert result["diagnosisMethod"]["bedrock"] == "not-configured"
    assert result["knowledgeReferences"]


def test_array_input_gives_results_in_order(tmp_path: Path) -> None:
    cases = [json.loads(p.read_text()) for p in sorted(CORPUS.glob("real-*.json"))[:6]]
    path = tmp_path / "reqs.json"
    path.write_text(json.dumps([c["request"] for c in cases]))
    proc = _run("--input", str(path), "--compact")
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert [r["functionName"] for r in results] == [c["request"]["functionName"] for c in cases]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "empty"),
        (json.dumps({"currentMemorySize": 256}), "functionName"),
        (json.dumps("just a string"), "JSON object"),
    ],
)
def test_malformed_input_is_one_error_line_exit_2(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    proc = _run("--input", str(path))
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_missing_file_exit_2(tmp_path: Path) -> None:
    proc = _run("--input", str(tmp_path / "absent.json"))
    assert proc.returncode == 2 and "cannot read" in proc.stderr


def _all_timed_out(name: str) -> dict[str, object]:
    """The design's fields only (no currentMemorySize, no timeoutSeconds): every invocation timed out."""
    rids = [f"{i:08d}-aaaa-4bbb-8ccc-{i:012d}" for i in range(5)]
    return {
        "functionName": name,
        "alarmDetails": {"alarmName": f"{name}-errors", "metricName": "Errors", "threshold": 1,
                         "evaluationPeriods": 1},
        "metrics": [{"timestamp": "2026-12-04T04:00:00Z", "value": 5}],
        "logs": [{"timestamp": "2026-12-04T04:00:00Z",
                  "message": f"REPORT RequestId: {rid}\tDuration: 3002.11 ms\tBilled Duration: 3000 ms\t"
                             "Memory Size: 128 MB\tMax Memory Used: 39 MB\tStatus: timeout"} for rid in rids],
    }


def test_a_request_with_only_the_designs_fields_whose_invocations_all_timed_out_gets_a_verdict(
        tmp_path: Path) -> None:
    # GIVEN the request that crashed the command (TypeError on the missing timeoutSeconds)
    path = tmp_path / "req.json"
    path.write_text(json.dumps(_all_timed_out("hung")))
    # WHEN diagnosed
    proc = _run("--input", str(path))
    # THEN a verdict naming both hypotheses, with the extras read from the REPORT lines
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["cause"] == "downstream_timeout" and "Two causes fit" in result["reasoning"]
    assert result["currentMemorySize"] == 128
    assert set(result["evidenceSummary"]["derived"]) == {"currentMemorySize", "timeoutSeconds"}


def test_a_batch_keeps_going_past_bad_items_and_exits_1(tmp_path: Path) -> None:
    # GIVEN a batch: a good request, one naming no function, a non-object, one with a wrong field, the hung one
    good = json.loads((CORPUS / "real-python-clickops-memoryerror.json").read_text())["request"]
    batch = [good, {"currentMemorySize": 256}, "just a string",
             {**good, "functionName": "wrong-field", "currentMemorySize": "lots"}, _all_timed_out("hung")]
    path = tmp_path / "batch.json"
    path.write_text(json.dumps(batch))
    # WHEN diagnosed
    proc = _run("--input", str(path), "--compact")
    # THEN every item has a result, in order; the bad ones say what was wrong; exit 1 and one stderr line each
    assert proc.returncode == 1, proc.stderr
    results = json.loads(proc.stdout)
    assert len(results) == len(batch)
    assert results[0]["cause"] == "memory_exhaustion" and "error" not in results[0]
    assert "functionName" in results[1]["error"] and results[1]["isMemoryIssue"] is False
    assert "JSON object" in results[2]["error"]
    assert "error" not in results[3] and "currentMemorySize 'lots'" in results[3]["inputProblems"][0]
    assert results[4]["cause"] == "downstream_timeout" and "error" not in results[4]
    errors = proc.stderr.strip().splitlines()
    assert [line.split(":")[1].strip() for line in errors] == ["request [1]", "request [2]"]


def test_a_batch_of_good_requests_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "batch.json"
    path.write_text(json.dumps([_all_timed_out("a"), {"functionName": "b"}]))
    proc = _run("--input", str(path), "--compact")
    assert proc.returncode == 0 and proc.stderr == ""
    assert [r["cause"] for r in json.loads(proc.stdout)] == ["downstream_timeout", "insufficient_data"]
