"""The knowledge bucket: runbooks and case history read by the diagnosis, cases written after incidents."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from auto_repair import knowledge
from auto_repair.diagnosis import diagnose

BUCKET = "knowledge-test"
OOM_REQUEST = {
    "functionName": "orders-api",
    "currentMemorySize": 128,
    "logs": [
        {"message": "RequestId: 11111111-1111-4111-8111-111111111111 Error: Runtime exited with error: signal: killed"},
        {
            "message": "REPORT RequestId: 11111111-1111-4111-8111-111111111111\tDuration: 800.0 ms\tBilled Duration: "
            "800 ms\tMemory Size: 128 MB\tMax Memory Used: 128 MB"
        },
    ],
}


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def finished_workflow(function: str = "orders-api") -> dict:
    return {
        "alarm": {"functionName": function, "alarmName": f"{function}-errors"},
        "evidence": {"functionName": function, "currentMemorySize": 128, "runtime": "python3.12"},
        "diagnosisResult": {"isMemoryIssue": True, "cause": "memory_exhaustion", "confidence": 0.95,
                            "reasoning": "All invocations were killed at the 128 MB limit.",
                            "diagnosisMethod": {"method": "rules"}, "evidencePoints": []},
        "repair": {"repairId": "r1", "originalMemory": 128, "newMemory": 256, "status": "SUCCEEDED"},
        "verification": {"status": "IMPROVED"},
    }


def test_a_repaired_incident_is_written_once_and_read_back_as_knowledge(s3):
    # GIVEN a repaired incident WHEN its case is recorded twice (a retried notification)
    key = knowledge.record_case(s3, BUCKET, finished_workflow(), "exec-1", "REPAIRED")
    again = knowledge.record_case(s3, BUCKET, finished_workflow(), "exec-1", "REPAIRED")
    # THEN one Markdown document under cases/ with its Bedrock metadata sidecar, read back as the entry model,
    # tagged with the outcome
    assert key == again and key.startswith("cases/") and key.endswith(".md")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]] == [key, key + ".metadata.json"]
    sidecar = json.loads(s3.get_object(Bucket=BUCKET, Key=key + ".metadata.json")["Body"].read())
    assert sidecar["metadataAttributes"]["entryId"] == key.removeprefix("cases/").removesuffix(".md")
    entries, skipped = knowledge.load_entries_from_bucket(s3, BUCKET)
    assert skipped == [] and len(entries) == 1
    assert entries[0]["source"] == "incident:exec-1" and "repaired" in entries[0]["tags"]
    # AND the next diagnosis of the same function cites it first and mentions it in the reasoning
    source = knowledge.KnowledgeSource(s3, BUCKET)
    result = diagnose(OOM_REQUEST, knowledge=source.entries())
    assert source.note == "bucket: 1 entries"
    assert result["knowledgeReferences"][0]["id"] == entries[0]["entryId"]
    assert "Earlier incidents on this function: orders-api memory_exhaustion 128->256 MB (IMPROVED)" in (
        result["reasoning"])
    # AND another function's diagnosis does not claim that history
    other = diagnose({**OOM_REQUEST, "functionName": "billing"}, knowledge=source.entries())
    assert entries[0]["entryId"] not in {ref["id"] for ref in other["knowledgeReferences"]}
    assert "Earlier incidents" not in other["reasoning"]


@pytest.mark.parametrize(
    ("outcome", "workflow"),
    [
        ("IGNORED", finished_workflow()),
        ("DRY_RUN", finished_workflow()),
        ("REPAIRED", {**finished_workflow(), "diagnosisResult": {}}),
    ],
    ids=["ignored", "dry-run", "no-diagnosis"],
)
def test_outcomes_that_teach_nothing_write_no_case(s3, outcome, workflow):
    assert knowledge.record_case(s3, BUCKET, workflow, "exec-2", outcome) is None
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)


def test_bucket_entries_override_bundled_ones_and_malformed_objects_are_skipped(s3):
    # GIVEN a runbook that replaces a bundled one, and two malformed objects
    bundled = knowledge.bundled_entries()[0]
    s3.put_object(Bucket=BUCKET, Key=f"knowledge/{bundled['entryId']}.json",
                  Body=json.dumps({**bundled, "title": "Edited by the SRE team"}))
    s3.put_object(Bucket=BUCKET, Key="knowledge/broken.json", Body=b"{not json")
    s3.put_object(Bucket=BUCKET, Key="cases/empty.json", Body=json.dumps({"entryId": "x"}))
    # WHEN the diagnosis loads its knowledge
    source = knowledge.KnowledgeSource(s3, BUCKET)
    entries = {e["entryId"]: e for e in source.entries()}
    # THEN the bucket's copy wins, the bundled rest remain, the malformed ones are counted, not fatal
    assert entries[bundled["entryId"]]["title"] == "Edited by the SRE team"
    assert len(entries) == len(knowledge.bundled_entries())
    assert source.note == "bucket: 1 entries, 2 malformed skipped"


def test_an_unreadable_bucket_falls_back_to_the_bundled_runbooks(s3):
    source = knowledge.KnowledgeSource(s3, "no-such-bucket")
    assert source.entries() == knowledge.bundled_entries()
    assert source.note == "bundled (bucket unreadable: NoSuchBucket)"


def test_entries_are_cached_for_the_ttl(s3):
    now = [0.0]
    source = knowledge.KnowledgeSource(s3, BUCKET, ttl_seconds=60, clock=lambda: now[0])
    assert source.note == "bundled" and source.entries()
    knowledge.record_case(s3, BUCKET, finished_workflow(), "exec-3", "REPAIRED")
    now[0] = 30.0
    assert source.note == "bucket: 0 entries" and len(source.entries()) == len(knowledge.bundled_entries())
    now[0] = 61.0
    source.entries()
    assert source.note == "bucket: 1 entries"


def test_documents_and_legacy_json_entries_are_read_and_a_document_without_sidecar_is_skipped(s3, tmp_path):
    """A Bedrock knowledge base ingests md/txt/html/csv/pdf/doc, not JSON, with ``<file>.metadata.json`` sidecars
    (https://docs.aws.amazon.com/bedrock/latest/userguide/knowledge-base-ds.html); a bucket written before holds
    ``.json`` entries, which still count."""
    # GIVEN the runbooks rendered as deploy.sh uploads them, an old JSON case, and a document whose sidecar is missing
    runbooks = knowledge.bundled_entries()[:2]
    for path in knowledge.render_entries(runbooks, tmp_path):
        s3.put_object(Bucket=BUCKET, Key=f"knowledge/{path.name}", Body=path.read_bytes())
    old = {**runbooks[0], "entryId": "case-old", "category": "case"}
    s3.put_object(Bucket=BUCKET, Key="cases/case-old.json", Body=json.dumps(old))
    s3.put_object(Bucket=BUCKET, Key="cases/orphan.md", Body=b"# Orphan\n\ntext\n")
    # WHEN loaded
    entries, skipped = knowledge.load_entries_from_bucket(s3, BUCKET)
    # THEN each runbook is its entry again, the old case too, the orphan is skipped, sidecars are not entries
    by_id = {e["entryId"]: e for e in entries}
    assert by_id[runbooks[0]["entryId"]] == runbooks[0] and by_id[runbooks[1]["entryId"]] == runbooks[1]
    assert "case-old" in by_id and skipped == ["cases/orphan.md"] and len(entries) == 3
