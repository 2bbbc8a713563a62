"""The local cloud plays an AWS Organization: member alarms reach the central bus, role trust and bus policies hold.

AWS behaviour relied on:
https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-cross-account.html (a rule on a member's bus targets the
central bus through a role; the central bus's policy must allow the sender; the event keeps its account/region),
https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutEvents.html (``aws.`` sources are reserved:
NotAuthorizedForSourceException),
https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html and
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic-cross-account.html (the role's
trust policy and, across accounts, the caller's own identity policy must both allow; otherwise AccessDenied),
https://docs.aws.amazon.com/lambda/latest/dg/lambda-intro-execution-role.html (a function runs as its role),
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html (a role trust
policy may only name IAM roles and users that exist: "Invalid principal in policy"),
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html#Conditions_ARN
(ArnLike/ArnEquals check each of the six colon-delimited ARN components separately),
https://docs.aws.amazon.com/STS/latest/APIReference/CommonErrors.html (an access key AWS did not issue:
InvalidClientTokenId, "The security token included in the request is invalid."),
https://docs.aws.amazon.com/lambda/latest/api/API_CreateFunction.html and
https://docs.aws.amazon.com/lambda/latest/dg/lambda-intro-execution-role.html (an execution role Lambda cannot
assume is refused: InvalidParameterValueException "The role defined for the function cannot be assumed by
Lambda.").
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from auto_repair_cli.scenario import ensure_role, stack_settled, wait_for, zip_source
from auto_repair_local.local_org import (
    CENTRAL_ACCOUNT,
    MEMBER_ACCOUNTS,
    OUTSIDE_ACCOUNT,
    LocalOrganization,
    create_organization,
    outside_client,
    session_client,
)
from auto_repair_local.process import REPO, LocalCloud

ALARM_PATTERN = {"source": ["aws.cloudwatch"], "detail-type": ["CloudWatch Alarm State Change"]}
MEMBER, OTHER_MEMBER = MEMBER_ACCOUNTS


@pytest.fixture(scope="module")
def org(local_cloud: LocalCloud) -> LocalOrganization:
    return create_organization(local_cloud.endpoint)


@pytest.fixture(scope="module")
def central(org: LocalOrganization) -> dict[str, str]:
    """A central bus that accepts PutEvents from the organisation's OU only, and a queue of what reaches it."""
    events, sqs = org.client("events", CENTRAL_ACCOUNT), org.client("sqs", CENTRAL_ACCOUNT)
    name = f"org-central-{uuid.uuid4().hex[:6]}"
    bus_arn = events.create_event_bus(Name=name)["EventBusArn"]
    events.put_permission(EventBusName=name, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "organisation", "Effect": "Allow", "Principal": "*", "Action": "events:PutEvents",
        "Resource": bus_arn,
        "Condition": {"StringEquals": {"aws:PrincipalOrgID": org.organization_id},
                      "ForAnyValue:StringLike": {"aws:PrincipalOrgPaths": [f"{org.path(MEMBER)}*"]}}}]}))
    url, queue_arn = _queue(sqs, f"{name}-seen")
    events.put_rule(Name=f"{name}-all", EventBusName=name, EventPattern=json.dumps({"source": [{"prefix": ""}]}))
    events.put_targets(Rule=f"{name}-all", EventBusName=name, Targets=[{"Id": "q", "Arn": queue_arn}])
    return {"bus_arn": bus_arn, "url": url}


def _queue(sqs: Any, name: str) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def _drain(sqs: Any, url: str, into: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]).get("Messages", []):
        into.append({"body": json.loads(message["Body"]), "attributes": message.get("MessageAttributes", {})})
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return into


def _forwarding(client: Callable[[str], Any], account: str, bus_arn: str, role_name: str = "") -> str:
    """The member template's shape: a default-bus rule -> the central bus through a PutEvents-only role.
    Returns the URL of the rule target's dead-letter queue (where a refused delivery lands)."""
    iam, events, sqs = client("iam"), client("events"), client("sqs")
    suffix = uuid.uuid4().hex[:6]
    role_name = role_name or f"forwarder-{suffix}"
    role = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
                                                "Action": "sts:AssumeRole",
                                                "Condition": {"StringEquals": {"aws:SourceAccount": account}}}]}))
    iam.put_role_policy(RoleName=role_name, PolicyName="put", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "events:PutEvents", "Resource": bus_arn}]}))
    dlq_url, dlq_arn = _queue(sqs, f"forward-dlq-{suffix}")
    events.put_rule(Name=f"forward-{suffix}", EventPattern=json.dumps(ALARM_PATTERN))
    events.put_targets(Rule=f"forward-{suffix}", Targets=[{"Id": "central", "Arn": bus_arn,
                                                           "RoleArn": role["Role"]["Arn"],
                                                           "DeadLetterConfig": {"Arn": dlq_arn}}])
    return dlq_url


def test_a_member_function_alarm_reaches_the_central_bus_intact(org, central, local_cloud):
    # GIVEN in member 111111111111 / us-east-1: a function whose role trusts Lambda, a metric filter on its log
    # group, an alarm on the filter's metric, and the forwarding rule to the central bus
    region = "us-east-1"

    def client(service: str) -> Any:
        return org.client(service, MEMBER, region)

    _forwarding(client, MEMBER, central["bus_arn"])
    name = f"org-fn-{uuid.uuid4().hex[:6]}"
    role = ensure_role(client("iam"), name)
    source = ("import boto3\n"
              "def handler(event, context):\n"
              "    arn = boto3.client('sts').get_caller_identity()['Arn']\n"
              "    print('ERROR out of memory while resizing', arn)\n"
              "    return arn\n")
    client("lambda").create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="app.handler",
                                     MemorySize=128, Code={"ZipFile": zip_source(source)})
    group = f"/aws/lambda/{name}"
    client("logs").create_log_group(logGroupName=group)
    client("logs").put_metric_filter(logGroupName=group, filterName="errors", filterPattern="ERROR",
                                     metricTransformations=[{"metricName": "Errors", "metricNamespace": "Org/Test",
                                                             "metricValue": "1"}])
    alarm_name = f"{name}-errors"
    cw = client("cloudwatch")
    cw.put_metric_alarm(AlarmName=alarm_name, Namespace="Org/Test", MetricName="Errors", Statistic="Sum",
                        Period=10, EvaluationPeriods=1, Threshold=0.0, ComparisonOperator="GreaterThanThreshold",
                        TreatMissingData="notBreaching")
    alarm_arn = cw.describe_alarms(AlarmNames=[alarm_name])["MetricAlarms"][0]["AlarmArn"]
    # WHEN the function runs (and logs the error)
    out = client("lambda").invoke(FunctionName=name, Payload=b"{}")
    # THEN it ran as its execution role's session in the member account, as Lambda runs it
    assert json.loads(out["Payload"].read()) == f"arn:aws:sts::{MEMBER}:assumed-role/{name}/{name}"
    # AND its alarm's state change arrives on the central bus with the member's account, region and alarm ARN
    sqs = org.client("sqs", CENTRAL_ACCOUNT)
    seen: list[dict[str, Any]] = []

    def alarmed(m: dict[str, Any]) -> bool:  # an OK transition (no data yet, notBreaching) may come first
        return m["body"]["resources"] == [alarm_arn] and m["body"]["detail"]["state"]["value"] == "ALARM"

    assert wait_for(lambda: any(alarmed(m) for m in _drain(sqs, central["url"], seen)), 45, 0.25)
    event = next(m["body"] for m in seen if alarmed(m))
    assert alarm_arn.startswith(f"arn:aws:cloudwatch:{region}:{MEMBER}:alarm:")
    assert (event["account"], event["region"], event["source"], event["detail-type"]) == (
        MEMBER, region, "aws.cloudwatch", "CloudWatch Alarm State Change")
    assert event["detail"]["alarmName"] == alarm_name and event["detail"]["state"]["value"] == "ALARM"
    assert event["time"].endswith("Z")


def test_another_member_region_forwards_and_an_outside_account_is_refused_by_the_bus_policy(org, central):
    # GIVEN the same forwarding in member 222222222222 / eu-west-1 and in 999999999999 (not in the organisation)
    sqs = org.client("sqs", CENTRAL_ACCOUNT)
    eu = "eu-west-1"
    _forwarding(lambda s: org.client(s, OTHER_MEMBER, eu), OTHER_MEMBER, central["bus_arn"])
    outside_dlq = _forwarding(lambda s: outside_client(org.endpoint, s), OUTSIDE_ACCOUNT, central["bus_arn"])
    alarms = {}
    for account, make in ((OTHER_MEMBER, lambda s: org.client(s, OTHER_MEMBER, eu)),
                           (OUTSIDE_ACCOUNT, lambda s: outside_client(org.endpoint, s))):
        cw = make("cloudwatch")
        name = f"org-alarm-{account}-{uuid.uuid4().hex[:6]}"
        cw.put_metric_alarm(AlarmName=name, Namespace="Org/Test", MetricName="Errors", Statistic="Sum",
                            Period=10, EvaluationPeriods=1, Threshold=0.0,
                            ComparisonOperator="GreaterThanThreshold")
        alarms[account] = cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["AlarmArn"]
        # WHEN each alarm goes to ALARM
        cw.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="test")
    # THEN the outside account's delivery is refused (its dead-letter queue says why) ...
    outside_sqs = outside_client(org.endpoint, "sqs")
    dead: list[dict[str, Any]] = []
    assert wait_for(lambda: _drain(outside_sqs, outside_dlq, dead), 45, 0.25)
    assert dead[0]["body"]["resources"] == [alarms[OUTSIDE_ACCOUNT]]
    assert dead[0]["attributes"]["ERROR_CODE"]["StringValue"] == "AccessDeniedException"
    assert "resource-based policy" in dead[0]["attributes"]["ERROR_MESSAGE"]["StringValue"]
    # ... while the member's eu-west-1 event arrives with its own account and region, and nothing from outside
    seen: list[dict[str, Any]] = []
    assert wait_for(lambda: any(m["body"]["resources"] == [alarms[OTHER_MEMBER]] for m in _drain(sqs, central["url"],
                                                                                              seen)), 45, 0.25)
    event = next(m["body"] for m in seen if m["body"]["resources"] == [alarms[OTHER_MEMBER]])
    assert (event["account"], event["region"]) == (OTHER_MEMBER, eu)
    assert not any(m["body"]["account"] == OUTSIDE_ACCOUNT for m in seen)


def test_a_bus_policy_on_aws_principal_arn_admits_only_the_forwarder_role_that_delivers(org):
    # GIVEN a central bus that, as the functions stack's OrganizationBusPolicy, admits only roles named
    # lambda-auto-repair-member-forwarder-<env> of the organisation. A rule delivering to a bus in another account
    # calls PutEvents as its target role (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-bus-perms.html,
    # https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-cross-account.html), so aws:PrincipalArn is that
    # role's ARN, present in every signed request (https://docs.aws.amazon.com/IAM/latest/UserGuide/
    # reference_policies_condition-keys.html#condition-keys-principalarn)
    events, sqs = org.client("events", CENTRAL_ACCOUNT), org.client("sqs", CENTRAL_ACCOUNT)
    suffix = uuid.uuid4().hex[:6]
    name = f"org-arn-{suffix}"
    bus_arn = events.create_event_bus(Name=name)["EventBusArn"]
    events.put_permission(EventBusName=name, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "forwarders", "Effect": "Allow", "Principal": "*", "Action": "events:PutEvents", "Resource": bus_arn,
        "Condition": {"StringEquals": {"aws:PrincipalOrgID": org.organization_id},
                      "ArnLike": {"aws:PrincipalArn": f"arn:aws:iam::*:role/lambda-auto-repair-member-forwarder-{suffix}"}}}]}))
    url, queue_arn = _queue(sqs, f"{name}-seen")
    events.put_rule(Name=f"{name}-all", EventBusName=name, EventPattern=json.dumps({"source": [{"prefix": ""}]}))
    events.put_targets(Rule=f"{name}-all", EventBusName=name, Targets=[{"Id": "q", "Arn": queue_arn}])

    # AND in a member: one forwarding rule through a role of that name, one through a role of another name
    def client(service: str) -> Any:
        return org.client(service, MEMBER, "us-east-1")

    _forwarding(client, MEMBER, bus_arn, role_name=f"lambda-auto-repair-member-forwarder-{suffix}")
    other_dlq = _forwarding(client, MEMBER, bus_arn)
    cw = client("cloudwatch")
    alarm = f"org-arn-alarm-{suffix}"
    cw.put_metric_alarm(AlarmName=alarm, Namespace="Org/Test", MetricName="Errors", Statistic="Sum", Period=10,
                        EvaluationPeriods=1, Threshold=0.0, ComparisonOperator="GreaterThanThreshold")
    alarm_arn = cw.describe_alarms(AlarmNames=[alarm])["MetricAlarms"][0]["AlarmArn"]
    # WHEN the alarm goes to ALARM (both rules match it)
    cw.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="test")
    # THEN the named forwarder role's delivery arrives, with the member's account
    seen: list[dict[str, Any]] = []
    assert wait_for(lambda: any(m["body"]["resources"] == [alarm_arn] for m in _drain(sqs, url, seen)), 45, 0.25)
    assert [m["body"]["account"] for m in seen if m["body"]["resources"] == [alarm_arn]] == [MEMBER]
    # AND the other role's delivery is refused by the bus policy (its dead-letter queue says why)
    dead: list[dict[str, Any]] = []
    member_sqs = client("sqs")
    assert wait_for(lambda: any(m["body"]["resources"] == [alarm_arn] for m in _drain(member_sqs, other_dlq, dead)),
                    45, 0.25)
    refused = next(m for m in dead if m["body"]["resources"] == [alarm_arn])
    assert refused["attributes"]["ERROR_CODE"]["StringValue"] == "AccessDeniedException"
    assert "resource-based policy" in refused["attributes"]["ERROR_MESSAGE"]["StringValue"]
    # AND the member account's own credentials (not the forwarder role) may not put events on it
    with pytest.raises(ClientError) as caught:
        client("events").put_events(Entries=[{"Source": "team.orders", "DetailType": "Probe", "Detail": "{}",
                                              "EventBusName": bus_arn}])
    assert caught.value.response["Error"]["Code"] == "AccessDeniedException"


def test_put_events_to_the_central_bus_follows_its_policy_and_aws_sources_are_reserved(org, central):
    bus = central["bus_arn"]
    entry = {"Source": "team.orders", "DetailType": "Probe", "Detail": "{}", "EventBusName": bus}
    # GIVEN / WHEN a member calls PutEvents on the central bus THEN it is delivered, stamped with the member's account
    member = org.client("events", MEMBER)
    assert member.put_events(Entries=[entry])["FailedEntryCount"] == 0
    sqs, seen = org.client("sqs", CENTRAL_ACCOUNT), []
    assert wait_for(lambda: any(m["body"]["source"] == "team.orders" for m in _drain(sqs, central["url"], seen)), 45, 0.25)
    assert next(m["body"] for m in seen if m["body"]["source"] == "team.orders")["account"] == MEMBER
    # AND an account outside the organisation is denied
    with pytest.raises(ClientError) as caught:
        outside_client(org.endpoint, "events").put_events(Entries=[entry])
    assert caught.value.response["Error"]["Code"] == "AccessDeniedException"
    # AND nobody but AWS may send an aws.* source (a forged alarm event), not even to its own default bus
    forged = member.put_events(Entries=[{**entry, "Source": "aws.cloudwatch"},
                                        {"Source": "aws.cloudwatch", "DetailType": "x", "Detail": "{}"}])
    assert forged["FailedEntryCount"] == 2
    assert {e["ErrorCode"] for e in forged["Entries"]} == {"NotAuthorizedForSourceException"}


def test_a_member_role_trusted_by_one_central_role_and_the_organisation(org, local_cloud):
    # GIVEN in the member: a repair role trusted only by central role "central-workflow" within the organisation
    suffix = uuid.uuid4().hex[:6]
    target = f"member-repair-{suffix}"
    trusted = f"arn:aws:iam::{CENTRAL_ACCOUNT}:role/central-workflow-{suffix}"
    target_arn = f"arn:aws:iam::{MEMBER}:role/{target}"
    may_assume = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRole", "Resource": f"arn:aws:iam::*:role/member-repair-{suffix}",
        "Condition": {"StringEquals": {"aws:ResourceOrgID": org.organization_id}}}]})

    def session(client: Callable[[str], Any], account: str, role: str) -> Any:
        iam = client("iam")
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"}, "Action": "sts:AssumeRole"}]}))
        iam.put_role_policy(RoleName=role, PolicyName="assume-member", PolicyDocument=may_assume)
        creds = client("sts").assume_role(RoleArn=f"arn:aws:iam::{account}:role/{role}",
                                          RoleSessionName="probe")["Credentials"]
        return session_client(org.endpoint, "sts", creds)

    def central_client(service: str) -> Any:
        return org.client(service, CENTRAL_ACCOUNT)

    def outsider(service: str) -> Any:
        return outside_client(org.endpoint, service)

    # (the central role exists first: a trust policy may only name an existing role)
    workflow = session(central_client, CENTRAL_ACCOUNT, f"central-workflow-{suffix}")
    org.client("iam", MEMBER).create_role(RoleName=target, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": [trusted]}, "Action": ["sts:AssumeRole", "sts:TagSession"],
            "Condition": {"StringEquals": {"aws:PrincipalOrgID": org.organization_id}}}]}))
    # WHEN the trusted central role assumes it THEN it gets credentials of the member account
    creds = workflow.assume_role(RoleArn=target_arn, RoleSessionName="auto-repair-inc-1")["Credentials"]
    who = session_client(org.endpoint, "sts", creds).get_caller_identity()
    assert (who["Account"], who["Arn"]) == (MEMBER, f"arn:aws:sts::{MEMBER}:assumed-role/{target}/auto-repair-inc-1")
    # AND session tags need sts:TagSession from both sides: this central role's own policy grants only AssumeRole
    with pytest.raises(ClientError) as tagged:
        workflow.assume_role(RoleArn=target_arn, RoleSessionName="tagged", Tags=[{"Key": "incident", "Value": "1"}])
    assert "sts:TagSession" in tagged.value.response["Error"]["Message"]
    # AND another central role, the central account's root keys, and an outside account's role are all denied
    denied = {
        "other central role": session(central_client, CENTRAL_ACCOUNT, f"central-other-{suffix}"),
        "central root": central_client("sts"),
        "outside role": session(outsider, OUTSIDE_ACCOUNT, f"central-workflow-{suffix}"),
        "outside root": outsider("sts"),
    }
    for who_, sts in denied.items():
        with pytest.raises(ClientError) as caught:
            sts.assume_role(RoleArn=target_arn, RoleSessionName="intruder")
        assert caught.value.response["Error"]["Code"] == "AccessDenied", who_
        assert f"sts:AssumeRole on resource: {target_arn}" in caught.value.response["Error"]["Message"], who_


def test_a_member_rule_invokes_a_member_function_in_eu_west_1(org):
    # GIVEN in member 222222222222 / eu-west-1: a function and a default-bus rule targeting it
    region = "eu-west-1"

    def client(service: str) -> Any:
        return org.client(service, OTHER_MEMBER, region)

    name = f"org-target-{uuid.uuid4().hex[:6]}"
    role = ensure_role(client("iam"), name)
    source = ("import boto3, json\n"
              "def handler(event, context):\n"
              "    print(json.dumps({'got': event['detail-type'], 'as': boto3.client('sts').get_caller_identity()['Arn']}))\n")
    fn_arn = client("lambda").create_function(FunctionName=name, Runtime="python3.12", Role=role,
                                              Handler="app.handler", Code={"ZipFile": zip_source(source)})["FunctionArn"]
    client("events").put_rule(Name=name, EventPattern=json.dumps({"source": ["team.orders"]}))
    client("events").put_targets(Rule=name, Targets=[{"Id": "fn", "Arn": fn_arn}])
    # WHEN an event is put on the member's default bus
    client("events").put_events(Entries=[{"Source": "team.orders", "DetailType": "Probe", "Detail": "{}"}])
    # THEN the member's function ran, in its account and region, and logged there
    logs = client("logs")

    def logged() -> list[dict[str, Any]]:
        try:
            found = logs.filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
        except logs.exceptions.ResourceNotFoundException:
            return []
        return [json.loads(e["message"]) for e in found if e["message"].startswith("{")]

    lines = wait_for(logged, 45, 0.25)
    assert lines == [{"got": "Probe", "as": f"arn:aws:sts::{OTHER_MEMBER}:assumed-role/{name}/{name}"}]
    assert fn_arn.startswith(f"arn:aws:lambda:{region}:{OTHER_MEMBER}:function:")


def test_the_cli_creates_the_organisation_idempotently(local_cloud, org):
    # GIVEN a running local cloud that already is an organisation WHEN `auto-repair local organization` runs
    proc = subprocess.run([sys.executable, "-m", "auto_repair_cli.main", "local", "organization", "--state-dir",
                           str(local_cloud.state_dir)], cwd=REPO, env=local_cloud.env(), capture_output=True,
                          text=True, timeout=60)
    # THEN it reuses it and prints the ids the other tools need
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    assert printed["organizationId"] == org.organization_id and printed["ouId"] == org.ou_id
    assert printed["memberAccounts"] == [MEMBER, OTHER_MEMBER] and printed["centralAccount"] == CENTRAL_ACCOUNT
    assert printed["organizationPaths"][MEMBER] == f"{org.organization_id}/{org.root_id}/{org.ou_id}/"
    listed = org.client("organizations", CENTRAL_ACCOUNT).list_accounts()["Accounts"]
    assert sorted(a["Id"] for a in listed) == sorted([CENTRAL_ACCOUNT, MEMBER, OTHER_MEMBER])
    # AND a fixed id already taken, or not 12 digits, is refused (table of bad requests)
    orgs = org.client("organizations", CENTRAL_ACCOUNT)
    for bad, code in ((MEMBER, "DuplicateAccountException"), (CENTRAL_ACCOUNT, "DuplicateAccountException"),
                      ("12345", "InvalidInputException"), ("abcdefghijkl", "InvalidInputException")):
        with pytest.raises(ClientError) as caught:
            orgs.create_account(Email="x@example.com", AccountName="x",
                                Tags=[{"Key": "auto-repair-local:account-id", "Value": bad}])
        assert caught.value.response["Error"]["Code"] == code, bad


def _trust(principal: Any) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}]})


def test_a_trust_policy_naming_a_role_or_user_that_does_not_exist_is_refused(org):
    # AWS: "You can include the ARN for a specific role or user in the Principal element of a role trust
    # policy. When you save the policy, AWS transforms the ARN to a unique principal ID" - so the role or user
    # must exist;
    # otherwise "Invalid principal in policy"
    # (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html,
    # https://repost.aws/knowledge-center/iam-trust-policy-error).
    iam, suffix = org.client("iam", MEMBER), uuid.uuid4().hex[:6]
    existing = org.client("iam", CENTRAL_ACCOUNT).create_role(
        RoleName=f"trusted-{suffix}", Path="/team/", AssumeRolePolicyDocument=_trust({"AWS": CENTRAL_ACCOUNT}))
    missing_role = f"arn:aws:iam::{CENTRAL_ACCOUNT}:role/not-deployed-yet-{suffix}"
    missing_user = f"arn:aws:iam::{CENTRAL_ACCOUNT}:user/nobody-{suffix}"
    # GIVEN principals that IAM does not look up or that exist WHEN a role trusts them THEN it is created
    accepted = {
        "account id": {"AWS": CENTRAL_ACCOUNT}, "account root": {"AWS": f"arn:aws:iam::{OUTSIDE_ACCOUNT}:root"},
        "service": {"Service": "lambda.amazonaws.com"}, "anyone": "*", "any AWS": {"AWS": "*"},
        "existing role with path": {"AWS": existing["Role"]["Arn"]},
        "role session": {"AWS": f"arn:aws:sts::{CENTRAL_ACCOUNT}:assumed-role/trusted-{suffix}/s"},
    }
    for i, (what, principal) in enumerate(accepted.items()):
        created = iam.create_role(RoleName=f"ok-{i}-{suffix}", AssumeRolePolicyDocument=_trust(principal))
        assert created["Role"]["RoleName"] == f"ok-{i}-{suffix}", what
    # GIVEN a role or user ARN that does not exist (alone or in a list) WHEN CreateRole THEN MalformedPolicyDocument
    refused = {"role": ({"AWS": missing_role}, missing_role),
               "role in a list": ({"AWS": [existing["Role"]["Arn"], missing_role]}, missing_role),
               "user": ({"AWS": missing_user}, missing_user),
               "role without its path": ({"AWS": f"arn:aws:iam::{CENTRAL_ACCOUNT}:role/trusted-{suffix}"},
                                         f"arn:aws:iam::{CENTRAL_ACCOUNT}:role/trusted-{suffix}")}
    for what, (principal, named) in refused.items():
        with pytest.raises(ClientError) as caught:
            iam.create_role(RoleName=f"bad-{suffix}", AssumeRolePolicyDocument=_trust(principal))
        assert caught.value.response["Error"]["Code"] == "MalformedPolicyDocument", what
        assert caught.value.response["Error"]["Message"] == f'Invalid principal in policy: "AWS":"{named}"', what
    with pytest.raises(ClientError):
        iam.get_role(RoleName=f"bad-{suffix}")
    # AND UpdateAssumeRolePolicy to such a principal is refused and leaves the trust policy as it was
    with pytest.raises(ClientError) as caught:
        iam.update_assume_role_policy(RoleName=f"ok-0-{suffix}", PolicyDocument=_trust({"AWS": missing_role}))
    assert caught.value.response["Error"]["Code"] == "MalformedPolicyDocument"
    kept = iam.get_role(RoleName=f"ok-0-{suffix}")["Role"]["AssumeRolePolicyDocument"]
    assert (kept if isinstance(kept, dict) else json.loads(kept))["Statement"][0]["Principal"] == {
        "AWS": CENTRAL_ACCOUNT}


def test_a_stack_whose_role_trusts_a_role_not_yet_deployed_fails_with_iams_reason(org):
    # GIVEN a member template naming a central role that is not deployed (the member stack came first)
    cfn, suffix = org.client("cloudformation", MEMBER), uuid.uuid4().hex[:6]
    missing = f"arn:aws:iam::{CENTRAL_ACCOUNT}:role/lambda-auto-repair-collect-{suffix}"
    template = {"Resources": {"RepairRole": {"Type": "AWS::IAM::Role", "Properties": {
        "RoleName": f"member-repair-{suffix}", "AssumeRolePolicyDocument": json.loads(_trust({"AWS": [missing]}))}}}}
    stack = f"member-first-{suffix}"
    # WHEN the stack is created
    cfn.create_stack(StackName=stack, TemplateBody=json.dumps(template), Capabilities=["CAPABILITY_NAMED_IAM"])
    # THEN it fails and rolls back, and its events carry IAM's reason for the role, as CloudFormation reports it
    assert stack_settled(cfn, stack, 30, 0.25) == "ROLLBACK_COMPLETE"
    events = cfn.describe_stack_events(StackName=stack)["StackEvents"]
    failed = [e for e in events if e["LogicalResourceId"] == "RepairRole" and e["ResourceStatus"] == "CREATE_FAILED"]
    assert len(failed) == 1 and f'Invalid principal in policy: "AWS":"{missing}"' in failed[0]["ResourceStatusReason"]
    with pytest.raises(ClientError):
        org.client("iam", MEMBER).get_role(RoleName=f"member-repair-{suffix}")


def test_a_function_whose_role_does_not_trust_lambda_is_refused_at_create_and_update(org):
    # GIVEN in a member account: roles that Lambda may not assume, and ones it may (also with the confused-deputy
    # condition on the account, https://docs.aws.amazon.com/IAM/latest/UserGuide/confused-deputy.html)
    iam, lam, suffix = org.client("iam", MEMBER), org.client("lambda", MEMBER), uuid.uuid4().hex[:6]

    def role(name: str, trust: str) -> str:
        return iam.create_role(RoleName=f"{name}-{suffix}", AssumeRolePolicyDocument=trust)["Role"]["Arn"]

    lambda_only = {"Service": "lambda.amazonaws.com"}
    untrusting = {
        "empty trust": role("empty", "{}"),
        "another service": role("events", _trust({"Service": "events.amazonaws.com"})),
        "an account": role("account", _trust({"AWS": MEMBER})),
        "lambda in another account only": role("other-acct", json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": lambda_only, "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": OUTSIDE_ACCOUNT}}}]})),
        "lambda denied": role("denied", json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": lambda_only, "Action": "sts:AssumeRole"},
            {"Effect": "Deny", "Principal": lambda_only, "Action": "sts:AssumeRole"}]})),
    }
    trusting = role("ok", json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": lambda_only, "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"aws:SourceAccount": MEMBER}}}]}))
    code = {"ZipFile": zip_source("def handler(event, context):\n    return 1\n")}
    # WHEN a function is created with each untrusting role THEN InvalidParameterValueException, nothing created
    for what, arn in untrusting.items():
        with pytest.raises(ClientError) as caught:
            lam.create_function(FunctionName=f"refused-{suffix}", Runtime="python3.12", Role=arn,
                                Handler="app.handler", Code=code)
        error = caught.value.response["Error"]
        assert (error["Code"], error["Message"]) == (
            "InvalidParameterValueException", "The role defined for the function cannot be assumed by Lambda."), what
    with pytest.raises(ClientError):
        lam.get_function(FunctionName=f"refused-{suffix}")
    # AND with the trusting role it is created
    name = f"trusted-{suffix}"
    lam.create_function(FunctionName=name, Runtime="python3.12", Role=trusting, Handler="app.handler", Code=code)
    # WHEN its role is changed to an untrusting one THEN refused and the function keeps its role and memory
    with pytest.raises(ClientError) as caught:
        lam.update_function_configuration(FunctionName=name, Role=untrusting["another service"], MemorySize=256)
    assert caught.value.response["Error"]["Code"] == "InvalidParameterValueException"
    config = lam.get_function_configuration(FunctionName=name)
    assert (config["Role"], config["MemorySize"]) == (trusting, 128)
    # AND another change leaves the (trusting) role alone and goes through
    assert lam.update_function_configuration(FunctionName=name, MemorySize=256)["MemorySize"] == 256


def test_an_arn_condition_wildcard_does_not_span_colons_in_assume_role(org):
    # GIVEN roles trusting the central account, each with one condition on aws:PrincipalArn
    # (the central root's ARN, arn:aws:iam::123456789012:root)
    iam, suffix = org.client("iam", CENTRAL_ACCOUNT), uuid.uuid4().hex[:6]
    cases = {
        # ArnLike compares the six components one by one: a * never covers a colon
        ("ArnLike", "arn:aws:iam::*:root"): True,
        ("ArnLike", "arn:aws:iam::*:*"): True,
        ("ArnEquals", "arn:aws:iam::*:root"): True,
        ("ArnLike", "arn:aws:*:root"): False,
        ("ArnLike", "arn:aws:iam::*"): False,
        ("ArnNotLike", "arn:aws:*:root"): True,
        # StringLike has no components: there the same * does cover the colons
        ("StringLike", "arn:aws:*:root"): True,
    }
    sts = org.client("sts", CENTRAL_ACCOUNT)
    for i, ((operator, pattern), allowed) in enumerate(cases.items()):
        name = f"arn-cond-{i}-{suffix}"
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": CENTRAL_ACCOUNT}, "Action": "sts:AssumeRole",
            "Condition": {operator: {"aws:PrincipalArn": pattern}}}]}))
        # WHEN the central root assumes it THEN the trust policy decides as IAM would
        try:
            sts.assume_role(RoleArn=f"arn:aws:iam::{CENTRAL_ACCOUNT}:role/{name}", RoleSessionName="probe")
            got = True
        except ClientError as error:
            assert error.response["Error"]["Code"] == "AccessDenied", (operator, pattern)
            got = False
        assert got is allowed, (operator, pattern)


def test_a_request_signed_with_an_access_key_nobody_issued_is_refused(org):
    def with_keys(service: str, key: str, secret: str = "s3cr3t", token: str | None = None) -> Any:
        return boto3.client(service, endpoint_url=org.endpoint, region_name="us-east-1", aws_access_key_id=key,
                            aws_secret_access_key=secret, aws_session_token=token)

    # GIVEN an access key the local IAM/STS never issued (not the local "test" key either)
    unknown = f"AKIA{uuid.uuid4().hex[:16].upper()}"
    # WHEN it signs requests to services of every protocol (query, JSON, REST-JSON, S3)
    calls = {
        "sts": lambda: with_keys("sts", unknown).get_caller_identity(),
        "assume-role": lambda: with_keys("sts", unknown).assume_role(
            RoleArn=f"arn:aws:iam::{CENTRAL_ACCOUNT}:role/any", RoleSessionName="xx"),
        "iam": lambda: with_keys("iam", unknown).list_roles(),
        "events": lambda: with_keys("events", unknown).put_events(
            Entries=[{"Source": "team.orders", "DetailType": "Probe", "Detail": "{}"}]),
        "lambda": lambda: with_keys("lambda", unknown).list_functions(),
    }
    # THEN each is refused as AWS refuses it, instead of running as the central account's root
    for what, call in calls.items():
        with pytest.raises(ClientError) as caught:
            call()
        error = caught.value.response["Error"]
        assert error["Code"] == "InvalidClientTokenId", what
        assert error["Message"] == "The security token included in the request is invalid.", what
    with pytest.raises(ClientError) as caught:
        with_keys("s3", unknown).list_buckets()
    assert caught.value.response["Error"]["Code"] == "InvalidAccessKeyId"
    # AND keys the local cloud issued work: an IAM user's access key and an AssumeRole session's
    iam, name = org.client("iam", CENTRAL_ACCOUNT), f"keyholder-{uuid.uuid4().hex[:6]}"
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    as_user = with_keys("sts", key["AccessKeyId"], key["SecretAccessKey"]).get_caller_identity()
    assert as_user["Arn"] == f"arn:aws:iam::{CENTRAL_ACCOUNT}:user/{name}"
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=_trust({"AWS": CENTRAL_ACCOUNT}))
    creds = org.client("sts", CENTRAL_ACCOUNT).assume_role(RoleArn=f"arn:aws:iam::{CENTRAL_ACCOUNT}:role/{name}",
                                                           RoleSessionName="ss")["Credentials"]
    as_role = session_client(org.endpoint, "sts", creds).get_caller_identity()
    assert as_role["Arn"] == f"arn:aws:sts::{CENTRAL_ACCOUNT}:assumed-role/{name}/ss"
