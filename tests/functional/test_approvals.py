"""Approvals bound to a person: the approve/reject protocol and ExecuteRepair's check, against moto in-process.

Step Functions is a small fake here (moto's in-process backend has no callback tasks); the e2e module
tests/e2e/test_adversarial_approvals.py runs the same paths through the deployed state machine.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from auto_repair import approvals
from auto_repair.handlers import execute_repair
from auto_repair_local import lambda_versions

ALICE = "arn:aws:sts::123456789012:assumed-role/lambda-auto-repair-approver-dev/alice"
BOB = "arn:aws:sts::123456789012:assumed-role/lambda-auto-repair-approver-dev/bob"


class FakeStepFunctions:
    """Accepts a token once, like Step Functions; or answers with an error code. Sees the record while sending."""

    def __init__(self, table: Any, approval_id: str, error: str | None = None) -> None:
        self.table, self.approval_id, self.error = table, approval_id, error
        self.sent: list[dict] = []
        self.status_while_sending: list[str] = []

    def _send(self, **kwargs: Any) -> dict:
        self.status_while_sending.append(approvals.get(self.table, self.approval_id)["status"])
        if self.error:
            raise ClientError({"Error": {"Code": self.error, "Message": self.error}}, "SendTaskSuccess")
        self.sent.append(kwargs)
        return {}

    send_task_success = send_task_failure = _send


@pytest.fixture(autouse=True)
def versions_behaviour():
    """RevisionId on functions, as the local cloud and AWS have it (moto in-process has none)."""
    undo = lambda_versions.patch()
    yield
    undo()


@pytest.fixture
def state(aws):
    return aws.resource("dynamodb").Table("state")


def pending(state, approval_id: str = "apr-1", **overrides: Any) -> dict:
    fields = {"task_token": "token-1", "execution_id": "exec-1", "function_name": "orders", "current_memory": 128,
              "target_memory": 256, "timeout_seconds": 60, "revision_id": None, **overrides}
    return approvals.create(state, approval_id=approval_id, **fields)


# ---------------------------------------------------------------------------------------------- approve / reject
def test_approval_records_the_caller_identity_and_says_approved_only_after_the_token_was_accepted(aws, state):
    # GIVEN a pending request WHEN alice's credentials approve it
    pending(state)
    sfn = FakeStepFunctions(state, "apr-1")
    result = approvals.resolve(state, sfn, "apr-1", approve=True, who=ALICE, reason="go")
    # THEN the token went out while the record was SENDING, and only then did it become APPROVED by alice's ARN
    assert sfn.status_while_sending == ["SENDING"]
    record = approvals.get(state, "apr-1")
    assert result["status"] == record["status"] == "APPROVED" and record["decidedBy"] == ALICE
    assert record["deliveredAt"] and '"approvedBy": "' + ALICE in sfn.sent[0]["output"]


def test_a_second_decision_on_the_same_approval_is_refused(aws, state):
    # GIVEN an approval already given by alice WHEN bob (or alice again) answers the same id
    pending(state)
    approvals.resolve(state, FakeStepFunctions(state, "apr-1"), "apr-1", approve=True, who=ALICE)
    replay = FakeStepFunctions(state, "apr-1")
    for approve in (True, False):
        with pytest.raises(approvals.ApprovalError, match=f"already APPROVED \\(decided by {ALICE}\\)"):
            approvals.resolve(state, replay, "apr-1", approve=approve, who=BOB)
    # THEN nothing was sent again and the record still names alice
    assert replay.sent == [] and approvals.get(state, "apr-1")["decidedBy"] == ALICE


@pytest.mark.parametrize("code", sorted(approvals.EXPIRED_CODES))
def test_a_decision_after_the_wait_ended_is_recorded_expired(aws, state, code):
    # GIVEN a request whose workflow no longer waits WHEN approved THEN the CLI's error says EXPIRED, and so does
    # the record (never APPROVED)
    pending(state)
    with pytest.raises(approvals.ApprovalExpiredError, match="has EXPIRED"):
        approvals.resolve(state, FakeStepFunctions(state, "apr-1", error=code), "apr-1", approve=True, who=ALICE)
    record = approvals.get(state, "apr-1")
    assert record["status"] == "EXPIRED" and record["expiredReason"] == code


def test_an_undelivered_decision_gives_the_request_back(aws, state):
    # GIVEN Step Functions throttles WHEN approving THEN the request is PENDING again and can be approved later
    pending(state)
    with pytest.raises(approvals.ApprovalError, match="still PENDING"):
        approvals.resolve(state, FakeStepFunctions(state, "apr-1", error="ThrottlingException"), "apr-1",
                          approve=True, who=ALICE)
    assert approvals.get(state, "apr-1")["status"] == "PENDING"
    assert approvals.resolve(state, FakeStepFunctions(state, "apr-1"), "apr-1", approve=True, who=BOB)["status"] == "APPROVED"


@pytest.mark.parametrize("who", ["oncall@example.com", "", "arn:aws:lambda:us-east-1:123456789012:function:x",
                                 "arn:aws:sts::123456789012:assumed-role/r/s; DROP"])
def test_an_approver_that_is_not_an_identity_arn_is_refused(aws, state, who):
    pending(state)
    with pytest.raises(approvals.ApprovalError, match="not an AWS identity ARN"):
        approvals.resolve(state, FakeStepFunctions(state, "apr-1"), "apr-1", approve=True, who=who)
    assert approvals.get(state, "apr-1")["status"] == "PENDING"


def test_caller_identity_is_what_sts_says(aws):
    # moto's GetCallerIdentity for the test credentials: a user ARN
    assert approvals.caller_identity(aws.client("sts")).startswith("arn:aws:sts::123456789012:user/")


# ---------------------------------------------------------------------------------------------- ExecuteRepair's check
@pytest.fixture
def alarm(aws, target_function):
    cw = aws.client("cloudwatch")
    cw.put_metric_alarm(AlarmName="orders-errors", Namespace="AWS/Lambda", MetricName="Errors", Statistic="Sum",
                        Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold",
                        Dimensions=[{"Name": "FunctionName", "Value": "orders"}])
    cw.set_alarm_state(AlarmName="orders-errors", StateValue="ALARM", StateReason="test")
    return "orders-errors"


def workflow(approval: Any = None, target: int = 256, required: bool = True) -> dict:
    context = {"alarm": {"functionName": "orders", "alarmName": "orders-errors"},
               "diagnosisResult": {"decision": {"action": "REPAIR", "currentMemory": 128, "targetMemory": target,
                                                "approvalRequired": required}}}
    if approval is not None:
        context["approval"] = approval
    return context


def request(target: int = 256, execution: str = "exec-1") -> dict:
    return {"functionName": "orders", "targetMemory": target, "executionId": execution, "deployment": {}}


def check(aws, context: dict, req: dict | None = None, wait_s: float = 0.0) -> dict | None:
    return approvals.refusal(context, req or request(), state_table=aws.resource("dynamodb").Table("state"),
                             cloudwatch=aws.client("cloudwatch"), lambda_client=aws.client("lambda"),
                             wait_s=wait_s, sleep=lambda _s: None)


def approved(state, approval_id: str = "apr-1", who: str = ALICE, **overrides: Any) -> None:
    pending(state, approval_id, **overrides)
    approvals.resolve(state, FakeStepFunctions(state, approval_id), approval_id, approve=True, who=who)


def test_a_real_approval_that_still_applies_passes(aws, state, alarm):
    revision = aws.client("lambda").get_function_configuration(FunctionName="orders")["RevisionId"]
    approved(state, revision_id=revision)
    assert check(aws, workflow({"approvalId": "apr-1"})) is None
    # AND no approval needed, none given: nothing to check
    assert check(aws, workflow(required=False)) is None


FORGED = [
    ("no payload", lambda state: None, None, "without an approval id"),
    ("payload without id", lambda state: None, {"approved": True, "targetMemory": 256}, "without an approval id"),
    ("id not a string", lambda state: None, {"approvalId": ["apr-1"]}, "without an approval id"),
    ("unknown id", lambda state: None, {"approvalId": "apr-nope"}, "apr-nope does not exist"),
    ("record still PENDING", lambda state: pending(state), {"approvalId": "apr-1", "approvedBy": ALICE},
     "PENDING, not APPROVED"),
    ("record REJECTED", lambda state: (pending(state), approvals.resolve(
        state, FakeStepFunctions(state, "apr-1"), "apr-1", approve=False, who=ALICE)), {"approvalId": "apr-1"},
     "REJECTED, not APPROVED"),
    ("other execution (replayed)", lambda state: approved(state, execution_id="exec-0"), {"approvalId": "apr-1"},
     "belongs to execution exec-0"),
    ("other function", lambda state: approved(state, function_name="billing"), {"approvalId": "apr-1"},
     "is for billing"),
    ("other memory", lambda state: approved(state, target_memory=192), {"approvalId": "apr-1"},
     "pinned 192 MB, not 256 MB"),
]


@pytest.mark.parametrize(("setup", "payload", "why"), [c[1:] for c in FORGED], ids=[c[0] for c in FORGED])
def test_a_resumed_wait_without_a_matching_approved_record_is_refused(aws, state, alarm, setup, payload, why):
    # GIVEN the approval wait resumed by a direct SendTaskSuccess (or a stale/other approval)
    setup(state)
    # WHEN ExecuteRepair checks THEN it refuses and says why
    refused = check(aws, workflow(payload))
    assert refused is not None and refused["status"] == "APPROVAL_REFUSED" and why in refused["reason"], refused


def test_a_record_not_written_by_an_identity_is_refused(aws, state, alarm):
    # GIVEN a record someone set to APPROVED by hand with a typed name
    pending(state)
    state.update_item(Key={"pk": "APPROVAL#apr-1", "sk": "APPROVAL"}, UpdateExpression="SET #s = :a, decidedBy = :w",
                      ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":a": "APPROVED",
                                                                                          ":w": "oncall"})
    assert "not decided by an AWS identity" in check(aws, workflow({"approvalId": "apr-1"}))["reason"]


def test_a_ceiling_covers_any_step_up_to_it(aws, state, alarm):
    # GIVEN an approval with a ceiling (the stepped repair) THEN any target up to the ceiling passes, above refused
    approved(state)
    state.update_item(Key={"pk": "APPROVAL#apr-1", "sk": "APPROVAL"}, UpdateExpression="SET ceilingMemory = :c",
                      ExpressionAttributeValues={":c": 512})
    assert check(aws, workflow({"approvalId": "apr-1"}, target=384), request(384)) is None
    assert check(aws, workflow({"approvalId": "apr-1"}, target=512), request(512)) is None
    assert "ceiling 512 MB), not 640 MB" in check(aws, workflow({"approvalId": "apr-1"}, 640), request(640))["reason"]


def test_an_approval_still_being_sent_is_waited_for_then_refused(aws, state, alarm):
    # GIVEN a claim whose sender crashed after the send (record stays SENDING) THEN after the wait: refused
    pending(state)
    approvals._claim(state, "apr-1", decision="APPROVED", who=ALICE, reason="")
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(0.2)

    refused = approvals.refusal(workflow({"approvalId": "apr-1"}), request(), state_table=state,
                                cloudwatch=aws.client("cloudwatch"), lambda_client=aws.client("lambda"),
                                wait_s=2.0, sleep=sleep)
    assert "SENDING, not APPROVED" in refused["reason"] and sleeps


def test_a_late_approval_after_the_alarm_went_back_to_ok_is_refused(aws, state, alarm):
    approved(state)
    aws.client("cloudwatch").set_alarm_state(AlarmName=alarm, StateValue="OK", StateReason="recovered")
    refused = check(aws, workflow({"approvalId": "apr-1"}))
    assert "'orders-errors' is OK" in refused["reason"] and "recovered after the approval" in refused["reason"]


def test_an_approval_for_a_function_changed_since_is_refused(aws, state, alarm):
    lam = aws.client("lambda")
    revision = lam.get_function_configuration(FunctionName="orders")["RevisionId"]
    approved(state, revision_id=revision)
    # GIVEN someone changed the function after the request (here: its timeout; memory unchanged)
    lam.update_function_configuration(FunctionName="orders", Timeout=31)
    assert "was changed since the decision (RevisionId" in check(aws, workflow({"approvalId": "apr-1"}))["reason"]
    # AND a memory change is named as such
    lam.update_function_configuration(FunctionName="orders", MemorySize=192)
    assert "now has 192 MB, not the 128 MB" in check(aws, workflow({"approvalId": "apr-1"}))["reason"]


def test_a_missing_alarm_refuses(aws, state, alarm):
    approved(state)
    aws.client("cloudwatch").delete_alarms(AlarmNames=[alarm])
    assert "no longer exists" in check(aws, workflow({"approvalId": "apr-1"}))["reason"]


# ---------------------------------------------------------------------------------------------- the handler
def test_execute_repair_refuses_a_forged_resume_records_it_and_changes_nothing(aws, function_env, state, alarm):
    # GIVEN a pending approval and a workflow resumed with a forged payload that pins the same memory
    function_env(NOTIFICATION_TOPIC_ARN="")
    pending(state)
    context = {**workflow({"approved": True, "approvalId": "apr-1", "approvedBy": ALICE, "targetMemory": 256}),
               "evidence": {"function": {}}}
    context["alarm"]["settings"] = {"maxMemory": 3008}
    context["diagnosisResult"].update(cause="memory_exhaustion", confidence=0.9, diagnosisId="d1")
    lambda_context = SimpleNamespace(function_name="lambda-auto-repair-execute-repair-dev", memory_limit_in_mb=256,
                                     invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:x",
                                     aws_request_id="r1", get_remaining_time_in_millis=lambda: 60_000)
    result = execute_repair.lambda_handler({"context": context, "meta": {"executionId": "exec-1"}}, lambda_context)
    # THEN nothing changed, the REPAIR record says APPROVAL_REFUSED and why, no audit entry, no budget taken
    assert result["status"] == "APPROVAL_REFUSED" and "PENDING, not APPROVED" in result["reason"]
    assert aws.client("lambda").get_function_configuration(FunctionName="orders")["MemorySize"] == 128
    record = aws.resource("dynamodb").Table("incidents").get_item(
        Key={"incidentId": "exec-1", "recordType": "REPAIR"})["Item"]
    assert record["status"] == "APPROVAL_REFUSED" and "PENDING" in record["reason"]
    assert aws.resource("dynamodb").Table("audit").scan()["Items"] == []
    assert not [i for i in state.scan()["Items"] if i["pk"] == "BUDGET"]


# ---------------------------------------------------------------------------------------------- configuration reads
@pytest.mark.parametrize(("list_tags", "outcome", "says"), [
    (None, "OUT_OF_SCOPE", "not readable by auto-repair"),
    ("AccessDeniedException", "OUT_OF_SCOPE", "not readable by auto-repair"),
    ("ResourceNotFoundException", "IGNORED", "does not exist (deleted?)"),
], ids=["exists, out of scope", "tags unreadable too", "deleted"])
def test_a_function_whose_configuration_iam_hides_is_out_of_scope_unless_it_is_gone(list_tags, outcome, says):
    # GIVEN ParseAlarm's role may read the configuration of in-scope functions only (tag condition): AWS answers
    # AccessDenied for any other function, a deleted one included (it is in no scope); ListTags is unscoped
    from auto_repair.handlers.parse_alarm import check_target
    from auto_repair.settings import Settings

    class Denied:
        def get_function_configuration(self, **_kwargs: Any) -> dict:
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "GetFunctionConfiguration")

        def list_tags(self, *, Resource: str) -> dict:  # noqa: N803 - boto3's name
            assert Resource == "arn:aws:lambda:eu-west-1:111111111111:function:billing"
            if list_tags:
                raise ClientError({"Error": {"Code": list_tags, "Message": "no"}}, "ListTags")
            return {"Tags": {}}

    # WHEN its alarm is checked THEN out of scope (or, gone, ignored), saying why, not a workflow failure
    checked = check_target({"functionName": "billing", "account": "111111111111", "region": "eu-west-1"},
                           Settings(), Denied())
    assert checked["outcome"] == outcome and says in checked["reason"]
