"""Knowledge base: loading, ranking, case entries, the bundled runbooks of knowledge/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from auto_repair import knowledge as kb

ROOT = Path(__file__).resolve().parents[2]


def test_repo_runbooks_load_and_are_the_bundled_ones() -> None:
    # GIVEN the runbooks under knowledge/, which the package reaches through its knowledge_data link
    # (tests/unit/test_package.py checks the built zip carries them)
    repo = kb.load_entries_from_dir(ROOT / "knowledge")
    bundled = kb.bundled_entries()
    # THEN they are valid entries, and what the package bundles (a broken link would bundle nothing)
    assert len(repo) >= 10
    assert repo == bundled
    assert all(set(kb.ENTRY_FIELDS) <= set(entry) for entry in repo)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("java OutOfMemoryError heap space", "rb-java-oom"),
        ("cpu vcpu 1769 compute-bound slow", "rb-cpu-share"),
        ("ThrottlingException rate exceeded concurrency", "rb-throttling"),
        ("ImportModuleError handler", "rb-init-errors"),
    ],
)
def test_rank_puts_the_relevant_runbook_first(query: str, expected: str) -> None:
    refs = kb.rank(kb.bundled_entries(), query, 3)
    assert refs[0]["id"] == expected
    assert all(0 < r["relevance"] <= 1 for r in refs)


def test_rank_edge_cases() -> None:
    assert kb.rank([], "oom", 3) == []
    assert kb.rank(kb.bundled_entries(), "", 3) == []
    assert kb.rank(kb.bundled_entries(), "oom", 0) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "invalid JSON"),
        (json.dumps({"entryId": "x"}), "lacks"),
        (json.dumps({"entryId": "x", "title": "t", "category": "c", "content": "c", "tags": "oops"}), "tags"),
    ],
)
def test_bad_entries_are_rejected(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "bad.json").write_text(content)
    with pytest.raises(kb.KnowledgeError, match=message):
        kb.load_entries_from_dir(tmp_path)


def test_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(kb.KnowledgeError):
        kb.load_entries_from_dir(tmp_path / "nope")


def test_case_entry_from_incident() -> None:
    # GIVEN a resolved incident as the workflow context holds it
    incident = {
        "incidentId": "inc-42",
        "alarm": {"functionName": "orders", "alarmName": "orders-errors"},
        "evidence": {"currentMemorySize": 512, "runtime": "python3.12"},
        "diagnosisResult": {
            "cause": "memory_exhaustion",
            "isMemoryIssue": True,
            "confidence": 0.95,
            "reasoning": "Killed at the limit.",
            "recommendedMemorySize": 768,
            "evidencePoints": [{"type": "oom_signature", "description": "MemoryError"}],
            "diagnosisMethod": {"method": "rules"},
        },
        "repair": {"originalMemory": 512, "newMemory": 768, "status": "SUCCESS"},
        "verification": {"status": "IMPROVED"},
    }
    # WHEN the case entry is built
    entry = kb.case_entry_from_incident(incident, now="2025-01-01T00:00:00Z")
    # THEN it follows the entry model and is retrievable by the lexical ranker
    assert kb.validate_entry(entry)["entryId"] == "case-orders-inc-42"
    assert entry["category"] == "case" and "512 MB -> 768 MB" in entry["content"]
    assert {"case", "memory_exhaustion", "improved", "python3.12"} <= set(entry["tags"])
    assert (
        kb.rank([entry, *kb.bundled_entries()], "orders memory_exhaustion case", 1)[0]["id"]
        == entry["entryId"]
    )


def test_case_entry_tolerates_a_sparse_incident() -> None:
    entry = kb.case_entry_from_incident({})
    assert entry["entryId"].startswith("case-unknown-function-")
    with pytest.raises(kb.KnowledgeError):
        kb.case_entry_from_incident([])  # type: ignore[arg-type]


@pytest.mark.parametrize("entry", kb.bundled_entries(), ids=lambda e: e["entryId"])
def test_every_runbook_renders_to_a_document_and_sidecar_that_read_back_as_the_entry(entry):
    """Bedrock knowledge bases ingest text formats, not JSON; ``<doc>.metadata.json`` carries the attributes
    (https://docs.aws.amazon.com/bedrock/latest/userguide/kb-metadata.html)."""
    document, sidecar = kb.render_markdown(entry), kb.render_sidecar(entry)
    assert document.startswith(f"# {entry['title']}\n\n")
    attributes = sidecar["metadataAttributes"]
    assert attributes["entryId"] == entry["entryId"] and attributes["tags"] == entry["tags"]
    assert all(isinstance(v, str) or (isinstance(v, list) and all(isinstance(t, str) for t in v))
               for v in attributes.values())
    assert "content" not in attributes
    assert kb.entry_from_markdown(document, json.loads(json.dumps(sidecar))) == entry


@pytest.mark.parametrize(("document", "sidecar", "says"), [
    ("# T\n\nbody", {}, "metadataAttributes"),
    ("# T\n\nbody", {"metadataAttributes": "x"}, "metadataAttributes"),
    ("no heading", {"metadataAttributes": {"entryId": "a", "title": "T", "category": "runbook"}}, "title"),
    ("# T\n\n", {"metadataAttributes": {"entryId": "a", "title": "T", "category": "runbook"}}, "content"),
])
def test_malformed_documents_are_refused(document, sidecar, says):
    with pytest.raises(kb.KnowledgeError, match=says):
        kb.entry_from_markdown(document, sidecar)


def test_retrieve_results_map_back_to_entries_by_the_sidecar_entry_id():
    # GIVEN Retrieve results for rendered documents: one with the sidecar's attributes, one with the URI only
    response = {"retrievalResults": [
        {"content": {"text": "..."}, "score": 0.8, "metadata": {"entryId": "rb-java-oom", "title": "Java OOM"},
         "location": {"s3Location": {"uri": "s3://kb/knowledge/rb-java-oom.md"}}},
        {"content": {"text": "..."}, "score": 0.5, "location": {"s3Location": {"uri": "s3://kb/cases/case-x-1.md"}}},
    ]}
    refs = kb._references_from_retrieve(response, kb.bundled_entries(), 3)
    assert [r["id"] for r in refs] == ["rb-java-oom", "case-x-1"]
