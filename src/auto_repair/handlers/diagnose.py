"""DiagnoseIssue: run the diagnosis engine, apply the environment's policy, store the diagnosis record."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, cast

from auto_repair import aws, settle
from auto_repair.clock import now_iso
from auto_repair.deadline import Deadline
from auto_repair.diagnosis import DiagnosisConfig, diagnose
from auto_repair.evidence_store import load
from auto_repair.knowledge import KnowledgeSource
from auto_repair.observability import CORRELATION_PATH, add_dimension_env, logger, metrics, tracer, unpack
from auto_repair.outcomes import RecordType
from auto_repair.policy import decide
from auto_repair.records import IncidentStore
from auto_repair.settings import get_settings

_KNOWLEDGE: KnowledgeSource | None = None
# Left of the function's timeout after the model's last attempt: the DIAGNOSIS record, metrics and the return.
DEADLINE_MARGIN_S = 10.0


def knowledge_source() -> KnowledgeSource:
    """Runbooks and case history from the knowledge bucket, read once per warm environment and TTL."""
    global _KNOWLEDGE
    if _KNOWLEDGE is None:
        bucket = get_settings().knowledge_bucket
        _KNOWLEDGE = KnowledgeSource(aws.client("s3") if bucket else None, bucket)
    return _KNOWLEDGE


def _clients(config: DiagnosisConfig, deadline: Deadline) -> dict[str, Any]:
    # Timeouts and retries fitted to the time left when each is first used (boto3's 30 s x 5 attempts alone
    # could outlast the function).
    clients: dict[str, Any] = {}
    if config.bedrock_model_id and getattr(config, "use_bedrock", True):
        clients["bedrock_client"] = deadline.client("bedrock-runtime")
    if config.knowledge_base_id:
        clients["retrieve_client"] = deadline.client("bedrock-agent-runtime", read_timeout_s=10.0, max_attempts=3)
    return clients


def _diagnose(evidence: Mapping[str, Any], policy: Mapping[str, Any], config: DiagnosisConfig, deadline: Deadline,
              source: KnowledgeSource) -> tuple[dict[str, Any], dict[str, Any]]:
    """The engine's diagnosis of an alarm's evidence and the policy's decision on it."""
    result = diagnose(cast(dict[str, Any], evidence), config=config, knowledge=source.entries(), deadline=deadline,
                      **_clients(config, deadline))
    result.setdefault("diagnosisMethod", {})["knowledgeSource"] = source.note
    decision = decide(
        result,
        current_memory=int(evidence["currentMemorySize"]),
        max_memory=int(policy.get("maxMemory", get_settings().max_memory_mb)),
        min_confidence=float(policy.get("minConfidence", get_settings().min_confidence)),
        dry_run=bool(policy.get("dryRun", get_settings().dry_run)),
        approval_required=bool(policy.get("approvalRequired", get_settings().approval_required)),
        probe_cpu_starvation=get_settings().probe_cpu_starvation,
    )
    return result, decision


@logger.inject_lambda_context(correlation_id_path=CORRELATION_PATH)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    workflow, meta = unpack(event)
    alarm = workflow["alarm"]
    # The design's diagnosis request, rebuilt from the reference the state carries.
    evidence = load(workflow["evidence"], aws.client("s3"))
    policy: Mapping[str, Any] = alarm.get("settings") or {}
    started = now_iso()
    deadline = Deadline.from_context(context, margin_s=DEADLINE_MARGIN_S)
    source = knowledge_source()
    config = DiagnosisConfig.from_settings(get_settings())
    trim = settle.trim_of(workflow.get("rawEvent"))
    if trim is not None:  # a trim proposed by the sweep (auto_repair.settle): its evidence is the proven peak
        result = settle.trim_diagnosis(
            trim, current_memory=int(evidence["currentMemorySize"]),
            dry_run=bool(policy.get("dryRun", get_settings().dry_run)),
            approval_required=bool(policy.get("approvalRequired", get_settings().approval_required)))
        decision = result.pop("decision")
    else:
        result, decision = _diagnose(evidence, policy, config, deadline, source)
    diagnosis_id = uuid.uuid4().hex
    record = {
        "diagnosisId": diagnosis_id,
        "functionName": alarm["functionName"],
        "alarmId": alarm.get("alarmId", ""),
        "startTime": started,
        "endTime": now_iso(),
        **{k: result.get(k) for k in ("isMemoryIssue", "confidence", "reasoning", "recommendedAction",
                                      "recommendedMemoryIncrease", "evidencePoints", "knowledgeReferences",
                                      "cause", "recommendedMemorySize", "diagnosisMethod")},
        "decision": decision,
        "evidenceSummary": result.get("evidenceSummary"),
        "dataComplete": evidence.get("dataComplete"),
        "missingData": evidence.get("missingData"),
    }
    incident_id = meta.get("executionId") or alarm.get("executionId", "")
    IncidentStore(aws.table(get_settings().incidents_table), get_settings().record_ttl_days).put(incident_id, RecordType.DIAGNOSIS, record)
    add_dimension_env(get_settings().environment)
    metrics.add_metric(name="DiagnosisConfidence", unit="None", value=float(result.get("confidence") or 0))
    method = (result.get("diagnosisMethod") or {}).get("method", "rules")
    metrics.add_metric(name="DiagnosisBedrockUsed" if "bedrock" in method else "DiagnosisRulesOnly",
                       unit="Count", value=1)
    # Bedrock was asked but failed or answered badly; the dashboard's fallback rate is this over the attempts.
    if str((result.get("diagnosisMethod") or {}).get("bedrock", "")).startswith("fallback"):
        metrics.add_metric(name="DiagnosisBedrockFallback", unit="Count", value=1)
    logger.info("diagnosed", extra={"cause": result.get("cause"), "confidence": result.get("confidence"),
                                    "decision": decision})
    return {**result, "diagnosisId": diagnosis_id, "decision": decision}
