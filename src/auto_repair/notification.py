"""Notifications in the design's format, with a subject a human understands at a glance. Pure code."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from auto_repair.accounts import describe, place_of
from auto_repair.outcomes import (
    MUTATION_OUTCOMES,
    AlarmOutcome,
    GuardOutcome,
    IncidentStatus,
    Notice,
    NotifyRequest,
    RefusalNotice,
    RepairStatus,
    Verdict,
)
from auto_repair.policy import ignored_tags
from auto_repair.settle import trim_story, trim_summary
from auto_repair.untrusted import clean_line, fold
from auto_repair.workflow import RepairStep, WorkflowContext

# The guards' notices: the alarm was recorded but no repair ran, or the repair was stopped before it changed anything.
GUARDED = (Notice.DUPLICATE, Notice.LOCKED, Notice.COOLDOWN, Notice.OUT_OF_SCOPE, Notice.PAUSED,
           Notice.BUDGET_EXHAUSTED, Notice.APPROVAL_REFUSED)

# Whether each notice needs a human to do something.
NEEDS_HUMAN = {Notice.NOT_IMPROVED, Notice.INCONCLUSIVE, Notice.HUMAN_REVIEW, Notice.APPROVAL_REQUEST,
               Notice.APPROVAL_TIMEOUT, Notice.INVALID_EVENT, Notice.FAILURE, Notice.REFUSED}
# Paused or over budget: the function is still failing and nothing will repair it by itself.
NEEDS_HUMAN |= {Notice.PAUSED, Notice.BUDGET_EXHAUSTED}
# A refused approval is either a forged/replayed resume (a security event) or a situation that changed.
NEEDS_HUMAN |= {Notice.APPROVAL_REFUSED}

# The incident's status once the workflow has reached each notice.
INCIDENT_STATUS: dict[str, IncidentStatus] = {
    Notice.REPAIRED: IncidentStatus.RESOLVED,
    Notice.NOT_IMPROVED: IncidentStatus.ESCALATED,
    Notice.INCONCLUSIVE: IncidentStatus.ESCALATED,
    Notice.HUMAN_REVIEW: IncidentStatus.ESCALATED,
    Notice.APPROVAL_TIMEOUT: IncidentStatus.CLOSED,
    Notice.APPROVAL_REJECTED: IncidentStatus.CLOSED,
    Notice.DRY_RUN: IncidentStatus.CLOSED,
    Notice.NO_ACTION: IncidentStatus.CLOSED,
    Notice.SKIPPED: IncidentStatus.CLOSED,
    Notice.IGNORED: IncidentStatus.CLOSED,
    Notice.INVALID_EVENT: IncidentStatus.CLOSED,
    Notice.REFUSED: IncidentStatus.CLOSED,
    # Guards: nothing changed. PAUSED and BUDGET_EXHAUSTED leave a failing function a human must look at.
    Notice.DUPLICATE: IncidentStatus.CLOSED,
    Notice.LOCKED: IncidentStatus.CLOSED,
    Notice.COOLDOWN: IncidentStatus.CLOSED,
    Notice.OUT_OF_SCOPE: IncidentStatus.CLOSED,
    Notice.PAUSED: IncidentStatus.ESCALATED,
    Notice.BUDGET_EXHAUSTED: IncidentStatus.ESCALATED,
    Notice.APPROVAL_REFUSED: IncidentStatus.ESCALATED,
}


def incident_status(outcome: str) -> IncidentStatus:
    return INCIDENT_STATUS.get(outcome, IncidentStatus.CLOSED)


def result_outcome(context: WorkflowContext) -> str:
    """The notice of a run that reached NotifyResult, from its repair and verification."""
    status = (context.get("repair") or {}).get("status")
    if status == RepairStatus.DRY_RUN:
        return Notice.DRY_RUN
    if status == RepairStatus.SKIPPED:
        return Notice.SKIPPED
    if status in MUTATION_OUTCOMES:  # the kill switch or the hourly budget stopped the change
        return Notice(status)
    verdict = (context.get("verification") or {}).get("status")
    if verdict == Verdict.IMPROVED:
        return Notice.REPAIRED
    if verdict == Verdict.NOT_IMPROVED:
        return Notice.NOT_IMPROVED
    return Notice.INCONCLUSIVE


def ignored_outcome(context: WorkflowContext, *, notify_ignored: bool) -> tuple[str, bool]:
    """The notice of an alarm that started no repair, and whether to send it (NOTIFY_IGNORED widens that)."""
    alarm = context.get("alarm") or {}
    outcome = alarm.get("outcome")
    if outcome == AlarmOutcome.INVALID:
        return Notice.INVALID_EVENT, True
    if outcome == AlarmOutcome.REFUSED:  # forged or foreign: told, it may be an attack; a repeat only recorded
        return Notice.REFUSED, alarm.get("refusalNotice", RefusalNotice.SENT) == RefusalNotice.SENT
    # Duplicates are silent (the original run reports); a locked or cooling-down function is reported so the
    # on-call sees the alarm was not lost; out of scope only when NOTIFY_IGNORED is set.
    if outcome == GuardOutcome.DUPLICATE:
        return Notice.DUPLICATE, False
    if outcome in (GuardOutcome.LOCKED, GuardOutcome.COOLDOWN):
        return Notice(outcome), True
    if outcome == GuardOutcome.OUT_OF_SCOPE:
        return Notice.OUT_OF_SCOPE, notify_ignored
    return Notice.IGNORED, bool(alarm.get("needsHuman")) or notify_ignored


def requested_outcome(requested: str | None, context: WorkflowContext, *, notify_ignored: bool) -> tuple[str, bool]:
    """(notice, send?) for NotifyResult's ``outcome`` parameter: RESULT (or none), IGNORED, or a notice itself."""
    if requested == NotifyRequest.RESULT or requested is None:
        return result_outcome(context), True
    if requested == NotifyRequest.IGNORED:
        return ignored_outcome(context, notify_ignored=notify_ignored)
    return requested, True


_SUBJECT_TAIL: dict[str, str] = {
    Notice.REPAIRED: "recovered",
    Notice.NOT_IMPROVED: "NOT recovered, needs attention",
    Notice.INCONCLUSIVE: "verification inconclusive",
    Notice.DRY_RUN: "dry run, nothing changed",
    Notice.NO_ACTION: "not a memory issue, no change",
    Notice.HUMAN_REVIEW: "needs human review",
    Notice.APPROVAL_REQUEST: "approval needed",
    Notice.APPROVAL_REJECTED: "approval rejected, no change",
    Notice.APPROVAL_TIMEOUT: "approval timed out, no change",
    Notice.IGNORED: "alarm ignored",
    Notice.INVALID_EVENT: "malformed alarm event",
    Notice.REFUSED: "alarm event REFUSED (forged or foreign), no change",
    Notice.FAILURE: "auto-repair FAILED",
    Notice.RECOVERY: "alarm back to OK",
    Notice.SKIPPED: "no change needed",
    Notice.DUPLICATE: "duplicate alarm delivery, ignored",
    Notice.LOCKED: "repair already in progress, alarm recorded",
    Notice.COOLDOWN: "in cooldown after a repair, no change",
    Notice.OUT_OF_SCOPE: "not in auto-repair scope, no change",
    Notice.PAUSED: "repairs PAUSED (kill switch), no change",
    Notice.BUDGET_EXHAUSTED: "hourly repair budget exhausted, no change",
    Notice.APPROVAL_REFUSED: "approval REFUSED, no change",
}


def _ascii(text: str) -> str:
    # SNS subjects must be printable ASCII, no line breaks, under 100 characters; look-alikes fold to ASCII first
    # and CR/LF become spaces, so no text can start a header line of its own.
    cleaned = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in fold(text))
    return cleaned[:99]


def subject(outcome: str, environment: str, function_name: str, before: int | None, after: int | None) -> str:
    name = function_name or "(no function)"
    change = ""
    if before and after and after != before:
        change = f"memory {before}->{after} MB, "
    elif before and outcome in (Notice.NO_ACTION, Notice.HUMAN_REVIEW, Notice.NOT_IMPROVED, Notice.FAILURE):
        change = f"memory {before} MB, "
    return _ascii(f"[{environment}] {name}: {change}{_SUBJECT_TAIL.get(outcome, outcome.lower())}")


def build(context: WorkflowContext, outcome: str, environment: str) -> dict[str, Any]:
    """Return ``{subject, message, attributes}`` for the workflow context at its end."""
    alarm = context.get("alarm") or {}
    diagnosis = context.get("diagnosisResult") or {}
    decision = diagnosis.get("decision") or {}
    repair = context.get("repair") or {}
    verification = context.get("verification") or {}
    error = context.get("error") or {}
    # A member's function is named with its account and region: "orders-api in 111122223333 / eu-west-1".
    function_name = describe(alarm) if alarm.get("functionName") else ""
    before = repair.get("originalMemory") or decision.get("currentMemory") or (
        (context.get("evidence") or {}).get("currentMemorySize"))
    after = repair.get("newMemory") if repair.get("status") in (RepairStatus.SUCCEEDED, RepairStatus.DRY_RUN) else None
    if outcome in (Notice.DRY_RUN, Notice.APPROVAL_REQUEST) and not after:
        after = decision.get("targetMemory")
    steps = repair_steps(context)
    before, after = _incident_span(steps, before, after)

    message: dict[str, Any] = {
        "type": outcome,
        "environment": environment,
        "functionName": alarm.get("functionName") or "",
        **{k: v for k, v in place_of(alarm).items() if k != "functionKey"},
        "executionId": alarm.get("executionId", ""),
        "needsHuman": outcome in NEEDS_HUMAN,
        "issue": {
            "description": clean_line(alarm.get("stateReason", ""), 1000),
            "alarmName": clean_line(alarm.get("alarmName", ""), 255),
            "detectedAt": alarm.get("stateChangeTime", ""),
        },
        "diagnosis": {
            "result": diagnosis.get("cause", ""),
            "confidence": diagnosis.get("confidence"),
            "reasoning": clean_line(diagnosis.get("reasoning", ""), 4000),
        },
        "repair": {
            "action": _repair_action(outcome, repair, decision),
            "originalMemory": before,
            "newMemory": after if after else before,
            "executedAt": repair.get("timestamp", "") if repair.get("status") == RepairStatus.SUCCEEDED else "",
        },
        "verification": {
            "status": verification.get("status", Verdict.NOT_RUN),
            "metricsComparison": verification.get("metricsComparison", {"before": None, "after": None,
                                                                           "improvement": "n/a"}),
        },
        "summary": clean_line(_summary(outcome, context, before, after), 2000),
    }
    if steps:
        message["steps"] = [dict(s) for s in steps]
        message["stepping"] = {k: v for k, v in ((context.get("verification") or {}).get("step") or {}).items()
                               if v not in (None, "")}
    if diagnosis.get("evidencePoints"):
        message["diagnosis"]["evidencePoints"] = [
            {"type": clean_line(p.get("type"), 64), "description": clean_line(p.get("description"), 600)}
            for p in diagnosis["evidencePoints"][:8] if isinstance(p, Mapping)]
    if diagnosis.get("knowledgeReferences"):
        message["diagnosis"]["knowledgeReferences"] = diagnosis["knowledgeReferences"][:5]
    if decision:
        message["decision"] = {k: decision.get(k) for k in ("action", "reason", "currentMemory", "targetMemory")}
    if error:
        message["error"] = {"error": clean_line(error.get("Error", ""), 200),
                            "cause": clean_line(error.get("Cause", ""), 1500)}
    if context.get("approvalRequest"):
        message["approval"] = context["approvalRequest"]
    if context.get("approval"):
        message["approvalDecision"] = context["approval"]
    if outcome in (Notice.IGNORED, Notice.INVALID_EVENT, Notice.REFUSED):
        message["issue"]["ignoredBecause"] = alarm.get("reason", "")
    if outcome in GUARDED:
        message["guard"] = _guard(outcome, alarm, repair)
    ignored = ignored_tags(alarm.get("settings"))
    if ignored:  # the owner tried to loosen (or mistyped) a guardrail: say which tag had no effect
        message["ignoredTags"] = ignored
        message["summary"] += " " + clean_line("Ignored tags (tags may only tighten the policy): " + "; ".join(
            f"{key}: {why}" for key, why in sorted(ignored.items())) + ".", 1000)
    rolled_back = _versions_and_rollback(message, context)
    drift = (message.get("iacDrift") or {}).get("message")
    if drift and drift not in message["summary"]:
        message["summary"] += f" {drift}"
    story = step_story(context)
    if story:
        message["summary"] += f" {story}"
    title = _title(outcome, environment, function_name, before, after, rolled_back)
    trim = trim_summary(context, outcome)
    if trim is not None:  # a trim (auto_repair.settle) tells its own story
        message["summary"], title = trim[0], _ascii(f"[{environment}] {function_name}: {trim[1]}")
        message["repair"]["action"] = message["repair"]["action"].replace("INCREASE_MEMORY", "DECREASE_MEMORY")
        message["story"] = trim_story(context)
    return {
        "subject": title,
        "message": message,
        "attributes": {
            "environment": environment,
            "functionName": alarm.get("functionName") or "none",
            "outcome": outcome,
            # Organisation mode: subscribers may filter on the account and region (empty values are not allowed).
            **{k: v for k, v in place_of(alarm).items() if k in ("account", "region") and v},
        },
    }


def _title(outcome: str, environment: str, function_name: str, before: Any, after: Any, rolled_back: Any) -> str:
    """The subject; a rollback says where memory ended (the best size reached, or the original)."""
    if rolled_back is not None and before is not None and int(rolled_back) > int(before):
        return _ascii(f"[{environment}] {function_name}: memory {before}->{after} MB not recovered, kept best "
                      f"{rolled_back} MB")
    if rolled_back is not None:
        return _ascii(f"[{environment}] {function_name}: memory {before}->{after} MB did not help, rolled back to "
                      f"{rolled_back} MB")
    return subject(outcome, environment, function_name, before, after)


def repair_steps(context: WorkflowContext) -> list[RepairStep]:
    """The verified steps of this incident, in order (VerifyRepair keeps them in ``$.verification.steps``)."""
    return list((context.get("verification") or {}).get("steps") or [])


def _incident_span(steps: list[RepairStep], before: Any, after: Any) -> tuple[Any, Any]:
    """Several steps in one incident: from where it started to where the last applied step left it."""
    if not steps:
        return before, after
    return steps[0].get("memoryBefore") or before, after or steps[-1].get("memoryAfter")


def _mb(value: Any) -> str:
    return f"{int(value):,} MB" if isinstance(value, (int, float)) and not isinstance(value, bool) else "? MB"


def _step_line(s: Mapping[str, Any]) -> str:
    return (f"step {s.get('step')}: {_mb(s.get('memoryBefore'))} -> {_mb(s.get('memoryAfter'))}, error rate "
            f"{float(s.get('errorRateBefore') or 0):.0%} -> {float(s.get('errorRateAfter') or 0):.0%}, "
            f"{str(s.get('verdict', '')).lower().replace('_', ' ')}"
            + (", still memory-bound" if s.get("memoryBoundAfter") else ""))


def step_story(context: WorkflowContext) -> str:
    """What each step did and, when the controller stopped short of healthy, why and what the evidence suggests."""
    verification = context.get("verification") or {}
    steps = repair_steps(context)
    decided = verification.get("step") or {}
    stop = decided.get("stopReason")
    if len(steps) < 2 and not stop:
        return ""
    story = "Steps: " + "; ".join(_step_line(s) for s in steps) + "."
    after = verification.get("afterDiagnosis") or {}
    need = after.get("recommendedMemorySize")
    suggests = (f" The evidence now suggests {after.get('cause') or 'memory'}"
                + (f", needing about {_mb(need)}" if need else "") + "." if after.get("isMemoryIssue") else
                f" The evidence no longer points at memory ({after.get('cause') or 'unknown'}).")
    best = _mb(decided.get("bestMemory"))
    tails = {
        "MAX_MEMORY": f" Reached MaxMemory {_mb(decided.get('maxMemory'))} and the function still fails of memory; "
                      f"kept the best size reached, {best}.{suggests} Raise MaxMemory (or the function's "
                      "auto-repair:max-memory tag) or reduce its memory use.",
        "MAX_STEPS": f" Used all {decided.get('maxSteps') or len(steps)} steps (MaxRepairSteps); kept the best size "
                     f"reached, {best}.{suggests}",
        "CEILING": f" The next step is beyond the approved ceiling; kept {best}. A new approval is needed to go "
                   f"further.{suggests}",
        "KNOWN_BAD": f" Stopped at a known-bad size; kept {best}.{suggests}",
    }
    return story + tails.get(str(stop), f" {decided['reason']}" if decided.get("reason") else "")


def _repair_action(outcome: str, repair: Mapping[str, Any], decision: Mapping[str, Any]) -> str:
    status = repair.get("status")
    if status == RepairStatus.SUCCEEDED:
        return "INCREASE_MEMORY"
    if status == RepairStatus.DRY_RUN or outcome == Notice.DRY_RUN:
        return "NONE (dry run: would INCREASE_MEMORY)"
    if status == RepairStatus.SKIPPED:
        return "NONE (already at or above target)"
    if status in MUTATION_OUTCOMES:
        return f"NONE ({status.lower().replace('_', ' ')}: would INCREASE_MEMORY)"
    if status == RepairStatus.MANUAL_ACTION_REQUIRED:
        return "NONE (manual action required: see actionRequired)"
    return "NONE"


def _summary(outcome: str, context: WorkflowContext, before: Any, after: Any) -> str:
    alarm = context.get("alarm") or {}
    decision = (context.get("diagnosisResult") or {}).get("decision") or {}
    repair = context.get("repair") or {}
    name = describe(alarm) if alarm.get("functionName") else "the function"
    alarm_name, why = alarm.get("alarmName", ""), alarm.get("reason", "")
    iac = f" {(repair.get('iac') or {}).get('message', '')}" if repair.get("iac") else ""
    if outcome == Notice.HUMAN_REVIEW and repair.get("status") == RepairStatus.MANUAL_ACTION_REQUIRED:
        return (f"{name}: needs {repair.get('targetMemory')} MB (now {before} MB) on the version that serves the "
                f"traffic, but {repair.get('reason', '')}. No change was made; the steps are in actionRequired.{iac}")
    if outcome == Notice.NOT_IMPROVED:
        return (f"{name}: memory raised {before} -> {after} MB but it did NOT recover "
                f"({(context.get('verification') or {}).get('reason', '')}).{_rollback_sentence(context)} "
                "A human must investigate.")
    if outcome == Notice.APPROVAL_REFUSED:  # not "still failing": a late approval is refused because it recovered
        return (f"{name}: the change {before} -> {repair.get('targetMemory') or '?'} MB was NOT applied: "
                f"{repair.get('reason', outcome)}. No change was made.")
    if outcome in MUTATION_OUTCOMES:
        return (f"{name}: would raise memory {before} -> {repair.get('targetMemory') or '?'} MB, but "
                f"{repair.get('reason', outcome)}. No change was made; the function is still failing.")
    sentences: dict[str, str] = {
        Notice.REPAIRED: f"{name}: memory raised {before} -> {after} MB"
                         f"{f' in {len(repair_steps(context))} steps' if len(repair_steps(context)) > 1 else ''} "
                         f"and verification shows it recovered.{iac}",
        Notice.APPROVAL_REQUEST: f"{name}: approval needed to raise memory {before} -> {after} MB. "
                                 f"{(context.get('approvalRequest') or {}).get('ceiling', '')}".rstrip(),
        Notice.INCONCLUSIVE: f"{name}: memory raised {before} -> {after} MB; too few invocations since to verify. "
                             "Check later.",
        Notice.DRY_RUN: f"{name}: dry run - would raise memory {before} -> {after} MB. Nothing was changed.",
        Notice.NO_ACTION: f"{name}: {decision.get('reason') or 'memory is not the cause'}. No change was made.",
        Notice.HUMAN_REVIEW: f"{name}: {decision.get('reason', 'needs review')}. No change was made; please review "
                             "the evidence.",
        Notice.APPROVAL_REJECTED: f"{name}: the change {before} -> {after} MB was rejected. No change was made.",
        Notice.APPROVAL_TIMEOUT: f"{name}: nobody approved the change {before} -> {after} MB in time. No change was "
                                 "made.",
        Notice.IGNORED: f"Alarm {alarm_name!r} ignored: {why}.",
        Notice.INVALID_EVENT: f"Alarm {alarm_name!r} ignored: {why}.",
        Notice.REFUSED: f"Alarm {alarm_name!r} from account {alarm.get('account') or '?'} / "
                        f"{alarm.get('region') or '?'} REFUSED, nothing was read or changed: {why}.",
        Notice.FAILURE: f"{name}: the auto-repair workflow failed "
                        f"({(context.get('error') or {}).get('Error', 'unknown error')}). See the audit log.",
        Notice.SKIPPED: f"{name}: memory is already at or above the target; nothing to change.",
        Notice.COOLDOWN: f"{name}: alarm {alarm_name!r} during the cooldown after the repair at "
                         f"{alarm.get('lastRepairAt', '')}; no change. The cooldown ends at "
                         f"{alarm.get('cooldownEndsAt', '')}.",
        Notice.DUPLICATE: f"{name}: alarm {alarm_name!r} recorded, no change: {why}.",
        Notice.LOCKED: f"{name}: alarm {alarm_name!r} recorded, no change: {why}.",
        Notice.OUT_OF_SCOPE: f"{name}: alarm {alarm_name!r} recorded, no change: {why}.",
    }
    return sentences.get(outcome, f"{name}: {outcome}")


def _rollback_sentence(context: WorkflowContext) -> str:
    rollback = context.get("rollback") or {}
    verification = context.get("verification") or {}
    if rollback.get("status") == RepairStatus.ROLLED_BACK:
        target = (f"alias {rollback['alias']['name']} back on version {rollback['alias']['restoredVersion']}, "
                  if rollback.get("alias") else "")
        return f" The change was rolled back to {rollback.get('restoredMemory')} MB ({target}audited)."
    if rollback.get("status"):
        return f" It was NOT rolled back: {rollback.get('reason') or rollback.get('error', '')}."
    if verification.get("rollbackReason"):
        return f" {verification['rollbackReason'][0].upper()}{verification['rollbackReason'][1:]}."
    return ""


def _versions_and_rollback(message: dict[str, Any], context: WorkflowContext) -> int | None:
    """Add alias/version, IaC drift, manual steps and rollback details; return the restored memory if rolled back."""
    repair = context.get("repair") or {}
    rollback = context.get("rollback") or {}
    for key in ("alias", "publishedVersion", "deployment"):
        if repair.get(key):
            message["repair"][key] = repair[key]
    if repair.get("provisionedConcurrency"):
        message["repair"]["provisionedConcurrency"] = repair["provisionedConcurrency"]
    warnings = list(repair.get("warnings") or []) + list(rollback.get("warnings") or [])
    if warnings:
        message["warnings"] = warnings
    if repair.get("status") == RepairStatus.MANUAL_ACTION_REQUIRED:
        message["actionRequired"] = {"reason": repair.get("reason", ""), "steps": repair.get("manualSteps") or [],
                                     "targetMemory": repair.get("targetMemory")}
    if rollback:
        message["rollback"] = {k: rollback.get(k) for k in ("status", "fromMemory", "restoredMemory", "alias",
                                                            "reason", "error") if rollback.get(k) is not None}
    if rollback.get("status") == RepairStatus.ROLLED_BACK:
        message["repair"]["action"] = "INCREASE_MEMORY, then ROLLED_BACK"
        message["repair"]["newMemory"] = rollback.get("restoredMemory")
        return rollback.get("restoredMemory")
    if repair.get("iac"):
        message["iacDrift"] = repair["iac"]
    return None


def _guard(outcome: str, alarm: Mapping[str, Any], repair: Mapping[str, Any]) -> dict[str, Any]:
    """Why a guard stopped this alarm, with what the on-call needs: the holder, the original, the end time."""
    stopped_repair = outcome in (Notice.PAUSED, Notice.BUDGET_EXHAUSTED, Notice.APPROVAL_REFUSED)
    guard: dict[str, Any] = {"outcome": outcome, "reason": (repair if stopped_repair else alarm).get("reason", "")}
    for key in ("duplicateOf", "lockHolder", "lockExpiresAt", "cooldownEndsAt", "lastRepairAt", "lastRepairExecution"):
        if alarm.get(key):
            guard[key] = alarm[key]
    return guard
