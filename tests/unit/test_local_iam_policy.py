"""The local cloud's IAM policy evaluation (auto_repair_local.iam_policy): trust and bus policies, allow and deny.

AWS behaviour: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html,
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic-cross-account.html,
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html and
https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from auto_repair_local.iam_policy import Decision, Principal, Request, evaluate

ORG = "o-abcdefghij"
OTHER_ORG = "o-zzzzzzzzzz"
CENTRAL = "123456789012"
MEMBER = "111111111111"
OUTSIDE = "999999999999"
WORKFLOW = f"arn:aws:iam::{CENTRAL}:role/lambda-auto-repair-collect-prod"
MEMBER_ROLE = f"arn:aws:iam::{MEMBER}:role/lambda-auto-repair-member-prod"
BUS = f"arn:aws:events:us-east-1:{CENTRAL}:event-bus/lambda-auto-repair-bus-prod"


def session(account: str, role: str, name: str = "s") -> Principal:
    return Principal(arn=f"arn:aws:sts::{account}:assumed-role/{role}/{name}", account=account)


def ctx(principal: Principal, org: str | None = None, paths: list[str] | None = None, **extra: Any) -> dict:
    context: dict[str, Any] = {"aws:PrincipalAccount": principal.account, "aws:PrincipalArn": principal.principal_arn}
    if org:
        context["aws:PrincipalOrgID"] = org
    if paths is not None:
        context["aws:PrincipalOrgPaths"] = paths
    context.update(extra)
    return context


# The member repair role's trust policy (contract: explicit central role ARNs plus aws:PrincipalOrgID).
MEMBER_TRUST = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"AWS": [WORKFLOW]}, "Action": ["sts:AssumeRole", "sts:TagSession"],
    "Condition": {"StringEquals": {"aws:PrincipalOrgID": ORG}}}]}
WORKFLOW_SESSION = session(CENTRAL, "lambda-auto-repair-collect-prod", "auto-repair-inc-1")


@pytest.mark.parametrize("principal, context, expected", [
    (WORKFLOW_SESSION, ctx(WORKFLOW_SESSION, ORG), Decision.ALLOW),
    # wrong principal: another role of the central account, even in the organisation
    (session(CENTRAL, "lambda-auto-repair-verify-prod"), ctx(session(CENTRAL, "x"), ORG), Decision.IMPLICIT_DENY),
    # the central account's root is not the named role
    (Principal(arn=f"arn:aws:iam::{CENTRAL}:root", account=CENTRAL),
     ctx(Principal(arn=f"arn:aws:iam::{CENTRAL}:root", account=CENTRAL), ORG), Decision.IMPLICIT_DENY),
    # the right role name in another account
    (session(OUTSIDE, "lambda-auto-repair-collect-prod"), ctx(session(OUTSIDE, "x"), OTHER_ORG),
     Decision.IMPLICIT_DENY),
    # wrong organisation, and no organisation at all
    (WORKFLOW_SESSION, ctx(WORKFLOW_SESSION, OTHER_ORG), Decision.IMPLICIT_DENY),
    (WORKFLOW_SESSION, ctx(WORKFLOW_SESSION), Decision.IMPLICIT_DENY),
    # a service is not an AWS principal
    (Principal(service="lambda.amazonaws.com"), {}, Decision.IMPLICIT_DENY),
], ids=["trusted-role", "other-central-role", "central-root", "outside-account", "wrong-org", "no-org", "service"])
def test_member_role_trust(principal, context, expected):
    # GIVEN the member role's trust policy WHEN a principal asks to assume it THEN only the named role in the org may
    request = Request(principal=principal, action="sts:AssumeRole", resource=MEMBER_ROLE, context=context)
    assert evaluate([MEMBER_TRUST], request, resource_policy=True) is expected


@pytest.mark.parametrize("principal_element, principal, expected", [
    ("*", session(OUTSIDE, "r"), Decision.ALLOW),
    ({"AWS": "*"}, session(OUTSIDE, "r"), Decision.ALLOW),
    ({"AWS": "*"}, Principal(service="events.amazonaws.com"), Decision.IMPLICIT_DENY),
    ({"AWS": CENTRAL}, session(CENTRAL, "any"), Decision.ALLOW),
    ({"AWS": f"arn:aws:iam::{CENTRAL}:root"}, session(CENTRAL, "any"), Decision.ALLOW),
    ({"AWS": f"arn:aws:iam::{CENTRAL}:root"}, session(MEMBER, "any"), Decision.IMPLICIT_DENY),
    ({"AWS": f"arn:aws:iam::{CENTRAL}:user/alice"}, Principal(arn=f"arn:aws:iam::{CENTRAL}:user/alice",
                                                              account=CENTRAL), Decision.ALLOW),
    ({"AWS": f"arn:aws:iam::{CENTRAL}:user/alice"}, Principal(arn=f"arn:aws:iam::{CENTRAL}:user/bob",
                                                              account=CENTRAL), Decision.IMPLICIT_DENY),
    # a session ARN names only that session
    ({"AWS": f"arn:aws:sts::{CENTRAL}:assumed-role/r/one"}, session(CENTRAL, "r", "one"), Decision.ALLOW),
    ({"AWS": f"arn:aws:sts::{CENTRAL}:assumed-role/r/one"}, session(CENTRAL, "r", "two"), Decision.IMPLICIT_DENY),
    # wildcards inside a principal ARN are not patterns
    ({"AWS": f"arn:aws:iam::{CENTRAL}:role/*"}, session(CENTRAL, "r"), Decision.IMPLICIT_DENY),
    ({"Service": "lambda.amazonaws.com"}, Principal(service="lambda.amazonaws.com"), Decision.ALLOW),
    ({"Service": ["states.amazonaws.com", "events.amazonaws.com"]}, Principal(service="events.amazonaws.com"),
     Decision.ALLOW),
    ({"Service": "lambda.amazonaws.com"}, Principal(service="events.amazonaws.com"), Decision.IMPLICIT_DENY),
    ({"Service": "lambda.amazonaws.com"}, session(CENTRAL, "lambda.amazonaws.com"), Decision.IMPLICIT_DENY),
])
def test_principal_element(principal_element, principal, expected):
    policy = {"Statement": [{"Effect": "Allow", "Principal": principal_element, "Action": "sts:AssumeRole"}]}
    request = Request(principal=principal, action="sts:AssumeRole", resource=MEMBER_ROLE)
    assert evaluate([policy], request, resource_policy=True) is expected


# The central bus policy of the contract: organisation (and optionally OU paths) may PutEvents.
BUS_POLICY = {"Statement": [{
    "Effect": "Allow", "Principal": "*", "Action": "events:PutEvents", "Resource": BUS,
    "Condition": {"StringEquals": {"aws:PrincipalOrgID": ORG},
                  "ForAnyValue:StringLike": {"aws:PrincipalOrgPaths": [f"{ORG}/r-ab12/ou-ab12-11111111/*"]}}}]}
FORWARDER = session(MEMBER, "lambda-auto-repair-member-forwarder-prod", "events")


@pytest.mark.parametrize("context, action, resource, expected", [
    (ctx(FORWARDER, ORG, [f"{ORG}/r-ab12/ou-ab12-11111111/"]), "events:PutEvents", BUS, Decision.ALLOW),
    (ctx(FORWARDER, ORG, [f"{ORG}/r-ab12/ou-ab12-11111111/ou-ab12-22222222/"]), "events:PutEvents", BUS,
     Decision.ALLOW),
    (ctx(FORWARDER, ORG, [f"{ORG}/r-ab12/ou-ab12-33333333/"]), "events:PutEvents", BUS, Decision.IMPLICIT_DENY),
    (ctx(FORWARDER, ORG, []), "events:PutEvents", BUS, Decision.IMPLICIT_DENY),
    (ctx(FORWARDER, OTHER_ORG, [f"{ORG}/r-ab12/ou-ab12-11111111/"]), "events:PutEvents", BUS,
     Decision.IMPLICIT_DENY),
    (ctx(FORWARDER), "events:PutEvents", BUS, Decision.IMPLICIT_DENY),
    (ctx(FORWARDER, ORG, [f"{ORG}/r-ab12/ou-ab12-11111111/"]), "events:PutRule", BUS, Decision.IMPLICIT_DENY),
    (ctx(FORWARDER, ORG, [f"{ORG}/r-ab12/ou-ab12-11111111/"]), "events:PutEvents", BUS + "-other",
     Decision.IMPLICIT_DENY),
], ids=["member-ou", "nested-ou", "other-ou", "no-paths", "wrong-org", "no-org", "other-action", "other-bus"])
def test_central_bus_policy(context, action, resource, expected):
    request = Request(principal=FORWARDER, action=action, resource=resource, context=context)
    assert evaluate([json.dumps(BUS_POLICY)], request, resource_policy=True) is expected


def test_an_explicit_deny_wins_over_any_allow():
    # GIVEN the bus policy plus a Deny for one member account (in another document, as an SCP/RCP would be)
    deny = {"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "events:*", "Resource": "*",
                           "Condition": {"StringEquals": {"aws:PrincipalAccount": MEMBER}}}]}
    request = Request(principal=FORWARDER, action="events:PutEvents", resource=BUS,
                      context=ctx(FORWARDER, ORG, [f"{ORG}/r-ab12/ou-ab12-11111111/"]))
    # WHEN evaluated in either order THEN Deny
    assert evaluate([BUS_POLICY, deny], request, resource_policy=True) is Decision.DENY
    assert evaluate([deny, BUS_POLICY], request, resource_policy=True) is Decision.DENY
    # AND another member is still allowed
    other = session("222222222222", "lambda-auto-repair-member-forwarder-prod")
    allowed = Request(principal=other, action="events:PutEvents", resource=BUS,
                      context=ctx(other, ORG, [f"{ORG}/r-ab12/ou-ab12-11111111/"]))
    assert evaluate([BUS_POLICY, deny], allowed, resource_policy=True) is Decision.ALLOW


SERVICE_TRUST = {"Statement": [{
    "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "sts:AssumeRole",
    "Condition": {"StringEquals": {"aws:SourceAccount": MEMBER},
                  "ArnLike": {"aws:SourceArn": f"arn:aws:events:*:{MEMBER}:rule/*"}}}]}


@pytest.mark.parametrize("context, expected", [
    ({"aws:SourceAccount": MEMBER, "aws:SourceArn": f"arn:aws:events:eu-west-1:{MEMBER}:rule/forward"},
     Decision.ALLOW),
    ({"aws:SourceAccount": OUTSIDE, "aws:SourceArn": f"arn:aws:events:eu-west-1:{MEMBER}:rule/forward"},
     Decision.IMPLICIT_DENY),
    ({"aws:SourceAccount": MEMBER, "aws:SourceArn": f"arn:aws:events:eu-west-1:{OUTSIDE}:rule/forward"},
     Decision.IMPLICIT_DENY),
    ({"aws:SourceAccount": MEMBER}, Decision.IMPLICIT_DENY),
], ids=["own-rule", "confused-deputy-account", "confused-deputy-arn", "no-source-arn"])
def test_service_trust_with_source_conditions(context, expected):
    request = Request(principal=Principal(service="events.amazonaws.com"), action="sts:AssumeRole",
                      resource=MEMBER_ROLE, context=context)
    assert evaluate([SERVICE_TRUST], request, resource_policy=True) is expected


EXTERNAL_ID_TRUST = {"Statement": [{"Effect": "Allow", "Principal": {"AWS": CENTRAL}, "Action": "sts:AssumeRole",
                                    "Condition": {"StringEquals": {"sts:ExternalId": "s3cr3t"}}}]}


@pytest.mark.parametrize("operator, key, wanted, context, expected", [
    ("StringEquals", "sts:ExternalId", "s3cr3t", {"sts:ExternalId": "s3cr3t"}, True),
    ("StringEquals", "sts:ExternalId", "s3cr3t", {"sts:ExternalId": "S3CR3T"}, False),
    ("StringEquals", "sts:ExternalId", "s3cr3t", {}, False),
    ("StringEqualsIgnoreCase", "sts:ExternalId", "s3cr3t", {"sts:ExternalId": "S3CR3T"}, True),
    ("StringNotEquals", "aws:PrincipalOrgID", ORG, {"aws:PrincipalOrgID": OTHER_ORG}, True),
    ("StringNotEquals", "aws:PrincipalOrgID", ORG, {"aws:PrincipalOrgID": ORG}, False),
    # a negated operator on an absent key is true (AWS's documented rule)
    ("StringNotEquals", "aws:PrincipalOrgID", ORG, {}, True),
    ("StringLike", "aws:PrincipalArn", "arn:aws:iam::*:role/lambda-auto-repair-*",
     {"aws:PrincipalArn": WORKFLOW}, True),
    ("StringLike", "aws:PrincipalArn", "arn:aws:iam::*:role/other-*", {"aws:PrincipalArn": WORKFLOW}, False),
    ("StringNotLike", "aws:PrincipalArn", "arn:aws:iam::*:role/other-*", {"aws:PrincipalArn": WORKFLOW}, True),
    ("StringEqualsIfExists", "sts:ExternalId", "s3cr3t", {}, True),
    ("StringEqualsIfExists", "sts:ExternalId", "s3cr3t", {"sts:ExternalId": "x"}, False),
    ("Null", "sts:ExternalId", "true", {}, True),
    ("Null", "sts:ExternalId", "false", {}, False),
    ("Bool", "aws:SecureTransport", "true", {"aws:SecureTransport": True}, True),
    ("ForAllValues:StringLike", "aws:PrincipalOrgPaths", f"{ORG}/*", {"aws:PrincipalOrgPaths": [f"{ORG}/r/"]},
     True),
    ("ForAllValues:StringLike", "aws:PrincipalOrgPaths", f"{ORG}/*",
     {"aws:PrincipalOrgPaths": [f"{ORG}/r/", f"{OTHER_ORG}/r/"]}, False),
    ("ForAnyValue:StringLike", "aws:PrincipalOrgPaths", f"{ORG}/*", {}, False),
    ("NumericLessThan", "aws:MultiFactorAuthAge", "3600", {"aws:MultiFactorAuthAge": 60}, True),
    # condition keys are case-insensitive
    ("StringEquals", "AWS:PRINCIPALORGID", ORG, {"aws:PrincipalOrgID": ORG}, True),
    # an operator IAM does not have allows nothing
    ("StringSortOf", "aws:PrincipalOrgID", ORG, {"aws:PrincipalOrgID": ORG}, False),
])
def test_condition_operators(operator, key, wanted, context, expected):
    policy = {"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole",
                             "Condition": {operator: {key: wanted}}}]}
    request = Request(principal=WORKFLOW_SESSION, action="sts:AssumeRole", resource=MEMBER_ROLE, context=context)
    assert (evaluate([policy], request, resource_policy=True) is Decision.ALLOW) is expected


def test_an_unreadable_deny_fails_closed_and_bad_documents_allow_nothing():
    request = Request(principal=WORKFLOW_SESSION, action="sts:AssumeRole", resource=MEMBER_ROLE)
    allow = {"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole"}]}
    broken_deny = {"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "sts:AssumeRole",
                                  "Condition": {"NoSuchOperator": {"k": "v"}}}]}
    assert evaluate([allow, broken_deny], request, resource_policy=True) is Decision.DENY
    for bad in ("not json", "[]", "{}", "", None, {"Statement": [{"Effect": "Allow", "Principal": "*"}]}):
        assert evaluate([bad], request, resource_policy=True) is Decision.IMPLICIT_DENY, bad
    # AND a resource policy statement without a Principal does not apply
    no_principal = {"Statement": [{"Effect": "Allow", "Action": "*"}]}
    assert evaluate([no_principal], request, resource_policy=True) is Decision.IMPLICIT_DENY
    assert evaluate([no_principal], request) is Decision.ALLOW  # an identity policy has none


@pytest.mark.parametrize("patterns, action, resource, expected", [
    ("sts:*", "sts:AssumeRole", "*", True),
    ("STS:assumerole", "sts:AssumeRole", "*", True),  # actions are case-insensitive
    ("sts:Assume?ole", "sts:AssumeRole", "*", True),
    ("sts:GetCallerIdentity", "sts:AssumeRole", "*", False),
    ("sts:AssumeRole", "sts:AssumeRole", "arn:aws:iam::*:role/lambda-auto-repair-member-*", True),
    ("sts:AssumeRole", "sts:AssumeRole", "arn:aws:iam::*:role/LAMBDA-auto-repair-member-*", False),  # ARNs are not
])
def test_action_and_resource_wildcards(patterns, action, resource, expected):
    policy = {"Statement": [{"Effect": "Allow", "Action": patterns, "Resource": resource}]}
    request = Request(principal=WORKFLOW_SESSION, action=action, resource=MEMBER_ROLE)
    assert (evaluate([policy], request) is Decision.ALLOW) is expected


def test_not_action_and_not_principal():
    request = Request(principal=WORKFLOW_SESSION, action="sts:AssumeRole", resource=MEMBER_ROLE)
    not_action = {"Statement": [{"Effect": "Deny", "Principal": "*", "NotAction": "sts:GetCallerIdentity"}]}
    assert evaluate([not_action], request, resource_policy=True) is Decision.DENY
    not_principal = {"Statement": [{"Effect": "Deny", "NotPrincipal": {"AWS": WORKFLOW}, "Action": "*"}]}
    assert evaluate([not_principal], request, resource_policy=True) is Decision.IMPLICIT_DENY
    other = Request(principal=session(CENTRAL, "intruder"), action="sts:AssumeRole", resource=MEMBER_ROLE)
    assert evaluate([not_principal], other, resource_policy=True) is Decision.DENY


# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html#Conditions_ARN
# "ArnEquals, ArnLike: Case-sensitive matching of the ARN. Each of the six colon-delimited components of the ARN is
# checked separately and each can include multi-character match wildcards (*) or single-character match wildcards
# (?)." ArnNotEquals/ArnNotLike are their negation.
RULE = f"arn:aws:events:eu-west-1:{MEMBER}:rule/forward"


@pytest.mark.parametrize("operator, pattern, value, expected", [
    ("ArnLike", f"arn:aws:events:*:{MEMBER}:rule/*", RULE, True),
    ("ArnLike", "arn:aws:events:?????????:*:rule/forward", RULE, True),
    ("ArnLike", "arn:aws:*:*:*:*", RULE, True),
    # a * never spans a colon: fewer components than six match nothing, however wild
    ("ArnLike", "arn:aws:*", RULE, False),
    ("ArnLike", "arn:*:rule/forward", RULE, False),
    ("ArnLike", "arn:aws:events:*:rule/*", RULE, False),
    ("ArnLike", "arn:aws:events:eu-west-1*:rule/forward", RULE, False),
    # the resource component keeps its own colons and a * in it may cover them
    ("ArnLike", f"arn:aws:logs:*:{MEMBER}:log-group:*", f"arn:aws:logs:us-east-1:{MEMBER}:log-group:/aws/x:*", True),
    ("ArnLike", f"arn:aws:events:*:{MEMBER}:RULE/*", RULE, False),  # case-sensitive
    ("ArnLike", f"arn:aws:events:*:{OUTSIDE}:rule/*", RULE, False),
    ("ArnEquals", RULE, RULE, True),
    ("ArnEquals", f"arn:aws:events:*:{MEMBER}:rule/*", RULE, True),  # same matching as ArnLike, per the table
    ("ArnEquals", "arn:aws:*", RULE, False),
    ("ArnNotLike", "arn:aws:*", RULE, True),
    ("ArnNotLike", f"arn:aws:events:*:{MEMBER}:rule/*", RULE, False),
    ("ArnNotEquals", f"arn:aws:events:*:{OUTSIDE}:rule/*", RULE, True),
    ("ArnLike", f"arn:aws:events:*:{MEMBER}:rule/*", "not-an-arn", False),
], ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None)
def test_arn_condition_operators_compare_the_six_components_separately(operator, pattern, value, expected):
    # GIVEN a trust statement with an Arn* condition on aws:SourceArn WHEN a request carries ``value`` THEN the
    # statement applies only if each of the six components matches its own part of the pattern
    policy = {"Statement": [{"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
                             "Action": "sts:AssumeRole", "Condition": {operator: {"aws:SourceArn": pattern}}}]}
    request = Request(principal=Principal(service="events.amazonaws.com"), action="sts:AssumeRole",
                      resource=MEMBER_ROLE, context={"aws:SourceArn": value})
    assert (evaluate([policy], request, resource_policy=True) is Decision.ALLOW) is expected


# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html ("Using wildcards in
# resource ARNs"): "You can use wildcard characters (* and ?) within the individual segments of an ARN (the parts
# separated by colons) ... If the * wildcard is the last character of a resource ARN segment, it can expand to
# match beyond the colon boundaries."
@pytest.mark.parametrize("pattern, resource, expected", [
    ("*", BUS, True),
    (BUS, BUS, True),
    (f"arn:aws:events:*:{CENTRAL}:event-bus/*", BUS, True),
    ("arn:aws:events:*", BUS, True),  # the * ends its segment: it may run over the colons that follow
    (f"arn:aws:events:us-east-?:{CENTRAL}:event-bus/lambda-auto-repair-bus-prod", BUS, True),
    # a * inside a segment (not its last character) stays in that segment
    (f"arn:aws:events:us*{CENTRAL}:event-bus/lambda-auto-repair-bus-prod", BUS, False),
    (f"arn:aws:events:us-east-1?{CENTRAL}:event-bus/lambda-auto-repair-bus-prod", BUS, False),
    ("arn:aws:events:*:999999999999:event-bus/*", BUS, False),
    (f"arn:aws:logs:*:{CENTRAL}:log-group:/aws/lambda/fn-*:*", f"arn:aws:logs:us-east-1:{CENTRAL}:log-group:/aws/lambda/fn-a:*",
     True),
    (f"arn:aws:logs:*:{CENTRAL}:log-group:/aws/lambda/*-a", f"arn:aws:logs:us-east-1:{CENTRAL}:log-group:/aws/lambda/x:y-a",
     False),
])
def test_resource_wildcards_stay_within_a_segment_unless_they_end_it(pattern, resource, expected):
    # GIVEN an identity policy allowing events:PutEvents on ``pattern`` WHEN the request names ``resource`` THEN ...
    policy = {"Statement": [{"Effect": "Allow", "Action": "events:PutEvents", "Resource": pattern}]}
    request = Request(principal=FORWARDER, action="events:PutEvents", resource=resource)
    assert (evaluate([policy], request) is Decision.ALLOW) is expected
    # AND NotResource is its complement
    not_policy = {"Statement": [{"Effect": "Allow", "Action": "events:PutEvents", "NotResource": pattern}]}
    assert (evaluate([not_policy], request) is Decision.ALLOW) is (not expected)
