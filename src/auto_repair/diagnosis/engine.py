"""The entry point: validate, decide, size, cite knowledge, and let the model review."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from auto_repair import knowledge as kb
from auto_repair.deadline import Deadline
from auto_repair.evidence import Evidence, extract_evidence
from auto_repair.sizing import SizingResult
from auto_repair.untrusted import log_messages

from .bedrock import (
    _SYSTEM_PROMPT,
    ReviewRejectedError,
    _apply_review,
    _error_label,
    _review_tool_spec,
    build_prompt,
    parse_review,
)
from .config import DiagnosisConfig
from .constants import ACTIONS, AT_MAX_ACTION, MEMORY_CAUSES, TOOL_NAME
from .evidence_points import _evidence_points
from .knowledge_query import _knowledge_query
from .rules import Verdict, _decide
from .validation import request_problems

# Less time than this left of the function's own timeout: the model is not asked, the rules' answer stands.
MIN_REVIEW_S = 5.0


def diagnose(request: Any, *, config: DiagnosisConfig | None = None, bedrock_client: Any = None,
             retrieve_client: Any = None, knowledge: list[dict[str, Any]] | None = None,
             deadline: Deadline | None = None) -> dict[str, Any]:
    """Diagnose one request: always a result in the design's shape, never an exception.

    A request that names no function gets an ``insufficient_data`` result whose ``error`` says why; extras that
    are missing or wrong are read from the logs where possible and listed in ``inputProblems`` / the reasoning.
    ``deadline``: the model review is skipped (or its failure explained) when the function's time runs out; the
    rules' diagnosis always comes back."""
    config = config or DiagnosisConfig()
    fatal, problems = request_problems(request)
    if fatal:
        return _undiagnosable(request, fatal)
    try:
        return _diagnose(request, problems, config, bedrock_client, retrieve_client, knowledge, deadline)
    except Exception as exc:  # noqa: BLE001 - the last line only: the fuzz test fails on any result it makes
        return _undiagnosable(request, f"{INTERNAL_ERROR}: {type(exc).__name__}: {str(exc)[:200]}")


# The prefix of ``error`` when the engine itself failed (a bug); tests/unit/test_diagnosis_fuzz.py counts them.
INTERNAL_ERROR = "internal error in the diagnosis engine"


def _undiagnosable(request: Any, error: str) -> dict[str, Any]:
    """The result for a request that cannot be diagnosed: the design's fields, nothing to act on, and why."""
    name = request.get("functionName") if isinstance(request, dict) else None
    return {
        "functionName": name if isinstance(name, str) else None,
        "isMemoryIssue": False,
        "confidence": 0.0,
        "reasoning": f"The request could not be diagnosed: {error}.",
        "recommendedAction": ACTIONS["insufficient_data"],
        "recommendedMemoryIncrease": 0,
        "evidencePoints": [{"type": "invalid_request", "description": error}],
        "cause": "insufficient_data",
        "currentMemorySize": None,
        "recommendedMemorySize": None,
        "memoryBounds": None,
        "leakSuspected": False,
        "diagnosisMethod": {"method": "none", "bedrock": "not-run", "knowledge": "not-run"},
        "knowledgeReferences": [],
        "evidenceSummary": None,
        "error": error,
    }


def _diagnose(request: dict[str, Any], problems: list[str], config: DiagnosisConfig, bedrock_client: Any,
              retrieve_client: Any, knowledge: list[dict[str, Any]] | None,
              deadline: Deadline | None) -> dict[str, Any]:
    ev = extract_evidence(request)
    verdict = _decide(ev, config)
    current = ev.current_memory_mb
    is_memory = verdict.cause in MEMORY_CAUSES
    sizing = verdict.sizing if is_memory else None
    recommended = sizing.recommended_mb if sizing else current
    action = ACTIONS[verdict.cause]
    reasons = list(verdict.reasons)
    if not current:
        reasons.append("The function's memory size is unknown (no currentMemorySize and no REPORT line), so no "
                       "size can be recommended" + ("; a human must choose one." if is_memory else "."))
    if is_memory and sizing is not None:
        if recommended > current:
            need = sizing.estimated_need_mb
            headroom = f"; expected utilisation about {need / recommended:.0%}" if need else ""
            reasons.append(f"Recommend {current} -> {recommended} MB ({sizing.explanation}{headroom}).")
        else:
            action = AT_MAX_ACTION
            reasons.append(f"Memory is already at the allowed maximum ({config.max_memory} MB); a human must decide.")
    if ev.injection_samples:
        reasons.append(f"{len(ev.injection_samples)} log line(s) contained instruction-like text; it was treated "
                       "as data.")
    confidence = verdict.confidence - (0.1 if not ev.data_complete else 0.0) - (0.15 if not current else 0.0)
    if ev.derived:
        reasons.append("Not in the request, read from the logs: " + "; ".join(
            f"{key} {source}" for key, source in ev.derived.items()) + ".")
    if problems:
        confidence -= 0.05
        reasons.append("Ignored in the request: " + "; ".join(problems) + ".")
    entries = knowledge if knowledge is not None else kb.bundled_entries()
    query = _knowledge_query(ev, verdict.cause, verdict.leak)
    refs, knowledge_method = kb.retrieve_references(
        query, entries=entries, knowledge_base_id=config.knowledge_base_id, retrieve_client=retrieve_client,
        k=config.knowledge_k)
    history = kb.function_history(entries, ev.function_name)
    if history:
        # Repeated incidents on one function are a pattern a human should see (a leak, a growing workload).
        reasons.append("Earlier incidents on this function: " + "; ".join(
            f"{e['title'].removeprefix('Case: ')} at {e.get('createdAt') or 'unknown time'}" for e in history) + ".")
        cited = {ref["id"] for ref in refs}
        refs = [{"id": e["entryId"], "title": e["title"], "relevance": 1.0} for e in history
                if e["entryId"] not in cited] + refs
    result: dict[str, Any] = {
        "functionName": ev.function_name,
        "isMemoryIssue": is_memory,
        "confidence": round(min(max(confidence, 0.05), 0.99), 2),
        "reasoning": " ".join(reasons),
        "recommendedAction": action,
        "recommendedMemoryIncrease": recommended - current,
        "evidencePoints": _evidence_points(ev, verdict),
        "cause": verdict.cause,
        "currentMemorySize": current or None,
        "recommendedMemorySize": recommended or None,
        "memoryBounds": {"minMb": sizing.lower_bound_mb, "maxMb": sizing.upper_bound_mb} if sizing else None,
        "leakSuspected": verdict.leak,
        "diagnosisMethod": {"method": "rules", "bedrock": "not-configured", "knowledge": knowledge_method},
        "knowledgeReferences": refs,
        "evidenceSummary": ev.to_dict(),
    }
    if problems:
        result["inputProblems"] = problems
    if verdict.alternative:
        # policy.decide reads this: human review, or (ProbeCpuStarvation) one step to probeMemorySize
        result["alternativeCause"] = {"cause": verdict.alternative, "probeMemorySize": verdict.probe_mb}
    _maybe_review(result, ev, verdict, config, bedrock_client, entries, sizing, deadline or Deadline.unlimited(),
                  log_messages(request.get("logs")))
    return result


def _maybe_review(result: dict[str, Any], ev: Evidence, verdict: Verdict, config: DiagnosisConfig,
                  bedrock_client: Any, entries: list[dict[str, Any]], sizing: SizingResult | None,
                  deadline: Deadline, untrusted_lines: Sequence[str] = ()) -> None:
    method = result["diagnosisMethod"]
    if not config.use_bedrock:
        method["bedrock"] = "disabled" if config.bedrock_model_id else "not-configured"
        return
    if not config.bedrock_model_id or bedrock_client is None:
        method["bedrock"] = "not-configured"
        return
    method["modelId"] = config.bedrock_model_id
    if not result["currentMemorySize"]:
        # The review may move a size within bounds; with no memory size there are no bounds to move within.
        method["bedrock"] = "skipped: the memory size is unknown"
        return
    if deadline.remaining() < MIN_REVIEW_S:
        method["bedrock"] = f"fallback: deadline ({deadline.remaining():.0f}s left of the function's timeout)"
        return
    current = result["currentMemorySize"]
    bounds = (sizing.lower_bound_mb, sizing.upper_bound_mb) if sizing else (current, current)
    by_id = {entry["entryId"]: entry for entry in entries}
    passages = [by_id[ref["id"]] for ref in result["knowledgeReferences"] if ref["id"] in by_id]
    prompt = build_prompt(ev, verdict, result, bounds, passages, config.max_prompt_chars)
    kwargs: dict[str, Any] = {
        "modelId": config.bedrock_model_id,
        "system": [{"text": _SYSTEM_PROMPT}],
        "messages": [{"role": "user", "content": [{"text": prompt}]}],
        "toolConfig": {"tools": [_review_tool_spec()], "toolChoice": {"tool": {"name": TOOL_NAME}}},
        "inferenceConfig": {"maxTokens": config.max_tokens, "temperature": 0.0},
    }
    if config.guardrail_id:
        kwargs["guardrailConfig"] = {"guardrailIdentifier": config.guardrail_id,
                                     "guardrailVersion": config.guardrail_version, "trace": "disabled"}
    try:
        response = bedrock_client.converse(**kwargs)
        review = parse_review(response)
    except ReviewRejectedError as exc:
        method["bedrock"] = f"fallback: MalformedResponse ({exc})"
        return
    except Exception as exc:  # noqa: BLE001 - every failure of the optional model falls back to the rules
        late = " at the deadline" if deadline.remaining() < MIN_REVIEW_S else ""
        method["bedrock"] = f"fallback{late}: {_error_label(exc)}"
        return
    known = {entry_id: entry["title"] for entry_id, entry in by_id.items()}
    method["bedrock"] = _apply_review(result, review, bounds, known, verdict, untrusted_lines)
    method["method"] = "rules+bedrock"
