"""RequestApproval: store the task token behind a short id and ask a human, with what will change and cost."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from auto_repair import accounts, approvals, aws
from auto_repair.controller import approval_ceiling
from auto_repair.evidence_store import series_average
from auto_repair.notifier import notify
from auto_repair.observability import CORRELATION_PATH, add_dimension_env, logger, metrics, tracer, unpack
from auto_repair.outcomes import ApprovalStatus, IncidentStatus, Notice, RecordType
from auto_repair.pricing import cost_change_per_million
from auto_repair.records import IncidentStore
from auto_repair.settings import get_settings


@logger.inject_lambda_context(correlation_id_path=CORRELATION_PATH)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    workflow, meta = unpack(event)
    token = event["taskToken"]
    alarm, evidence = workflow["alarm"], workflow.get("evidence") or {}
    decision = workflow["diagnosisResult"]["decision"]
    execution_id = meta.get("executionId") or alarm.get("executionId", "")
    approval_id = approvals.new_approval_id()
    current, target = int(decision["currentMemory"]), int(decision["targetMemory"])
    steps = get_settings().max_repair_steps
    # What later steps of this incident may reach under this approval (auto_repair.controller).
    policy: Mapping[str, Any] = alarm.get("settings") or {}
    ceiling = approval_ceiling(current=current, first_target=target, max_steps=steps,
                               max_memory=int(policy.get("maxMemory") or get_settings().max_memory_mb))
    approvals.create(aws.table(get_settings().state_table), approval_id=approval_id, task_token=token,
                     execution_id=execution_id, function_name=alarm["functionName"], current_memory=current,
                     target_memory=target, timeout_seconds=get_settings().approval_timeout_seconds,
                     ceiling_memory=ceiling, revision_id=(evidence.get("function") or {}).get("revisionId"))
    duration, architecture = series_average(evidence, "Duration.Average"), evidence.get("architecture") or "x86_64"
    cost = cost_change_per_million(current, target, duration, architecture)
    env_flag = f"--environment {get_settings().environment}"
    request = {
        "approvalId": approval_id,
        "change": {"functionName": alarm["functionName"], "memoryBefore": current, "memoryAfter": target,
                   "ceilingMemory": ceiling, "maxSteps": steps,
                   # Organisation mode: which account's function the approver is asked about.
                   **{k: v for k, v in accounts.place_of(alarm).items() if k != "functionKey"}},
        "ceiling": (f"first {current:,} -> {target:,} MB; if verification still shows memory failures, up to "
                    f"{ceiling:,} MB in at most {steps} step{'s' if steps > 1 else ''} (a new approval beyond it)"),
        "estimatedCostChange": cost,
        "estimatedCostAtCeiling": cost_change_per_million(current, ceiling, duration, architecture),
        "evidenceSummary": (workflow["diagnosisResult"].get("reasoning") or "")[:1500],
        "expiresInSeconds": get_settings().approval_timeout_seconds,
        "howToApprove": f"auto-repair approve {approval_id} {env_flag}",
        "howToReject": f"auto-repair reject {approval_id} {env_flag} --reason '...'",
    }
    store = IncidentStore(aws.table(get_settings().incidents_table), get_settings().record_ttl_days)
    store.put(execution_id, RecordType.APPROVAL, {**request, "status": ApprovalStatus.PENDING})
    sent = notify({**workflow, "approvalRequest": request}, Notice.APPROVAL_REQUEST, environment=get_settings().environment,
                  sns=aws.client("sns"), topic_arn=get_settings().topic_arn, store=store, incident_id=execution_id)
    store.update_incident(execution_id, status=IncidentStatus.AWAITING_APPROVAL)
    # Counted only once a human was asked; notify/handle-failure count ApprovalsResolved when the wait is over.
    add_dimension_env(get_settings().environment)
    metrics.add_metric(name="ApprovalsRequested", unit="Count", value=1)
    logger.info("approval requested", extra={"approvalId": approval_id, "messageId": sent["messageId"]})
    return {"approvalId": approval_id, "messageId": sent["messageId"]}
