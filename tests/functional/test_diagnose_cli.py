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
        (json.dumps({"functionName": "f"}), "currentMemorySize"),
        (
            json.dumps([{"functionName": "f", "currentMemorySize": 256}, {"currentMemorySize": 256}]),
            "request [1]",
        ),
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
