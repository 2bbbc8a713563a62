"""Step up inside one incident (issue 13): ExecuteRepair -> VerifyRepair -> (STEP_UP) ExecuteRepair ... against moto.

The handlers run in-process in the order the state machine runs them; the target function's after windows are
log lines put into moto's CloudWatch Logs (REPORT lines at each size, the runtime's out-of-memory line), so the
after-window diagnosis, the controller, the guards and the known-bad record all run for real.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from botocore.exceptions import ClientError

from auto_repair import approvals, memory_history, notification
from auto_repair.handlers import execute_repair, notify, request_approval, verify
from auto_repair.outcomes import Notice, RepairStatus, StepAction
from auto_repair.records import AuditLog, IncidentStore
from auto_repair_local import lambda_versions

CONTEXT = SimpleNamespace(function_name="lambda-auto-repair-verify-dev", memory_limit_in_mb=256,
                          invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:x",
                          aws_request_id="req-1", get_remaining_time_in_millis=lambda: 120_000)
_IDS = itertools.count(1)


@pytest.fixture(autouse=True)
def versions_behaviour():
    # RevisionId that changes with each change and is checked: each step must name the revision the last one left.
    undo = lambda_versions.patch()
    yield
    undo()


@pytest.fixture
def env(aws, function_env, target_function):
    topic = aws.client("sns").create_topic(Name="notes")["TopicArn"]
    function_env(MAX_REPAIRS_PER_HOUR="100", MAX_REPAIR_STEPS="3", MIN_INVOCATIONS_FOR_VERDICT="3",
                 NOTIFICATION_TOPIC_ARN=topic)
    return aws


def invoke(handler, flow, action=None):
    payload = {"context": flow, "meta": {"executionId": "exec-1"}, **({"action": action} if action else {})}
    return handler.lambda_handler(payload, CONTEXT)


def memory(aws) -> int:
    return aws.client("lambda").get_function_configuration(FunctionName="orders")["MemorySize"]


def window(aws, size: int, *, ok: int, oom: int, used: int | None = None, version: str = "$LATEST") -> None:
    """One minute of invocations at ``size``: ``ok`` successes using ``used`` MB, ``oom`` killed at the limit."""
    logs = aws.client("logs")
    group = "/aws/lambda/orders"
    try:
        logs.create_log_group(logGroupName=group)
    except ClientError:
        pass
    stream = f"2026/11/22/[{version}]{next(_IDS):06d}"
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    at = int((datetime.now(UTC) - timedelta(seconds=30)).timestamp() * 1000)
    lines = []
    for i in range(ok + oom):
        rid = f"6f1c9f7e-7b8a-4a53-9a1e-{next(_IDS):012d}"
        failed = i >= ok
        if failed:
            lines.append(f"RequestId: {rid} Error: Runtime exited with error: signal: killed Runtime.ExitError")
        lines.append(f"REPORT RequestId: {rid}\tDuration: 900.00 ms\tBilled Duration: 900 ms\tMemory Size: {size} MB"
                     f"\tMax Memory Used: {size if failed else used or size // 2} MB"
                     + ("\tStatus: error\tError Type: Runtime.OutOfMemory" if failed else ""))
    logs.put_log_events(logGroupName=group, logStreamName=stream,
                        logEvents=[{"timestamp": at + i, "message": m} for i, m in enumerate(lines)])


APPROVER = "arn:aws:sts::123456789012:assumed-role/lambda-auto-repair-approver-dev/alice"


def incident(aws, *, approval=None) -> dict:
    """The context as DiagnoseIssue leaves it: 128 MB, every invocation in the window before killed by OOM."""
    config = aws.client("lambda").get_function_configuration(FunctionName="orders")
    before = {"invocations": 20, "errors": 20, "timeouts": 0, "oom": 20, "durationP95": 900.0, "durationAvg": 900.0,
              "maxMemoryUtilization": 1.0, "reportLines": 20}
    flow = {
        "alarm": {"functionName": "orders", "executionId": "exec-1", "alarmName": "orders-errors",
                  "metricName": "Errors", "settings": {"maxMemory": 3008, "approvalRequired": bool(approval)}},
        "evidence": {"functionName": "orders", "currentMemorySize": 128, "runtime": "python3.12",
                     "timeoutSeconds": 30, "windowStats": before, "window": {"periodSeconds": 60},
                     "function": {"revisionId": config["RevisionId"], "tags": {}}, "deployment": {"kind": "LATEST"}},
        "diagnosisResult": {"diagnosisId": "d-1", "cause": "memory_exhaustion", "confidence": 0.9,
                            "isMemoryIssue": True,
                            "decision": {"action": "REPAIR", "currentMemory": 128, "targetMemory": 256}},
    }
    if approval:
        flow["approval"] = {**approval, "approvalId": approved_record(aws, approval)}
    return flow


def approved_record(aws, approval: dict) -> str:
    """What `auto-repair approve` leaves: an APPROVED record decided by an AWS identity, and the alarm still in
    ALARM (ExecuteRepair re-reads both before every step, auto_repair.approvals.refusal)."""
    state = aws.resource("dynamodb").Table("state")
    approvals.create(state, approval_id="apr-step", task_token="token-1", execution_id="exec-1",
                     function_name="orders", current_memory=128, target_memory=int(approval["targetMemory"]),
                     timeout_seconds=3600, ceiling_memory=approval.get("ceilingMemory"))
    state.update_item(Key={"pk": "APPROVAL#apr-step", "sk": "APPROVAL"},
                      UpdateExpression="SET #s = :a, decidedBy = :w", ExpressionAttributeNames={"#s": "status"},
                      ExpressionAttributeValues={":a": "APPROVED", ":w": APPROVER})
    cloudwatch = aws.client("cloudwatch")
    cloudwatch.put_metric_alarm(AlarmName="orders-errors", MetricName="Errors", Namespace="AWS/Lambda",
                                Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=1,
                                ComparisonOperator="GreaterThanOrEqualToThreshold")
    cloudwatch.set_alarm_state(AlarmName="orders-errors", StateValue="ALARM", StateReason="test")
    return "apr-step"


def repaired(flow: dict, result: dict) -> dict:
    """ExecuteRepair's result, dated a minute back so the after window put by ``window`` falls after it."""
    return {**result, "endTime": (datetime.now(UTC) - timedelta(minutes=1)).isoformat()}


def test_a_function_needing_far_more_steps_up_inside_one_incident_and_stops_when_healthy(env):
    aws = env
    flow = incident(aws)
    # GIVEN the first step 128 -> 256 MB, and its after window: every invocation still killed at 256 MB
    flow["repair"] = repaired(flow, invoke(execute_repair, flow))
    assert memory(aws) == 256 and flow["repair"]["step"] == 1
    window(aws, 256, ok=0, oom=12)
    # WHEN VerifyRepair judges it
    flow["verification"] = invoke(verify, flow)
    # THEN the controller steps up inside this execution: no rollback, the step is in the history
    decided = flow["verification"]["step"]
    assert flow["verification"]["final"] and decided["action"] == StepAction.STEP_UP, flow["verification"]
    assert decided["targetMemory"] > 256 and flow["verification"]["rollback"] is False
    assert [(s["step"], s["memoryBefore"], s["memoryAfter"]) for s in flow["verification"]["steps"]] == [(1, 128, 256)]
    assert flow["verification"]["afterDiagnosis"]["isMemoryIssue"] is True
    # AND the sizes it died at are remembered (the window before at 128 MB, the step's after window at 256 MB)
    state = aws.resource("dynamodb").Table("state")
    assert memory_history.known_bad_size(state, "orders", now=datetime.now(UTC).timestamp()) == 256
    # WHEN the state machine loops back to ExecuteRepair: step 2, from where step 1 left it
    target = decided["targetMemory"]
    flow["repair"] = repaired(flow, invoke(execute_repair, flow))
    assert flow["repair"]["step"] == 2 and flow["repair"]["originalMemory"] == 256
    assert memory(aws) == target
    # AND its after window is healthy
    window(aws, target, ok=12, oom=0, used=int(target * 0.6))
    flow["verification"] = invoke(verify, flow)
    # THEN the controller stops: healthy, kept, two steps in the history
    assert flow["verification"]["status"] == "IMPROVED" and flow["verification"]["step"]["action"] == StepAction.HEALTHY
    assert flow["verification"]["rollback"] is False
    assert [s["memoryAfter"] for s in flow["verification"]["steps"]] == [256, target]
    # AND each step was a normal change: audited BEFORE/AFTER, one unit of the hour's budget each
    phases = sorted((e["oldValue"]["MemorySize"], e["phase"]) for e in AuditLog(
        aws.resource("dynamodb").Table("audit")).for_execution("exec-1"))
    assert phases == [(128, "AFTER"), (128, "BEFORE"), (256, "AFTER"), (256, "BEFORE")]
    budget = state.scan(FilterExpression="pk = :b", ExpressionAttributeValues={":b": "BUDGET"})["Items"]
    assert sum(int(i["repairs"]) for i in budget) == 2
    # AND the notice tells the whole incident: 128 -> target in 2 steps, each step's sizes and error rates
    built = notification.build(flow, Notice.REPAIRED, "dev")
    assert built["subject"] == f"[dev] orders: memory 128->{target} MB, recovered"
    summary = built["message"]["summary"]
    assert f"128 -> {target} MB in 2 steps" in summary
    assert "step 1: 128 MB -> 256 MB, error rate 100% -> 100%, not improved, still memory-bound" in summary
    assert f"step 2: 256 MB -> {target:,} MB, error rate 100% -> 0%, improved" in summary
    assert [s["memoryAfter"] for s in built["message"]["steps"]] == [256, target]
    # AND NotifyResult keeps the steps on the incident record
    flow["notification"] = invoke(notify, {**flow})
    record = IncidentStore(aws.resource("dynamodb").Table("incidents")).get_incident("exec-1")
    assert [s["memoryAfter"] for s in record["alarm"]["steps"]] == [256, target]
    assert record["alarm"]["outcome"] == "REPAIRED"


def test_steps_stop_at_max_memory_keep_the_best_size_and_say_what_the_evidence_suggests(env):
    aws = env
    flow = incident(aws)
    flow["alarm"]["settings"]["maxMemory"] = 512
    sizes = []
    # GIVEN a function killed at every size the controller tries (it needs 12x)
    for _ in range(3):
        flow["repair"] = repaired(flow, invoke(execute_repair, flow))
        sizes.append(memory(aws))
        window(aws, sizes[-1], ok=0, oom=12)
        flow["verification"] = invoke(verify, flow)
        if flow["verification"]["step"]["action"] != StepAction.STEP_UP:
            break
    decided = flow["verification"]["step"]
    # THEN it reached MaxMemory, stopped there and keeps it: no rollback to a size it is known to die at
    assert sizes == [256, 512] and decided["action"] == StepAction.KEEP_BEST, decided
    assert decided["stopReason"] == "MAX_MEMORY" and flow["verification"]["rollback"] is False
    assert memory(aws) == 512
    # AND the notice says so plainly, with what the evidence now suggests
    summary = notification.build(flow, Notice.NOT_IMPROVED, "dev")["message"]["summary"]
    assert "Reached MaxMemory 512 MB and the function still fails of memory" in summary
    assert "kept the best size reached, 512 MB" in summary and "The evidence now suggests" in summary


def step_up(flow: dict, target: int) -> dict:
    """VerifyRepair's answer after a step whose after window still says memory: raise to ``target``."""
    repair = flow["repair"]
    steps = [*(flow.get("verification") or {}).get("steps", []),
             {"step": repair["step"], "memoryBefore": repair["originalMemory"], "memoryAfter": repair["newMemory"],
              "verdict": "NOT_IMPROVED", "errorRateBefore": 1.0, "errorRateAfter": 0.5, "memoryBoundAfter": True}]
    return {"final": True, "status": "NOT_IMPROVED", "repairId": repair["repairId"], "steps": steps,
            "step": {"action": "STEP_UP", "targetMemory": target, "reason": "still OOM"}, "rollback": False}


def test_a_rollback_after_several_steps_restores_the_best_size_reached_not_the_original(env):
    aws = env
    flow = incident(aws)
    # GIVEN two steps, 128 -> 256 -> 512 MB, and the controller's verdict on the second: worse, back to 256 MB
    flow["repair"] = invoke(execute_repair, flow)
    flow["verification"] = step_up(flow, 512)
    flow["repair"] = invoke(execute_repair, flow)
    assert memory(aws) == 512 and flow["repair"]["step"] == 2
    flow["verification"] = {**step_up(flow, 0), "step": {"action": "ROLLBACK", "rollbackTo": 256, "bestMemory": 256,
                                                         "reason": "step 2 of 3: 256 -> 512 MB made things worse"},
                            "rollback": True, "restoreTo": 256, "rollbackReason": "made things worse; restore 256 MB"}
    # WHEN RollbackRepair runs
    flow["rollback"] = invoke(execute_repair, flow, "ROLLBACK")
    # THEN the function is at the best size reached, audited, and the notice says it kept it
    assert flow["rollback"]["status"] == RepairStatus.ROLLED_BACK and memory(aws) == 256
    assert flow["rollback"]["restoredMemory"] == 256 and flow["rollback"]["fromMemory"] == 512
    rolled = [e for e in AuditLog(aws.resource("dynamodb").Table("audit")).for_execution("exec-1")
              if e["phase"] == "ROLLED_BACK"]
    assert [(e["oldValue"]["MemorySize"], e["newValue"]["MemorySize"]) for e in rolled] == [(512, 256)]
    built = notification.build(flow, Notice.NOT_IMPROVED, "dev")
    assert built["subject"] == "[dev] orders: memory 128->512 MB not recovered, kept best 256 MB"


def test_steps_stopped_by_the_kill_switch_keep_the_earlier_steps_and_their_cooldown(env):
    aws = env
    flow = incident(aws)
    flow["alarm"]["outcome"] = "PROCEED"
    flow["repair"] = invoke(execute_repair, flow)
    flow["verification"] = step_up(flow, 512)
    # GIVEN an operator turns the kill switch on between step 1 and step 2
    aws.client("ssm").put_parameter(Name="/lambda-auto-repair/dev/paused", Value="true", Type="String",
                                    Overwrite=True)
    flow["repair"] = invoke(execute_repair, flow)
    # THEN step 2 changes nothing, the function keeps step 1's size, and the notice tells both
    assert flow["repair"]["status"] == "PAUSED" and flow["repair"]["step"] == 2 and memory(aws) == 256
    assert flow["repair"]["originalMemory"] == 256 and flow["repair"]["targetMemory"] == 512
    built = notification.build(flow, Notice.PAUSED, "dev")
    assert built["message"]["steps"][0]["memoryAfter"] == 256
    # AND NotifyResult starts the cooldown from step 1 (it changed the function) and releases the lock
    invoke(notify, flow)
    state = aws.resource("dynamodb").Table("state")
    assert state.get_item(Key={"pk": "COOLDOWN#orders", "sk": "COOLDOWN"}).get("Item")


def test_rollback_never_lands_at_or_below_a_fresh_known_bad_size(env):
    aws = env
    flow = incident(aws)
    flow["repair"] = invoke(execute_repair, flow)
    # GIVEN verification wants the original 128 MB back, but the function was seen dying of memory at 128 MB
    memory_history.record_known_bad(aws.resource("dynamodb").Table("state"), "orders", 128,
                                    at=datetime.now(UTC).timestamp(), execution_id="exec-0", evidence="OOM x20")
    flow["verification"] = {"status": "NOT_IMPROVED", "final": True, "rollback": True, "restoreTo": 128,
                            "reason": "oom", "rollbackReason": "the change did not help"}
    # WHEN RollbackRepair runs
    flow["rollback"] = invoke(execute_repair, flow, "ROLLBACK")
    # THEN nothing is lowered, and the record and the notice say why
    assert memory(aws) == 256 and flow["rollback"]["status"] == RepairStatus.SKIPPED
    assert "known-bad" in flow["rollback"]["reason"]
    summary = notification.build(flow, Notice.NOT_IMPROVED, "dev")["message"]["summary"]
    assert "NOT rolled back: not rolled back to 128 MB" in summary


@pytest.mark.parametrize(
    ("approval", "allowed"),
    [
        ({"approved": True, "targetMemory": 256, "ceilingMemory": 1024}, True),
        ({"approved": True, "targetMemory": 256}, False),  # no ceiling: the first step only
        ({"approved": True, "targetMemory": 256, "ceilingMemory": 384}, False),
    ],
)
def test_a_further_step_needs_the_approval_to_cover_it(env, approval, allowed):
    aws = env
    flow = incident(aws, approval=approval)
    flow["repair"] = repaired(flow, invoke(execute_repair, flow))
    # GIVEN the controller asks for a step beyond 256 MB (as VerifyRepair would, looping back)
    flow["verification"] = {"final": True, "status": "NOT_IMPROVED", "repairId": flow["repair"]["repairId"],
                            "steps": [{"step": 1, "memoryBefore": 128, "memoryAfter": 256}],
                            "step": {"action": "STEP_UP", "targetMemory": 512, "reason": "still OOM"}}
    # WHEN ExecuteRepair runs the step THEN it applies it only within the approved ceiling
    if allowed:
        assert invoke(execute_repair, flow)["step"] == 2 and memory(aws) == 512
    else:
        with pytest.raises(Exception, match="refusing to apply a change nobody approved"):
            invoke(execute_repair, flow)
        assert memory(aws) == 256


def test_verify_at_the_approved_ceiling_asks_for_a_new_approval_and_keeps_the_best(env):
    aws = env
    flow = incident(aws, approval={"approved": True, "targetMemory": 256, "ceilingMemory": 256})
    flow["repair"] = repaired(flow, invoke(execute_repair, flow))
    window(aws, 256, ok=0, oom=12)
    flow["verification"] = invoke(verify, flow)
    decided = flow["verification"]["step"]
    assert decided["action"] == StepAction.NEEDS_APPROVAL and decided["stopReason"] == "CEILING"
    assert flow["verification"]["rollback"] is False and memory(aws) == 256
    summary = notification.build(flow, Notice.NOT_IMPROVED, "dev")["message"]["summary"]
    assert "A new approval is needed to go further" in summary


def test_an_approval_request_states_the_ceiling_and_its_cost_and_the_approval_carries_it(env):
    aws = env
    flow = incident(aws)
    flow["evidence"]["seriesSummary"] = {"Duration.Average": {"points": 5, "average": 900.0, "maximum": 900.0}}
    # WHEN RequestApproval asks for the first step 128 -> 256 MB with MaxRepairSteps=3
    asked = request_approval.lambda_handler({"context": flow, "meta": {"executionId": "exec-1"},
                                             "taskToken": "token-1"}, CONTEXT)
    # THEN the pending approval pins the first step and the ceiling later steps may reach
    state = aws.resource("dynamodb").Table("state")
    item = approvals.get(state, asked["approvalId"])
    assert (item["targetMemory"], item["ceilingMemory"]) == (256, 1024)
    # AND the request (record and notice) says so in words, with the cost of the ceiling
    request = IncidentStore(aws.resource("dynamodb").Table("incidents")).get_incident("exec-1")["approval"]
    assert "up to 1,024 MB in at most 3 steps" in request["ceiling"]
    assert request["change"]["ceilingMemory"] == 1024
    ceiling_cost = request["estimatedCostAtCeiling"]["perMillionUSD"]
    assert ceiling_cost > request["estimatedCostChange"]["perMillionUSD"] > 0
    # AND approving it hands the workflow both figures (ExecuteRepair checks each step against them)
    sent = {}

    class Workflow:
        def send_task_success(self, taskToken, output):  # noqa: N803 - boto3's parameter names
            sent.update(token=taskToken, output=json.loads(output))

    approvals.resolve(state, Workflow(), asked["approvalId"], approve=True, who=APPROVER)
    assert sent["output"]["targetMemory"] == 256 and sent["output"]["ceilingMemory"] == 1024


def test_behind_an_alias_each_step_publishes_a_version_and_a_rollback_returns_to_the_best_ones(env, function_env):
    aws = env
    function_env(MAX_REPAIRS_PER_HOUR="100", MAX_REPAIR_STEPS="3", ALLOW_ALIAS_UPDATE="true")
    lam = aws.client("lambda")
    lam.create_alias(FunctionName="orders", Name="live", FunctionVersion=lam.publish_version(FunctionName="orders")[
        "Version"])
    flow = incident(aws)
    flow["evidence"]["deployment"] = {"kind": "ALIAS", "qualifier": "live", "version": "1"}
    # GIVEN step 1 behind alias live: version 2 at 256 MB, still killed at every invocation
    flow["repair"] = repaired(flow, invoke(execute_repair, flow))
    assert flow["repair"]["alias"] == {**flow["repair"]["alias"], "previousVersion": "1", "newVersion": "2"}
    window(aws, 256, ok=0, oom=12, version="2")
    flow["verification"] = invoke(verify, flow)
    assert flow["verification"]["step"]["action"] == StepAction.STEP_UP, flow["verification"]["step"]
    # WHEN the loop runs step 2 THEN it starts from version 2 and publishes version 3 with the new size
    flow["repair"] = repaired(flow, invoke(execute_repair, flow))
    target = flow["repair"]["newMemory"]
    assert (flow["repair"]["step"], flow["repair"]["alias"]["previousVersion"], flow["repair"]["alias"]["newVersion"],
            flow["repair"]["originalMemory"]) == (2, "2", "3", 256)
    assert lam.get_alias(FunctionName="orders", Name="live")["FunctionVersion"] == "3"
    assert lam.get_function_configuration(FunctionName="orders", Qualifier="3")["MemorySize"] == target
    # AND when a rollback to 256 MB is decided, the alias goes back to version 2 (the version with that size); the
    # known-bad record of 256 MB is taken away first (as once it is stale), or it would rightly refuse
    window(aws, target, ok=12, oom=0, used=100, version="3")
    aws.resource("dynamodb").Table("state").delete_item(Key={"pk": "MEMORY#orders", "sk": "KNOWNBAD"})
    flow["verification"] = {**invoke(verify, flow), "rollback": True, "restoreTo": 256,
                            "rollbackReason": "made things worse"}
    assert flow["verification"]["versions"] == {"128": "1", "256": "2", str(target): "3"}
    flow["rollback"] = invoke(execute_repair, flow, "ROLLBACK")
    assert flow["rollback"]["alias"] == {"name": "live", "restoredVersion": "2", "abandonedVersion": "3"}
    assert lam.get_alias(FunctionName="orders", Name="live")["FunctionVersion"] == "2"
