"""ExecuteRepair: raise a function's memory, guarded, audited, and confirmed applied.

Rules: never lower memory, never exceed ``maxMemory``, change only the revision that was diagnosed
(``RevisionId``), and confirm ``LastUpdateStatus == Successful``. A change that fails halfway is undone.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from .records import AuditLog, now_iso

SUCCEEDED = "SUCCEEDED"
DRY_RUN = "DRY_RUN"
SKIPPED = "SKIPPED"


class RepairError(RuntimeError):
    """Base class for repair failures."""


class RepairFailedError(RepairError):
    """The change could not be made; the function is as it was (the audit says so)."""


class RepairRolledBackError(RepairError):
    """The change was applied but did not take; it was reverted."""


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def wait_until_updated(
    lambda_client: Any,
    function_name: str,
    *,
    timeout_s: float = 120.0,
    poll_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll until LastUpdateStatus leaves InProgress. Returns the last configuration read."""
    deadline = time.monotonic() + timeout_s
    while True:
        config = lambda_client.get_function_configuration(FunctionName=function_name)
        if config.get("LastUpdateStatus", "Successful") != "InProgress":
            return config
        if time.monotonic() >= deadline:
            raise RepairFailedError(f"{function_name}: update still InProgress after {timeout_s:.0f}s")
        sleep(poll_s)


def execute_repair(
    request: dict[str, Any],
    *,
    lambda_client: Any,
    audit: AuditLog,
    actor: str,
    reason: str,
    sleep: Callable[[float], None] = time.sleep,
    update_timeout_s: float = 120.0,
) -> dict[str, Any]:
    """Apply the design's repair request; return the design's repair result (+ repairId, dryRun, times)."""
    name = request["functionName"]
    execution_id = request.get("executionId", "")
    target = int(request["targetMemory"])
    max_memory = int(request.get("maxMemory") or 10240)
    dry_run = bool(request.get("dryRun"))
    started = now_iso()
    result: dict[str, Any] = {
        "repairId": request.get("repairId") or uuid.uuid4().hex,
        "functionName": name,
        "executionId": execution_id,
        "diagnosisId": request.get("diagnosisId", ""),
        "startTime": started,
        "dryRun": dry_run,
    }

    try:
        config = wait_until_updated(lambda_client, name, timeout_s=update_timeout_s, sleep=sleep)
    except ClientError as exc:
        raise RepairFailedError(f"{name}: cannot read configuration ({_code(exc)}): no change made") from exc
    original = int(config["MemorySize"])
    target = min(target, max_memory)
    result.update(originalMemory=original, newMemory=original, revisionId=config.get("RevisionId", ""))

    if target <= original:
        # Someone (or an earlier repair) already raised it: lowering memory is never our business.
        result.update(status=SKIPPED, reason=f"memory is already {original} MB >= target {target} MB",
                      timestamp=now_iso(), endTime=now_iso())
        return result
    if dry_run:
        result.update(status=DRY_RUN, newMemory=target, wouldChange={"MemorySize": [original, target]},
                      reason=f"dry run: would raise memory {original} -> {target} MB",
                      timestamp=now_iso(), endTime=now_iso())
        return result

    expected_revision = request.get("expectedRevisionId")
    if expected_revision and expected_revision != config.get("RevisionId"):
        # The function changed since it was diagnosed; the diagnosis may no longer hold.
        raise RepairFailedError(
            f"{name}: configuration changed since diagnosis (revision {config.get('RevisionId')} != "
            f"{expected_revision}): no change made"
        )

    audit.record(function_name=name, execution_id=execution_id, phase="BEFORE", action="UpdateFunctionConfiguration",
                 actor=actor, reason=reason, old_value={"MemorySize": original}, new_value={"MemorySize": target},
                 details={"revisionId": config.get("RevisionId")})
    try:
        updated = _update_memory(lambda_client, name, target, config.get("RevisionId"), sleep=sleep,
                                 timeout_s=update_timeout_s)
    except ClientError as exc:
        audit.record(function_name=name, execution_id=execution_id, phase="FAILED",
                     action="UpdateFunctionConfiguration", actor=actor,
                     reason=f"{_code(exc)}: {exc.response.get('Error', {}).get('Message', '')}",
                     old_value={"MemorySize": original}, new_value={"MemorySize": original})
        raise RepairFailedError(f"{name}: UpdateFunctionConfiguration failed ({_code(exc)}): no change made") from exc

    final = wait_until_updated(lambda_client, name, timeout_s=update_timeout_s, sleep=sleep)
    if final.get("LastUpdateStatus") == "Failed":
        why = final.get("LastUpdateStatusReason", "unknown reason")
        _restore(lambda_client, name, original, sleep=sleep, timeout_s=update_timeout_s)
        audit.record(function_name=name, execution_id=execution_id, phase="ROLLED_BACK",
                     action="UpdateFunctionConfiguration", actor=actor, reason=f"update failed: {why}",
                     old_value={"MemorySize": target}, new_value={"MemorySize": original})
        raise RepairRolledBackError(f"{name}: update to {target} MB failed ({why}); restored {original} MB")

    new_memory = int(final.get("MemorySize", updated.get("MemorySize", target)))
    audit.record(function_name=name, execution_id=execution_id, phase="AFTER", action="UpdateFunctionConfiguration",
                 actor=actor, reason=reason, old_value={"MemorySize": original}, new_value={"MemorySize": new_memory},
                 details={"revisionId": final.get("RevisionId")})
    ended = now_iso()
    result.update(status=SUCCEEDED, newMemory=new_memory, revisionId=final.get("RevisionId", ""),
                  timestamp=ended, endTime=ended, reason=reason)
    return result


def _update_memory(
    lambda_client: Any, name: str, target: int, revision: str | None, *, sleep: Callable[[float], None],
    timeout_s: float, attempts: int = 5,
) -> dict[str, Any]:
    for attempt in range(attempts):
        kwargs: dict[str, Any] = {"FunctionName": name, "MemorySize": target}
        if revision:
            kwargs["RevisionId"] = revision
        try:
            return lambda_client.update_function_configuration(**kwargs)
        except ClientError as exc:
            code = _code(exc)
            if code == "ResourceConflictException" and attempt < attempts - 1:
                # Another update is in progress: wait for it, then try again on the new revision.
                config = wait_until_updated(lambda_client, name, timeout_s=timeout_s, sleep=sleep)
                if int(config["MemorySize"]) >= target:
                    return config
                revision = config.get("RevisionId")
                sleep(min(2**attempt, 8))
                continue
            raise
    raise RepairFailedError(f"{name}: gave up after {attempts} conflicting updates")


def _restore(lambda_client: Any, name: str, original: int, *, sleep: Callable[[float], None], timeout_s: float) -> None:
    lambda_client.update_function_configuration(FunctionName=name, MemorySize=original)
    wait_until_updated(lambda_client, name, timeout_s=timeout_s, sleep=sleep)
