"""Organisation mode end to end (issue 15): one central deployment repairs memory-starved functions in two member
accounts of an AWS Organization in the local cloud.

The local cloud plays the organisation (central 123456789012, members 111111111111 and 222222222222); the central
stacks are deployed by deploy.sh with ``OrganizationId`` set (environment local), and the member template is deployed
in each member account with that account's credentials (member 111111111111 in us-east-1, member 222222222222 in
eu-west-1: its alarms cross accounts and Regions). A function called ``org-orders`` exists in every account; only the
members' copies in those Regions starve. One module fixture runs everything at once (threads), the tests read it.

AWS behaviour relied on:
https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-cross-account.html (a member's rule sends to the central
bus through a role; the central bus's resource policy must allow the sender; the event keeps its account/Region),
https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-bus-perms.html (``aws:PrincipalOrgID`` in a bus
policy), https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-events-eventbuspolicy.html,
https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html and
https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_common-scenarios_aws-accounts.html (only the principals a
role's trust policy names may assume it: anything else gets AccessDenied).
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from auto_repair_cli import scenario
from auto_repair_local.local_org import (
    CENTRAL_ACCOUNT,
    OUTSIDE_ACCOUNT,
    LocalOrganization,
    create_organization,
    outside_client,
    session_client,
)
from auto_repair_local.process import (
    REPO,
    Deployment,
    LocalCloud,
    deploy,
    start_local_cloud,
    stop_local_cloud,
)

ENV = "local"
HOME_REGION = "us-east-1"
FN = "org-orders"
# (account, region) of each starved function; every other (account, region) below has an idle copy of FN.
STARVED = (("111111111111", "us-east-1"), ("222222222222", "eu-west-1"))
IDLE = ((CENTRAL_ACCOUNT, HOME_REGION), ("111111111111", "eu-west-1"), ("222222222222", "us-east-1"))
START_MB = 128
MEMBER_ROLE = f"lambda-auto-repair-member-{ENV}"
EVENT = json.loads((REPO / "tests" / "events" / "alarm_lambda_errors.json").read_text())
# The central deployment, two member stacks, two repairs with their verification: minutes, not seconds.
pytestmark = pytest.mark.timeout(900)


def note(what: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} organisation: {what}", flush=True)


def key(account: str, region: str) -> str:
    return FN if (account, region) == (CENTRAL_ACCOUNT, HOME_REGION) else f"{account}:{region}:{FN}"


def central_project(root: Path, organization_id: str) -> Path:
    """This checkout with parameters/local.json setting OrganizationId (what an operator edits to turn it on)."""
    project = root / "central"
    shutil.copytree(REPO, project, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv", ".git", ".build", "tests", "bench", "docs", "__pycache__", "*.pyc", ".mypy_cache", ".ruff_cache"))
    (project / ".venv").symlink_to(REPO / ".venv")
    parameters = project / "parameters" / f"{ENV}.json"
    parameters.write_text(json.dumps({**json.loads(parameters.read_text()), "OrganizationId": organization_id}))
    return project


def deploy_member(org: LocalOrganization, account: str, region: str) -> str:
    """The member template, deployed by CloudFormation with the member account's credentials; its status."""
    cfn = org.client("cloudformation", account, region)
    stack = f"lambda-auto-repair-member-{ENV}"
    cfn.create_stack(StackName=stack, TemplateBody=(REPO / "lambda-auto-repair-member.yaml").read_text(),
                     Capabilities=["CAPABILITY_NAMED_IAM"], Parameters=[
                         {"ParameterKey": k, "ParameterValue": v} for k, v in {
                             "Environment": ENV, "CentralAccountId": CENTRAL_ACCOUNT, "CentralRegion": HOME_REGION,
                             "OrganizationId": org.organization_id}.items()])
    return str(scenario.wait_for(lambda: (lambda s: s if not s.endswith("IN_PROGRESS") else None)(
        cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]), 180, 1.0, f"{stack} in {account}"))


def alarm_event(account: str, arn_account: str, region: str = HOME_REGION, function: str = FN) -> dict[str, Any]:
    """An Errors alarm state change of ``function`` as the central bus would carry it; ``account`` is what the body
    claims, ``arn_account`` the account of the alarm ARN it names."""
    event = copy.deepcopy(EVENT)
    event.update(id=str(uuid.uuid4()), account=account, region=region,
                 resources=[f"arn:aws:cloudwatch:{region}:{arn_account}:alarm:lambda-errors-alarm-{function}"])
    event["detail"]["alarmName"] = f"lambda-errors-alarm-{function}"
    event["detail"]["state"]["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime())
    event["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"]["dimensions"]["FunctionName"] = function
    return event


def finished(sfn: Any, arn: str, timeout: float = 240) -> dict[str, Any]:
    return scenario.wait_for(lambda: (lambda e: e if e["status"] != "RUNNING" else None)(
        sfn.describe_execution(executionArn=arn)), timeout, 1.0, f"execution {arn}")


def repair_of(sfn: Any, machine: str, account: str, region: str) -> dict[str, Any] | None:
    """The finished execution that repaired (or tried to) FN in (account, region), not a run another one covers."""
    for execution in scenario.executions_for(sfn, machine, FN):
        source = json.loads(execution.get("input") or "{}")
        if (source.get("account"), source.get("region")) != (account, region):
            continue
        if execution["status"] != "RUNNING" and not scenario.covered_elsewhere(execution):
            return execution
    return None


@dataclass
class OrgRun:
    org: LocalOrganization
    deployment: Deployment
    member_stacks: dict[str, str]
    before: dict[tuple[str, str], int]
    after: dict[tuple[str, str], int] = field(default_factory=dict)
    repairs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    traffic: dict[tuple[str, str], scenario.Traffic] = field(default_factory=dict)
    forged: dict[str, dict[str, Any]] = field(default_factory=dict)

    def table(self, kind: str) -> Any:
        return boto3.resource("dynamodb", endpoint_url=self.org.endpoint, region_name=HOME_REGION,
                              aws_access_key_id="test", aws_secret_access_key="test").Table(
            f"lambda-auto-repair-{kind}-{ENV}")

    def memory(self, account: str, region: str) -> int:
        return int(self.org.client("lambda", account, region).get_function_configuration(FunctionName=FN)["MemorySize"])

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "auto_repair_cli.main", *args], cwd=REPO,
                              env=self.deployment.cloud.env(), capture_output=True, text=True, timeout=120)


def _in_thread(work: Callable[[], Any], results: dict[str, Any], name: str) -> threading.Thread:
    def run() -> None:
        try:
            results[name] = work()
        except Exception as exc:  # re-raised by the fixture after join
            results[name] = exc

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory):
    """A local cloud of its own: it becomes an organisation, which the other modules' clouds are not."""
    started = start_local_cloud(tmp_path_factory.mktemp("org-cloud"))
    try:
        yield started
    finally:
        stop_local_cloud(started)


@pytest.fixture(scope="module")
def run(cloud: LocalCloud, tmp_path_factory: pytest.TempPathFactory) -> OrgRun:
    # GIVEN the local cloud as an organisation, the central stacks with OrganizationId, each member's stack
    org = create_organization(cloud.endpoint)
    note(f"organisation {org.organization_id}")
    out: dict[str, Any] = {}
    threads = [_in_thread(lambda a=a, r=r: deploy_member(org, a, r), out, f"member-{a}") for a, r in STARVED]
    threads.append(_in_thread(lambda: deploy(cloud, ENV, central_project(tmp_path_factory.mktemp("org"),
                                                                         org.organization_id)), out, "central"))
    for thread in threads:
        thread.join()
    for value in out.values():
        if isinstance(value, Exception):
            raise value
    note(f"deployed: central, members {[out[f'member-{a}'] for a, _ in STARVED]}")
    # AND FN in every account: starved (128 MB for 150 MB of work) in the members' Regions, idle elsewhere
    result = OrgRun(org=org, deployment=out["central"], member_stacks={a: out[f"member-{a}"] for a, _ in STARVED},
                    before={})
    for account, region in (*STARVED, *IDLE):
        lam, iam = org.client("lambda", account, region), org.client("iam", account, region)
        scenario.create_target(lam, iam, FN, scenario.MEMORY_HOG, memory=START_MB,
                               env={"WORK_MB": "150" if (account, region) in STARVED else "10"})
        result.before[(account, region)] = result.memory(account, region)
    # AND the guide's alarms on the starved copies, in their own accounts (nothing else forwards them)
    for account, region in STARVED:
        scenario.put_guide_alarms(org.client("cloudwatch", account, region), FN, None, period=10)

    # WHEN traffic reaches the starved copies, and meanwhile forged events are started on the central workflow
    sfn = org.client("stepfunctions", CENTRAL_ACCOUNT, HOME_REGION)
    machine = result.deployment.state_machine_arn
    for account, region in STARVED:
        traffic = scenario.Traffic(org.client("lambda", account, region), FN, interval=1.0)
        traffic.start()
        result.traffic[(account, region)] = traffic
    forged_events = {
        "body names another member": alarm_event(STARVED[0][0], STARVED[1][0], function="org-forged"),
        "outside the organisation": alarm_event(OUTSIDE_ACCOUNT, OUTSIDE_ACCOUNT, function="org-foreign"),
    }
    started = {why: sfn.start_execution(stateMachineArn=machine, name=f"forged-{uuid.uuid4().hex[:10]}",
                                        input=json.dumps(event))["executionArn"]
               for why, event in forged_events.items()}
    try:
        for why, arn in started.items():
            result.forged[why] = finished(sfn, arn)
        for account, region in STARVED:
            result.repairs[(account, region)] = scenario.wait_for(
                lambda a=account, r=region: repair_of(sfn, machine, a, r), 420, 2.0, f"the repair of {FN} in {account}")
            note(f"{account}/{region}: {result.repairs[(account, region)]['status']}")
    finally:
        for traffic in result.traffic.values():
            traffic.stop()
    result.after = {where: result.memory(*where) for where in result.before}
    return result


def _audit(run: OrgRun, function_key: str) -> list[dict[str, Any]]:
    return run.table("audit").query(KeyConditionExpression=Key("functionName").eq(function_key))["Items"]


def test_the_central_stacks_deploy_with_an_organisation_bus_policy_that_admits_the_organisation_only(run: OrgRun):
    # THEN the central bus's policy (the functions stack's EventBusPolicy) allows PutEvents from the organisation
    events = run.org.client("events", CENTRAL_ACCOUNT, HOME_REGION)
    bus = events.describe_event_bus(Name=f"lambda-auto-repair-bus-{ENV}")
    statements = json.loads(bus["Policy"])["Statement"]
    assert [(s["Sid"], s["Principal"], s["Action"], s["Condition"]) for s in statements] == [
        (f"lambda-auto-repair-organization-{ENV}", "*", "events:PutEvents",
         {"StringEquals": {"aws:PrincipalOrgID": run.org.organization_id}})]
    assert set(run.member_stacks.values()) == {"CREATE_COMPLETE"}
    entry = {"EventBusName": bus["Arn"], "Source": "team.orders", "DetailType": "Probe", "Detail": "{}"}
    # WHEN a member account puts an event on the central bus THEN it is accepted
    member = run.org.client("events", STARVED[0][0], HOME_REGION)
    assert member.put_events(Entries=[entry])["FailedEntryCount"] == 0
    # WHEN an account outside the organisation does THEN the bus policy denies it
    with pytest.raises(ClientError) as caught:
        outside_client(run.org.endpoint, "events").put_events(Entries=[entry])
    assert caught.value.response["Error"]["Code"] == "AccessDeniedException"
    assert OUTSIDE_ACCOUNT in caught.value.response["Error"]["Message"]


def test_each_members_starved_function_is_repaired_by_the_central_workflow_in_its_own_account(run: OrgRun):
    repairs_per_member: dict[str, int] = {}
    mixups = 0
    for (account, region), execution in run.repairs.items():
        function_key = key(account, region)
        output = json.loads(execution.get("output") or "{}")
        # THEN the workflow repaired the function it was alarmed about, naming its account and region
        if execution["status"] != "SUCCEEDED":
            print(json.dumps(run.table("incidents").query(KeyConditionExpression=Key("incidentId").eq(
                execution["name"]))["Items"], default=str, indent=1))
        assert execution["status"] == "SUCCEEDED", execution.get("cause")
        assert (output["alarm"]["functionKey"], output["alarm"]["account"], output["alarm"]["region"]) == (
            function_key, account, region)
        assert output["repair"]["status"] == "SUCCEEDED", output["repair"]
        # AND the memory was raised in that account and Region
        assert run.after[(account, region)] > run.before[(account, region)] == START_MB
        # AND the central audit carries the account, the region and the function key; the change was made there
        entries = _audit(run, function_key)
        assert entries and all((e["account"], e["region"]) == (account, region) for e in entries), entries
        changes = [e for e in entries if e["phase"] == "AFTER"]
        repairs_per_member[f"{account}/{region}"] = len(changes)
        mixups += sum(1 for e in entries if (e.get("account"), e.get("region")) != (account, region))
        # AND the incident record is the member's
        record = run.table("incidents").get_item(Key={"incidentId": execution["name"], "recordType": "ALARM"})["Item"]
        assert (record["functionName"], record["function"], record["account"], record["region"]) == (
            function_key, FN, account, region)
        # AND the operator sees it with `auto-repair incidents list --account <member> --local`
        listed = run.cli("incidents", "list", "--account", account, "--local")
        assert listed.returncode == 0, listed.stderr
        assert execution["name"] in listed.stdout and function_key in listed.stdout
        other = next(a for a, _ in STARVED if a != account)
        assert execution["name"] not in run.cli("incidents", "list", "--account", other, "--local").stdout
    # AND no other copy of the function changed: not the central one, not a member's copy in its other Region
    mixups += sum(1 for where in IDLE if run.after[where] != run.before[where])
    mixups += sum(1 for where in IDLE if _audit(run, key(*where)))
    print(f"repairs per member: {repairs_per_member}; cross-account mix-ups: {mixups}")
    for traffic in run.traffic.values():
        failed = sum(1 for call in traffic.results if not call.ok)
        print(f"{traffic.function_name}: {len(traffic.results)} calls, {failed} failed before the repair")
    assert repairs_per_member == {f"{a}/{r}": 1 for a, r in STARVED}
    assert mixups == 0
    # AND calls made after the repair succeed at the new size
    for where, traffic in run.traffic.items():
        assert traffic.results[-1].ok and traffic.results[-1].memory == run.after[where]


FORGED_REASONS = {
    "body names another member": f"alarm ARN ({STARVED[1][0]})",
    "outside the organisation": "not an ACTIVE account of the organisation",
}


@pytest.mark.parametrize("why", list(FORGED_REASONS))
def test_a_forged_or_foreign_event_is_refused_recorded_and_notified(run: OrgRun, why: str):
    execution = run.forged[why]
    # THEN the workflow refused it (and finished)
    assert execution["status"] == "SUCCEEDED", execution
    alarm = json.loads(execution["output"])["alarm"]
    assert alarm["outcome"] == "REFUSED" and FORGED_REASONS[why] in alarm["reason"], alarm
    # AND recorded it: the incident, with the reason, under a key of no real function (the claimed one)
    record = run.table("incidents").get_item(Key={"incidentId": execution["name"], "recordType": "ALARM"})["Item"]
    assert record["outcome"] == "REFUSED" and FORGED_REASONS[why] in record["reason"]
    assert record["functionName"] == alarm["functionKey"] not in {key(*where) for where in (*STARVED, *IDLE)}
    # AND notified: a REFUSED notice in the outbox names the incident
    notices = [json.loads(p.read_text()) for p in sorted(run.deployment.outbox.glob("*.json"))]
    refused = [n for n in notices if "REFUSED" in str(n.get("subject") or n.get("Subject"))
               and execution["name"] in str(n.get("message") or n.get("Message"))]
    assert refused, f"no REFUSED notice for {execution['name']}"
    # AND nothing was changed anywhere
    assert not run.table("state").scan(FilterExpression=Attr("pk").eq(f"LOCK#{alarm['functionKey']}"))["Items"]


def test_the_member_role_is_denied_to_anything_but_the_central_workflow(run: OrgRun):
    account, region = STARVED[0]
    central_iam = run.org.client("iam", CENTRAL_ACCOUNT, HOME_REGION)
    # GIVEN a central role allowed to assume any role (its own policy), but not one the member role trusts
    name = f"org-intruder-{uuid.uuid4().hex[:6]}"
    central_iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"AWS": f"arn:aws:iam::{CENTRAL_ACCOUNT}:root"}}]}))
    central_iam.put_role_policy(RoleName=name, PolicyName="assume-anything", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["sts:AssumeRole", "sts:TagSession"],
                                                "Resource": "*"}]}))
    intruder = session_client(run.org.endpoint, "sts", run.org.assume(CENTRAL_ACCOUNT, name))
    callers = {"another central role": intruder,
               "the central account's root": run.org.client("sts", CENTRAL_ACCOUNT),
               "an account outside the organisation": outside_client(run.org.endpoint, "sts")}
    for who, sts in callers.items():
        # WHEN it assumes the member's repair role THEN AccessDenied
        with pytest.raises(ClientError) as caught:
            sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/{MEMBER_ROLE}", RoleSessionName="probe")
        assert caught.value.response["Error"]["Code"] == "AccessDenied", who
    # AND the central workflow did assume it: the repair in that account was made (the test above reads it)
    assert run.after[(account, region)] > START_MB


def test_an_event_bus_policy_resource_adds_and_removes_only_its_own_statement(run: OrgRun):
    # GIVEN a bus with a statement of its own (PutPermission outside any stack)
    cfn, events = (run.org.client(s, CENTRAL_ACCOUNT, HOME_REGION) for s in ("cloudformation", "events"))
    bus = f"org-policy-{uuid.uuid4().hex[:6]}"
    events.create_event_bus(Name=bus)
    events.put_permission(EventBusName=bus, Action="events:PutEvents", Principal=STARVED[1][0], StatementId="manual")
    # WHEN a stack adds a Statement-form policy and an Action/Principal/Condition-form one
    template = {"Resources": {
        "Org": {"Type": "AWS::Events::EventBusPolicy", "Properties": {
            "EventBusName": bus, "StatementId": "org", "Statement": {
                "Effect": "Allow", "Principal": "*", "Action": "events:PutEvents",
                "Condition": {"StringEquals": {"aws:PrincipalOrgID": run.org.organization_id}}}}},
        "Legacy": {"Type": "AWS::Events::EventBusPolicy", "Properties": {
            "EventBusName": bus, "StatementId": "legacy", "Action": "events:PutEvents", "Principal": "*",
            "Condition": {"Type": "StringEquals", "Key": "aws:PrincipalOrgID", "Value": run.org.organization_id}}}}}
    stack = f"org-policy-{uuid.uuid4().hex[:6]}"
    cfn.create_stack(StackName=stack, TemplateBody=json.dumps(template))

    def sids() -> dict[str, Any]:
        policy = events.describe_event_bus(Name=bus).get("Policy")
        return {s["Sid"]: s.get("Condition") for s in json.loads(policy)["Statement"]} if policy else {}

    # THEN the bus policy has both, with their conditions, beside the statement it had
    org_condition = {"StringEquals": {"aws:PrincipalOrgID": run.org.organization_id}}
    assert cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    assert sids() == {"manual": None, "org": org_condition, "legacy": org_condition}
    # WHEN the stack is deleted THEN its statements go (RemovePermission), the bus's own stays
    cfn.delete_stack(StackName=stack)
    scenario.wait_for(lambda: set(sids()) == {"manual"}, 30, 0.5, "the stack's statements to go")
