"""The member repair role's identity policy holds in the local cloud: what the member template allows the central
workflow to do in a member account, and nothing else (auto_repair_local.session_authz).

The member template is deployed by CloudFormation in member 222222222222 (environment prod) of the session's local
cloud (the organisation of tests/e2e/test_local_cloud_organization.py, created idempotently: no cloud of its own);
a central role the member role trusts assumes it and calls Lambda, CloudWatch and CloudWatch Logs.

AWS behaviour relied on:
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html (an explicit Deny wins,
otherwise an identity policy must Allow; else AccessDenied),
https://docs.aws.amazon.com/service-authorization/latest/reference/list_awslambda.html (function resource ARNs,
aws:ResourceTag/${TagKey} on functions),
https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazoncloudwatch.html (alarm resource ARNs),
https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazoncloudwatchlogs.html (log-group ARNs),
https://docs.aws.amazon.com/lambda/latest/dg/access-control-resource-based.html and
https://docs.aws.amazon.com/lambda/latest/dg/attribute-based-access-control.html (Lambda answers HTTP 403
AccessDeniedException; tag conditions on functions).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from auto_repair_cli import scenario
from auto_repair_local.local_org import (
    CENTRAL_ACCOUNT,
    LocalOrganization,
    create_central_workflow_roles,
    create_organization,
    session_client,
)
from auto_repair_local.process import REPO, LocalCloud

ENV = "prod"  # no other e2e module deploys this environment in the session's local cloud
MEMBER, REGION = "222222222222", "us-east-1"
MEMBER_ROLE = f"arn:aws:iam::{MEMBER}:role/lambda-auto-repair-member-{ENV}"
CENTRAL_ROLE = f"lambda-auto-repair-targets-{ENV}"  # one of the central roles the member role trusts
SOURCE = "def handler(event, context):\n    return 'ok'\n"


def _create_function(org: LocalOrganization, name: str, tags: dict[str, str]) -> str:
    lam, iam = org.client("lambda", MEMBER, REGION), org.client("iam", MEMBER, REGION)
    return str(lam.create_function(FunctionName=name, Runtime="python3.12", Role=scenario.ensure_role(iam),
                                   Handler="app.handler", Code={"ZipFile": scenario.zip_source(SOURCE)},
                                   MemorySize=128, Tags=tags)["FunctionArn"])


@pytest.fixture(scope="module")
def member(local_cloud: LocalCloud) -> dict[str, Any]:
    # GIVEN the organisation, the member template deployed in the member account, and the central role it trusts
    org = create_organization(local_cloud.endpoint)
    # (the central workflow's roles first: the member role's trust policy names them, IAM wants them to exist)
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{CENTRAL_ACCOUNT}:root"}, "Action": "sts:AssumeRole"}]}
    create_central_workflow_roles(local_cloud.endpoint, ENV, trust)
    cfn = org.client("cloudformation", MEMBER, REGION)
    stack = f"lambda-auto-repair-member-{ENV}"
    cfn.create_stack(StackName=stack, TemplateBody=(REPO / "lambda-auto-repair-member.yaml").read_text(),
                     Capabilities=["CAPABILITY_NAMED_IAM"], Parameters=[
                         {"ParameterKey": k, "ParameterValue": v} for k, v in {
                             "Environment": ENV, "CentralAccountId": CENTRAL_ACCOUNT, "CentralRegion": REGION,
                             "OrganizationId": org.organization_id}.items()])
    assert scenario.stack_settled(cfn, stack, 120, 0.5) == "CREATE_COMPLETE"
    iam = org.client("iam", CENTRAL_ACCOUNT)
    iam.put_role_policy(RoleName=CENTRAL_ROLE, PolicyName="assume-member", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Resource": f"arn:aws:iam::*:role/lambda-auto-repair-member-{ENV}"}]}))
    central = org.assume(CENTRAL_ACCOUNT, CENTRAL_ROLE, session="targets")
    creds = session_client(org.endpoint, "sts", central).assume_role(
        RoleArn=MEMBER_ROLE, RoleSessionName="auto-repair-authz-probe")["Credentials"]
    # AND in the member: a function in scope, one untagged, one of the system's own (tagged in scope all the same)
    suffix = uuid.uuid4().hex[:6]
    names = {"tagged": f"authz-tagged-{suffix}", "untagged": f"authz-untagged-{suffix}",
             "ours": f"lambda-auto-repair-authz-{suffix}"}
    arns = {kind: _create_function(org, name, {} if kind == "untagged" else {"auto-repair": "enabled"})
            for kind, name in names.items()}
    return {"org": org, "creds": creds, "names": names, "arns": arns,
            "session": f"arn:aws:sts::{MEMBER}:assumed-role/lambda-auto-repair-member-{ENV}/auto-repair-authz-probe",
            "client": lambda service: session_client(org.endpoint, service, creds, REGION)}


def _denied(call: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        call()
    return {**caught.value.response["Error"], "status": caught.value.response["ResponseMetadata"]["HTTPStatusCode"]}


def test_the_member_role_repairs_an_in_scope_function(member):
    lam = member["client"]("lambda")
    name = member["names"]["tagged"]
    # GIVEN the member role's session WHEN it reads and resizes a function tagged auto-repair=enabled THEN both work
    assert lam.get_function_configuration(FunctionName=name)["MemorySize"] == 128
    assert lam.update_function_configuration(FunctionName=name, MemorySize=256)["MemorySize"] == 256
    # AND a qualified name is authorised by its function's tags too
    assert lam.get_function_configuration(FunctionName=name, Qualifier="$LATEST")["FunctionName"] == name
    # AND sts:GetCallerIdentity needs no permission
    assert member["client"]("sts").get_caller_identity()["Arn"] == member["session"]


@pytest.mark.parametrize(("kind", "why"), [
    ("untagged", "because no identity-based policy allows the lambda:UpdateFunctionConfiguration action"),
    ("ours", "with an explicit deny in an identity-based policy"),
])
def test_the_member_role_cannot_resize_an_untagged_function_or_one_of_ours(member, kind: str, why: str):
    # GIVEN an untagged function (opt-in) or one named lambda-auto-repair-* (NeverTouchOurselves)
    lam = member["client"]("lambda")
    # WHEN the member role's session resizes it THEN Lambda answers 403 AccessDeniedException in AWS's words
    error = _denied(lambda: lam.update_function_configuration(FunctionName=member["names"][kind], MemorySize=256))
    assert (error["Code"], error["status"]) == ("AccessDeniedException", 403)
    assert error["Message"] == (f"User: {member['session']} is not authorized to perform: "
                                f"lambda:UpdateFunctionConfiguration on resource: {member['arns'][kind]} {why}")
    # AND the function is unchanged
    admin = member["org"].client("lambda", MEMBER, REGION)
    assert admin.get_function_configuration(FunctionName=member["names"][kind])["MemorySize"] == 128


def test_an_action_the_member_role_lacks_is_denied(member):
    # GIVEN an in-scope function WHEN the member role's session deletes it (no statement grants lambda:DeleteFunction)
    lam = member["client"]("lambda")
    error = _denied(lambda: lam.delete_function(FunctionName=member["names"]["tagged"]))
    # THEN AccessDeniedException, and the function is still there
    assert (error["Code"], error["status"]) == ("AccessDeniedException", 403)
    assert "lambda:DeleteFunction" in error["Message"]
    assert member["org"].client("lambda", MEMBER, REGION).get_function(FunctionName=member["names"]["tagged"])


def test_the_member_role_manages_only_the_guides_alarms(member):
    cw = member["client"]("cloudwatch")
    spec = {"Namespace": "AWS/Lambda", "MetricName": "Errors", "Statistic": "Sum", "Period": 60,
            "EvaluationPeriods": 1, "Threshold": 1.0, "ComparisonOperator": "GreaterThanOrEqualToThreshold"}
    guide = f"lambda-errors-alarm-{member['names']['tagged']}"
    # GIVEN / WHEN the member role's session creates an alarm named as the guide names them THEN it exists
    cw.put_metric_alarm(AlarmName=guide, **spec)
    assert [a["AlarmName"] for a in cw.describe_alarms(AlarmNames=[guide])["MetricAlarms"]] == [guide]
    # AND an alarm of another name, or the guide's alarm of one of our own functions, is refused as CloudWatch does
    for name in (f"billing-{uuid.uuid4().hex[:6]}", f"lambda-errors-alarm-{member['names']['ours']}"):
        error = _denied(lambda n=name: cw.put_metric_alarm(AlarmName=n, **spec))
        assert (error["Code"], error["status"]) == ("AccessDenied", 403), name
        assert f"cloudwatch:PutMetricAlarm on resource: arn:aws:cloudwatch:{REGION}:{MEMBER}:alarm:{name}" in \
            error["Message"]
    names = {a["AlarmName"] for a in member["org"].client("cloudwatch", MEMBER, REGION).describe_alarms()["MetricAlarms"]}
    assert guide in names and not any(n.startswith("billing-") for n in names)


def test_the_member_role_reads_only_lambda_log_groups(member):
    logs = member["client"]("logs")
    admin = member["org"].client("logs", MEMBER, REGION)
    group, other = f"/aws/lambda/{member['names']['tagged']}", f"/app/{uuid.uuid4().hex[:6]}"
    for name in (group, other):
        admin.create_log_group(logGroupName=name)
    # GIVEN / WHEN the member role's session reads a function's log group THEN it may
    assert logs.filter_log_events(logGroupName=group)["events"] == []
    # AND another log group is refused with CloudWatch Logs' AccessDeniedException
    error = _denied(lambda: logs.filter_log_events(logGroupName=other))
    assert error["Code"] == "AccessDeniedException"
    assert f"logs:FilterLogEvents on resource: arn:aws:logs:{REGION}:{MEMBER}:log-group:{other}" in error["Message"]


def test_onboarding_a_member_function_works_through_the_member_role_alone(member):
    # GIVEN the central targets function's member path (change_members over Targets) with the member role's clients,
    # as the targets handler builds them for `auto-repair targets add --account`
    from auto_repair.handlers.targets import ADD, REMOVE, change_members
    from auto_repair.targets.applier import Targets
    from auto_repair.targets.settings import TargetSettings

    client = member["client"]
    targets = Targets(lambda_client=client("lambda"), cloudwatch=client("cloudwatch"), logs=client("logs"),
                      settings=TargetSettings(environment=ENV), actions=[])
    name, where = member["names"]["tagged"], f"{MEMBER} / {REGION}"
    # WHEN it onboards the tagged function, and the untagged one
    added = change_members(targets, ADD, [name, member["names"]["untagged"]], dry_run=False, where=where)
    # THEN every call the product makes is allowed by the member template: the alarms and filters exist
    assert added[0].error == "" and added[0].applied, added[0].error
    assert name in targets.onboarded()
    # AND the untagged one is refused by the product for its tag, not by IAM
    assert "is not tagged" in added[1].error and "AccessDenied" not in added[1].error
    # AND removing it again is allowed too
    removed = change_members(targets, REMOVE, [name], dry_run=False, where=where)
    assert removed[0].error == "" and removed[0].applied, removed[0].error
    assert name not in targets.onboarded()
