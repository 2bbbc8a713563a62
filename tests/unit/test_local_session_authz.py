"""The local cloud authorises a member repair role session's requests (auto_repair_local.session_authz): the
request -> (IAM action, resource ARN, condition keys) mapping and the decision over the role's identity policies.

AWS behaviour: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html (an explicit
Deny wins, otherwise an Allow is needed), the Service Authorization Reference for the actions, resources and
condition keys: https://docs.aws.amazon.com/service-authorization/latest/reference/list_awslambda.html,
https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazoncloudwatch.html,
https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazoncloudwatchlogs.html, and Lambda's
qualified resource ARNs: https://docs.aws.amazon.com/lambda/latest/dg/lambda-api-permissions-ref.html; an alarm
created with tags also needs cloudwatch:TagResource:
https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html
"""

from __future__ import annotations

from typing import Any

import pytest

from auto_repair_local.iam_policy import Decision, Principal
from auto_repair_local.session_authz import Call, Need, UnknownActionError, decide, in_scope, needs

MEMBER = "111111111111"
REGION = "eu-west-1"
FN = f"arn:aws:lambda:{REGION}:{MEMBER}:function:orders"
ALARM = f"arn:aws:cloudwatch:{REGION}:{MEMBER}:alarm:"
GROUP = f"arn:aws:logs:{REGION}:{MEMBER}:log-group:"


def call(service: str, operation: str, **params: Any) -> Call:
    return Call(service=service, operation=operation, region=REGION, account=MEMBER, params=params)


MAPPING = [
    # (request, [(action, resource, request context, function whose tags are aws:ResourceTag/*)])
    (call("lambda", "GetFunctionConfiguration", FunctionName="orders"),
     [("lambda:GetFunctionConfiguration", FN, {}, FN)]),
    (call("lambda", "GetFunctionConfiguration", FunctionName="orders", Qualifier="live"),
     [("lambda:GetFunctionConfiguration", f"{FN}:live", {}, FN)]),
    (call("lambda", "GetFunctionConfiguration", FunctionName=f"{FN}:7"),
     [("lambda:GetFunctionConfiguration", f"{FN}:7", {}, FN)]),
    (call("lambda", "GetFunctionConfiguration", FunctionName=f"{MEMBER}:function:orders"),
     [("lambda:GetFunctionConfiguration", FN, {}, FN)]),
    (call("lambda", "UpdateFunctionConfiguration", FunctionName="orders"),
     [("lambda:UpdateFunctionConfiguration", FN, {}, FN)]),
    (call("lambda", "PublishVersion", FunctionName="orders"), [("lambda:PublishVersion", FN, {}, FN)]),
    (call("lambda", "GetAlias", FunctionName="orders", Name="live"), [("lambda:GetAlias", FN, {}, FN)]),
    (call("lambda", "UpdateAlias", FunctionName="orders", Name="live"), [("lambda:UpdateAlias", FN, {}, FN)]),
    (call("lambda", "ListAliases", FunctionName="orders"), [("lambda:ListAliases", FN, {}, FN)]),
    (call("lambda", "ListProvisionedConcurrencyConfigs", FunctionName="orders"),
     [("lambda:ListProvisionedConcurrencyConfigs", FN, {}, FN)]),
    (call("lambda", "GetProvisionedConcurrencyConfig", FunctionName="orders", Qualifier="live"),
     [("lambda:GetProvisionedConcurrencyConfig", f"{FN}:live", {}, FN)]),
    (call("lambda", "DeleteFunction", FunctionName="orders"), [("lambda:DeleteFunction", FN, {}, FN)]),
    (call("lambda", "Invoke", FunctionName="orders"), [("lambda:InvokeFunction", FN, {}, FN)]),
    (call("lambda", "ListFunctions"), [("lambda:ListFunctions", "*", {}, "")]),
    (call("lambda", "ListTags", Resource=FN), [("lambda:ListTags", FN, {}, FN)]),
    (call("lambda", "TagResource", Resource=FN, Tags={"auto-repair": "enabled"}),
     [("lambda:TagResource", FN, {"aws:RequestTag/auto-repair": "enabled", "aws:TagKeys": ["auto-repair"]}, FN)]),
    (call("lambda", "UntagResource", Resource=FN, tagKeys=["b", "a"]),
     [("lambda:UntagResource", FN, {"aws:TagKeys": ["a", "b"]}, FN)]),
    (call("cloudwatch", "DescribeAlarms", AlarmNames=["a", "b"]),
     [("cloudwatch:DescribeAlarms", f"{ALARM}a", {}, ""), ("cloudwatch:DescribeAlarms", f"{ALARM}b", {}, "")]),
    (call("cloudwatch", "DescribeAlarms", AlarmNamePrefix="lambda-"),
     [("cloudwatch:DescribeAlarms", f"{ALARM}*", {}, "")]),
    (call("cloudwatch", "PutMetricAlarm", AlarmName="lambda-errors-alarm-orders",
          Tags=[{"Key": "auto-repair", "Value": "x"}]),
     [("cloudwatch:PutMetricAlarm", f"{ALARM}lambda-errors-alarm-orders",
       {"aws:RequestTag/auto-repair": "x", "aws:TagKeys": ["auto-repair"]}, ""),
      ("cloudwatch:TagResource", f"{ALARM}lambda-errors-alarm-orders",
       {"aws:RequestTag/auto-repair": "x", "aws:TagKeys": ["auto-repair"]}, "")]),
    (call("cloudwatch", "PutMetricAlarm", AlarmName="lambda-errors-alarm-orders"),
     [("cloudwatch:PutMetricAlarm", f"{ALARM}lambda-errors-alarm-orders", {}, "")]),
    (call("cloudwatch", "DeleteAlarms", AlarmNames=["x"]), [("cloudwatch:DeleteAlarms", f"{ALARM}x", {}, "")]),
    (call("cloudwatch", "TagResource", ResourceARN=f"{ALARM}x", Tags=[{"Key": "k", "Value": "v"}]),
     [("cloudwatch:TagResource", f"{ALARM}x", {"aws:RequestTag/k": "v", "aws:TagKeys": ["k"]}, "")]),
    (call("cloudwatch", "ListTagsForResource", ResourceARN=f"{ALARM}x"),
     [("cloudwatch:ListTagsForResource", f"{ALARM}x", {}, "")]),
    (call("cloudwatch", "GetMetricData", MetricDataQueries=[]), [("cloudwatch:GetMetricData", "*", {}, "")]),
    (call("cloudwatch", "GetMetricStatistics"), [("cloudwatch:GetMetricStatistics", "*", {}, "")]),
    (call("cloudwatch", "ListMetrics"), [("cloudwatch:ListMetrics", "*", {}, "")]),
    (call("logs", "FilterLogEvents", logGroupName="/aws/lambda/orders"),
     [("logs:FilterLogEvents", f"{GROUP}/aws/lambda/orders", {}, "")]),
    (call("logs", "FilterLogEvents", logGroupIdentifier=f"{GROUP}/aws/lambda/orders:*"),
     [("logs:FilterLogEvents", f"{GROUP}/aws/lambda/orders", {}, "")]),
    (call("logs", "CreateLogGroup", logGroupName="/aws/lambda/orders"),
     [("logs:CreateLogGroup", f"{GROUP}/aws/lambda/orders", {}, "")]),
    (call("logs", "DescribeMetricFilters", logGroupName="/aws/lambda/orders", filterNamePrefix="x"),
     [("logs:DescribeMetricFilters", f"{GROUP}/aws/lambda/orders", {}, "")]),
    (call("logs", "PutMetricFilter", logGroupName="/aws/lambda/orders", filterName="f"),
     [("logs:PutMetricFilter", f"{GROUP}/aws/lambda/orders", {}, "")]),
    (call("logs", "DeleteMetricFilter", logGroupName="/aws/lambda/orders", filterName="f"),
     [("logs:DeleteMetricFilter", f"{GROUP}/aws/lambda/orders", {}, "")]),
    (call("sts", "GetCallerIdentity"), []),
]


@pytest.mark.parametrize(("request_", "expected"), MAPPING, ids=lambda v: v.operation if isinstance(v, Call) else "")
def test_a_request_maps_to_the_authorisations_iam_makes(request_: Call, expected: list[tuple[Any, ...]]):
    # GIVEN a request of the product's member credentials WHEN mapped THEN action, resource and context are AWS's
    assert needs(request_) == [Need(a, r, c, f) for a, r, c, f in expected]


@pytest.mark.parametrize("unknown", [
    call("lambda", "CreateFunction", FunctionName="x"),
    call("lambda", "GetFunctionConfiguration", FunctionName="not a name!"),
    call("cloudwatch", "PutDashboard", DashboardName="d"),
    call("cloudwatch", "PutMetricAlarm"),  # no alarm name: nothing to authorise against
    call("cloudwatch", "TagResource", ResourceARN="arn:aws:cloudwatch:eu-west-1:111111111111:metric-stream/s"),
    call("logs", "PutResourcePolicy", policyName="p"),
    call("logs", "FilterLogEvents"),
    call("iam", "CreateUser", UserName="u"),
    call("sts", "AssumeRole", RoleArn="arn:aws:iam::111111111111:role/x"),
    call("s3", "GetObject", Bucket="b", Key="k"),
], ids=lambda c: f"{c.service}:{c.operation}")
def test_a_request_the_mapping_does_not_know_is_refused(unknown: Call):
    # GIVEN / WHEN an operation (or parameters) the mapping cannot authorise THEN it says so: the caller fails closed
    with pytest.raises(UnknownActionError):
        needs(unknown)


SESSION = Principal(arn=f"arn:aws:sts::{MEMBER}:assumed-role/lambda-auto-repair-member-prod/auto-repair-x",
                    account=MEMBER)
# The member template's shape: tag-scoped repair, our own functions never, alarms by name, reads.
POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["lambda:UpdateFunctionConfiguration", "lambda:GetFunctionConfiguration"],
     "Resource": f"arn:aws:lambda:*:{MEMBER}:function:*",
     "Condition": {"StringLike": {"aws:ResourceTag/auto-repair": ["enabled", "prod"]}}},
    {"Effect": "Deny", "Action": ["lambda:UpdateFunctionConfiguration"],
     "Resource": f"arn:aws:lambda:*:{MEMBER}:function:lambda-auto-repair-*"},
    {"Effect": "Allow", "Action": "cloudwatch:PutMetricAlarm",
     "Resource": f"arn:aws:cloudwatch:*:{MEMBER}:alarm:lambda-*-alarm-*"},
    {"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*",
     "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-never"}}},
]}
TAGS = {FN: {"auto-repair": "enabled"}, f"arn:aws:lambda:{REGION}:{MEMBER}:function:lambda-auto-repair-x":
        {"auto-repair": "enabled"}}


@pytest.mark.parametrize(("request_", "denied"), [
    (call("lambda", "UpdateFunctionConfiguration", FunctionName="orders"), None),
    (call("lambda", "GetFunctionConfiguration", FunctionName="orders", Qualifier="live"), None),
    (call("lambda", "UpdateFunctionConfiguration", FunctionName="untagged"),
     ("lambda:UpdateFunctionConfiguration", Decision.IMPLICIT_DENY)),
    (call("lambda", "UpdateFunctionConfiguration", FunctionName="lambda-auto-repair-x"),
     ("lambda:UpdateFunctionConfiguration", Decision.DENY)),
    (call("lambda", "DeleteFunction", FunctionName="orders"), ("lambda:DeleteFunction", Decision.IMPLICIT_DENY)),
    (call("cloudwatch", "PutMetricAlarm", AlarmName="lambda-errors-alarm-orders"), None),
    (call("cloudwatch", "PutMetricAlarm", AlarmName="billing"), ("cloudwatch:PutMetricAlarm", Decision.IMPLICIT_DENY)),
    (call("lambda", "CreateFunction", FunctionName="orders"), ("lambda:CreateFunction", Decision.IMPLICIT_DENY)),
    (call("sts", "GetCallerIdentity"), None),  # needs no permission at all
], ids=lambda v: v.operation + ":" + str(v.params.get("FunctionName") or v.params.get("AlarmName") or "")
    if isinstance(v, Call) else "")
def test_the_decision_follows_the_roles_identity_policies(request_: Call, denied: tuple[str, Decision] | None):
    # GIVEN the role's policy and the functions' tags WHEN a request is decided
    denial = decide(request_, SESSION, [POLICY], {"aws:PrincipalAccount": MEMBER}, lambda arn: TAGS.get(arn, {}))
    # THEN allowed, or denied naming the action and whether a Deny matched or nothing allowed it
    assert (None if denial is None else (denial.action, denial.decision)) == denied


def test_the_denial_is_worded_as_aws_words_it():
    # GIVEN an untagged function WHEN the member session updates it THEN AWS's message names session, action, resource
    denial = decide(call("lambda", "UpdateFunctionConfiguration", FunctionName="untagged"), SESSION, [POLICY], {},
                    lambda arn: {})
    assert denial is not None
    assert denial.message(SESSION.arn) == (
        f"User: {SESSION.arn} is not authorized to perform: lambda:UpdateFunctionConfiguration on resource: "
        f"arn:aws:lambda:{REGION}:{MEMBER}:function:untagged because no identity-based policy allows the "
        "lambda:UpdateFunctionConfiguration action")
    explicit = decide(call("lambda", "UpdateFunctionConfiguration", FunctionName="lambda-auto-repair-x"), SESSION,
                      [POLICY], {}, lambda arn: TAGS.get(arn, {}))
    assert explicit is not None and explicit.message(SESSION.arn).endswith(
        "with an explicit deny in an identity-based policy")


@pytest.mark.parametrize(("arn", "scoped"), [
    (f"arn:aws:sts::{MEMBER}:assumed-role/lambda-auto-repair-member-prod/auto-repair-1", True),
    ("arn:aws:sts::123456789012:assumed-role/lambda-auto-repair-member-staging/s", True),
    (f"arn:aws:sts::{MEMBER}:assumed-role/OrganizationAccountAccessRole/s", False),
    (f"arn:aws:sts::{MEMBER}:assumed-role/orders-role/orders", False),
    ("arn:aws:sts::123456789012:assumed-role/lambda-auto-repair-collect-prod/c", False),
    (f"arn:aws:iam::{MEMBER}:root", False),
    (f"arn:aws:iam::{MEMBER}:user/lambda-auto-repair-member-prod", False),
])
def test_only_member_repair_role_sessions_are_authorised(arn: str, scoped: bool):
    # GIVEN a caller WHEN asked whether its requests are authorised here THEN only member repair role sessions are
    assert in_scope(Principal(arn=arn, account=arn.split(":")[4])) is scoped
