"""Notifications in the design's format, with a subject a human understands at a glance. Pure code."""

from __future__ import annotations

from typing import Any

# Outcomes (the notification ``type``), and whether each needs a human to do something.
REPAIRED = "REPAIRED"
ESCALATION = "NOT_IMPROVED"
INCONCLUSIVE = "INCONCLUSIVE"
DRY_RUN = "DRY_RUN"
NO_ACTION = "NO_ACTION"
HUMAN_REVIEW = "HUMAN_REVIEW"
APPROVAL_REQUEST = "APPROVAL_REQUEST"
APPROVAL_REJECTED = "APPROVAL_REJECTED"
APPROVAL_TIMEOUT = "APPROVAL_TIMEOUT"
IGNORED = "IGNORED"
INVALID_EVENT = "INVALID_EVENT"
FAILURE = "FAILURE"
RECOVERY = "RECOVERY"
SKIPPED = "SKIPPED"

NEEDS_HUMAN = {ESCALATION, INCONCLUSIVE, HUMAN_REVIEW, APPROVAL_REQUEST, APPROVAL_TIMEOUT, INVALID_EVENT, FAILURE}

_SUBJECT_TAIL = {
    REPAIRED: "recovered",
    ESCALATION: "NOT recovered, needs attention",
    INCONCLUSIVE: "verification inconclusive",
    DRY_RUN: "dry run, nothing changed",
    NO_ACTION: "not a memory issue, no change",
    HUMAN_REVIEW: "needs human review",
    APPROVAL_REQUEST: "approval needed",
    APPROVAL_REJECTED: "approval rejected, no change",
    APPROVAL_TIMEOUT: "approval timed out, no change",
    IGNORED: "alarm ignored",
    INVALID_EVENT: "malformed alarm event",
    FAILURE: "auto-repair FAILED",
    RECOVERY: "alarm back to OK",
    SKIPPED: "no change needed",
}


def _ascii(text: str) -> str:
    # SNS subjects must be printable ASCII, no line breaks, under 100 characters.
    cleaned = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)
    return cleaned[:99]


def subject(outcome: str, environment: str, function_name: str, before: int | None, after: int | None) -> str:
    name = function_name or "(no function)"
    change = ""
    if before and after and after != before:
        change = f"memory {before}->{after} MB, "
    elif before and outcome in (NO_ACTION, HUMAN_REVIEW, ESCALATION, FAILURE):
        change = f"memory {before} MB, "
    return _ascii(f"[{environment}] {name}: {change}{_SUBJECT_TAIL.get(outcome, outcome.lower())}")


def build(context: dict[str, Any], outcome: str, environment: str) -> dict[str, Any]:
    """Return ``{subject, message, attributes}`` for the workflow context at its end."""
    alarm = context.get("alarm") or {}
    diagnosis = context.get("diagnosisResult") or {}
    decision = diagnosis.get("decision") or {}
    repair = context.get("repair") or {}
    verification = context.get("verification") or {}
    error = context.get("error") or {}
    function_name = alarm.get("functionName") or ""
    before = repair.get("originalMemory") or decision.get("currentMemory") or (
        (context.get("evidence") or {}).get("currentMemorySize"))
    after = repair.get("newMemory") if repair.get("status") in ("SUCCEEDED", "DRY_RUN") else None
    if outcome in (DRY_RUN, APPROVAL_REQUEST) and not after:
        after = decision.get("targetMemory")

    message: dict[str, Any] = {
        "type": outcome,
        "environment": environment,
        "functionName": function_name,
        "executionId": alarm.get("executionId", ""),
        "needsHuman": outcome in NEEDS_HUMAN,
        "issue": {
            "description": alarm.get("stateReason", ""),
            "alarmName": alarm.get("alarmName", ""),
            "detectedAt": alarm.get("stateChangeTime", ""),
        },
        "diagnosis": {
            "result": diagnosis.get("cause", ""),
            "confidence": diagnosis.get("confidence"),
            "reasoning": diagnosis.get("reasoning", ""),
        },
        "repair": {
            "action": _repair_action(outcome, repair, decision),
            "originalMemory": before,
            "newMemory": after if after else before,
            "executedAt": repair.get("timestamp", "") if repair.get("status") == "SUCCEEDED" else "",
        },
        "verification": {
            "status": verification.get("status", "NOT_RUN"),
            "metricsComparison": verification.get("metricsComparison", {"before": None, "after": None,
                                                                           "improvement": "n/a"}),
        },
        "summary": _summary(outcome, context, before, after),
    }
    if diagnosis.get("evidencePoints"):
        message["diagnosis"]["evidencePoints"] = diagnosis["evidencePoints"][:8]
    if diagnosis.get("knowledgeReferences"):
        message["diagnosis"]["knowledgeReferences"] = diagnosis["knowledgeReferences"][:5]
    if decision:
        message["decision"] = {k: decision.get(k) for k in ("action", "reason", "currentMemory", "targetMemory")}
    if error:
        message["error"] = {"error": str(error.get("Error", ""))[:200], "cause": str(error.get("Cause", ""))[:1500]}
    if context.get("approvalRequest"):
        message["approval"] = context["approvalRequest"]
    if context.get("approval"):
        message["approvalDecision"] = context["approval"]
    if outcome in (IGNORED, INVALID_EVENT):
        message["issue"]["ignoredBecause"] = alarm.get("reason", "")
    return {
        "subject": subject(outcome, environment, function_name, before, after),
        "message": message,
        "attributes": {
            "environment": environment,
            "functionName": function_name or "none",
            "outcome": outcome,
        },
    }


def _repair_action(outcome: str, repair: dict[str, Any], decision: dict[str, Any]) -> str:
    status = repair.get("status")
    if status == "SUCCEEDED":
        return "INCREASE_MEMORY"
    if status == "DRY_RUN" or outcome == DRY_RUN:
        return "NONE (dry run: would INCREASE_MEMORY)"
    if status == "SKIPPED":
        return "NONE (already at or above target)"
    return "NONE"


def _summary(outcome: str, context: dict[str, Any], before: Any, after: Any) -> str:
    alarm = context.get("alarm") or {}
    diagnosis = context.get("diagnosisResult") or {}
    decision = diagnosis.get("decision") or {}
    verification = context.get("verification") or {}
    name = alarm.get("functionName") or "the function"
    if outcome == REPAIRED:
        return f"{name}: memory raised {before} -> {after} MB and verification shows it recovered."
    if outcome == ESCALATION:
        return (f"{name}: memory raised {before} -> {after} MB but it did NOT recover "
                f"({verification.get('reason', '')}). A human must investigate.")
    if outcome == INCONCLUSIVE:
        return f"{name}: memory raised {before} -> {after} MB; too few invocations since to verify. Check later."
    if outcome == DRY_RUN:
        return f"{name}: dry run - would raise memory {before} -> {after} MB. Nothing was changed."
    if outcome == NO_ACTION:
        return f"{name}: {decision.get('reason') or 'memory is not the cause'}. No change was made."
    if outcome == HUMAN_REVIEW:
        return f"{name}: {decision.get('reason', 'needs review')}. No change was made; please review the evidence."
    if outcome == APPROVAL_REJECTED:
        return f"{name}: the change {before} -> {after} MB was rejected. No change was made."
    if outcome == APPROVAL_TIMEOUT:
        return f"{name}: nobody approved the change {before} -> {after} MB in time. No change was made."
    if outcome in (IGNORED, INVALID_EVENT):
        return f"Alarm {alarm.get('alarmName', '')!r} ignored: {alarm.get('reason', '')}."
    if outcome == FAILURE:
        err = context.get("error") or {}
        return f"{name}: the auto-repair workflow failed ({err.get('Error', 'unknown error')}). See the audit log."
    if outcome == SKIPPED:
        return f"{name}: memory is already at or above the target; nothing to change."
    return f"{name}: {outcome}"
