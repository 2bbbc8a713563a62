"""Faults the workflow must survive, each injected in the local cloud while a real repair runs.

Every scenario is a memory-starved function failing under traffic, its alarm firing and EventBridge starting the
workflow; the local cloud then makes one AWS dependency misbehave (auto_repair_local.faults) for that function
only. All run at once. Each must end in a recorded outcome and, when a human is needed, a notification; no
memory change without an audit entry.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from auto_repair.records import AuditLog, IncidentStore
from auto_repair_cli import scenario


@dataclass
class Case:
    name: str
    faults: list[dict[str, Any]] = field(default_factory=list)
    execution: dict | None = None
    error: str | None = None


def fault(service: str, action: str, fn: str, code: str, status: int, count: int | None = None) -> dict:
    return {"service": service, "action": action, "match": fn, "code": code, "status": status,
            "message": f"injected {code}", "count": count}


CASES = {
    "throttled": Case("flt-throttled", [fault("lambda", "UpdateFunctionConfiguration", "flt-throttled",
                                              "TooManyRequestsException", 429, count=2)]),
    "conflict": Case("flt-conflict", [fault("lambda", "UpdateFunctionConfiguration", "flt-conflict",
                                            "ResourceConflictException", 409, count=2)]),
    "deleted": Case("flt-deleted"),  # deleted for real while the workflow diagnoses it
    "dynamodb": Case("flt-dynamodb", [fault("dynamodb", a, "flt-dynamodb", "InternalServerError", 500)
                                      for a in ("PutItem", "UpdateItem")]),
    "sns": Case("flt-sns", [fault("sns", "Publish", "flt-sns", "InternalErrorException", 500)]),
    "bedrock": Case("flt-bedrock"),  # the diagnose function is pointed at a model the local cloud cannot serve
    "no-data": Case("flt-no-data", [fault("logs", "FilterLogEvents", "flt-no-data", "ServiceUnavailableException",
                                          503),
                                    fault("cloudwatch", "GetMetricData", "flt-no-data", "InternalServiceFault", 500)]),
}


def delete_when_diagnosing(deployed, sfn, fn: str, stop: threading.Event) -> None:
    """Delete the function once the workflow has collected its evidence, before the repair reaches it."""
    while not stop.is_set():
        for execution in scenario.executions_for(sfn, deployed.state_machine_arn, fn):
            history = sfn.get_execution_history(executionArn=execution["executionArn"])["events"]
            entered = {e.get("stateEnteredEventDetails", {}).get("name") for e in history}
            if "DiagnoseIssue" in entered:
                deployed.cloud.client("lambda").delete_function(FunctionName=fn)
                return
        time.sleep(0.1)


@pytest.fixture(scope="module")
def results(deployed):
    cloud = deployed.cloud
    lam, iam, cw, sfn = (cloud.client(s) for s in ("lambda", "iam", "cloudwatch", "stepfunctions"))
    diagnose = f"lambda-auto-repair-diagnose-{deployed.environment}"
    variables = lam.get_function_configuration(FunctionName=diagnose)["Environment"]["Variables"]
    lam.update_function_configuration(FunctionName=diagnose, Environment={
        "Variables": {**variables, "BEDROCK_MODEL_ID": "anthropic.claude-3-haiku-20240307-v1:0"}})
    deployed.faults([rule for case in CASES.values() for rule in case.faults])
    begun = datetime.now(UTC).replace(microsecond=0)
    stop, traffic = threading.Event(), []
    try:
        for case in CASES.values():
            scenario.create_target(lam, iam, case.name, scenario.MEMORY_HOG, memory=128, env={"WORK_MB": "150"})
            scenario.put_guide_alarms(cw, case.name, deployed.topic_arn, period=10)
            t = scenario.Traffic(lam, case.name, interval=1.0)
            t.start()
            traffic.append(t)
        watcher = threading.Thread(target=delete_when_diagnosing, args=(deployed, sfn, "flt-deleted", stop),
                                   daemon=True)
        watcher.start()

        def finish(case: Case) -> None:
            try:
                case.execution = scenario.wait_for_execution(sfn, deployed.state_machine_arn, case.name,
                                                             timeout=300, after=begun)
            except TimeoutError as exc:
                case.error = str(exc)

        waiters = [threading.Thread(target=finish, args=(c,)) for c in CASES.values()]
        for w in waiters:
            w.start()
        for w in waiters:
            w.join()
    finally:
        stop.set()
        for t in traffic:
            t.stop()
        deployed.faults([])
        lam.update_function_configuration(FunctionName=diagnose, Environment={"Variables": variables})
    return CASES


def tables(deployed) -> tuple[IncidentStore, AuditLog]:
    resource = boto3.resource("dynamodb", endpoint_url=deployed.cloud.endpoint, region_name="us-east-1",
                              aws_access_key_id="test", aws_secret_access_key="test")
    env = deployed.environment
    return (IncidentStore(resource.Table(f"lambda-auto-repair-incidents-{env}")),
            AuditLog(resource.Table(f"lambda-auto-repair-audit-{env}")))


def outcome_of(deployed, case: Case) -> tuple[dict, dict, list[dict]]:
    assert case.error is None, case.error
    incident_id = case.execution["executionArn"].rsplit(":", 1)[-1]
    incidents, audit = tables(deployed)
    return case.execution, incidents.get_incident(incident_id), audit.for_execution(incident_id)


def memory_of(deployed, fn: str) -> int:
    return deployed.cloud.client("lambda").get_function_configuration(FunctionName=fn)["MemorySize"]


@pytest.mark.parametrize("name", ["throttled", "conflict"])
def test_transient_update_errors_are_retried_and_the_repair_lands(deployed, results, name):
    # GIVEN UpdateFunctionConfiguration throttled / "update in progress" twice THEN it is retried and succeeds
    execution, incident, audit = outcome_of(deployed, results[name])
    assert execution["status"] == "SUCCEEDED"
    assert incident["repair"]["status"] == "SUCCEEDED" and memory_of(deployed, results[name].name) > 128
    assert sorted(a["phase"] for a in audit) == ["AFTER", "BEFORE"]


def test_function_deleted_between_alarm_and_repair(deployed, results):
    execution, incident, audit = outcome_of(deployed, results["deleted"])
    # THEN nothing was changed, the incident says why, and a human is told
    assert incident["alarm"]["outcome"] in ("FAILURE", "SKIPPED"), incident["alarm"]
    assert "ResourceNotFound" in json.dumps(incident, default=str)
    assert not [a for a in audit if a["phase"] == "AFTER"]
    assert any(n["type"] in ("FAILURE", "SKIPPED") for n in [m["body"] for m in deployed.notifications("flt-deleted")])


def test_dynamodb_unavailable_still_notifies(deployed, results):
    # GIVEN every write of this function's records failing THEN the workflow fails visibly and the administrators
    # get a failure notice naming the cause (the record cannot exist: DynamoDB is what failed)
    execution, _, audit = outcome_of(deployed, results["dynamodb"])
    assert execution["status"] == "FAILED"
    failures = [n for n in [m["body"] for m in deployed.notifications("flt-dynamodb")] if n["type"] == "FAILURE"]
    assert failures and "InternalServerError" in json.dumps(failures[0])
    assert memory_of(deployed, "flt-dynamodb") == 128 and audit == []


def test_sns_failure_lands_in_the_dead_letter_queue(deployed, results):
    execution, incident, _ = outcome_of(deployed, results["sns"])
    # THEN the run fails visibly, the failure is recorded, and the undelivered notice waits in the DLQ
    assert execution["status"] == "FAILED"
    assert incident["alarm"]["outcome"] == "FAILURE" and incident.get("failure")
    sqs = deployed.cloud.client("sqs")
    url = sqs.get_queue_url(QueueName=f"lambda-auto-repair-dlq-{deployed.environment}")["QueueUrl"]
    bodies = []
    for _ in range(5):
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            bodies.append(json.loads(message["Body"]))
    parked = [b for b in bodies if b.get("incidentId") == incident["incidentId"]]
    assert parked and parked[0]["kind"] == "UNDELIVERED_NOTIFICATION" and "InternalErrorException" in parked[0]["deliveryError"]


def test_bedrock_unavailable_falls_back_to_the_rules(deployed, results):
    execution, incident, _ = outcome_of(deployed, results["bedrock"])
    assert execution["status"] == "SUCCEEDED"
    method = incident["diagnosis"]["diagnosisMethod"]
    assert method["bedrock"].startswith("fallback"), method
    assert incident["diagnosis"]["isMemoryIssue"] is True and memory_of(deployed, "flt-bedrock") > 128


def test_cloudwatch_without_data_means_no_blind_change(deployed, results):
    execution, incident, audit = outcome_of(deployed, results["no-data"])
    # THEN the missing data is recorded, nothing is changed, and the report says what was missing
    assert execution["status"] == "SUCCEEDED"
    assert incident["diagnosis"]["missingData"]
    assert memory_of(deployed, "flt-no-data") == 128 and audit == []
    assert deployed.notifications("flt-no-data")
