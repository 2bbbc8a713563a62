"""ExecuteRepair: raise a function's memory, guarded, audited, and confirmed applied; and roll it back.

Rules: never lower memory (except to roll back our own change, or a trim the sweep proposed: ``trim``), never exceed ``maxMemory``, change only the
revision that was diagnosed (``RevisionId``), and confirm ``LastUpdateStatus == Successful``. A change that fails
halfway is undone. Every mutation has an audit entry before it and one after it (or one saying it failed).

When the failing traffic runs a published version through an alias, changing ``$LATEST`` alone fixes nothing:
with ``allowAliasUpdate`` the repair raises ``$LATEST``'s memory, publishes a version and moves the alias to it;
otherwise, or when that would ship more than the memory change, nothing is changed and the result lists the
exact steps for a human (``MANUAL_ACTION_REQUIRED``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import ClientError

from .accounts import PLACE_FIELDS, place_of
from .approvals import covers as approval_covers
from .clock import now_iso
from .deadline import Deadline
from .errors import AutoRepairError, error_code
from .outcomes import AuditPhase, DeliveryStatus, PolicyAction, RecordType, RepairStatus, StepAction, Verdict
from .policy import alias_update_allowed
from .records import AuditLog, IncidentStore
from .versions import ALIAS, VERSION, differences, drift_notice, iac_owner, manual_steps

if TYPE_CHECKING:
    from .workflow import Rollback, WorkflowContext


class RepairError(AutoRepairError, RuntimeError):
    """Base class for repair failures."""


class RepairFailedError(RepairError):
    """The change could not be made; the function is as it was (the audit says so)."""


class RepairRolledBackError(RepairError):
    """The change was applied but did not take; it was reverted."""


# Kept from the forward waits of a repair for undoing a half-applied change (update + wait) and its audit entries.
RESTORE_RESERVE_S = 30.0


def _message(exc: ClientError) -> str:
    return f"{error_code(exc)}: {exc.response.get('Error', {}).get('Message', '')}"


def wait_until_updated(
    lambda_client: Any,
    function_name: str,
    *,
    timeout_s: float = 120.0,
    poll_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    deadline: Deadline | None = None,
    keep_s: float = 0.0,
) -> dict[str, Any]:
    """Poll until LastUpdateStatus leaves InProgress. Returns the last configuration read."""
    limit = (deadline or Deadline.unlimited()).within(timeout_s, keep_s=keep_s)
    started = limit.clock()
    while True:
        config = lambda_client.get_function_configuration(FunctionName=function_name)
        if config.get("LastUpdateStatus", "Successful") != "InProgress":
            return config
        if limit.expired():
            raise RepairFailedError(f"{function_name}: update still InProgress after "
                                    f"{limit.clock() - started:.0f}s{limit.note()}")
        sleep(min(poll_s, limit.remaining()))


def wait_until_active(
    lambda_client: Any,
    function_name: str,
    version: str,
    *,
    timeout_s: float,
    poll_s: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    deadline: Deadline | None = None,
    keep_s: float = 0.0,
) -> dict[str, Any]:
    """Poll a published version until its State is Active (SnapStart versions are Pending while optimised)."""
    limit = (deadline or Deadline.unlimited()).within(timeout_s, keep_s=keep_s)
    started = limit.clock()
    while True:
        config = lambda_client.get_function_configuration(FunctionName=function_name, Qualifier=version)
        state = config.get("State", "Active")
        if state == "Active":
            return config
        if state == "Failed":
            raise RepairFailedError(f"{function_name}: version {version} failed to become active: "
                                    f"{config.get('StateReason', 'no reason given')}")
        if limit.expired():
            raise RepairFailedError(f"{function_name}: version {version} still {state} after "
                                    f"{limit.clock() - started:.0f}s{limit.note()}")
        sleep(min(poll_s, limit.remaining()))


class _Run:
    """One repair's clients, audit identity and timing, so the steps below stay short."""

    def __init__(self, request: dict[str, Any], lambda_client: Any, audit: AuditLog, actor: str, reason: str,
                 sleep: Callable[[float], None], update_timeout_s: float, publish_timeout_s: float,
                 deadline: Deadline | None = None) -> None:
        self.name = request["functionName"]
        # A member's function is audited under <account>:<region>:<function> (auto_repair.accounts.function_key).
        self.key = request.get("functionKey") or self.name
        self.place = {k: request[k] for k in PLACE_FIELDS if request.get(k)}
        self.execution_id = request.get("executionId", "")
        self.lam = lambda_client
        self.audit = audit
        self.actor = actor
        self.reason = reason
        self.sleep = sleep
        self.update_timeout_s = update_timeout_s
        self.publish_timeout_s = publish_timeout_s
        self.deadline = deadline or Deadline.unlimited()

    def record(self, phase: str, action: str, old: Any, new: Any, reason: str | None = None,
               details: dict[str, Any] | None = None) -> None:
        self.audit.record(function_name=self.key, execution_id=self.execution_id, phase=phase, action=action,
                          actor=self.actor, reason=reason or self.reason, old_value=old, new_value=new,
                          details=details, place=self.place)

    def wait(self, *, keep_s: float = RESTORE_RESERVE_S) -> dict[str, Any]:
        """Wait for $LATEST's update, keeping ``keep_s`` of the deadline (for a restore) unless restoring."""
        return wait_until_updated(self.lam, self.name, timeout_s=self.update_timeout_s, sleep=self.sleep,
                                  deadline=self.deadline, keep_s=keep_s)


def execute_repair(
    request: dict[str, Any],
    *,
    lambda_client: Any,
    audit: AuditLog,
    actor: str,
    reason: str,
    sleep: Callable[[float], None] = time.sleep,
    update_timeout_s: float = 120.0,
    publish_timeout_s: float = 150.0,
    deadline: Deadline | None = None,
) -> dict[str, Any]:
    """Apply the design's repair request; return the design's repair result (+ repairId, dryRun, times).

    ``deadline`` bounds every wait: forward steps stop ``RESTORE_RESERVE_S`` before it, so a change cut short can
    still be undone and audited, and the handler still returns inside its own timeout.

    Optional request keys: ``deployment`` (CollectMetricsAndLogs' description of the served version/alias),
    ``allowAliasUpdate``, ``tags`` (the function's tags: ``aws:cloudformation:*`` make the result carry ``iac``).
    """
    run = _Run(request, lambda_client, audit, actor, reason, sleep, update_timeout_s, publish_timeout_s, deadline)
    result: dict[str, Any] = {
        "repairId": request.get("repairId") or uuid.uuid4().hex,
        "functionName": run.name,
        **({"functionKey": run.key} if run.key != run.name else {}),
        **run.place,
        "executionId": run.execution_id,
        "diagnosisId": request.get("diagnosisId", ""),
        "startTime": now_iso(),
        "dryRun": bool(request.get("dryRun")),
    }
    deployment = request.get("deployment") or {}
    if deployment.get("kind") in (ALIAS, VERSION) and deployment.get("version") != "$LATEST":
        result = _repair_published(run, request, result, deployment)
    else:
        result = _repair_latest(run, request, result)
    owner = iac_owner(request.get("tags"))
    if owner and result["status"] in (RepairStatus.SUCCEEDED, RepairStatus.MANUAL_ACTION_REQUIRED):
        memory = result["newMemory"] if result["status"] == RepairStatus.SUCCEEDED else result["targetMemory"]
        result["iac"] = drift_notice(owner, memory)
    ended = now_iso()
    result.setdefault("timestamp", ended)
    result.setdefault("endTime", ended)
    return result


def _target(request: dict[str, Any]) -> int:
    return min(int(request["targetMemory"]), int(request.get("maxMemory") or 10240))


def _repair_latest(run: _Run, request: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    name = run.name
    try:
        config = run.wait()
    except ClientError as exc:
        raise RepairFailedError(f"{name}: cannot read configuration ({error_code(exc)}): no change made") from exc
    original = int(config["MemorySize"])
    target = _target(request)
    trim = bool(request.get("trim"))
    result.update(originalMemory=original, newMemory=original, revisionId=config.get("RevisionId", ""),
                  **({"trim": True} if trim else {}))
    if trim and target >= original:
        result.update(status=RepairStatus.SKIPPED, reason=f"memory is already {original} MB <= trim target {target} MB")
        return result
    known_bad = int(request.get("knownBad") or 0)
    if trim and target <= known_bad:
        # The sweep proposed the trim before the function died of memory at this size (or above it): re-read at
        # the moment of the change so no trim ever lands at a known-bad size.
        result.update(status=RepairStatus.SKIPPED, reason=f"trim target {target} MB is at or below the known-bad "
                                                          f"size of {known_bad} MB: not trimmed")
        return result
    if not trim and target <= original:
        # Someone (or an earlier repair) already raised it: lowering memory is never our business.
        result.update(status=RepairStatus.SKIPPED, reason=f"memory is already {original} MB >= target {target} MB")
        return result
    if result["dryRun"]:
        result.update(status=RepairStatus.DRY_RUN, newMemory=target, wouldChange={"MemorySize": [original, target]},
                      reason=f"dry run: would {'trim' if trim else 'raise'} memory {original} -> {target} MB")
        return result
    _check_revision(name, request.get("expectedRevisionId"), config.get("RevisionId"))

    final = _raise_latest(run, original, target, config.get("RevisionId"), details={"change": "TRIM"} if trim else None)
    result.update(status=RepairStatus.SUCCEEDED, newMemory=int(final.get("MemorySize", target)),
                  revisionId=final.get("RevisionId", ""), reason=run.reason)
    return result


def _check_revision(name: str, expected: str | None, current: str | None) -> None:
    if expected and expected != current:
        # The function changed since it was diagnosed; the diagnosis may no longer hold.
        raise RepairFailedError(
            f"{name}: configuration changed since diagnosis (revision {current} != {expected}): no change made"
        )


def _raise_latest(run: _Run, original: int, target: int, revision: str | None,
                  details: dict[str, Any] | None = None) -> dict[str, Any]:
    """Set $LATEST's memory to ``target`` (audited, guarded, confirmed). On a half-applied change: restore."""
    name = run.name
    run.record(AuditPhase.BEFORE, "UpdateFunctionConfiguration", {"MemorySize": original}, {"MemorySize": target},
               details={"revisionId": revision, **(details or {})})
    try:
        # A trim (target below) is done at exactly its target; a raise once the memory is at least the target.
        _update_memory(run, target, revision, done=lambda c: int(c["MemorySize"]) == target or (
            target > original and int(c["MemorySize"]) >= target))
    except ClientError as exc:
        run.record(AuditPhase.FAILED, "UpdateFunctionConfiguration", {"MemorySize": original}, {"MemorySize": original},
                   reason=_message(exc))
        raise RepairFailedError(f"{name}: UpdateFunctionConfiguration failed ({error_code(exc)}): no change made") from exc

    try:
        final = run.wait()
    except RepairError as exc:  # out of time (or patience) while Lambda applies it: say where it stands
        run.record(AuditPhase.FAILED, "UpdateFunctionConfiguration", {"MemorySize": original}, {"MemorySize": target},
                   reason=f"{exc}; the update was sent and may still complete at {target} MB")
        raise RepairFailedError(f"{name}: {exc}; the update to {target} MB was sent and may still complete: "
                                "see the audit log") from exc
    if final.get("LastUpdateStatus") == "Failed":
        why = final.get("LastUpdateStatusReason", "unknown reason")
        _restore(run, original, final, f"update failed: {why}")
        raise RepairRolledBackError(f"{name}: update to {target} MB failed ({why}); restored {original} MB")
    run.record(AuditPhase.AFTER, "UpdateFunctionConfiguration", {"MemorySize": original},
               {"MemorySize": int(final.get("MemorySize", target))},
               details={**(details or {}), "revisionId": final.get("RevisionId")})
    return final


def _update_memory(
    run: _Run, target: int, revision: str | None, *, done: Callable[[dict[str, Any]], bool], attempts: int = 5,
) -> dict[str, Any]:
    for attempt in range(attempts):
        kwargs: dict[str, Any] = {"FunctionName": run.name, "MemorySize": target}
        if revision:
            kwargs["RevisionId"] = revision
        try:
            return run.lam.update_function_configuration(**kwargs)
        except ClientError as exc:
            if error_code(exc) == "ResourceConflictException" and attempt < attempts - 1:
                # Another update is in progress: wait for it, then try again on the new revision.
                config = run.wait()
                if done(config):
                    return config
                revision = config.get("RevisionId")
                run.sleep(min(2**attempt, 8))
                continue
            raise
    raise RepairFailedError(f"{run.name}: gave up after {attempts} conflicting updates")


def _restore(run: _Run, original: int, current: dict[str, Any], why: str) -> None:
    """Put $LATEST's memory back after a change that did not take; audited either way."""
    changed = int(current.get("MemorySize", original))
    try:
        _update_memory(run, original, current.get("RevisionId"), done=lambda c: int(c["MemorySize"]) == original)
        restored = run.wait(keep_s=0.0)
    except (ClientError, RepairError) as exc:
        detail = _message(exc) if isinstance(exc, ClientError) else str(exc)
        run.record(AuditPhase.FAILED, "UpdateFunctionConfiguration", {"MemorySize": changed}, {"MemorySize": changed},
                   reason=f"{why}; restoring {original} MB failed: {detail}")
        raise RepairFailedError(f"{run.name}: {why}; restoring {original} MB failed ({detail}): the function may "
                                f"be at {changed} MB, see the audit log") from exc
    run.record(AuditPhase.ROLLED_BACK, "UpdateFunctionConfiguration", {"MemorySize": changed},
               {"MemorySize": int(restored.get("MemorySize", original))}, reason=why)


# ---------------------------------------------------------------------------------------------------------------
# Published versions and aliases
# ---------------------------------------------------------------------------------------------------------------


def _provisioned_configs(run: _Run) -> tuple[list[dict[str, Any]], str | None]:
    try:
        configs = run.lam.list_provisioned_concurrency_configs(FunctionName=run.name).get(
            "ProvisionedConcurrencyConfigs", [])
    except ClientError as exc:
        return [], error_code(exc)
    return [{"qualifier": c.get("FunctionArn", "").rsplit(":", 1)[-1],
             "requested": c.get("RequestedProvisionedConcurrentExecutions"), "status": c.get("Status")}
            for c in configs], None


def _repair_published(
    run: _Run, request: dict[str, Any], result: dict[str, Any], deployment: dict[str, Any]
) -> dict[str, Any]:
    name = run.name
    kind = deployment["kind"]
    alias_name = deployment.get("qualifier") if kind == ALIAS else None
    try:
        alias = run.lam.get_alias(FunctionName=name, Name=alias_name) if alias_name else None
        version = str(alias["FunctionVersion"]) if alias else str(deployment.get("version") or "")
        served = run.lam.get_function_configuration(FunctionName=name, Qualifier=version)
        latest = run.wait()
    except ClientError as exc:
        raise RepairFailedError(f"{name}: cannot read {alias_name or deployment.get('version')} ({error_code(exc)}): "
                                "no change made") from exc
    original = int(served["MemorySize"])
    target = _target(request)
    snap_start = (served.get("SnapStart") or {}).get("ApplyOn") == "PublishedVersions"
    result.update(originalMemory=original, newMemory=original, targetMemory=target,
                  revisionId=latest.get("RevisionId", ""),
                  deployment={"kind": kind, "alias": alias_name, "version": version,
                              "packageType": served.get("PackageType", "Zip"), "snapStart": snap_start})
    if request.get("trim"):  # trims settle $LATEST only; a served version is published by a raise
        result.update(status=RepairStatus.SKIPPED, reason=f"the traffic runs version {version}: trims apply to "
                                                          "$LATEST only, left alone")
        return result
    if target <= original:
        result.update(status=RepairStatus.SKIPPED, reason=f"version {version} already has {original} MB >= target {target} MB")
        return result
    if alias and deployment.get("version") and str(deployment["version"]) != version:
        raise RepairFailedError(f"{name}: alias {alias_name} moved from version {deployment['version']} to {version} "
                                "since diagnosis: no change made")

    provisioned, pc_error = _provisioned_configs(run)
    blockers: list[str] = []
    if not request.get("allowAliasUpdate"):
        blockers.append("publishing versions and moving aliases is not allowed here (AllowAliasUpdate=false or tag "
                        "auto-repair:alias-update=false)")
    if kind == VERSION:
        blockers.append(f"the failing invocations call version {version} directly"
                        + (f" (aliases {', '.join(deployment.get('aliases') or [])} also serve it)"
                           if len(deployment.get("aliases") or []) > 1 else "")
                        + "; only their callers can switch to a new version")
    weights = (alias or {}).get("RoutingConfig", {}).get("AdditionalVersionWeights") or {}
    if weights:
        blockers.append(f"alias {alias_name} splits traffic ({', '.join(f'{v}: {w:.0%}' for v, w in weights.items())}"
                        "): a weighted rollout is in progress")
    diffs = differences(latest, served)
    if diffs:
        blockers.append(f"$LATEST differs from version {version} in {', '.join(diffs)}: publishing it would ship "
                        "those changes too")
    on_version = [c for c in provisioned if c["qualifier"] == version]
    if on_version:
        blockers.append(f"provisioned concurrency ({on_version[0]['requested']}) is configured on version {version} "
                        "itself; a new version would start without it")
    if blockers:
        result.update(
            status=RepairStatus.MANUAL_ACTION_REQUIRED, reason="; ".join(blockers),
            manualSteps=manual_steps(name, target, alias=alias_name, version=version, provisioned=provisioned,
                                     snap_start=snap_start, owner=iac_owner(request.get("tags"))),
            provisionedConcurrency=provisioned, **({"warnings": [f"provisioned concurrency unknown: {pc_error}"]}
                                                   if pc_error else {}))
        return result
    if result["dryRun"]:
        result.update(status=RepairStatus.DRY_RUN, newMemory=target, wouldChange={"MemorySize": [original, target]},
                      reason=f"dry run: would raise memory {original} -> {target} MB, publish a version and move "
                             f"alias {alias_name} to it")
        return result
    _check_revision(name, request.get("expectedRevisionId"), latest.get("RevisionId"))

    assert alias is not None and alias_name  # a VERSION deployment always has a blocker above
    plan = {"alias": alias_name, "fromVersion": version}
    latest_original = int(latest["MemorySize"])
    updated = _raise_latest(run, latest_original, target, latest.get("RevisionId"), details=plan)
    try:
        new_version = _publish(run, served, updated, original, target, snap_start, alias_name)
    except (ClientError, RepairError) as exc:
        _restore(run, latest_original, run.wait(keep_s=0.0), f"publishing the new version failed: {exc}")
        raise RepairRolledBackError(f"{name}: publishing a version with {target} MB failed ({exc}); alias "
                                    f"{alias_name} not moved, $LATEST restored to {latest_original} MB") from exc
    moved = _move_alias(run, alias_name, version, new_version, alias.get("RevisionId"), latest_original)
    warnings = [f"provisioned concurrency unknown: {pc_error}"] if pc_error else []
    pc_status = _await_provisioned(run, alias_name, provisioned, warnings)
    latest_now = run.lam.get_function_configuration(FunctionName=name)
    result.update(
        status=RepairStatus.SUCCEEDED, newMemory=target, reason=run.reason, revisionId=latest_now.get("RevisionId", ""),
        publishedVersion=new_version, latestOriginalMemory=latest_original,
        alias={"name": alias_name, "previousVersion": version, "newVersion": new_version,
               "revisionId": moved.get("RevisionId", "")},
        **({"provisionedConcurrency": pc_status} if pc_status else {}), **({"warnings": warnings} if warnings else {}))
    return result


def _publish(run: _Run, served: dict[str, Any], updated: dict[str, Any], original: int, target: int,
             snap_start: bool, alias: str) -> str:
    run.record(AuditPhase.BEFORE, "PublishVersion", {"MemorySize": original}, {"MemorySize": target},
               details={"codeSha256": served.get("CodeSha256"), "snapStart": snap_start})
    kwargs: dict[str, Any] = {"FunctionName": run.name,
                              "Description": f"lambda-auto-repair {run.execution_id}: memory {original}->{target} MB"[:256]}
    if served.get("CodeSha256"):
        kwargs["CodeSha256"] = served["CodeSha256"]  # the served code, nothing newer
    if updated.get("RevisionId"):
        kwargs["RevisionId"] = updated["RevisionId"]
    new_version = None
    try:
        published = run.lam.publish_version(**kwargs)
        new_version = str(published["Version"])
        # SnapStart optimises a new version before it can serve; Lambda refuses to route an alias to it meanwhile.
        wait_until_active(run.lam, run.name, new_version, timeout_s=run.publish_timeout_s, sleep=run.sleep,
                          deadline=run.deadline, keep_s=RESTORE_RESERVE_S)
    except (ClientError, RepairError) as exc:
        why = _message(exc) if isinstance(exc, ClientError) else str(exc)
        if new_version and isinstance(exc, RepairError):
            # The version exists and has the new memory; only the alias move is left to a human.
            why += (f"; it keeps its {target} MB: once it is Active, run aws lambda update-alias --function-name "
                    f"{run.name} --name {alias} --function-version {new_version}")
        run.record(AuditPhase.FAILED, "PublishVersion", {"MemorySize": original}, {"MemorySize": original}, reason=why)
        raise RepairFailedError(why) from exc
    run.record(AuditPhase.AFTER, "PublishVersion", {"MemorySize": original}, {"MemorySize": target, "Version": new_version})
    return new_version


def _move_alias(run: _Run, alias: str, old: str, new: str, revision: str | None, latest_original: int
                ) -> dict[str, Any]:
    run.record(AuditPhase.BEFORE, "UpdateAlias", {"alias": alias, "FunctionVersion": old},
               {"alias": alias, "FunctionVersion": new}, details={"revisionId": revision})
    kwargs: dict[str, Any] = {"FunctionName": run.name, "Name": alias, "FunctionVersion": new}
    if revision:
        kwargs["RevisionId"] = revision
    try:
        moved = run.lam.update_alias(**kwargs)
    except ClientError as exc:
        run.record(AuditPhase.FAILED, "UpdateAlias", {"alias": alias, "FunctionVersion": old},
                   {"alias": alias, "FunctionVersion": old}, reason=_message(exc))
        _restore(run, latest_original, run.wait(keep_s=0.0), f"moving alias {alias} failed ({error_code(exc)})")
        raise RepairRolledBackError(f"{run.name}: moving alias {alias} to version {new} failed ({error_code(exc)}); "
                                    f"alias still on {old}, $LATEST restored (version {new} stays, unused)") from exc
    run.record(AuditPhase.AFTER, "UpdateAlias", {"alias": alias, "FunctionVersion": old},
               {"alias": alias, "FunctionVersion": new}, details={"revisionId": moved.get("RevisionId")})
    return moved


def _await_provisioned(run: _Run, alias: str, provisioned: list[dict[str, Any]], warnings: list[str],
                       timeout_s: float = 30.0) -> dict[str, Any] | None:
    """Provisioned concurrency on the alias follows it to the new version; report whether it is READY yet."""
    if not any(c["qualifier"] == alias for c in provisioned):
        return None
    # The alias has moved: running out of time here only leaves the status unconfirmed, nothing to undo.
    limit = run.deadline.within(timeout_s)
    while True:
        try:
            config = run.lam.get_provisioned_concurrency_config(FunctionName=run.name, Qualifier=alias)
        except ClientError as exc:
            warnings.append(f"provisioned concurrency on {alias}: {error_code(exc)}")
            return {"qualifier": alias, "status": "UNKNOWN"}
        status = config.get("Status")
        if status != "IN_PROGRESS" or limit.expired():
            view = {"qualifier": alias, "status": status,
                    "requested": config.get("RequestedProvisionedConcurrentExecutions"),
                    "allocated": config.get("AllocatedProvisionedConcurrentExecutions")}
            if status != "READY":
                warnings.append(f"provisioned concurrency on alias {alias} is {status} on the new version "
                                f"({view['allocated']}/{view['requested']} allocated): cold starts until READY")
            return view
        run.sleep(min(2.0, limit.remaining()))


# ---------------------------------------------------------------------------------------------------------------
# The workflow's repair request
# ---------------------------------------------------------------------------------------------------------------


def next_step_target(workflow: WorkflowContext) -> tuple[int, int, int] | None:
    """(step number, current memory, target) when this run of ExecuteRepair is a further step of the incident
    (VerifyRepair's controller said STEP_UP and the state machine looped back), else None (the first step)."""
    step = (workflow.get("verification") or {}).get("step") or {}
    repair = workflow.get("repair") or {}
    if step.get("action") != StepAction.STEP_UP or not step.get("targetMemory"):
        return None
    return int(repair.get("step") or 1) + 1, int(repair["newMemory"]), int(step["targetMemory"])


def build_request(workflow: WorkflowContext, execution_id: str, *, max_memory: int,
                  allow_alias_update: bool) -> dict[str, Any]:
    """The design's repair request. The memory value comes from the decision (the first step) or the controller
    (later steps), never from the approval, which must cover it."""
    alarm = workflow["alarm"]
    diagnosis = workflow["diagnosisResult"]
    decision = diagnosis["decision"]
    evidence = workflow.get("evidence") or {}
    function = evidence.get("function") or {}
    deployment = dict(evidence.get("deployment") or {})
    step, current, target = 1, int(decision["currentMemory"]), int(decision["targetMemory"])
    revision = function.get("revisionId")
    further = next_step_target(workflow)
    if further:
        step, current, target = further
        previous = workflow["repair"]
        # The function as the previous step left it: its revision, and the version its alias now serves.
        revision = previous.get("revisionId") or revision
        if (previous.get("alias") or {}).get("newVersion"):
            deployment.update(version=previous["alias"]["newVersion"], memorySize=current)
    approval = workflow.get("approval")
    if approval is not None and not approval_covers(approval, target):
        raise RepairFailedError(
            f"approval pinned {approval.get('targetMemory')} MB (ceiling {approval.get('ceilingMemory')}) but the "
            f"step is {target} MB: refusing to apply a change nobody approved"
        )
    policy = alarm.get("settings")
    tags = function.get("tags") or {}
    return {
        "functionName": alarm["functionName"],
        **place_of(alarm),
        "memoryIncrease": target - current,
        "maxMemory": int(policy["maxMemory"] if policy and "maxMemory" in policy else max_memory),
        "dryRun": bool(decision.get("dryRun")) or decision.get("action") == PolicyAction.DRY_RUN,
        "targetMemory": target,
        "currentMemory": current,
        "step": step,
        "executionId": execution_id,
        "diagnosisId": diagnosis.get("diagnosisId", ""),
        "expectedRevisionId": revision,
        # Versions/aliases and IaC ownership (auto_repair.versions); a tag can only narrow AllowAliasUpdate.
        "deployment": deployment,
        "tags": tags,
        "allowAliasUpdate": alias_update_allowed(allow_alias_update, tags),
        # A trim (auto_repair.settle) is the one decision that may lower the memory.
        **({"trim": True} if decision.get("trim") else {}),
    }


def repair_reason(workflow: WorkflowContext) -> str:
    """Why the change is made, for the audit entries: the diagnosis (or the step), the decision, who approved it."""
    diagnosis = workflow["diagnosisResult"]
    reason = (f"{diagnosis.get('cause')} (confidence {diagnosis.get('confidence')}): "
              f"{diagnosis['decision'].get('reason')}")
    if next_step_target(workflow):
        reason = f"step-up: {(workflow.get('verification') or {}).get('step', {}).get('reason')}; first: {reason}"
    approval = workflow.get("approval") or {}
    if approval.get("approvedBy"):
        reason += f"; approved by {approval['approvedBy']}"
    return reason


def failed_record(workflow: WorkflowContext, execution_id: str, exc: Exception, *, started: str) -> dict[str, Any]:
    """The REPAIR record of a repair that raised: the function keeps the memory it had."""
    diagnosis = workflow["diagnosisResult"]
    further = next_step_target(workflow)
    step, current = (further[0], further[1]) if further else (1, diagnosis["decision"].get("currentMemory"))
    return {
        "repairId": "", "functionName": workflow["alarm"]["functionName"], "executionId": execution_id,
        "diagnosisId": diagnosis.get("diagnosisId", ""), "startTime": started, "endTime": now_iso(), "step": step,
        "originalMemory": current, "newMemory": current, "status": RepairStatus.FAILED, "error": str(exc),
        "verificationStatus": Verdict.NOT_RUN, "notificationStatus": DeliveryStatus.PENDING,
    }


# ---------------------------------------------------------------------------------------------------------------
# Rollback
# ---------------------------------------------------------------------------------------------------------------


def rollback_run(workflow: WorkflowContext, execution_id: str, *, store: IncidentStore, lambda_client: Any,
                 audit: AuditLog, paused: bool, paused_parameter: str, actor: str,
                 deadline: Deadline | None = None, known_bad: int | None = None) -> Rollback:
    """RollbackRepair: verification (the step-up controller) said to restore an earlier size: the original, or the
    best size reached (``$.verification.restoreTo``). Never to a size at or below ``known_bad`` (a fresh size the
    function was seen to die of memory at): that is kept as it is and said so. Paused (the kill switch) means hands
    off, rollbacks included: the record says where the function was left. A failed rollback is recorded, then
    re-raised for the workflow's failure path."""
    repair, verification = workflow["repair"], workflow.get("verification") or {}
    reason = (f"rollback: verification {verification.get('status')} - "
              f"{verification.get('rollbackReason') or verification.get('reason')}")
    target = int(verification.get("restoreTo") or repair.get("originalMemory") or 0)
    started = now_iso()
    result: Rollback
    refused = (f"rollback not done: repairs are paused ({paused_parameter})" if paused else
               f"not rolled back to {target} MB: the function died of memory at {known_bad} MB recently (known-bad "
               f"size); kept {repair.get('newMemory')} MB" if known_bad and target <= known_bad else "")
    if refused:
        result = {"functionName": repair["functionName"], "executionId": execution_id,
                  "status": RepairStatus.PAUSED if paused else RepairStatus.SKIPPED, "startTime": started,
                  "endTime": now_iso(), "fromMemory": repair.get("newMemory"), "restoredMemory": None,
                  "reason": refused}
        store.put(execution_id, RecordType.ROLLBACK, dict(result))
        return result
    version = (verification.get("versions") or {}).get(str(target))
    try:
        restored = rollback_repair(dict(repair), lambda_client=lambda_client, audit=audit, actor=actor, reason=reason,
                                   deadline=deadline, restore_to=target, restore_version=version)
    except RepairError as exc:
        store.put(execution_id, RecordType.ROLLBACK, {
            "functionName": repair["functionName"], "executionId": execution_id, "status": RepairStatus.FAILED,
            "startTime": started, "endTime": now_iso(), "fromMemory": repair.get("newMemory"), "error": str(exc)})
        raise
    store.put(execution_id, RecordType.ROLLBACK, restored)
    return cast("Rollback", restored)


def rollback_repair(
    repair: dict[str, Any],
    *,
    lambda_client: Any,
    audit: AuditLog,
    actor: str,
    reason: str,
    sleep: Callable[[float], None] = time.sleep,
    update_timeout_s: float = 120.0,
    deadline: Deadline | None = None,
    restore_to: int | None = None,
    restore_version: str | None = None,
) -> dict[str, Any]:
    """Undo a SUCCEEDED repair: move the alias back, or restore $LATEST's memory. Guarded by the revisions the
    repair left behind: if anyone changed the function since, nothing is touched and RepairFailedError says so.

    ``restore_to`` (default: the repair's original memory) is an earlier step's size when the incident stepped
    up more than once; behind an alias, ``restore_version`` is the version that had it."""
    if repair.get("status") != RepairStatus.SUCCEEDED:
        raise RepairFailedError(f"nothing to roll back: the repair's status is {repair.get('status')}")
    run = _Run(repair, lambda_client, audit, actor, reason, sleep, update_timeout_s, 0.0, deadline)
    applied = int(repair["newMemory"])
    original = int(restore_to or repair["originalMemory"])
    result: dict[str, Any] = {"repairId": repair.get("repairId", ""), "functionName": run.name,
                              "executionId": run.execution_id, "startTime": now_iso(), "fromMemory": applied,
                              "restoredMemory": original, "reason": reason}
    warnings: list[str] = []
    alias = repair.get("alias")
    if alias:
        alias = {**alias, "previousVersion": restore_version or alias["previousVersion"]}
        _rollback_alias(run, alias)
        result["alias"] = {"name": alias["name"], "restoredVersion": alias["previousVersion"],
                           "abandonedVersion": alias["newVersion"]}
        latest_original = repair.get("latestOriginalMemory") if original == int(repair["originalMemory"]) else original
        if latest_original is not None and int(latest_original) != applied:
            try:
                _rollback_latest(run, applied, int(latest_original), repair.get("revisionId"))
            except RepairError as exc:
                # The alias (what serves traffic) is back; $LATEST keeping the raised memory is only drift.
                warnings.append(f"$LATEST not restored: {exc}")
    else:
        _rollback_latest(run, applied, original, repair.get("revisionId"))
    ended = now_iso()
    result.update(status=RepairStatus.ROLLED_BACK, endTime=ended, timestamp=ended, **({"warnings": warnings} if warnings else {}))
    return result


def _rollback_alias(run: _Run, alias: dict[str, Any]) -> None:
    name, old, new = alias["name"], alias["previousVersion"], alias["newVersion"]
    before, after = {"alias": name, "FunctionVersion": new}, {"alias": name, "FunctionVersion": old}
    try:
        current = run.lam.get_alias(FunctionName=run.name, Name=name)
    except ClientError as exc:
        run.record(AuditPhase.ROLLBACK_FAILED, "UpdateAlias", before, before, reason=f"{run.reason}; {_message(exc)}")
        raise RepairFailedError(f"{run.name}: cannot read alias {name} ({error_code(exc)}): not rolled back") from exc
    if str(current["FunctionVersion"]) == str(old):
        return  # already back (a retried rollback whose first attempt got this far)
    if str(current["FunctionVersion"]) != str(new):
        run.record(AuditPhase.ROLLBACK_FAILED, "UpdateAlias", before, before,
                   reason=f"{run.reason}; alias {name} now points at {current['FunctionVersion']}, not {new}: "
                          "someone changed it, left alone")
        raise RepairFailedError(f"{run.name}: alias {name} moved to version {current['FunctionVersion']} since the "
                                "repair: not rolled back")
    run.record(AuditPhase.ROLLBACK_STARTED, "UpdateAlias", before, after, details={"revisionId": alias.get("revisionId")})
    kwargs: dict[str, Any] = {"FunctionName": run.name, "Name": name, "FunctionVersion": old}
    if alias.get("revisionId"):
        kwargs["RevisionId"] = alias["revisionId"]
    try:
        run.lam.update_alias(**kwargs)
    except ClientError as exc:
        run.record(AuditPhase.ROLLBACK_FAILED, "UpdateAlias", before, before, reason=f"{run.reason}; {_message(exc)}")
        raise RepairFailedError(f"{run.name}: moving alias {name} back to {old} failed ({error_code(exc)})") from exc
    run.record(AuditPhase.ROLLED_BACK, "UpdateAlias", before, after)


def _rollback_latest(run: _Run, applied: int, original: int, revision: str | None) -> None:
    before, after = {"MemorySize": applied}, {"MemorySize": original}
    try:
        config = run.wait()
    except ClientError as exc:
        run.record(AuditPhase.ROLLBACK_FAILED, "UpdateFunctionConfiguration", before, before,
                   reason=f"{run.reason}; {_message(exc)}")
        raise RepairFailedError(f"{run.name}: cannot read configuration ({error_code(exc)}): not rolled back") from exc
    current = int(config["MemorySize"])
    if current == original:
        return  # already back (a retried rollback, or someone restored it by hand): nothing to do
    if current != applied or (revision and config.get("RevisionId") != revision):
        run.record(AuditPhase.ROLLBACK_FAILED, "UpdateFunctionConfiguration", {"MemorySize": current}, {"MemorySize": current},
                   reason=f"{run.reason}; the function changed since the repair (memory {current} MB, revision "
                          f"{config.get('RevisionId')}): left alone")
        raise RepairFailedError(f"{run.name}: changed since the repair (memory {current} MB): not rolled back")
    run.record(AuditPhase.ROLLBACK_STARTED, "UpdateFunctionConfiguration", before, after,
               details={"revisionId": config.get("RevisionId")})
    try:
        _update_memory(run, original, config.get("RevisionId"), done=lambda c: int(c["MemorySize"]) == original)
        final = run.wait()
    except (ClientError, RepairError) as exc:
        detail = _message(exc) if isinstance(exc, ClientError) else str(exc)
        run.record(AuditPhase.ROLLBACK_FAILED, "UpdateFunctionConfiguration", before, before, reason=f"{run.reason}; {detail}")
        raise RepairFailedError(f"{run.name}: restoring {original} MB failed ({detail})") from exc
    if final.get("LastUpdateStatus") == "Failed" or int(final.get("MemorySize", -1)) != original:
        run.record(AuditPhase.ROLLBACK_FAILED, "UpdateFunctionConfiguration", before,
                   {"MemorySize": int(final.get("MemorySize", -1))},
                   reason=f"{run.reason}; {final.get('LastUpdateStatusReason', 'memory not restored')}")
        raise RepairFailedError(f"{run.name}: restoring {original} MB did not take "
                                f"({final.get('LastUpdateStatusReason', 'memory not restored')})")
    run.record(AuditPhase.ROLLED_BACK, "UpdateFunctionConfiguration", before, after,
               details={"revisionId": final.get("RevisionId")})
