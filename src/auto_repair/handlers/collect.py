"""CollectMetricsAndLogs: the diagnosis request for the alarmed function."""

from __future__ import annotations

from typing import Any

from auto_repair import accounts, aws
from auto_repair.clock import utc_now
from auto_repair.collect import collect_evidence
from auto_repair.evidence_store import evidence_key, stash
from auto_repair.observability import CORRELATION_PATH, logger, tracer, unpack
from auto_repair.settings import get_settings


@logger.inject_lambda_context(correlation_id_path=CORRELATION_PATH)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    workflow, meta = unpack(event)
    incident_id = meta.get("executionId") or workflow["alarm"].get("executionId", "")
    # Everything is read in the function's own account and region (the member role there, in organisation mode).
    clients = accounts.clients_for(accounts.identity_of(workflow["alarm"]), incident_id)
    evidence = collect_evidence(
        workflow["alarm"],
        lambda_client=clients.client("lambda"),
        cloudwatch=clients.client("cloudwatch"),
        logs=clients.client("logs"),
        now=utc_now(),
        analysis_minutes=get_settings().analysis_window_minutes,
        baseline_minutes=get_settings().baseline_window_minutes,
        # The raw alarm event (ReceiveEvent keeps it under rawEvent): its ExecutedVersion dimension names a version.
        event=workflow.get("rawEvent", workflow),
    )
    logger.info("evidence collected", extra={"logLines": len(evidence["logs"]),
                                             "dataComplete": evidence["dataComplete"],
                                             "missingData": evidence["missingData"],
                                             "deployment": evidence["deployment"].get("kind")})
    # The series and log lines go to the evidence bucket: the state keeps a reference (256 KiB state quota).
    bucket = get_settings().knowledge_bucket
    return dict(stash(evidence, aws.client("s3") if bucket else None, bucket,
                      evidence_key(incident_id, meta.get("stateName", ""))))
