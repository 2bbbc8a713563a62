"""Audit that survives and approvals bound to a person, checked statically on the templates (issue 14).

- The audit table is append-only by IAM: no role or managed policy of any stack may update or delete an entry.
- In staging and prod the audit table is retained (stack deleted or table replaced), has point-in-time recovery and
  deletion protection, and no TTL; audit entries expire only in dev and local, when configured.
- A function's configuration (which shows its environment variable values) is readable only where a role needs it.
- The approver role and managed policy: what a human approver may do, and nothing else.

Each rule is tried on small bad inputs first (a rule that could never fail would prove nothing).
"""

from __future__ import annotations

from typing import Any

import pytest
from test_security import (
    FUNCTIONS,
    MAIN,
    MEMBER,
    SCOPE_LIKE,
    SCOPE_TAG,
    TEMPLATES,
    actions,
    as_list,
    load,
    references,
    role_documents,
    scope_condition_problems,
    statements,
    sub_text,
)

ENVIRONMENTS = ("dev", "staging", "prod", "local")
KEPT = {"dev": False, "local": False, "staging": True, "prod": True}
# What a role may do to the audit table: append an entry, and read.
AUDIT_ALLOWED = {"dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan", "dynamodb:BatchGetItem",
                 "dynamodb:DescribeTable", "dynamodb:ConditionCheckItem"}
AUDIT_IMPORT = "${MainStackName}-AuditTableArn"
# Roles that may read any function's configuration, and why.
UNSCOPED_CONFIGURATION_READS = {
    "TargetsRole": "onboards functions that are not tagged yet; lambda:ListFunctions, which has no resource-level "
                   "permission, returns the same configuration anyway",
    "MemberRepairRole": "the targets role's onboarding reads in a member account (organisation mode): the same "
                        "unscoped read, lambda:ListFunctions there returns the same configuration anyway",
}
CONFIGURATION_READS = {"lambda:GetFunctionConfiguration", "lambda:GetFunction"}


@pytest.fixture(scope="module")
def templates() -> dict[str, dict[str, Any]]:
    return {path.name: load(path) for path in TEMPLATES}


# ---------------------------------------------------------------------------------------------- conditions
def condition(template: dict[str, Any], name: str, environment: str) -> bool:
    """A template condition's value for an environment (the other parameters at their defaults)."""

    def value(expr: Any) -> Any:
        if isinstance(expr, dict) and "Ref" in expr:
            if expr["Ref"] == "Environment":
                return environment
            return str(template["Parameters"][expr["Ref"]].get("Default"))
        if isinstance(expr, dict) and "Condition" in expr:
            return condition(template, expr["Condition"], environment)
        if isinstance(expr, dict) and "Fn::Equals" in expr:
            a, b = expr["Fn::Equals"]
            return str(value(a)) == str(value(b))
        if isinstance(expr, dict) and "Fn::Or" in expr:
            return any(value(e) for e in expr["Fn::Or"])
        if isinstance(expr, dict) and "Fn::And" in expr:
            return all(value(e) for e in expr["Fn::And"])
        if isinstance(expr, dict) and "Fn::Not" in expr:
            return not value(expr["Fn::Not"][0])
        return expr

    return bool(value(template["Conditions"][name]))


def resolved(template: dict[str, Any], expr: Any, environment: str) -> Any:
    """``expr`` with every Fn::If decided for the environment."""
    if isinstance(expr, dict) and set(expr) == {"Fn::If"}:
        name, yes, no = expr["Fn::If"]
        return resolved(template, yes if condition(template, name, environment) else no, environment)
    if isinstance(expr, dict):
        return {k: resolved(template, v, environment) for k, v in expr.items()}
    if isinstance(expr, list):
        return [resolved(template, v, environment) for v in expr]
    return expr


# ---------------------------------------------------------------------------------------------- rules
def reaches_audit(resource: Any) -> bool:
    """Whether a policy resource is (or may match) the audit table or its indexes."""
    if references(resource, "AuditTable"):
        return True
    if isinstance(resource, dict) and "Fn::ImportValue" in resource:
        return sub_text(resource["Fn::ImportValue"]) == AUDIT_IMPORT
    text = sub_text(resource)
    if text is None:
        return False
    if text == "*":
        return True
    # a table ARN pattern that matches lambda-auto-repair-audit-<env>
    return ":dynamodb:" in text and ":table/" in text and any(
        token in text.split(":table/", 1)[1] for token in ("*", "?", "audit"))


def audit_write_problems(owner: str, document: dict[str, Any]) -> list[str]:
    problems = []
    for statement in statements(document):
        if statement.get("Effect") != "Allow":
            continue
        if not any(reaches_audit(r) for r in as_list(statement.get("Resource", []))):
            continue
        for action in actions(statement):
            if action.startswith("dynamodb:") and action not in AUDIT_ALLOWED:
                problems.append(f"{owner} {statement.get('Sid')}: {action} on the audit table")
            if action in ("*", "dynamodb:*"):
                problems.append(f"{owner} {statement.get('Sid')}: {action} on the audit table")
    return problems


def identity_documents(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for logical, resource in template.get("Resources", {}).items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::IAM::Role":
            found += [(logical, p["PolicyDocument"]) for p in props.get("Policies", [])]
        elif resource["Type"] in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
            found.append((logical, props["PolicyDocument"]))
    return found


def configuration_read_problems(template: dict[str, Any], role: str) -> list[str]:
    problems = []
    for document in role_documents(template, role):
        for statement in statements(document):
            if statement.get("Effect") == "Allow" and CONFIGURATION_READS & set(actions(statement)):
                if statement.get("Condition") == READ_SCOPE:
                    continue
                problems += [f"{role} {p}" for p in scope_condition_problems(template, statement)]
    return problems


# A read (not a change): opt-in reads what the repair may change; opt-out reads any function not opted out (the
# code's in_scope decides, and an opted-out function stays unread).
READ_SCOPE = {"Fn::If": ["IsOptIn", SCOPE_LIKE, {"StringNotEquals": {SCOPE_TAG: "disabled"}}]}
AUDIT = {"Fn::GetAtt": ["AuditTable", "Arn"]}
TABLES = "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/*"


@pytest.mark.parametrize(
    ("statement", "flagged"),
    [
        ({"Effect": "Allow", "Action": "dynamodb:PutItem", "Resource": AUDIT}, False),
        ({"Effect": "Allow", "Action": ["dynamodb:Query"], "Resource": {"Fn::Sub": "${AuditTable.Arn}/index/*"}}, False),
        ({"Effect": "Allow", "Action": "dynamodb:UpdateItem", "Resource": AUDIT}, True),
        ({"Effect": "Allow", "Action": "dynamodb:DeleteItem", "Resource": [{"Ref": "X"}, AUDIT]}, True),
        ({"Effect": "Allow", "Action": "dynamodb:BatchWriteItem", "Resource": {"Fn::Sub": TABLES}}, True),
        ({"Effect": "Allow", "Action": "dynamodb:*", "Resource": "*"}, True),
        ({"Effect": "Allow", "Action": "dynamodb:DeleteItem",
          "Resource": {"Fn::ImportValue": {"Fn::Sub": AUDIT_IMPORT}}}, True),
        ({"Effect": "Allow", "Action": "dynamodb:UpdateItem", "Resource": {"Fn::GetAtt": ["StateTable", "Arn"]}}, False),
        ({"Effect": "Allow", "Action": "dynamodb:UpdateItem",
          "Resource": {"Fn::Sub": "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/x-audit-dev"}},
         True),
        ({"Effect": "Deny", "Action": "dynamodb:DeleteItem", "Resource": AUDIT}, False),
    ],
    ids=["put", "query-index", "update", "delete", "batch-write-pattern", "star", "imported-delete", "other-table",
         "named-pattern", "deny"],
)
def test_audit_rule_flags_every_write_but_an_append(statement: dict, flagged: bool) -> None:
    assert bool(audit_write_problems("R", {"Statement": [statement]})) is flagged


@pytest.mark.parametrize(
    ("statement", "flagged"),
    [
        ({"Effect": "Allow", "Action": "lambda:GetFunctionConfiguration", "Resource": "x"}, True),
        ({"Effect": "Allow", "Action": ["lambda:GetFunction"], "Resource": "x",
          "Condition": {"StringEquals": {"aws:ResourceTag/auto-repair": "enabled"}}}, True),
        ({"Effect": "Allow", "Action": "lambda:GetFunctionConfiguration", "Resource": "x",
          "Condition": {"Fn::If": ["IsOptIn", {"StringEquals": {"aws:ResourceTag/auto-repair": "enabled"}},
                                   {"StringNotEquals": {"aws:ResourceTag/auto-repair": "disabled"}}]}}, True),
        ({"Effect": "Allow", "Action": "lambda:GetFunctionConfiguration", "Resource": "x", "Condition": READ_SCOPE},
         False),
        ({"Effect": "Allow", "Action": "lambda:ListTags", "Resource": "x"}, False),
    ],
    ids=["unconditioned", "opt-in-only", "unscoped-plain-enabled", "scope-read", "tags-only"],
)
def test_configuration_read_rule_needs_the_scope_condition(statement: dict, flagged: bool) -> None:
    template = {"Conditions": {"IsOptIn": {"Fn::Equals": [{"Ref": "ScopeMode"}, "opt-in"]}},
                "Resources": {"R": {"Type": "AWS::IAM::Role", "Properties": {
                    "Policies": [{"PolicyDocument": {"Statement": [statement]}}]}}}}
    assert bool(configuration_read_problems(template, "R")) is flagged


def test_condition_evaluator_follows_the_template() -> None:
    template = {"Parameters": {"Flag": {"Default": "true"}},
                "Conditions": {"P": {"Fn::Or": [{"Fn::Equals": [{"Ref": "Environment"}, "prod"]},
                                                {"Fn::Equals": [{"Ref": "Environment"}, "staging"]}]},
                               "F": {"Fn::And": [{"Condition": "P"}, {"Fn::Equals": [{"Ref": "Flag"}, "true"]}]}}}
    assert [condition(template, "F", e) for e in ENVIRONMENTS] == [False, True, True, False]
    assert resolved(template, {"a": {"Fn::If": ["P", "Retain", "Delete"]}}, "prod") == {"a": "Retain"}


# ---------------------------------------------------------------------------------------------- the templates
@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_no_role_or_policy_may_update_or_delete_an_audit_entry(templates: dict, path) -> None:
    # GIVEN every role's inline policies and every managed policy of the stack
    # THEN none allows more than PutItem and reads on the audit table (append-only by IAM)
    problems = [p for owner, doc in identity_documents(templates[path.name]) for p in audit_write_problems(owner, doc)]
    assert problems == []


def test_the_executor_appends_audit_entries_and_nobody_else_writes_them(templates: dict) -> None:
    writers = {owner for t in templates.values() for owner, doc in identity_documents(t)
               for s in statements(doc) if s.get("Effect") == "Allow" and "dynamodb:PutItem" in actions(s)
               and any(reaches_audit(r) for r in as_list(s.get("Resource", [])))}
    assert writers == {"ExecuteRepairRole"}


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_audit_table_survives_in_staging_and_prod(templates: dict, environment: str) -> None:
    main = templates[MAIN.name]
    table = resolved(main, main["Resources"]["AuditTable"], environment)
    props = table["Properties"]
    kept = KEPT[environment]
    # THEN staging/prod: retained on stack deletion and on replacement, PITR, deletion protection, no TTL
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == ("Retain" if kept else "Delete")
    assert props["DeletionProtectionEnabled"] is kept
    assert props["TimeToLiveSpecification"]["Enabled"] is (not kept)
    if kept:
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    # AND the executor writes no expiry in staging/prod; elsewhere the configured retention (0 = forever)
    functions = templates[FUNCTIONS.name]
    variables = functions["Resources"]["ExecuteRepairFunction"]["Properties"]["Environment"]["Variables"]
    retention = resolved(functions, variables["AUDIT_RETENTION_DAYS"], environment)
    if kept:
        assert retention == "0"
    else:
        assert retention == {"Ref": "AuditRetentionDays"}
        assert 0 in functions["Parameters"]["AuditRetentionDays"]["AllowedValues"]


def test_function_configuration_is_read_only_in_scope(templates: dict) -> None:
    # GIVEN every role that may read a function's configuration (it shows environment variable values)
    # THEN its read carries the ScopeMode tag condition, unless the role is listed with its reason
    main = templates[MAIN.name]
    readers, problems = set(), []
    for role, resource in main["Resources"].items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        if any(CONFIGURATION_READS & set(actions(s)) for d in role_documents(main, role) for s in statements(d)):
            readers.add(role)
            if role not in UNSCOPED_CONFIGURATION_READS:
                problems += configuration_read_problems(main, role)
    assert problems == []
    assert readers == {"ParseAlarmRole", "CollectRole", "ExecuteRepairRole", "TargetsRole"}
    # Organisation mode: the member template's repair role reads in the member account what the central roles read
    # in theirs (tests/unit/test_member_template.py); its forwarder reads nothing.
    member = templates[MEMBER.name]
    member_roles = {r for r, res in member["Resources"].items() if res["Type"] == "AWS::IAM::Role"}
    assert member_roles == {"MemberForwarderRole", "MemberRepairRole"}
    assert {r for r in member_roles if any(CONFIGURATION_READS & set(actions(s)) for d in role_documents(member, r)
                                           for s in statements(d))} == {"MemberRepairRole"}
    for other in (t for name, t in templates.items() if name not in (MAIN.name, MEMBER.name)):
        assert not [r for r, res in other.get("Resources", {}).items() if res["Type"] == "AWS::IAM::Role"]


def test_the_approver_role_and_policy_allow_deciding_and_nothing_else(templates: dict) -> None:
    main = templates[MAIN.name]
    resources = main["Resources"]
    role, policy = resources["ApproverRole"]["Properties"], resources["ApproverPolicy"]["Properties"]
    # THEN both carry the documented name
    assert role["RoleName"] == policy["ManagedPolicyName"] == {"Fn::Sub": "lambda-auto-repair-approver-${Environment}"}
    assert role["ManagedPolicyArns"] == [{"Ref": "ApproverPolicy"}] and not role.get("Policies")
    # AND the role is assumed by principals of this account only (IAM decides who; see README "Approving")
    (trust,) = statements(role["AssumeRolePolicyDocument"])
    assert trust["Principal"] == {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}
    assert trust["Action"] == "sts:AssumeRole"
    # AND the policy: approval items of the state table, decisions on this environment's workflow, who am I, key
    allowed = {(s["Sid"], tuple(sorted(actions(s)))): s for s in statements(policy["PolicyDocument"])}
    assert set(allowed) == {
        ("ApprovalItems", ("dynamodb:GetItem", "dynamodb:UpdateItem")),
        ("Decide", ("states:SendTaskFailure", "states:SendTaskSuccess")),
        ("WhoAmI", ("sts:GetCallerIdentity",)),
        ("UseKey", ("kms:Decrypt", "kms:GenerateDataKey")),
    }
    items = allowed[("ApprovalItems", ("dynamodb:GetItem", "dynamodb:UpdateItem"))]
    assert items["Resource"] == {"Fn::GetAtt": ["StateTable", "Arn"]}
    assert items["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["APPROVAL#*"]}}
    decide = allowed[("Decide", ("states:SendTaskFailure", "states:SendTaskSuccess"))]
    assert sub_text(decide["Resource"]).endswith(":stateMachine:lambda-auto-repair-workflow-${Environment}")
    assert all(s["Effect"] == "Allow" for s in allowed.values())
