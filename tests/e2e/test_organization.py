"""Organisation mode end to end (issue 15): one central deployment repairs memory-starved functions in two member
accounts of an AWS Organization in the local cloud.

The module fixture runs the scenario of ``auto-repair demo --organization`` (tools/auto_repair_cli/org_demo.py, one
code path): the local cloud plays the organisation (central 123456789012, members 111111111111 and 222222222222); the
central stacks are deployed by ``deploy.sh --local --organization-id <id>``, then the member template in each member
account with that account's credentials (member 111111111111 in us-east-1, member 222222222222 in eu-west-1: its
alarms cross accounts and Regions). A function called ``org-orders`` exists in every account; only the members'
copies in those Regions starve. The tests read what the scenario returns.

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

import json
import time
import uuid
from typing import Any

import pytest
from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from auto_repair.records import every_item
from auto_repair.targets import alarm_names
from auto_repair_cli import scenario
from auto_repair_cli.org_demo import (
    ENV,
    FN,
    FORGED_BODY,
    FORGED_OUTSIDE,
    HOME_REGION,
    IDLE,
    START_MB,
    STARVED,
    OrgRun,
    function_key,
    run_scenario,
)
from auto_repair_local.local_org import CENTRAL_ACCOUNT, OUTSIDE_ACCOUNT, outside_client, session_client
from auto_repair_local.process import LocalCloud, start_local_cloud, stop_local_cloud

MEMBER_ROLE = f"lambda-auto-repair-member-{ENV}"
# The central deployment, two member stacks, two repairs with their verification: minutes, not seconds.
pytestmark = pytest.mark.timeout(900)

key = function_key


def note(what: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} organisation: {what}", flush=True)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory):
    """A local cloud of its own: it becomes an organisation, which the other modules' clouds are not."""
    started = start_local_cloud(tmp_path_factory.mktemp("org-cloud"))
    try:
        yield started
    finally:
        stop_local_cloud(started)


@pytest.fixture(scope="module")
def run(cloud: LocalCloud) -> OrgRun:
    # GIVEN the local cloud as an organisation, the central stacks with OrganizationId, then each member's stack,
    # AND FN in every account: starved (128 MB for 150 MB of work) in the members' Regions, idle elsewhere,
    # AND the guide's alarms on the starved copies, in their own accounts
    # WHEN traffic reaches the starved copies, and meanwhile forged events are started on the central workflow
    return run_scenario(cloud, note)


def _audit(run: OrgRun, function_key: str) -> list[dict[str, Any]]:
    return list(every_item(run.table("audit").query, KeyConditionExpression=Key("functionName").eq(function_key)))


def test_the_central_bus_admits_only_the_organisations_forwarder_roles(run: OrgRun):
    # THEN the central bus's policy (the functions stack's EventBusPolicy) allows PutEvents from the organisation
    events = run.org.client("events", CENTRAL_ACCOUNT, HOME_REGION)
    bus = events.describe_event_bus(Name=f"lambda-auto-repair-bus-{ENV}")
    statements = json.loads(bus["Policy"])["Statement"]
    assert [(s["Sid"], s["Principal"], s["Action"], s["Condition"]) for s in statements] == [
        (f"lambda-auto-repair-organization-{ENV}", "*", "events:PutEvents",
         {"StringEquals": {"aws:PrincipalOrgID": run.org.organization_id},
          "ArnLike": {"aws:PrincipalArn": f"arn:aws:iam::*:role/lambda-auto-repair-member-forwarder-{ENV}"}})]
    assert set(run.member_stacks.values()) == {"CREATE_COMPLETE"}
    entry = {"EventBusName": bus["Arn"], "Source": "team.orders", "DetailType": "Probe", "Detail": "{}"}
    # WHEN a member account's own credentials (its root or an administrator, not the member stack's forwarder role)
    # put an event on the central bus THEN the bus policy denies it: only the forwarder role delivers, as a rule
    # target role (aws:PrincipalArn, https://docs.aws.amazon.com/IAM/latest/UserGuide/
    # reference_policies_condition-keys.html#condition-keys-principalarn); the repairs below arrive that way
    member = run.org.client("events", STARVED[0][0], HOME_REGION)
    with pytest.raises(ClientError) as denied:
        member.put_events(Entries=[entry])
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
    assert f"lambda-auto-repair-bus-{ENV}" in denied.value.response["Error"]["Message"]
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


def test_member_functions_are_onboarded_from_the_central_account_through_the_member_role(run: OrgRun):
    # GIVEN the starved copies onboarded with `auto-repair targets add --account` (the scenario's onboarding)
    for account, region in STARVED:
        # THEN the guide's alarms exist in the member account and Region, without alarm actions (the member's rule
        # forwards their state changes), and the central account has none for FN
        alarms = run.org.client("cloudwatch", account, region).describe_alarms(
            AlarmNamePrefix="lambda-")["MetricAlarms"]
        assert sorted(a["AlarmName"] for a in alarms) == sorted(alarm_names(FN, ENV))
        assert all(a["AlarmActions"] == [] for a in alarms)
        # AND `targets list --account` (through the central targets function) shows the function in sync at its
        # new size: ExecuteRepair asked the targets function to re-sync it after the raise (asynchronously)
        def in_sync(a: str = account, r: str = region) -> list[Any] | None:
            listed = run.cli("targets", "list", "--account", a, "--account-region", r, "--local", "--json")
            assert listed.returncode == 0, listed.stderr
            items = [(t["function"], t["memorySize"], t["status"]) for t in json.loads(listed.stdout)]
            return items if items == [(FN, run.after[(a, r)], "in sync")] else None

        scenario.wait_for(in_sync, 60, 2.0, f"{FN} in {account} / {region} in sync at {run.after[(account, region)]} MB")
        # AND its re-sync marker is gone (nothing left for the daily run)
        def marker_gone(k: str = key(account, region)) -> bool | None:  # noqa: B008 - bound per iteration
            return run.table("state").get_item(Key={"pk": "RESYNC", "sk": k}).get("Item") is None or None

        scenario.wait_for(marker_gone, 30, 1.0, f"the re-sync marker of {key(account, region)} deleted")
    central = run.org.client("cloudwatch", CENTRAL_ACCOUNT, HOME_REGION).describe_alarms(
        AlarmNamePrefix="lambda-")["MetricAlarms"]
    assert not [a for a in central if a["AlarmName"] in alarm_names(FN, ENV)]
    # WHEN a member function its team has not tagged is named THEN refused with the reason, nothing created
    account, region = STARVED[0]
    lam = run.org.client("lambda", account, region)
    arn = lam.get_function_configuration(FunctionName=FN)["FunctionArn"]
    lam.untag_resource(Resource=arn, TagKeys=["auto-repair"])
    try:
        refused = run.cli("targets", "add", FN, "--account", account, "--account-region", region, "--local",
                          "--dry-run")
    finally:
        lam.tag_resource(Resource=arn, Tags={"auto-repair": "enabled"})
    assert refused.returncode == 1 and f"is not tagged auto-repair={ENV}" in refused.stdout, refused


FORGED_REASONS = {
    FORGED_BODY: f"alarm ARN ({STARVED[1][0]})",
    FORGED_OUTSIDE: "not an ACTIVE account of the organisation",
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
