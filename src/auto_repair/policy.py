"""The environment's policy, narrowed per function by tags, and DetermineAction: what the workflow may do with a
diagnosis. Pure code.

The diagnosis says what is wrong; the policy says what we are allowed to do about it in this environment.
"""

from __future__ import annotations

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

LAMBDA_MIN_MB = 128
LAMBDA_MAX_MB = 10240


def _policy_tags(tags: Mapping[str, str]) -> Iterator[tuple[str, str, str]]:
    """(tag key, name after the prefix, normalised value) of each ``auto-repair:*`` tag."""
    for key, value in tags.items():
        if key.startswith(TAG_PREFIX):
            yield key, key[len(TAG_PREFIX):], value.strip().lower()


def from_tags(settings: Settings, tags: Mapping[str, str]) -> Policy:
    """The environment's policy, narrowed per function by ``auto-repair:*`` tags (never widened past MaxMemory)."""
    policy: Policy = {
        "environment": settings.environment,
        "approvalRequired": settings.approval_required,
        "dryRun": settings.dry_run,
        "maxMemory": settings.max_memory_mb,
        "minConfidence": settings.min_confidence,
        "overrides": {},
    }
    for key, name, value in _policy_tags(tags):
        if name == "dry-run" and value in ("true", "false"):
            policy["dryRun"] = value == "true"
        elif name == "approval" and value in ("required", "none"):
            policy["approvalRequired"] = value == "required"
        elif name == "min-confidence":
            try:
                policy["minConfidence"] = min(1.0, max(0.0, float(value)))
            except ValueError:
                continue
        elif name == "max-memory" and value.isdigit():
            policy["maxMemory"] = min(settings.max_memory_mb, int(value))
        else:
            continue
        policy["overrides"][key] = value
    return policy


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
