"""The environment's policy, tightened (never loosened) per function by tags, and DetermineAction: what the
workflow may do with a diagnosis. Pure code.

The diagnosis says what is wrong; the policy says what we are allowed to do about it in this environment.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from auto_repair.outcomes import PolicyAction
from auto_repair.sizing import ONE_VCPU_MB

if TYPE_CHECKING:
    from auto_repair.settings import Settings
    from auto_repair.workflow import Policy

TAG_PREFIX = "auto-repair:"
# auto-repair:alias-update=<one of these> withdraws the environment's AllowAliasUpdate for one function.
ALIAS_UPDATE_DENIED = ("false", "deny", "no")
ALIAS_UPDATE_GRANTS = ("true", "allow", "yes")
# Where from_tags lists the tags it did not apply (the incident's ALARM record and every notice carry it).
IGNORED_TAGS = "ignoredTags"
LOOSENS = "loosens the environment's policy; tags may only tighten it"

LAMBDA_MIN_MB = 128
LAMBDA_MAX_MB = 10240


def _policy_tags(tags: Mapping[str, str]) -> Iterator[tuple[str, str, str]]:
    """(tag key, name after the prefix, normalised value) of each ``auto-repair:*`` tag."""
    for key, value in tags.items():
        if key.startswith(TAG_PREFIX):
            yield key, key[len(TAG_PREFIX):], str(value).strip().lower()


def _flag(value: str, on: str, off: str, current: bool) -> tuple[bool | None, str]:
    """A yes/no tag that may only switch a guard on: (new value or None, why not applied)."""
    if value not in (on, off):
        return None, f"malformed: expected {on} or {off}"
    if value == off and current:
        return None, LOOSENS
    return current or value == on, ""


def _min_confidence(value: str, current: float) -> tuple[float | None, str]:
    try:
        number = float(value)
    except ValueError:
        return None, "malformed: expected a number in [0, 1]"
    if not math.isfinite(number):
        return None, "malformed: expected a number in [0, 1]"
    if number < current:
        return None, f"{LOOSENS} (below the environment's {current:g})"
    return min(1.0, number), ""  # above 1 no diagnosis ever qualifies: the tightest bar


def _max_memory(value: str, current: int) -> tuple[int | None, str]:
    if not value.isdigit():
        return None, "malformed: expected a whole number of MB"
    if int(value) > current:
        return None, f"{LOOSENS} (above the environment's MaxMemory {current} MB)"
    return int(value), ""


def _alias_update(value: str, allowed: bool) -> tuple[bool | None, str]:
    if value in ALIAS_UPDATE_DENIED:
        return False, ""
    if value in ALIAS_UPDATE_GRANTS:
        return (None, LOOSENS + " (AllowAliasUpdate is false)") if not allowed else (allowed, "")
    return None, "malformed: expected false or true"


def from_tags(settings: Settings, tags: Mapping[str, str]) -> Policy:
    """The environment's policy, tightened per function by ``auto-repair:*`` tags.

    A function's owner can never grant their function more than the environment allows: approval can only be
    added, dry run only switched on, the confidence bar only raised, the memory ceiling only lowered, alias updates
    only turned off. A tag that would loosen the policy, or that cannot be read, is not applied: it is listed in
    ``ignoredTags`` ({tag key: why}), which the incident's ALARM record and every notice carry. Tags that are not
    policy tags (``auto-repair:<env>`` scope tags, ``auto-repair:managed-by``) are left to their own readers.
    """
    policy: Policy = {
        "environment": settings.environment,
        "approvalRequired": settings.approval_required,
        "dryRun": settings.dry_run,
        "maxMemory": settings.max_memory_mb,
        "minConfidence": settings.min_confidence,
        "overrides": {},
        "ignoredTags": {},
    }
    for key, name, value in _policy_tags(tags):
        applied: bool | float | int | None
        if name == "dry-run":
            applied, why = _flag(value, "true", "false", policy["dryRun"])
            field = "dryRun"
        elif name == "approval":
            applied, why = _flag(value, "required", "none", policy["approvalRequired"])
            field = "approvalRequired"
        elif name == "min-confidence":
            applied, why = _min_confidence(value, settings.min_confidence)
            field = "minConfidence"
        elif name == "max-memory":
            applied, why = _max_memory(value, settings.max_memory_mb)
            field = "maxMemory"
        elif name == "alias-update":
            applied, why = _alias_update(value, settings.allow_alias_update)
            field = ""  # applied by ExecuteRepair (alias_update_allowed); recorded here so the notice names it
        else:
            continue
        if applied is None:
            policy["ignoredTags"][key] = f"{str(tags[key])[:64]!r} ignored: {why}"
            continue
        if field:
            policy[field] = applied  # type: ignore[literal-required]
        policy["overrides"][key] = value
    return policy


def ignored_tags(policy: Mapping[str, Any] | None) -> dict[str, str]:
    """The tags a run's policy did not apply, {key: why} (empty for contexts from before the field existed)."""
    found = (policy or {}).get(IGNORED_TAGS)
    return dict(found) if isinstance(found, Mapping) else {}


def alias_update_allowed(allowed: bool, tags: Mapping[str, str]) -> bool:
    """AllowAliasUpdate for one function: a tag can only withdraw it, never grant it."""
    return allowed and all(value not in ALIAS_UPDATE_DENIED for _, name, value in _policy_tags(tags)
                           if name == "alias-update")


def decide(
    diagnosis: dict[str, Any],
    *,
    current_memory: int,
    max_memory: int,
    min_confidence: float,
    dry_run: bool,
    approval_required: bool,
    probe_cpu_starvation: bool = False,
) -> dict[str, Any]:
    """Return ``{action, reason, currentMemory, targetMemory, approvalRequired}`` (+ ``probe`` for a CPU probe)."""
    max_memory = max(LAMBDA_MIN_MB, min(int(max_memory), LAMBDA_MAX_MB))
    decision: dict[str, Any] = {
        "currentMemory": int(current_memory),
        "targetMemory": int(current_memory),
        "approvalRequired": False,
        "dryRun": bool(dry_run),
    }
    confidence = float(diagnosis.get("confidence") or 0.0)
    if diagnosis.get("error"):
        return {**decision, "action": PolicyAction.HUMAN_REVIEW, "reason": f"no diagnosis: {diagnosis['error']}"}
    alternative = diagnosis.get("alternativeCause")
    if not diagnosis.get("isMemoryIssue") and isinstance(alternative, dict) and alternative.get(
            "cause") == "cpu_starvation":
        return _cpu_probe(decision, diagnosis, alternative, max_memory=max_memory, enabled=probe_cpu_starvation,
                          dry_run=dry_run, approval_required=approval_required)
    if not diagnosis.get("isMemoryIssue"):
        cause = diagnosis.get("cause") or "not a memory issue"
        return {**decision, "action": PolicyAction.NO_ACTION, "reason": f"diagnosis: {cause}; memory is not the cause"}
    if confidence < min_confidence:
        return {
            **decision,
            "action": PolicyAction.HUMAN_REVIEW,
            "reason": f"confidence {confidence:.2f} is below the minimum {min_confidence:.2f}",
        }
    recommended = diagnosis.get("recommendedMemorySize")
    if not isinstance(recommended, (int, float)) or isinstance(recommended, bool):
        increase = diagnosis.get("recommendedMemoryIncrease") or 0
        recommended = current_memory + (increase if isinstance(increase, (int, float)) else 0)
    target = min(int(recommended), max_memory)
    if target <= current_memory:
        why = (
            f"the function already has {current_memory} MB, the maximum this environment allows is {max_memory} MB"
            if current_memory >= max_memory
            else f"the recommendation ({int(recommended)} MB) does not raise memory above {current_memory} MB"
        )
        return {**decision, "action": PolicyAction.HUMAN_REVIEW, "reason": f"memory issue, but {why}"}
    decision["targetMemory"] = target
    if dry_run:
        return {**decision, "action": PolicyAction.DRY_RUN, "reason": f"dry run: would raise memory {current_memory} -> {target} MB"}
    decision["approvalRequired"] = bool(approval_required)
    return {**decision, "action": PolicyAction.REPAIR, "reason": f"raise memory {current_memory} -> {target} MB"}


def _cpu_probe(decision: dict[str, Any], diagnosis: Mapping[str, Any], alternative: Mapping[str, Any], *,
               max_memory: int, enabled: bool, dry_run: bool, approval_required: bool) -> dict[str, Any]:
    """A hung dependency or CPU starvation (every invocation timed out at low memory use): a human decides, or,
    with ProbeCpuStarvation, one step toward one vCPU that verification keeps only if the function improves.

    Not held to MinConfidence: the diagnosis is confident only that it cannot tell; the probe is how to tell."""
    current = decision["currentMemory"]
    ambiguous = (f"diagnosis: {diagnosis.get('cause') or 'a hung dependency'} or CPU starvation (every invocation "
                 "timed out at low memory use, no error line)")
    if not enabled:
        return {**decision, "action": PolicyAction.HUMAN_REVIEW,
                "reason": f"{ambiguous}; ProbeCpuStarvation is off, so a human must tell them apart"}
    probe = alternative.get("probeMemorySize")
    target = min(int(probe), max_memory, ONE_VCPU_MB) if isinstance(probe, int) and not isinstance(probe, bool) \
        else current
    if target <= current:
        return {**decision, "action": PolicyAction.HUMAN_REVIEW,
                "reason": f"{ambiguous}; no probe: one vCPU ({ONE_VCPU_MB} MB, capped at {max_memory} MB) is not "
                          f"above {current} MB"}
    decision.update(targetMemory=target, probe="cpu_starvation")
    step = (f"probe for CPU starvation, {ambiguous}: raise memory {current} -> {target} MB (toward one vCPU) once; "
            "verification rolls it back if nothing improves")
    if dry_run:
        return {**decision, "action": PolicyAction.DRY_RUN, "reason": f"dry run: would {step}"}
    decision["approvalRequired"] = bool(approval_required)
    return {**decision, "action": PolicyAction.REPAIR, "reason": step}
