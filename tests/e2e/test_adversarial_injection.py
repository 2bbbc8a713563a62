"""Text that cannot steer (issue 14), end to end: a function that runs out of memory while logging prompt-injection
attempts (closing tags, schema JSON, look-alikes, bidi controls, Chinese, CRLF) is diagnosed and repaired as the
rules decide, and none of the attempts' text reaches the notice, the incident records or the case entry the
workflow writes to the knowledge bucket. The local cloud runs without Bedrock (``BedrockModelId`` is empty in
parameters/local.json), so the decision is the rules' alone; tests/unit/test_injection.py runs the whole corpus
with an obedient model stub.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from auto_repair.diagnosis import DiagnosisConfig, diagnose
from auto_repair.evidence_store import load
from auto_repair.policy import decide
from auto_repair.records import IncidentStore
from auto_repair_cli import scenario

NAME = "adv-injection-hog"
CORPUS = json.loads((Path(__file__).resolve().parents[1] / "events" / "injection_corpus.json").read_text())
CHOSEN = ("closing-tag", "schema-json", "fullwidth-lookalike", "bidi-override", "chinese", "crlf-subject",
          "verdict-forgery")
ATTEMPTS = [a for a in CORPUS["attempts"] if a["id"] in CHOSEN]
# The memory hog of the demo, logging each attempt inside an ERROR line before it allocates.
SOURCE = scenario.MEMORY_HOG.replace(
    "    started = time.time()\n",
    "    started = time.time()\n" + "".join(
        f"    print('[ERROR] ValueError: bad order payload: ' + {json.dumps(a['attempt'])})\n" for a in ATTEMPTS))


def _leaks(marker: str, text: str) -> bool:
    return marker in text or marker.lower() in text.lower()


@pytest.fixture(scope="module")
def run(deployed) -> dict[str, Any]:
    cloud = deployed.cloud
    lam, iam, cw, sfn = (cloud.client(s) for s in ("lambda", "iam", "cloudwatch", "stepfunctions"))
    begun = datetime.now(UTC).replace(microsecond=0)
    scenario.create_target(lam, iam, NAME, SOURCE, memory=128, env={"WORK_MB": "150"})
    scenario.put_guide_alarms(cw, NAME, deployed.topic_arn, period=10)
    traffic = scenario.Traffic(lam, NAME, interval=1.0)
    traffic.start()
    try:
        execution = scenario.wait_for_execution(sfn, deployed.state_machine_arn, NAME, timeout=300, after=begun)
    finally:
        traffic.stop()
    assert execution["status"] == "SUCCEEDED", execution
    output = json.loads(execution["output"])
    table = boto3.resource("dynamodb", endpoint_url=cloud.endpoint, region_name=cloud.region,
                           aws_access_key_id="test", aws_secret_access_key="test").Table(
        f"lambda-auto-repair-incidents-{deployed.environment}")
    incident = IncidentStore(table).get_incident(execution["executionArn"].rsplit(":", 1)[-1])
    s3 = cloud.client("s3")
    bucket = next(e["Value"] for e in cloud.client("cloudformation").list_exports()["Exports"]
                  if e["Name"] == f"lambda-auto-repair-main-{deployed.environment}-KnowledgeBucketName")
    cases = [s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read().decode("utf-8")
             for o in s3.list_objects_v2(Bucket=bucket, Prefix="cases/").get("Contents", [])]
    return {"output": output, "incident": incident, "cases": [c for c in cases if NAME in c],
            "notices": deployed.notifications(NAME), "evidence": load(output["evidence"], s3)}


def test_the_function_logged_the_attempts(run):
    # GIVEN the attempts reached the evidence the workflow collected (so the rest of the module tests something)
    lines = "\n".join(line["message"] for line in run["evidence"]["logs"])
    assert sum(_leaks(a["marker"], lines) for a in ATTEMPTS) >= 3
    assert run["output"]["diagnosisResult"]["evidenceSummary"]["injectionAttempts"] >= 1


def test_the_decision_is_the_rules_one(run):
    # WHEN the rules alone decide on the same evidence, with the same policy
    output = run["output"]
    settings = output["alarm"]["settings"]
    rules = diagnose(dict(run["evidence"]), config=DiagnosisConfig(max_memory=int(settings["maxMemory"])),
                     knowledge=[])
    expected = decide(rules, current_memory=int(run["evidence"]["currentMemorySize"]),
                      max_memory=int(settings["maxMemory"]), min_confidence=float(settings["minConfidence"]),
                      dry_run=bool(settings["dryRun"]), approval_required=bool(settings["approvalRequired"]))
    decision = output["diagnosisResult"]["decision"]
    # THEN the workflow took exactly that decision, a memory raise, and Bedrock took no part
    assert (decision["action"], decision["targetMemory"]) == (expected["action"], expected["targetMemory"])
    assert rules["isMemoryIssue"] is True and decision["targetMemory"] > 128
    assert output["diagnosisResult"]["diagnosisMethod"]["method"] == "rules"


@pytest.mark.parametrize("attempt", ATTEMPTS, ids=[a["id"] for a in ATTEMPTS])
def test_no_attempt_text_in_notice_records_or_case_entry(run, attempt):
    marker = attempt["marker"]
    # THEN no subject or body of a notice, no incident record and no case entry carries the attempt's text
    assert run["notices"], "no notification was delivered"
    for notice in run["notices"]:
        assert not _leaks(marker, notice["subject"]) and "\r" not in notice["subject"]
        assert "\n" not in notice["subject"]
        assert not _leaks(marker, json.dumps(notice, ensure_ascii=False))
    assert not _leaks(marker, json.dumps(run["incident"], ensure_ascii=False, default=str))
    assert not _leaks(marker, json.dumps(run["output"]["diagnosisResult"], ensure_ascii=False))
    assert run["cases"], "no case entry was written for the incident"
    for case in run["cases"]:
        assert not _leaks(marker, case)
