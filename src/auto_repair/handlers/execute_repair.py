"""ExecuteRepair: apply the pinned memory change, audit it, store the repair record."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from auto_repair import accounts, approvals, aws, guards, memory_history, resync, settle
from auto_repair.clock import now_iso
from auto_repair.deadline import Deadline
from auto_repair.observability import CORRELATION_PATH, add_dimension_env, logger, metrics, tracer, unpack
from auto_repair.outcomes import DeliveryStatus, RecordType, RepairStatus, TaskAction, Verdict
from auto_repair.records import AuditLog, IncidentStore
from auto_repair.repair import (
    RepairError,
    build_request,
    execute_repair,
    failed_record,
    repair_reason,
    rollback_run,
)
from auto_repair.settings import get_settings
from auto_repair.workflow import Rollback, WorkflowContext

# Left of the function's timeout after the repair's last wait: the REPAIR record, metrics and the return.
DEADLINE_MARGIN_S = 10.0


def resync_onboarding(alarm: Mapping[str, Any], memory_changed: bool, execution_id: str) -> None:
    """After a memory change: mark the function for an onboarding re-sync and ask the targets function for it
    (asynchronously), so its utilisation bands follow the new size (``auto_repair.resync``). Best effort: the change
    is made and audited whatever happens here, and the daily run re-syncs whatever is still marked."""
    if not memory_changed:
        return
    identity = accounts.identity_of(alarm)
    settings = get_settings()
    steps = (("mark it for the daily run", lambda: resync.mark(
        aws.table(settings.state_table), identity, execution_id=execution_id, now=time.time())),
             ("ask the targets function", lambda: aws.client("lambda").invoke(
                 FunctionName=settings.targets_function, InvocationType="Event",
                 Payload=json.dumps(resync.request(identity)).encode())))
    for what, step in steps:  # each on its own: either one suffices
        try:
            step()
        except (ClientError, BotoCoreError) as exc:  # one line: the cause is all there is to it
            metrics.add_metric(name="ResyncsFailed", unit="Count", value=1)
            logger.warning(f"onboarding re-sync: could not {what}", extra={
                "error": str(exc), "functionKey": identity.key, "targetsFunction": settings.targets_function})


def rollback(workflow: WorkflowContext, execution_id: str, store: IncidentStore, deadline: Deadline) -> Rollback:
    """RollbackRepair: the kill switch, then the core's rollback; the metric of how it went."""
    settings = get_settings()
    paused = guards.read_kill_switch(aws.client("ssm"), settings.paused_parameter)
    # Unreadable: refuse to lower memory rather than guess (the error takes the failure path, which notifies).
    known_bad = memory_history.known_bad_size(aws.table(settings.state_table), accounts.key_of(workflow["alarm"]),
                                              now=time.time())
    lambda_client = accounts.clients_for(accounts.identity_of(workflow["alarm"]), execution_id).client("lambda")
    try:
        result = rollback_run(workflow, execution_id, store=store, lambda_client=lambda_client,
                              audit=AuditLog(aws.table(settings.audit_table), settings.audit_retention_days),
                              paused=paused,
                              paused_parameter=settings.paused_parameter, actor=settings.function_name,
                              deadline=deadline, known_bad=known_bad)
    except RepairError:
        metrics.add_metric(name="RollbacksFailed", unit="Count", value=1)
        logger.exception("rollback failed")
        raise
    if result["status"] == RepairStatus.ROLLED_BACK:
        metrics.add_metric(name="RepairsRolledBack", unit="Count", value=1)
        logger.info("rolled back", extra={"restoredMemory": result["restoredMemory"],
                                          "fromMemory": result["fromMemory"]})
        if workflow["repair"].get("trim"):
            result = _trim_undone(workflow, execution_id, result, store)
        resync_onboarding(workflow["alarm"], memory_changed=True, execution_id=execution_id)
    return result


def _trim_undone(workflow: WorkflowContext, execution_id: str, result: Rollback, store: IncidentStore) -> Rollback:
    """A trim undone by its verification: no trim for 30 days; the trimmed size is known-bad if it ran out of
    memory. Written after the memory is back, so a failure here never leaves the function trimmed."""
    verification: dict[str, Any] = dict(workflow.get("verification") or {})
    oom = bool((verification.get("after") or {}).get("oom"))
    known_bad = settle.record_undone_trim(
        aws.table(get_settings().state_table), accounts.key_of(workflow["alarm"]),
        trimmed_to=int(workflow["repair"]["newMemory"]), raised_to=int(result.get("restoredMemory") or 0),
        at=time.time(), execution_id=execution_id, oom=oom, evidence=str(verification.get("reason", "")))
    result = {**result, "trimUndone": True, "knownBad": known_bad}
    store.put(execution_id, RecordType.ROLLBACK, dict(result))
    metrics.add_metric(name="TrimsUndone", unit="Count", value=1)
    return result


def _raise_undoes_trim(result: dict[str, Any], execution_id: str, audit: AuditLog) -> None:
    """A raise from the size an earlier trim left: that trim brought out-of-memory failures back (the normal alarm
    loop caught them). Remember the trimmed size as known-bad and do not trim again for 30 days."""
    if result.get("status") != RepairStatus.SUCCEEDED or result.get("trim"):
        return
    try:
        key = result.get("functionKey") or result["functionName"]
        undone = settle.trim_undone_by_raise(audit.for_function(key), int(result["originalMemory"]), execution_id)
        if undone is None:
            return
        settle.record_undone_trim(aws.table(get_settings().state_table), key,
                                  trimmed_to=undone.after, raised_to=int(result["newMemory"]), at=time.time(),
                                  execution_id=execution_id, oom=True,
                                  evidence=f"alarm after the trim {undone.before} -> {undone.after} MB "
                                           f"({undone.execution_id})")
    except (ClientError, memory_history.MemoryHistoryError):  # the raise is done; the marker is a bonus
        logger.exception("could not record the undone trim")
        return
    result["trimUndone"] = True
    metrics.add_metric(name="TrimsUndone", unit="Count", value=1)


@logger.inject_lambda_context(correlation_id_path=CORRELATION_PATH)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    workflow, meta = unpack(event)
    settings = get_settings()
    execution_id = meta.get("executionId") or workflow["alarm"].get("executionId", "")
    store = IncidentStore(aws.table(settings.incidents_table), settings.record_ttl_days)
    add_dimension_env(settings.environment)
    deadline = Deadline.from_context(context, margin_s=DEADLINE_MARGIN_S)
    if event.get("action") == TaskAction.ROLLBACK:
        return dict(rollback(workflow, execution_id, store, deadline))
    started = now_iso()
    # The function is read and changed in its own account and region (the member role, organisation mode).
    identity = accounts.identity_of(workflow["alarm"])
    lambda_client = accounts.clients_for(identity, execution_id).client("lambda")
    try:
        request = build_request(workflow, execution_id, max_memory=settings.max_memory_mb,
                                allow_alias_update=settings.allow_alias_update)
        if request.get("trim"):
            request["knownBad"] = memory_history.known_bad_size(aws.table(settings.state_table),
                                                                accounts.key_of(workflow["alarm"]), now=time.time())
        # Guards right before the mutation: a person's approval that still applies, the kill switch, then the
        # hourly budget (a refused approval takes no unit). Blocked = nothing changed.
        blocked = None if request["dryRun"] else approvals.refusal(
            workflow, request, state_table=aws.table(settings.state_table),
            cloudwatch=accounts.clients_for(identity, execution_id).client("cloudwatch"),
            lambda_client=lambda_client) or guards.mutation_gate(
            ssm=aws.client("ssm"), parameter=settings.paused_parameter, limit=settings.max_repairs_per_hour,
            store=guards.GuardStore(aws.table(settings.state_table)), now=time.time(),
            # Organisation mode: each account has its own hourly budget inside the global one.
            account=identity.account if settings.organization_mode else "",
            account_limit=settings.member_max_repairs_per_hour)
        if blocked:
            result = {**guards.blocked_repair(request, blocked, current_memory=request["currentMemory"],
                                              started=started), "step": request["step"]}
            store.put(execution_id, RecordType.REPAIR, {**result, "verificationStatus": Verdict.NOT_RUN,
                                                        "notificationStatus": DeliveryStatus.PENDING})
            metrics.add_metric(name=f"Repairs{blocked['status'].title().replace('_', '')}", unit="Count", value=1)
            logger.warning("repair blocked by a guard", extra=blocked)
            return result
        audit = AuditLog(aws.table(settings.audit_table), settings.audit_retention_days)
        result = execute_repair(request, lambda_client=lambda_client, audit=audit,
                                actor=settings.function_name, reason=repair_reason(workflow), deadline=deadline)
        result["step"] = request["step"]
        _raise_undoes_trim(result, execution_id, audit)
    except RepairError as exc:
        # Raised for the workflow's failure path (HandleFailure notifies); a deadline stop is said so.
        stopped = {"stoppedAtDeadline": True} if deadline.reached else {}
        store.put(execution_id, RecordType.REPAIR,
                  {**failed_record(workflow, execution_id, exc, started=started), **stopped})
        metrics.add_metric(name="RepairsFailed", unit="Count", value=1)
        if stopped:
            metrics.add_metric(name="RepairsStoppedAtDeadline", unit="Count", value=1)
        logger.exception("repair failed")
        raise
    store.put(execution_id, RecordType.REPAIR, {**result, "verificationStatus": Verdict.PENDING,
                                                "notificationStatus": DeliveryStatus.PENDING})
    if result["status"] == RepairStatus.SUCCEEDED:
        metrics.add_metric(name="RepairsExecuted", unit="Count", value=1)
        resync_onboarding(workflow["alarm"], memory_changed=result["newMemory"] != result["originalMemory"],
                          execution_id=execution_id)
    logger.info("repair done", extra={"status": result["status"], "originalMemory": result["originalMemory"],
                                      "newMemory": result["newMemory"]})
    return result
