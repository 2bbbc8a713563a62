"""ExecuteRepair: apply the pinned memory change, audit it, store the repair record."""

from __future__ import annotations

import time
from typing import Any

from auto_repair import aws, guards
from auto_repair.observability import CORRELATION_PATH, add_dimension_env, logger, metrics, tracer, unpack
from auto_repair.outcomes import DeliveryStatus, PolicyAction, RecordType, RepairStatus, TaskAction, Verdict
from auto_repair.records import AuditLog, IncidentStore, now_iso
from auto_repair.repair import RepairError, RepairFailedError, execute_repair, rollback_repair
from auto_repair.settings import get_settings


def build_request(workflow: dict[str, Any], execution_id: str) -> dict[str, Any]:
    """The design's repair request. The memory value comes from the decision, never from the approval."""
    alarm = workflow["alarm"]
    decision = workflow["diagnosisResult"]["decision"]
    approval = workflow.get("approval")
    if approval is not None and int(approval.get("targetMemory", -1)) != int(decision["targetMemory"]):
        raise RepairFailedError(
            f"approval pinned {approval.get('targetMemory')} MB but the decision is {decision['targetMemory']} MB: "
            "refusing to apply a change nobody approved"
        )
    settings = alarm.get("settings") or {}
    tags = ((workflow.get("evidence") or {}).get("function") or {}).get("tags") or {}
    return {
        "functionName": alarm["functionName"],
        "memoryIncrease": int(decision["targetMemory"]) - int(decision["currentMemory"]),
        "maxMemory": int(settings.get("maxMemory", get_settings().max_memory_mb)),
        "dryRun": bool(decision.get("dryRun")) or decision.get("action") == PolicyAction.DRY_RUN,
        "targetMemory": int(decision["targetMemory"]),
        "executionId": execution_id,
        "diagnosisId": workflow["diagnosisResult"].get("diagnosisId", ""),
        "expectedRevisionId": ((workflow.get("evidence") or {}).get("function") or {}).get("revisionId"),
        # Versions/aliases and IaC ownership (auto_repair.versions); a tag can only narrow AllowAliasUpdate.
        "deployment": (workflow.get("evidence") or {}).get("deployment") or {},
        "tags": tags,
        "allowAliasUpdate": get_settings().allow_alias_update
        and tags.get("auto-repair:alias-update", "").strip().lower() not in ("false", "deny", "no"),
    }


def rollback(workflow: dict[str, Any], execution_id: str, store: IncidentStore, actor: str) -> dict[str, Any]:
    """RollbackRepair: verification said the change did not help; put the function back as it was."""
    repair, verification = workflow["repair"], workflow.get("verification") or {}
    reason = (f"rollback: verification {verification.get('status')} - "
              f"{verification.get('rollbackReason') or verification.get('reason')}")
    started = now_iso()
    if guards.read_kill_switch(aws.client("ssm"), get_settings().paused_parameter):
        # Paused means hands off, rollbacks included: report where the function was left.
        result = {"functionName": repair["functionName"], "executionId": execution_id, "status": RepairStatus.PAUSED,
                  "startTime": started, "endTime": now_iso(), "fromMemory": repair.get("newMemory"),
                  "restoredMemory": None,
                  "reason": f"rollback not done: repairs are paused ({get_settings().paused_parameter})"}
        store.put(execution_id, RecordType.ROLLBACK, result)
        return result
    try:
        result = rollback_repair(repair, lambda_client=aws.client("lambda"),
                                 audit=AuditLog(aws.table(get_settings().audit_table)), actor=actor, reason=reason)
    except RepairError as exc:
        store.put(execution_id, RecordType.ROLLBACK, {"functionName": repair["functionName"], "executionId": execution_id,
                                           "status": RepairStatus.FAILED, "startTime": started, "endTime": now_iso(),
                                           "fromMemory": repair.get("newMemory"), "error": str(exc)})
        metrics.add_metric(name="RollbacksFailed", unit="Count", value=1)
        logger.exception("rollback failed")
        raise
    store.put(execution_id, RecordType.ROLLBACK, result)
    metrics.add_metric(name="RepairsRolledBack", unit="Count", value=1)
    logger.info("rolled back", extra={"restoredMemory": result["restoredMemory"], "fromMemory": result["fromMemory"]})
    return result


@logger.inject_lambda_context(correlation_id_path=CORRELATION_PATH)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    workflow, meta = unpack(event)
    execution_id = meta.get("executionId") or workflow["alarm"].get("executionId", "")
    store = IncidentStore(aws.table(get_settings().incidents_table), get_settings().record_ttl_days)
    add_dimension_env(get_settings().environment)
    if event.get("action") == TaskAction.ROLLBACK:
        actor = get_settings().function_name
        return rollback(workflow, execution_id, store, actor)
    diagnosis = workflow["diagnosisResult"]
    reason = (f"{diagnosis.get('cause')} (confidence {diagnosis.get('confidence')}): "
              f"{diagnosis['decision'].get('reason')}")
    approval = workflow.get("approval") or {}
    if approval.get("approvedBy"):
        reason += f"; approved by {approval['approvedBy']}"
    actor = get_settings().function_name
    started = now_iso()
    try:
        request = build_request(workflow, execution_id)
        # Guards right before the mutation: the kill switch, then the hourly budget. Blocked = nothing changed.
        blocked = None if request["dryRun"] else guards.mutation_gate(
            ssm=aws.client("ssm"), parameter=get_settings().paused_parameter, limit=get_settings().max_repairs_per_hour,
            store=guards.GuardStore(aws.table(get_settings().state_table)), now=time.time())
        if blocked:
            result = guards.blocked_repair(request, blocked, current_memory=diagnosis["decision"]["currentMemory"],
                                           started=started)
            store.put(execution_id, RecordType.REPAIR, {**result, "verificationStatus": Verdict.NOT_RUN, "notificationStatus": DeliveryStatus.PENDING})
            metrics.add_metric(name=f"Repairs{blocked['status'].title().replace('_', '')}", unit="Count", value=1)
            logger.warning("repair blocked by a guard", extra=blocked)
            return result
        result = execute_repair(request, lambda_client=aws.client("lambda"),
                                audit=AuditLog(aws.table(get_settings().audit_table)), actor=actor, reason=reason)
    except RepairError as exc:
        store.put(execution_id, RecordType.REPAIR, {
            "repairId": "", "functionName": workflow["alarm"]["functionName"], "executionId": execution_id,
            "diagnosisId": diagnosis.get("diagnosisId", ""), "startTime": started, "endTime": now_iso(),
            "originalMemory": diagnosis["decision"].get("currentMemory"),
            "newMemory": diagnosis["decision"].get("currentMemory"), "status": RepairStatus.FAILED, "error": str(exc),
            "verificationStatus": Verdict.NOT_RUN, "notificationStatus": DeliveryStatus.PENDING,
        })
        metrics.add_metric(name="RepairsFailed", unit="Count", value=1)
        logger.exception("repair failed")
        raise
    store.put(execution_id, RecordType.REPAIR, {**result, "verificationStatus": Verdict.PENDING, "notificationStatus": DeliveryStatus.PENDING})
    if result["status"] == RepairStatus.SUCCEEDED:
        metrics.add_metric(name="RepairsExecuted", unit="Count", value=1)
    logger.info("repair done", extra={"status": result["status"], "originalMemory": result["originalMemory"],
                                      "newMemory": result["newMemory"]})
    return result
