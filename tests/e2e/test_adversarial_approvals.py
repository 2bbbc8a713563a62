"""Approvals are a person's decision: forged, replayed, expired and late approvals refused, end to end.

Every function here needs an approval (``auto-repair:approval=required``: what staging and prod require of every
repair), fails the real way (OOM under traffic, alarm, EventBridge, the deployed state machine) and is then
answered as an attacker or an on-call engineer would:

- forged: the task token read from the state table and sent straight to Step Functions, with the pinned memory,
  while the approval record is still PENDING;
- replayed: the same, naming another execution's real APPROVED approval; and the CLI approving an id twice;
- expired: approved with the CLI after the approval wait timed out;
- late: approved after the function recovered (its alarm back to OK);
- real: approved with the CLI under the approver role's credentials (assumed role session "alice").

All run at once (one function each) so the module takes as long as the slowest path (the expired one: the
local ApprovalTimeoutSeconds, 60 s).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from auto_repair.records import AuditLog, IncidentStore
from auto_repair_cli import scenario

REPO = Path(__file__).resolve().parents[2]
APPROVER_SESSION = "alice"
# The first test also waits for the deployment and the approval timeout (60 s) of the expired case.
pytestmark = pytest.mark.timeout(900)


@dataclass
class Case:
    name: str
    answer: str  # forged / replayed / expired / late / real
    approval_id: str = ""
    execution: dict | None = None
    error: str | None = None
    cli: list[subprocess.CompletedProcess] = field(default_factory=list)
    traffic: Any = None


CASES = {kind: Case(f"adv-{kind}", kind) for kind in ("forged", "replayed", "expired", "late", "real")}


def state_table(deployed):
    resource = boto3.resource("dynamodb", endpoint_url=deployed.cloud.endpoint, region_name="us-east-1",
                              aws_access_key_id="test", aws_secret_access_key="test")
    return resource.Table(f"lambda-auto-repair-state-{deployed.environment}")


def approval_record(deployed, approval_id: str) -> dict:
    return state_table(deployed).get_item(Key={"pk": f"APPROVAL#{approval_id}", "sk": "APPROVAL"},
                                          ConsistentRead=True)["Item"]


def approver_env(deployed) -> dict[str, str]:
    """The local cloud's environment with a profile "approver": the stack's approver role, session "alice"."""
    role = f"arn:aws:iam::123456789012:role/lambda-auto-repair-approver-{deployed.environment}"
    creds = deployed.cloud.client("sts").assume_role(RoleArn=role, RoleSessionName=APPROVER_SESSION)["Credentials"]
    path = deployed.cloud.state_dir / "approver-credentials"
    path.write_text(f"[approver]\naws_access_key_id = {creds['AccessKeyId']}\n"
                    f"aws_secret_access_key = {creds['SecretAccessKey']}\naws_session_token = {creds['SessionToken']}\n")
    env = {k: v for k, v in deployed.cloud.env().items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    return {**env, "AWS_SHARED_CREDENTIALS_FILE": str(path)}


def cli(deployed, case: Case, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "auto_repair_cli.main", *args, "--local", "--profile", "approver"],
                          cwd=REPO, env=approver_env(deployed), capture_output=True, text=True, timeout=60)
    case.cli.append(proc)
    return proc


def forge(deployed, case: Case, approval_id: str) -> None:
    """What anyone who can read the state table and call SendTaskSuccess can do: resume the wait directly."""
    record = approval_record(deployed, case.approval_id)
    deployed.cloud.client("stepfunctions").send_task_success(taskToken=record["taskToken"], output=json.dumps({
        "approved": True, "approvalId": approval_id, "targetMemory": int(record["targetMemory"]),
        "approvedBy": "arn:aws:sts::123456789012:assumed-role/lambda-auto-repair-approver-local/mallory"}))


def alarm_is(deployed, name: str, state: str) -> bool:
    alarms = deployed.cloud.client("cloudwatch").describe_alarms(AlarmNamePrefix=f"lambda-errors-alarm-{name}")
    return bool(alarms["MetricAlarms"]) and all(a["StateValue"] == state for a in alarms["MetricAlarms"])


def answer(deployed, case: Case, stop: threading.Event) -> None:
    """Act once the approval request arrives (read from the outbox, as the on-call would)."""
    while not stop.is_set() and not case.approval_id:
        requests = [m for m in deployed.notifications(case.name) if m["body"]["type"] == "APPROVAL_REQUEST"]
        if requests:
            case.approval_id = requests[0]["body"]["approval"]["approvalId"]
        else:
            stop.wait(1)
    if not case.approval_id:
        return
    actions: dict[str, Callable[[], None]] = {
        "forged": lambda: forge(deployed, case, case.approval_id),
        "replayed": lambda: replay(deployed, case, stop),
        "expired": lambda: None,  # answered after the execution ended (see the fixture)
        "late": lambda: late(deployed, case, stop),
        "real": lambda: cli(deployed, case, "approve", case.approval_id, "--reason", "checked the graphs"),
    }
    actions[case.answer]()


def replay(deployed, case: Case, stop: threading.Event) -> None:
    real = CASES["real"]
    scenario.wait_for(lambda: real.approval_id and approval_record(deployed, real.approval_id)["status"]
                      == "APPROVED", 240, what="the real approval")
    forge(deployed, case, real.approval_id)


def late(deployed, case: Case, stop: threading.Event) -> None:
    case.traffic.stop()  # the function stops failing: its alarm goes back to OK (missing data = not breaching)
    scenario.wait_for(lambda: alarm_is(deployed, case.name, "OK"), 120, what=f"{case.name}'s alarm back to OK")
    cli(deployed, case, "approve", case.approval_id)


@pytest.fixture(scope="module")
def results(deployed):
    cloud = deployed.cloud
    lam, iam, cw, sfn = (cloud.client(s) for s in ("lambda", "iam", "cloudwatch", "stepfunctions"))
    begun = datetime.now(UTC).replace(microsecond=0)
    stop, threads = threading.Event(), []
    for case in CASES.values():
        scenario.create_target(lam, iam, case.name, scenario.MEMORY_HOG, memory=128, env={"WORK_MB": "150"},
                               tags={"auto-repair:approval": "required"})
        scenario.put_guide_alarms(cw, case.name, deployed.topic_arn, period=10)
        case.traffic = scenario.Traffic(lam, case.name, interval=1.0)
        case.traffic.start()
        threads.append(threading.Thread(target=answer, args=(deployed, case, stop), daemon=True))

    def finish(case: Case) -> None:
        try:
            case.execution = scenario.wait_for_execution(sfn, deployed.state_machine_arn, case.name, timeout=300,
                                                         after=begun)
        except TimeoutError as exc:
            case.error = str(exc)

    threads += [threading.Thread(target=finish, args=(c,)) for c in CASES.values()]
    for t in threads:
        t.start()
    for t in threads[len(CASES):]:
        t.join()
    stop.set()
    for case in CASES.values():
        case.traffic.stop()
    expired = CASES["expired"]
    if expired.approval_id:  # the wait timed out: now the on-call approves
        cli(deployed, expired, "approve", expired.approval_id)
    real = CASES["real"]
    if real.approval_id:  # and someone approves the applied one again
        cli(deployed, real, "approve", real.approval_id)
    return CASES


def check(deployed, case: Case) -> tuple[dict, dict, list[dict], int]:
    assert case.error is None, case.error
    assert case.approval_id, f"{case.name}: no approval request"
    resource = boto3.resource("dynamodb", endpoint_url=deployed.cloud.endpoint, region_name="us-east-1",
                              aws_access_key_id="test", aws_secret_access_key="test")
    incident_id = case.execution["executionArn"].rsplit(":", 1)[-1]
    incident = IncidentStore(resource.Table(f"lambda-auto-repair-incidents-{deployed.environment}")).get_incident(
        incident_id)
    incident["audit"] = AuditLog(resource.Table(f"lambda-auto-repair-audit-{deployed.environment}")).for_execution(
        incident_id)
    memory = deployed.cloud.client("lambda").get_function_configuration(FunctionName=case.name)["MemorySize"]
    return incident, approval_record(deployed, case.approval_id), deployed.notifications(case.name), memory


def of_type(messages: list[dict], kind: str) -> dict:
    found = [m for m in messages if m["body"]["type"] == kind]
    assert found, f"no {kind} notification; got {[m['body']['type'] for m in messages]}"
    return found[-1]


def assert_refused(deployed, case: Case, why: str) -> tuple[dict, dict]:
    incident, record, messages, memory = check(deployed, case)
    # THEN memory is unchanged, nothing was audited (no change), the refusal is recorded and notified with why
    assert memory == 128
    assert incident["audit"] == []
    assert incident["repair"]["status"] == "APPROVAL_REFUSED" and why in incident["repair"]["reason"], incident["repair"]
    assert incident["alarm"]["outcome"] == "APPROVAL_REFUSED" and incident["alarm"]["status"] == "ESCALATED"
    note = of_type(messages, "APPROVAL_REFUSED")
    assert note["subject"] == f"[{deployed.environment}] {case.name}: approval REFUSED, no change"
    assert why in note["body"]["summary"] and note["body"]["needsHuman"] is True
    return incident, record


def test_a_forged_send_task_success_changes_nothing_and_is_reported(deployed, results):
    case = results["forged"]
    _, record = assert_refused(deployed, case, "is PENDING, not APPROVED")
    # AND the approval record was never decided by anyone
    assert record["status"] == "PENDING" and "decidedBy" not in record


def test_a_replayed_approval_of_another_execution_is_refused(deployed, results):
    case, real = results["replayed"], results["real"]
    assert_refused(deployed, case, f"approval {real.approval_id} belongs to execution")


def test_approving_the_same_id_twice_is_refused(deployed, results):
    real = results["real"]
    first, again = real.cli
    assert first.returncode == 0, first.stderr
    assert again.returncode == 1 and f"{real.approval_id} is already APPROVED" in again.stderr, again.stderr


def test_an_approval_after_the_wait_timed_out_is_expired(deployed, results):
    case = results["expired"]
    incident, record, messages, memory = check(deployed, case)
    # THEN the run ended as a timeout, the late CLI says EXPIRED, and so does the record; nothing changed
    of_type(messages, "APPROVAL_TIMEOUT")
    (proc,) = case.cli
    assert proc.returncode == 1 and "has EXPIRED" in proc.stderr, proc.stderr
    assert record["status"] == "EXPIRED" and memory == 128 and incident["audit"] == []


def test_an_approval_after_the_alarm_went_back_to_ok_is_not_applied(deployed, results):
    case = results["late"]
    (proc,) = case.cli
    assert proc.returncode == 0, proc.stderr  # the person did approve; the workflow decides it no longer applies
    _, record = assert_refused(deployed, case, "is OK")
    assert "recovered after the approval was requested" in check(deployed, case)[0]["repair"]["reason"]
    assert record["status"] == "APPROVED"


def test_a_real_approval_is_applied_and_recorded_with_the_caller_identity(deployed, results):
    case = results["real"]
    incident, record, messages, memory = check(deployed, case)
    identity = f"arn:aws:sts::123456789012:assumed-role/lambda-auto-repair-approver-{deployed.environment}/"
    # THEN the pinned change was applied, and every record names the approver by the ARN AWS gave them
    assert memory > 128 and incident["repair"]["status"] == "SUCCEEDED"
    assert record["status"] == "APPROVED" and record["decidedBy"].startswith(identity + APPROVER_SESSION)
    assert case.cli[0].stdout.startswith(f"{case.approval_id} approved by {record['decidedBy']}:")
    note = of_type(messages, "REPAIRED")
    assert note["body"]["approvalDecision"]["approvedBy"] == record["decidedBy"]
    assert {a["phase"] for a in incident["audit"]} == {"BEFORE", "AFTER"}
    assert all(f"approved by {record['decidedBy']}" in a["reason"] for a in incident["audit"])


def test_the_local_cloud_keeps_a_table_whose_deletion_policy_is_retain_by_condition(local_cloud):
    """The audit table is kept in staging/prod by ``DeletionPolicy: !If [IsProdLike, Retain, Delete]``; AWS resolves
    the condition (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-attribute-deletionpolicy.html),
    moto compared the object to "Retain" and deleted the table."""
    cfn, ddb = local_cloud.client("cloudformation"), local_cloud.client("dynamodb")
    template = {"Parameters": {"Env": {"Type": "String"}},
                "Conditions": {"Kept": {"Fn::Equals": [{"Ref": "Env"}, "prod"]}},
                "Resources": {"T": {"Type": "AWS::DynamoDB::Table",
                                    "DeletionPolicy": {"Fn::If": ["Kept", "Retain", "Delete"]},
                                    "Properties": {"TableName": {"Fn::Sub": "retain-probe-${Env}"},
                                                   "BillingMode": "PAY_PER_REQUEST",
                                                   "AttributeDefinitions": [{"AttributeName": "k", "AttributeType": "S"}],
                                                   "KeySchema": [{"AttributeName": "k", "KeyType": "HASH"}]}}}}
    for env in ("prod", "dev"):
        cfn.create_stack(StackName=f"retain-probe-{env}", TemplateBody=json.dumps(template),
                         Parameters=[{"ParameterKey": "Env", "ParameterValue": env}])
        cfn.get_waiter("stack_create_complete").wait(StackName=f"retain-probe-{env}",
                                                     WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        cfn.delete_stack(StackName=f"retain-probe-{env}")
        cfn.get_waiter("stack_delete_complete").wait(StackName=f"retain-probe-{env}",
                                                     WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    tables = ddb.list_tables()["TableNames"]
    assert "retain-probe-prod" in tables and "retain-probe-dev" not in tables
