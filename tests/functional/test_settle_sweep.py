"""Settle (issue 13) against moto: the sweep's trim proposals from the audit trail and the target metrics, the trim
as a workflow change (diagnosis, request, audit as TRIM), and a trim undone by its verification or by a later raise."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from auto_repair import memory_history, notification, settle
from auto_repair.handlers import execute_repair as execute_repair_handler
from auto_repair.handlers import targets as targets_handler
from auto_repair.outcomes import Notice, RepairStatus
from auto_repair.records import AuditLog, IncidentStore
from auto_repair.repair import build_request, execute_repair
from auto_repair.targets import Targets, TargetSettings, namespace

FN = "orders"
MACHINE = "lambda-auto-repair-workflow-dev"
# The sweep reads the metrics of its own environment (onboarding publishes them under LambdaAutoRepair/Targets/<env>/).
ENV = "dev"
CONTEXT = SimpleNamespace(function_name="lambda-auto-repair-execute-repair-dev", memory_limit_in_mb=256,
                          invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:x",
                          aws_request_id="req-1")
PROVEN = settle.TrimConfig(min_healthy_seconds=3600, min_reports=50)


def audit(aws) -> AuditLog:
    return AuditLog(aws.resource("dynamodb").Table("audit"))


def state(aws) -> Any:
    return aws.resource("dynamodb").Table("state")


def memory(aws) -> int:
    return aws.client("lambda").get_function_configuration(FunctionName=FN)["MemorySize"]


def change(aws, target: int, execution: str, **extra: Any) -> dict[str, Any]:
    """A change by the workflow's ExecuteRepair core (a raise, or a trim with ``trim=True``)."""
    return execute_repair({"functionName": FN, "targetMemory": target, "maxMemory": 3008, "executionId": execution,
                           **extra}, lambda_client=aws.client("lambda"), audit=audit(aws), actor="test",
                          reason="test")


def onboard(aws) -> Targets:
    targets = Targets(lambda_client=aws.client("lambda"), cloudwatch=aws.client("cloudwatch"),
                      logs=aws.client("logs"), settings=TargetSettings(environment=ENV), actions=[])
    targets.add(FN, tag_function=False)
    return targets


def usage(aws, *, mb: list[float], start: datetime, oom: int = 0) -> None:
    """REPORT lines as onboarding's metric filters publish them: one MaxMemoryUsed datapoint per invocation."""
    cw = aws.client("cloudwatch")
    for i in range(0, len(mb), 20):
        cw.put_metric_data(Namespace=namespace(FN, ENV), MetricData=[
            {"MetricName": "MaxMemoryUsed", "Value": v, "Unit": "Megabytes",
             "Timestamp": start + timedelta(minutes=(i + j) % 50 + 1)} for j, v in enumerate(mb[i:i + 20])])
    if oom:
        cw.put_metric_data(Namespace=namespace(FN, ENV), MetricData=[
            {"MetricName": "OutOfMemory", "Value": float(oom), "Timestamp": start + timedelta(minutes=5)}])


@pytest.fixture
def machine(aws) -> str:
    role = aws.client("iam").create_role(RoleName="sfn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    definition = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})
    return aws.client("stepfunctions").create_state_machine(name=MACHINE, definition=definition,
                                                            roleArn=role)["stateMachineArn"]


def sweep(aws, targets: Targets, machine: str, now: datetime, config: settle.TrimConfig = PROVEN) -> dict[str, Any]:
    return targets_handler.run_trims(targets, aws.client("stepfunctions"), audit=audit(aws), state=state(aws),
                                     config=config, machine_arn=machine, account="123456789012",
                                     region="us-east-1", now=now, only=None)


def raised_far_too_high(aws) -> tuple[Targets, datetime]:
    """GIVEN an onboarded 128 MB function our workflow raised to 1,024 MB, healthy since at a 150 MB peak."""
    targets = onboard(aws)
    change(aws, 1024, "raise-1")
    since = datetime.now(UTC)
    usage(aws, mb=[120.0] * 119 + [150.0], start=since)
    return targets, since


# ------------------------------------------------------------------------------------------------ proposals


def test_a_function_raised_far_too_high_gets_one_trim_workflow_a_day(aws, target_function, machine):
    targets, since = raised_far_too_high(aws)
    now = since + timedelta(hours=2)
    # WHEN the sweep settles
    out = sweep(aws, targets, machine, now)
    # THEN one trim starts, to the peak plus 25 % headroom rounded up to a 64 MB step (150 x 1.25 -> 192 MB)
    assert [(s["function"], s["memory"], s["targetMemory"]) for s in out["started"]] == [(FN, 1024, 192)]
    execution = aws.client("stepfunctions").describe_execution(executionArn=out["started"][0]["executionArn"])
    event = json.loads(execution["input"])
    assert execution["name"] == f"trim-{FN}-{now:%Y%m%d}"
    assert event["detail"]["alarmName"] == f"lambda-memory-trim-{FN}"
    wanted = {"configured": 1024, "targetMemory": 192, "peakMb": 150.0, "reports": 120, "originalMemory": 128,
              "knownBad": None}
    assert {k: event["detail"]["trim"][k] for k in wanted} == wanted
    # AND the same day again starts nothing, and says why
    again = sweep(aws, targets, machine, now + timedelta(minutes=5))
    assert again["started"] == [] and "already trimmed today" in again["skipped"][0]["reason"]


def test_the_trim_event_is_parsed_by_the_workflow_as_an_alarm_on_the_function(aws, target_function, machine):
    from auto_repair.alarm_event import parse_alarm_event

    targets, since = raised_far_too_high(aws)
    out = sweep(aws, targets, machine, since + timedelta(hours=2))
    event = json.loads(aws.client("stepfunctions").describe_execution(
        executionArn=out["started"][0]["executionArn"])["input"])
    alarm = parse_alarm_event(event)
    assert (alarm["outcome"], alarm["functionName"]) == ("PROCEED", FN)
    assert settle.trim_of(event) is not None


CASES = [
    # (what, setup, config, expected words in the reason)
    ("too young", lambda aws: None, settle.TrimConfig(min_healthy_seconds=3 * 86400, min_reports=50),
     "healthy at 1024 MB for 2.0 h (need 3.0 d)"),
    ("too few reports", lambda aws: None, settle.TrimConfig(min_healthy_seconds=3600, min_reports=500),
     "only 120 REPORT lines at 1024 MB (need 500)"),
    ("trim undone lately", lambda aws: memory_history.record_trim_undone(
        state(aws), FN, at=datetime.now(UTC).timestamp(), execution_id="t-0", trimmed_to=192, raised_to=1024),
     PROVEN, "a trim to 192 MB was undone at"),
    ("changed by a human", lambda aws: aws.client("lambda").update_function_configuration(
        FunctionName=FN, MemorySize=2048), PROVEN, "changed outside the workflow since"),
    ("failures since", lambda aws: usage(aws, mb=[], start=datetime.now(UTC), oom=2), PROVEN,
     "2 out-of-memory/timeout failure(s) at 1024 MB"),
]


@pytest.mark.parametrize(("what", "setup", "config", "words"), CASES, ids=[c[0] for c in CASES])
def test_no_trim_is_proposed_and_the_answer_says_why(aws, target_function, machine, what, setup, config, words):
    targets, since = raised_far_too_high(aws)
    # GIVEN the case's circumstance WHEN the sweep settles
    setup(aws)
    out = sweep(aws, targets, machine, since + timedelta(hours=2), config)
    # THEN nothing starts and the function's line says why
    assert out["started"] == []
    assert [s["function"] for s in out["skipped"]] == [FN] and words in out["skipped"][0]["reason"], out
    assert aws.client("stepfunctions").list_executions(stateMachineArn=machine)["executions"] == []


def test_functions_the_workflow_never_raised_are_left_alone_quietly(aws, target_function, machine):
    targets = onboard(aws)
    usage(aws, mb=[20.0] * 200, start=datetime.now(UTC))
    out = sweep(aws, targets, machine, datetime.now(UTC) + timedelta(days=2))
    assert out == {"started": [], "skipped": []}


def test_never_below_the_original_size_unless_right_sizing_generally_and_never_at_a_known_bad_size(
        aws, target_function, machine):
    # GIVEN a function that had 512 MB before our repair raised it to 2,048 MB, and peaks at 100 MB
    aws.client("lambda").update_function_configuration(FunctionName=FN, MemorySize=512)
    targets = onboard(aws)
    change(aws, 2048, "raise-1")
    since = datetime.now(UTC)
    usage(aws, mb=[100.0] * 120, start=since)
    now = since + timedelta(hours=2)
    # WHEN the sweep settles by default THEN the trim stops at the original 512 MB
    assert sweep(aws, targets, machine, now)["started"][0]["targetMemory"] == 512
    # WHEN right-sizing generally (a new day) THEN it goes to the need (100 x 1.25 -> 128 MB) ...
    generally = settle.TrimConfig(min_healthy_seconds=3600, min_reports=50, right_size_generally=True)
    assert sweep(aws, targets, machine, now + timedelta(days=1), generally)["started"][0]["targetMemory"] == 128
    # ... but never at or below a fresh known-bad size (256 MB died of memory: the floor is the next step above)
    memory_history.record_known_bad(state(aws), FN, 256, at=now.timestamp(), execution_id="x", evidence="oom")
    assert sweep(aws, targets, machine, now + timedelta(days=2), generally)["started"][0]["targetMemory"] == 320


# ------------------------------------------------------------------------------------------------ the workflow


def trim_workflow(aws, target: int = 192) -> dict[str, Any]:
    config = aws.client("lambda").get_function_configuration(FunctionName=FN)
    trim = {"configured": config["MemorySize"], "targetMemory": target, "reason": "peak 150 MB", "peakMb": 150.0,
            "reports": 120, "healthySince": "2026-01-01T00:00:00Z", "originalMemory": 128, "knownBad": None}
    diagnosis = settle.trim_diagnosis(trim, current_memory=config["MemorySize"], dry_run=False,
                                      approval_required=False)
    return {"rawEvent": {"detail": {"trim": trim}},
            "alarm": {"functionName": FN, "executionId": "trim-1", "alarmName": f"lambda-memory-trim-{FN}",
                      "settings": {"maxMemory": 3008}},
            "evidence": {"function": {"revisionId": config.get("RevisionId"), "tags": {}},
                         "deployment": {"kind": "LATEST"}},
            "diagnosisResult": {"diagnosisId": "d-1", **diagnosis}}


def invoke(flow: dict[str, Any], action: str | None = None) -> dict[str, Any]:
    payload = {"context": flow, "meta": {"executionId": "trim-1"}, **({"action": action} if action else {})}
    return execute_repair_handler.lambda_handler(payload, CONTEXT)


@pytest.mark.parametrize(("dry_run", "approval", "action", "required"), [
    (False, False, "REPAIR", False), (False, True, "REPAIR", True), (True, True, "DRY_RUN", False)])
def test_the_trim_decision_follows_the_policy(dry_run, approval, action, required):
    trim = {"configured": 1024, "targetMemory": 192, "reason": "r"}
    decision = settle.trim_diagnosis(trim, current_memory=1024, dry_run=dry_run,
                                     approval_required=approval)["decision"]
    assert (decision["action"], decision["approvalRequired"], decision["trim"]) == (action, required, True)
    assert (decision["currentMemory"], decision["targetMemory"]) == (1024, 192)


def test_a_trim_measured_at_another_size_is_no_action():
    result = settle.trim_diagnosis({"configured": 1024, "targetMemory": 192}, current_memory=2048, dry_run=False,
                                   approval_required=False)
    assert result["isMemoryIssue"] is False and result["decision"]["action"] == "NO_ACTION"


def test_execute_repair_lowers_memory_only_for_a_trim_and_audits_it_as_one(aws, target_function, function_env):
    function_env(MAX_REPAIRS_PER_HOUR="100")
    change(aws, 1024, "raise-1")
    # GIVEN the same lower target without the trim flag THEN nothing is lowered
    assert change(aws, 192, "raise-2")["status"] == RepairStatus.SKIPPED and memory(aws) == 1024
    # WHEN the trim workflow's ExecuteRepair runs
    flow = trim_workflow(aws)
    assert build_request(flow, "trim-1", max_memory=3008, allow_alias_update=False)["trim"] is True
    result = invoke(flow)
    # THEN memory is 192 MB, BEFORE/AFTER audited, the AFTER entry marked as a TRIM, and the history sees it
    assert (result["status"], result["originalMemory"], result["newMemory"], memory(aws)) == (
        RepairStatus.SUCCEEDED, 1024, 192, 192)
    entries = audit(aws).for_execution("trim-1")
    assert sorted(e["phase"] for e in entries) == ["AFTER", "BEFORE"]
    assert [e["details"]["change"] for e in entries if e["phase"] == "AFTER"] == ["TRIM"]
    hist = settle.history(audit(aws).for_function(FN))
    assert hist is not None and [c.kind for c in hist.changes] == ["RAISE", "TRIM"]
    assert (hist.original, hist.current) == (128, 192)


def test_a_trim_is_not_applied_at_a_size_that_became_known_bad_after_the_sweep(aws, target_function, function_env):
    function_env(MAX_REPAIRS_PER_HOUR="100")
    change(aws, 1024, "raise-1")
    flow = trim_workflow(aws)
    # GIVEN the sweep proposed 192 MB, then the function died of memory at 256 MB before the trim ran
    memory_history.record_known_bad(state(aws), FN, 256, at=datetime.now(UTC).timestamp(), execution_id="x",
                                    evidence="oom at 256 MB")
    # WHEN the trim workflow's ExecuteRepair runs
    result = invoke(flow)
    # THEN nothing is lowered and the result says why
    assert (result["status"], memory(aws)) == (RepairStatus.SKIPPED, 1024)
    assert "known-bad size of 256 MB" in result["reason"]
    assert audit(aws).for_execution("trim-1") == []


def test_a_trim_that_brings_oom_back_is_undone_at_once_and_never_retried(aws, target_function, function_env,
                                                                        machine):
    function_env(MAX_REPAIRS_PER_HOUR="100")
    targets = onboard(aws)
    change(aws, 1024, "raise-1")
    flow = trim_workflow(aws)
    flow["repair"] = invoke(flow)
    # GIVEN verification found out-of-memory failures at the trimmed size; even "partial" progress and
    # RollbackOnFailure=false would keep a raise, a trim is undone
    verdict = {"status": "NOT_IMPROVED", "final": True, "partiallyImproved": True, "worse": True,
               "reason": "3 out-of-memory failure(s) after the repair", "after": {"oom": 3}}
    verdict |= settle.trim_rollback_decision(verdict)
    assert verdict["rollback"] is True
    flow["verification"] = verdict
    # WHEN RollbackRepair runs
    flow["rollback"] = invoke(flow, "ROLLBACK")
    # THEN the memory is back at 1,024 MB, 192 MB is known-bad, and the function may not be trimmed for 30 days
    assert memory(aws) == 1024
    assert (flow["rollback"]["trimUndone"], flow["rollback"]["knownBad"]) == (True, 192)
    now = datetime.now(UTC).timestamp()
    assert memory_history.known_bad_size(state(aws), FN, now=now) == 192
    assert memory_history.trim_blocked(state(aws), FN, now=now + 29 * 86400)
    assert IncidentStore(aws.resource("dynamodb").Table("incidents")).get_incident("trim-1")["rollback"][
        "trimUndone"] is True
    # AND the notice says so
    note = notification.build(flow, Notice.NOT_IMPROVED, "dev")
    assert "UNDONE" in note["subject"] and "192 MB is now known-bad" in note["message"]["summary"]
    assert "No trim of this function for 30 days" in note["message"]["summary"]
    assert [m["memory"] for m in note["message"]["story"]["memoryOverTime"]] == [128, 1024, 192, 1024]
    assert note["message"]["story"]["knownBad"] == 192
    # AND the next sweep proposes nothing, with the reason
    usage(aws, mb=[150.0] * 120, start=datetime.now(UTC))
    out = sweep(aws, targets, machine, datetime.now(UTC) + timedelta(days=2))
    assert out["started"] == [] and "was undone at" in out["skipped"][0]["reason"]


def test_a_raise_from_the_trimmed_size_records_the_trim_as_undone(aws, target_function, function_env):
    # GIVEN our trim left the function at 192 MB
    function_env(MAX_REPAIRS_PER_HOUR="100")
    change(aws, 1024, "raise-1")
    change(aws, 192, "trim-0", trim=True)
    # WHEN an out-of-memory alarm later makes the normal loop raise it
    flow = trim_workflow(aws)
    flow["rawEvent"] = {}
    flow["diagnosisResult"] = {"diagnosisId": "d-2", "cause": "memory_exhaustion", "confidence": 0.9,
                               "decision": {"action": "REPAIR", "currentMemory": 192, "targetMemory": 512}}
    result = invoke(flow)
    # THEN it is raised, 192 MB is known-bad and no trim comes for 30 days
    assert (result["status"], memory(aws), result["trimUndone"]) == (RepairStatus.SUCCEEDED, 512, True)
    now = datetime.now(UTC).timestamp()
    assert memory_history.known_bad_size(state(aws), FN, now=now) == 192
    assert memory_history.trim_blocked(state(aws), FN, now=now)["raisedTo"] == 512


def test_a_raise_not_after_a_trim_records_nothing(aws, target_function, function_env):
    function_env(MAX_REPAIRS_PER_HOUR="100")
    flow = trim_workflow(aws)
    flow["diagnosisResult"] = {"diagnosisId": "d-2", "cause": "memory_exhaustion", "confidence": 0.9,
                               "decision": {"action": "REPAIR", "currentMemory": 128, "targetMemory": 256}}
    result = invoke(flow)
    assert result["status"] == RepairStatus.SUCCEEDED and "trimUndone" not in result
    assert memory_history.known_bad(state(aws), FN, now=datetime.now(UTC).timestamp()) is None


def test_the_kept_trim_notice_says_trimmed_and_healthy(aws, target_function, function_env):
    function_env(MAX_REPAIRS_PER_HOUR="100")
    change(aws, 1024, "raise-1")
    flow = trim_workflow(aws)
    flow["repair"] = invoke(flow)
    flow["verification"] = {"status": "IMPROVED", "final": True, "reason": "no failures before either"}
    note = notification.build(flow, notification.result_outcome(flow), "dev")
    assert note["subject"] == f"[dev] {FN}: memory trimmed 1024->192 MB, healthy"
    assert note["message"]["repair"]["action"] == "DECREASE_MEMORY"
    flow["verification"]["before"] = {"durationAvg": 1000.0}
    story = notification.build(flow, notification.result_outcome(flow), "dev")["message"]["story"]
    assert [m["what"] for m in story["memoryOverTime"]] == ["before our repair", "raised by the workflow", "trimmed"]
    costs = story["costPerMonthPerMillionInvocations"]
    assert costs["1024"] == pytest.approx(costs["128"] * 8) and "1000 ms average duration" in story["assumption"]
