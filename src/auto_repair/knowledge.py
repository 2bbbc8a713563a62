"""Knowledge base: runbooks and case history as entries of the design's knowledge-base entry model.

Entry fields: entryId, title, category, content, source, tags, createdAt, updatedAt, version, approvedBy.

* ``load_entries_from_dir(path)`` reads ``*.json`` entries (one entry, or a list, per file).
* ``bundled_entries()`` returns the runbooks shipped inside the package (``knowledge_data/``) so the Lambda has
  local knowledge even without the knowledge bucket.
* ``rank(entries, query, k)`` is a small BM25 ranker used offline and as the fallback for Bedrock ``Retrieve``.
* ``retrieve_references(...)`` calls ``bedrock-agent-runtime`` ``Retrieve`` when a knowledge-base id and a client
  are given, and falls back to the lexical ranker on any failure.
* ``case_entry_from_incident(incident)`` builds the case entry the workflow stores after a resolved incident;
  ``put_case_entry`` writes it to the knowledge bucket (``cases/<entryId>.md``) beside the runbooks that
  deploy.sh uploads (``knowledge/<entryId>.md``), and ``load_entries_from_bucket`` reads both back for the diagnosis.

In the bucket every entry is a Markdown document with a ``<name>.md.metadata.json`` sidecar: a Bedrock knowledge
base ingests text formats (md, txt, html, csv, pdf, doc), not JSON, and attaches the sidecar's
``metadataAttributes`` (entry id, title, category, tags, ...) to each chunk, so ``Retrieve`` results name their
entry (https://docs.aws.amazon.com/bedrock/latest/userguide/knowledge-base-ds.html). The repository's
``knowledge/*.json`` stay the source (``render_markdown`` / ``render_sidecar``); the function reads the pair back
into the entry model (``entry_from_markdown``), and still reads ``.json`` entries a bucket holds from before.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from auto_repair.outcomes import Notice
from auto_repair.workflow import WorkflowContext

from .clock import iso_seconds, utc_now
from .errors import AutoRepairError, error_code
from .untrusted import clean_line

ENTRY_FIELDS = ("entryId", "title", "category", "content", "source", "tags", "createdAt", "updatedAt", "version",
                "approvedBy")
BUNDLED_DIR = Path(__file__).with_name("knowledge_data")

_TOKEN = re.compile(r"[a-z0-9][a-z0-9._-]*[a-z0-9]|[a-z0-9]")
_STOP = frozenset("a an and are as at be by for from has in is it its of on or that the this to was were with".split())


class KnowledgeError(AutoRepairError, ValueError):
    """Raised for an entry that does not follow the knowledge-base entry model."""


def validate_entry(entry: Any) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise KnowledgeError("knowledge entry must be a JSON object")
    missing = [f for f in ("entryId", "title", "category", "content") if not isinstance(entry.get(f), str)
               or not entry.get(f)]
    if missing:
        raise KnowledgeError(f"knowledge entry {entry.get('entryId', '?')!r} lacks {', '.join(missing)}")
    tags = entry.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise KnowledgeError(f"knowledge entry {entry['entryId']!r}: tags must be a list of strings")
    return {key: entry.get(key, [] if key == "tags" else "") for key in ENTRY_FIELDS}


def load_entries_from_dir(path: str | Path) -> list[dict[str, Any]]:
    """Load every ``*.json`` entry under ``path`` (sorted by file name, for stable ranking ties)."""
    directory = Path(path)
    if not directory.is_dir():
        raise KnowledgeError(f"knowledge directory not found: {directory}")
    entries: list[dict[str, Any]] = []
    for file in sorted(directory.glob("*.json")):
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise KnowledgeError(f"{file.name}: invalid JSON ({exc.msg} at line {exc.lineno})") from exc
        for item in data if isinstance(data, list) else [data]:
            entries.append(validate_entry(item))
    return entries


RUNBOOK_PREFIX = "knowledge/"
CASE_PREFIX = "cases/"
MARKDOWN, SIDECAR = ".md", ".md.metadata.json"
# Sidecar attributes: every field of the entry model but its content, which is the document itself.
_ATTRIBUTES = tuple(f for f in ENTRY_FIELDS if f != "content")


def render_markdown(entry: dict[str, Any]) -> str:
    """The document Bedrock indexes: the title as a heading, then the content unchanged (it round-trips)."""
    entry = validate_entry(entry)
    return f"# {entry['title']}\n\n{entry['content']}\n"


def render_sidecar(entry: dict[str, Any]) -> dict[str, Any]:
    """Bedrock's metadata file of the document: ``{"metadataAttributes": {...}}`` (strings and a string list)."""
    entry = validate_entry(entry)
    return {"metadataAttributes": {key: entry[key] if key == "tags" else str(entry[key] or "") for key in _ATTRIBUTES
                                   if entry[key] not in ("", None)}}


def entry_from_markdown(document: str, sidecar: Any) -> dict[str, Any]:
    """The entry model back from a rendered document and its sidecar."""
    attributes = sidecar.get("metadataAttributes") if isinstance(sidecar, dict) else None
    if not isinstance(attributes, dict):
        raise KnowledgeError("sidecar lacks metadataAttributes")
    heading, _, content = document.partition("\n\n")
    if not heading.startswith("# "):
        raise KnowledgeError(f"document of {attributes.get('entryId', '?')!r} does not start with its title")
    return validate_entry({**attributes, "content": content.removesuffix("\n")})


def render_entries(entries: Iterable[dict[str, Any]], out_dir: str | Path) -> list[Path]:
    """Write ``<entryId>.md`` and its sidecar for each entry (deploy.sh's knowledge upload); the files written."""
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for entry in entries:
        base = directory / entry["entryId"]
        for path, text in ((base.with_name(base.name + MARKDOWN), render_markdown(entry)),
                           (base.with_name(base.name + SIDECAR), json.dumps(render_sidecar(entry), indent=1) + "\n")):
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def _stored_entries(s3: Any, bucket: str, key: str) -> list[dict[str, Any]]:
    if key.endswith(MARKDOWN):
        document = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
        sidecar = json.loads(s3.get_object(Bucket=bucket, Key=key + ".metadata.json")["Body"].read())
        return [entry_from_markdown(document, sidecar)]
    data = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    return [validate_entry(item) for item in (data if isinstance(data, list) else [data])]


def load_entries_from_bucket(s3: Any, bucket: str, *, prefixes: Iterable[str] = (RUNBOOK_PREFIX, CASE_PREFIX),
                             max_entries: int = 500) -> tuple[list[dict[str, Any]], list[str]]:
    """Entries stored in the knowledge bucket, newest cases first, and the keys skipped as malformed.

    Bounded (``max_entries``) because the ranker runs inside every diagnosis. S3 errors propagate: the caller
    decides whether to fall back to the bundled runbooks.
    """
    entries: list[dict[str, Any]] = []
    skipped: list[str] = []
    for prefix in prefixes:
        objects: list[dict[str, Any]] = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            # A document (.md, its sidecar read with it) or a JSON entry written before documents; not sidecars.
            objects.extend(obj for obj in page.get("Contents", []) if obj["Key"].endswith(MARKDOWN)
                           or (obj["Key"].endswith(".json") and not obj["Key"].endswith(SIDECAR)))
        objects.sort(key=lambda obj: obj.get("LastModified") or 0, reverse=True)
        for obj in objects:
            if len(entries) >= max_entries:
                return entries, skipped
            try:
                entries.extend(_stored_entries(s3, bucket, obj["Key"]))
            except (ValueError, KnowledgeError):
                skipped.append(obj["Key"])
            except Exception as exc:  # a document whose sidecar is missing is skipped, not fatal
                if error_code(exc) not in ("NoSuchKey", "404"):
                    raise
                skipped.append(obj["Key"])
    return entries, skipped


def merge_entries(*sources: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per entryId; an earlier source wins (the bucket's copy over the bundled one)."""
    merged: dict[str, dict[str, Any]] = {}
    for source in sources:
        for entry in source:
            merged.setdefault(entry["entryId"], entry)
    return list(merged.values())


def put_case_entry(s3: Any, bucket: str, entry: dict[str, Any]) -> str:
    """Store a case entry as a document and its sidecar (the sidecar first, so a listed document always has one);
    the key is derived from the entry id, so a retried notification overwrites, not adds."""
    entry = validate_entry(entry)
    key = f"{CASE_PREFIX}{entry['entryId']}{MARKDOWN}"
    s3.put_object(Bucket=bucket, Key=key + ".metadata.json", Body=json.dumps(render_sidecar(entry)).encode("utf-8"),
                  ContentType="application/json")
    s3.put_object(Bucket=bucket, Key=key, Body=render_markdown(entry).encode("utf-8"),
                  ContentType="text/markdown; charset=utf-8")
    return key


class KnowledgeSource:
    """The entries a diagnosis ranks: the knowledge bucket (runbooks + case history) over the bundled runbooks.

    Cached per warm Lambda environment for ``ttl_seconds`` so a burst of diagnoses costs one listing; when the
    bucket cannot be read, the bundled runbooks still give references and ``note`` says why.
    """

    def __init__(self, s3: Any, bucket: str, *, ttl_seconds: float = 300.0, clock: Any = None) -> None:
        import time

        self._s3, self._bucket, self._ttl = s3, bucket, ttl_seconds
        self._clock = clock or time.monotonic
        self._loaded_at: float | None = None
        self._entries: list[dict[str, Any]] = []
        self.note = "bundled"

    def entries(self) -> list[dict[str, Any]]:
        now = self._clock()
        if self._loaded_at is not None and now - self._loaded_at < self._ttl:
            return self._entries
        bundled = bundled_entries()
        if not self._bucket or self._s3 is None:
            self._entries, self.note = bundled, "bundled"
        else:
            try:
                stored, skipped = load_entries_from_bucket(self._s3, self._bucket)
                self._entries = merge_entries(stored, bundled)
                self.note = f"bucket: {len(stored)} entries" + (f", {len(skipped)} malformed skipped" if skipped
                                                                 else "")
            except Exception as exc:  # noqa: BLE001 - knowledge is an aid; the rules decide without it
                self._entries, self.note = bundled, f"bundled (bucket unreadable: {error_code(exc, type(exc).__name__)})"
        self._loaded_at = now
        return self._entries


# Outcomes whose incident teaches something: memory fixed it, memory did not fix it, memory was not the cause.
CASE_OUTCOMES = frozenset({Notice.REPAIRED, Notice.NOT_IMPROVED, Notice.NO_ACTION})


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def record_case(s3: Any, bucket: str, workflow: WorkflowContext, incident_id: str, outcome: str) -> str | None:
    """Write the case entry of a finished incident when its outcome is worth learning from; the S3 key or None."""
    if outcome not in CASE_OUTCOMES or not bucket or not (workflow.get("diagnosisResult") or {}):
        return None
    entry = case_entry_from_incident({**workflow, "incidentId": incident_id, "outcome": outcome})
    return put_case_entry(s3, bucket, entry)


def bundled_entries() -> list[dict[str, Any]]:
    return load_entries_from_dir(BUNDLED_DIR) if BUNDLED_DIR.is_dir() else []


def tokenize(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.lower()) if t not in _STOP]


def _entry_text(entry: dict[str, Any]) -> list[str]:
    # Title and tags describe what the entry is about; weight them above the body.
    title = tokenize(entry.get("title", ""))
    tags = tokenize(" ".join(entry.get("tags", [])))
    return title * 3 + tags * 3 + tokenize(entry.get("content", ""))


def rank(entries: Iterable[dict[str, Any]], query: str, k: int = 3) -> list[dict[str, Any]]:
    """BM25 over title, tags and content; relevance is squashed to [0, 1] so it is comparable across queries."""
    docs = [(entry, _entry_text(entry)) for entry in entries]
    terms = [t for t in dict.fromkeys(tokenize(query))]
    if not docs or not terms or k <= 0:
        return []
    n = len(docs)
    avg_len = sum(len(tokens) for _, tokens in docs) / n or 1.0
    df = Counter(term for _, tokens in docs for term in set(tokens))
    scored = []
    for index, (entry, tokens) in enumerate(docs):
        tf = Counter(tokens)
        score = 0.0
        for term in terms:
            if not tf[term]:
                continue
            idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
            score += idf * tf[term] * 2.2 / (tf[term] + 1.2 * (0.25 + 0.75 * len(tokens) / avg_len))
        if score > 0:
            scored.append((score, -index, entry))
    scored.sort(reverse=True)
    return [{"id": entry["entryId"], "title": entry["title"], "relevance": round(score / (score + 5.0), 3)}
            for score, _, entry in scored[:k]]


def retrieve_references(query: str, *, entries: list[dict[str, Any]] | None, knowledge_base_id: str | None = None,
                        retrieve_client: Any = None, k: int = 3) -> tuple[list[dict[str, Any]], str]:
    """References for ``query`` and how they were found: ``bedrock-kb``, ``local``, ``fallback: <why>`` or ``none``."""
    local = entries if entries is not None else bundled_entries()
    if knowledge_base_id and retrieve_client is not None:
        try:
            response = retrieve_client.retrieve(
                knowledgeBaseId=knowledge_base_id,
                retrievalQuery={"text": query[:1000]},
                retrievalConfiguration={"vectorSearchConfiguration": {"numberOfResults": k}},
            )
            refs = _references_from_retrieve(response, local, k)
            if refs:
                return refs, "bedrock-kb"
            why = "fallback: Retrieve returned no usable results"
        except Exception as exc:  # noqa: BLE001 - any failure of the optional service falls back to local ranking
            why = f"fallback: {error_code(exc, type(exc).__name__)}"
        refs = rank(local, query, k)
        return refs, why if refs else "none"
    refs = rank(local, query, k)
    return refs, "local" if refs else "none"


def _references_from_retrieve(response: Any, local: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    by_id = {entry["entryId"]: entry for entry in local}
    refs: list[dict[str, Any]] = []
    results = response.get("retrievalResults") if isinstance(response, dict) else None
    for item in results or []:
        if not isinstance(item, dict):
            continue
        metadata = _as_dict(item.get("metadata"))
        uri = (((item.get("location") or {}).get("s3Location") or {}).get("uri")) or ""
        entry_id = metadata.get("entryId") or (Path(uri).stem if uri else None)
        if not isinstance(entry_id, str) or not entry_id:
            continue
        title = metadata.get("title") or by_id.get(entry_id, {}).get("title") or entry_id
        score = item.get("score")
        relevance = float(score) if isinstance(score, int | float) and not isinstance(score, bool) else 0.0
        refs.append({"id": entry_id, "title": str(title)[:200], "relevance": round(min(max(relevance, 0.0), 1.0), 3)})
        if len(refs) >= k:
            break
    return refs


def function_history(entries: Iterable[dict[str, Any]], function_name: str, k: int = 2) -> list[dict[str, Any]]:
    """The newest case entries of this very function: its own past incidents are the most relevant knowledge."""
    tag = f"function:{function_name}"
    cases = [e for e in entries if e.get("category") == "case" and tag in e.get("tags", [])]
    cases.sort(key=lambda e: str(e.get("createdAt") or ""), reverse=True)
    return cases[:k]


def case_entry_from_incident(incident: dict[str, Any], *, now: str | None = None) -> dict[str, Any]:
    """A case-history entry for a resolved incident (workflow context: alarm, diagnosisResult, repair, verification).

    Only the structured verdict is kept, never raw log text: logs are untrusted and the case is fed back to the
    model as knowledge later.
    """
    if not isinstance(incident, dict):
        raise KnowledgeError("incident must be a JSON object")
    diagnosis = _as_dict(incident.get("diagnosisResult"))
    repair = _as_dict(incident.get("repair"))
    verification = _as_dict(incident.get("verification"))
    alarm = _as_dict(incident.get("alarm"))
    evidence = _as_dict(incident.get("evidence"))
    approval = _as_dict(incident.get("approval"))
    function = (incident.get("functionName") or alarm.get("functionName") or evidence.get("functionName")
                or diagnosis.get("functionName") or "unknown-function")
    cause = diagnosis.get("cause") or ("memory" if diagnosis.get("isMemoryIssue") else "unknown")
    incident_id = (incident.get("incidentId") or diagnosis.get("diagnosisId") or repair.get("repairId")
                   or hashlib.sha256(json.dumps(incident, sort_keys=True, default=str).encode()).hexdigest()[:16])
    original = repair.get("originalMemory", evidence.get("currentMemorySize"))
    new = repair.get("newMemory", diagnosis.get("recommendedMemorySize"))
    status = verification.get("status") or repair.get("verificationStatus") or "UNVERIFIED"
    runtime = evidence.get("runtime") or incident.get("runtime")
    alarm_name = alarm.get("alarmName") or _as_dict(evidence.get("alarmDetails")).get("alarmName") or "n/a"
    lines = [
        f"Function {function} ({runtime or 'runtime unknown'}): diagnosed as {cause} "
        f"(confidence {diagnosis.get('confidence', 'n/a')}, method {_method(diagnosis)}).",
        f"Alarm: {clean_line(alarm_name, 255)}.",
    ]
    if original is not None or new is not None:
        lines.append(f"Memory {original} MB -> {new} MB; repair status {repair.get('status', 'n/a')}; verification {status}.")
    lines += _case_facts(diagnosis)
    if incident.get("outcome"):
        lines.append(f"Outcome: {incident['outcome']}.")
    timestamp = now or iso_seconds(utc_now())
    tags = [t for t in ("case", f"function:{function}", str(cause), str(status).lower(), runtime,
                        str(incident.get("outcome") or "").lower()) if t]
    return {
        "entryId": f"case-{_slug(str(function))}-{str(incident_id)[:24]}",
        "title": f"Case: {function} {cause} {original}->{new} MB ({status})",
        "category": "case",
        "content": "\n".join(lines),
        "source": f"incident:{incident_id}",
        "tags": tags,
        "createdAt": timestamp,
        "updatedAt": timestamp,
        "version": "1",
        "approvedBy": approval.get("approvedBy") or approval.get("approver") or "auto-repair",
    }


def _method(diagnosis: dict[str, Any]) -> str:
    method = _as_dict(diagnosis.get("diagnosisMethod"))
    # The method's name, not its notes: a model's or an error's free text is not history.
    return _word(method.get("method") or "n/a")


def _case_facts(diagnosis: dict[str, Any]) -> list[str]:
    """Structured facts of the diagnosis: signature kinds and counts, memory figures, evidence-point types.

    No reasoning and no evidence descriptions: they are free text and a case entry is read back into every later
    prompt; the log lines themselves stay in the incident's stored evidence."""
    summary = _as_dict(diagnosis.get("evidenceSummary"))
    memory = _as_dict(summary.get("memory"))
    counts = _as_dict(summary.get("signatures"))
    facts = []
    kinds = ", ".join(f"{_word(k)} {int(v)}" for k, v in sorted(counts.items())
                      if isinstance(v, int | float) and not isinstance(v, bool))
    if kinds:
        facts.append(f"Signature counts: {kinds}.")
    figures = {k: memory.get(k) for k in ("sizeMb", "maxUsedMb", "medianUsedMb", "utilisationP95")
               if isinstance(memory.get(k), int | float) and not isinstance(memory.get(k), bool)}
    if figures:
        facts.append("Memory figures: " + ", ".join(f"{k} {v}" for k, v in figures.items()) + ".")
    injections = summary.get("injectionAttempts")
    if isinstance(injections, int) and not isinstance(injections, bool) and injections:
        facts.append(f"Instruction-like log lines ignored: {injections}.")
    points = diagnosis["evidencePoints"] if isinstance(diagnosis.get("evidencePoints"), list) else []
    types = [_word(p.get("type")) for p in points[:8] if isinstance(p, dict)]
    if types:
        facts.append("Evidence points: " + ", ".join(types) + ".")
    return facts


def _word(value: Any) -> str:
    # A name of ours (signature kind, point type, method): ASCII word characters only, whatever the input held.
    return re.sub(r"[^\w+-]+", "-", str(value), flags=re.ASCII).strip("-")[:48] or "n-a"


def _slug(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9-]+", "-", text).strip("-")[:48] or "fn"
