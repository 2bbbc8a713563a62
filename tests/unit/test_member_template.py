"""Organisation mode in the templates: the member template (lambda-auto-repair-member.yaml) and the central side
of the functions template (bus policy, member-role access, settings of the workflow functions).

The member role is checked against the central roles as they are today: it may do in a member account exactly
what the central roles may do in the central account, with the same tag conditions, and nothing else.
"""

from __future__ import annotations

import ast
import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
from cfn_render import condition_values, resolve
from cfnlint.api import ManualArgs, lint_file
from cfnlint.decode import decode

REPO = Path(__file__).resolve().parents[2]
MAIN = REPO / "lambda-auto-repair-main.yaml"
FUNCTIONS = REPO / "lambda-auto-repair-functions.yaml"
MEMBER = REPO / "lambda-auto-repair-member.yaml"
MONITORING = REPO / "lambda-auto-repair-monitoring.yaml"

def load(path: Path) -> dict[str, Any]:
    template, matches = decode(str(path))
    assert not matches, matches
    return json.loads(json.dumps(template))


HANDLERS = REPO / "src" / "auto_repair" / "handlers"
ACCOUNTS = REPO / "src" / "auto_repair" / "accounts.py"


def handlers_using(attribute: str) -> set[str]:
    """The handler modules that use ``accounts.<attribute>`` (or the bare name imported from accounts)."""
    found = set()
    for path in HANDLERS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr == attribute and isinstance(node.value, ast.Name)
                    and node.value.id == "accounts") or (isinstance(node, ast.Name) and node.id == attribute):
                found.add(path.stem)
    return found


def role_kind_of(handler_module: str) -> tuple[str, str]:
    """(role kind as in lambda-auto-repair-<kind>-<env>, logical id in the main template) of the role the
    functions or monitoring template gives the handler's function, through the main stack's exported role ARN."""
    main = load(MAIN)
    for path in (FUNCTIONS, MONITORING):
        for resource in load(path)["Resources"].values():
            props = resource.get("Properties", {})
            if resource["Type"] != "AWS::Lambda::Function" or props.get("Handler") != (
                    f"auto_repair.handlers.{handler_module}.lambda_handler"):
                continue
            export = props["Role"]["Fn::ImportValue"]["Fn::Sub"]
            assert export.startswith("${MainStackName}-"), export
            logical = main["Outputs"][export.removeprefix("${MainStackName}-")]["Value"]["Fn::GetAtt"][0]
            name = main["Resources"][logical]["Properties"]["RoleName"]["Fn::Sub"]
            kind = re.fullmatch(r"lambda-auto-repair-([a-z-]+)-\$\{Environment\}", name)
            assert kind, name
            return kind.group(1), logical
    raise AssertionError(f"no function runs auto_repair.handlers.{handler_module}")


# The central roles that assume the member role: those of the handlers that call accounts.clients_for (derived
# from the code, so a handler that starts acting in member accounts, or stops, cannot drift from the templates).
CENTRAL_ROLES = dict(sorted(role_kind_of(m) for m in handlers_using("clients_for")))
# The central roles that list the organisation's accounts (membership check, accounts.org_accounts).
LISTING_ROLES = dict(sorted(role_kind_of(m) for m in handlers_using("org_accounts")))
# The roles whose rights in their own account the member role may have in a member account: those that assume it.
GRANTING_ROLES = list(CENTRAL_ROLES.values())
ORG_ID = "o-a1b2c3d4e5"
CENTRAL_ACCOUNT = "999988887777"
ACCOUNT = "111122223333"
REGION = "eu-west-1"
ORG_ENVIRONMENT = ["ORGANIZATION_ID", "MEMBER_ACCOUNTS", "MEMBER_REGIONS", "MEMBER_ROLE_NAME"]
ORG_PARAMETERS = ["OrganizationId", "OrganizationPaths", "MemberAccounts", "MemberRegions", "MemberMaxRepairsPerHour"]


@pytest.fixture(scope="module")
def main() -> dict[str, Any]:
    return load(MAIN)


@pytest.fixture(scope="module")
def member() -> dict[str, Any]:
    return load(MEMBER)


@pytest.fixture(scope="module")
def functions() -> dict[str, Any]:
    return load(FUNCTIONS)


# ---------------------------------------------------------------------------------------------- rendering
def render(template: dict[str, Any], params: dict[str, str], account: str, region: str) -> dict[str, Any]:
    """The template's resources as CloudFormation would create them (resources whose condition is false dropped)."""
    defaults = {k: str(p["Default"]) for k, p in template["Parameters"].items() if "Default" in p}
    values = {**defaults, **params, "AWS::Partition": "aws", "AWS::AccountId": account, "AWS::Region": region,
              "AWS::StackName": "stack"}
    conditions = condition_values(template, values)
    return {
        logical: resolve(resource, values, conditions)
        for logical, resource in template["Resources"].items()
        if conditions.get(resource.get("Condition", ""), True)
    }


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def role_statements(resources: dict[str, Any], role: str) -> list[dict[str, Any]]:
    """The statements of a rendered role's inline policies and of the managed policies of its template."""
    props = resources[role]["Properties"]
    documents = [p["PolicyDocument"] for p in props.get("Policies", [])]
    documents += [resources[a["Ref"]]["Properties"]["PolicyDocument"] for a in props.get("ManagedPolicyArns", [])
                  if isinstance(a, dict) and a.get("Ref") in resources]
    return [s for d in documents for s in as_list(d["Statement"])]


def grants(statements: list[dict[str, Any]], effect: str) -> set[tuple[str, str, str]]:
    """(action, resource, condition) of every statement with the effect, one triple per action and resource."""
    return {
        (action, json.dumps(resource, sort_keys=True), json.dumps(s.get("Condition"), sort_keys=True))
        for s in statements if s["Effect"] == effect
        for action in as_list(s["Action"])
        for resource in as_list(s["Resource"])
    }


def any_region(triple: tuple[str, str, str]) -> tuple[str, str, str]:
    """A central grant widened to every region of the account (the member role serves all of them)."""
    action, resource, condition = triple
    return action, resource.replace(f":{REGION}:{ACCOUNT}:", f":*:{ACCOUNT}:"), condition


SCOPES = list(itertools.product(["opt-in", "opt-out"], ["true", "false"]))


def central_and_member_grants(
    main: dict[str, Any], member: dict[str, Any], scope_mode: str, plain: str, effect: str
) -> tuple[set[tuple[str, str, str]], set[tuple[str, str, str]]]:
    """(the central roles' grants, the member role's grants), both rendered as if in the same account."""
    params = {"Environment": "prod", "ScopeMode": scope_mode, "PlainScopeTag": plain}
    central = render(main, {**params, "NotificationEmail": "ops@example.com"}, ACCOUNT, REGION)
    central_grants = {any_region(t) for role in GRANTING_ROLES for t in grants(role_statements(central, role), effect)}
    rendered = render(member, {**params, "CentralAccountId": CENTRAL_ACCOUNT, "CentralRegion": "us-east-1",
                               "OrganizationId": ORG_ID}, ACCOUNT, REGION)
    return central_grants, grants(role_statements(rendered, "MemberRepairRole"), effect)


def not_granted_centrally(member_grants: set, central_grants: set) -> list[tuple[str, str, str]]:
    return sorted(member_grants - central_grants)


# ---------------------------------------------------------------------------------------------- lint and shape
def test_member_template_is_cfn_lint_clean() -> None:
    # GIVEN the member template WHEN cfn-lint runs at its default level THEN it reports nothing
    matches = lint_file(MEMBER, config=ManualArgs(regions=["us-east-1"]))
    assert [str(m) for m in matches] == []


def test_member_template_fits_the_template_body_limit() -> None:
    # GIVEN `deploy.sh --member` and create-stack-set pass it as --template-body (51,200-byte limit)
    assert MEMBER.stat().st_size <= 51_200


@pytest.mark.parametrize(("path", "names"), [(MEMBER, None), (FUNCTIONS, ORG_PARAMETERS)], ids=["member", "functions-org"])
def test_parameters_are_described_and_constrained(path: Path, names: list[str] | None) -> None:
    parameters = load(path)["Parameters"]
    for name, parameter in parameters.items():
        if names is not None and name not in names:
            continue
        assert parameter.get("Description"), f"{name} has no Description"
        assert "AllowedValues" in parameter or "AllowedPattern" in parameter, f"{name} is unconstrained"


def test_member_parameters_name_the_contract_and_scope_as_the_main_stack(main: dict, member: dict) -> None:
    parameters = member["Parameters"]
    assert {"Environment", "CentralAccountId", "CentralRegion", "OrganizationId", "ScopeMode",
            "PlainScopeTag"} <= set(parameters)
    for name in ("Environment", "ScopeMode", "PlainScopeTag"):
        assert parameters[name]["AllowedValues"] == main["Parameters"][name]["AllowedValues"], name
        assert parameters[name].get("Default") == main["Parameters"][name].get("Default"), name


def test_member_role_arn_is_exported_with_the_stack_name_prefix(member: dict) -> None:
    output = member["Outputs"]["MemberRoleArn"]
    assert output["Export"]["Name"] == {"Fn::Sub": "${AWS::StackName}-MemberRoleArn"}
    for region, roles_region in ((REGION, ""), (REGION, REGION), (REGION, "us-east-1")):
        params = {"Environment": "dev", "CentralAccountId": CENTRAL_ACCOUNT, "CentralRegion": "us-east-1",
                  "OrganizationId": ORG_ID, "RolesRegion": roles_region}
        values = {**params, "ScopeMode": "opt-in", "PlainScopeTag": "true", "AWS::Partition": "aws",
                  "AWS::AccountId": ACCOUNT, "AWS::Region": region}
        value = resolve(output["Value"], values, condition_values(member, values))
        assert value in ({"Fn::GetAtt": ["MemberRepairRole", "Arn"]},
                         f"arn:aws:iam::{ACCOUNT}:role/lambda-auto-repair-member-dev"), value


# ---------------------------------------------------------------------------------------------- forwarding
def test_forwarding_rule_has_exactly_the_main_stacks_pattern(main: dict, member: dict) -> None:
    # GIVEN the main stack's default-bus rule and the member's WHEN their patterns are compared THEN they are equal:
    # a member's alarm reaches the central rules exactly when a central alarm would
    central = main["Resources"]["AlarmForwardingRule"]["Properties"]
    forward = member["Resources"]["AlarmForwardingRule"]["Properties"]
    assert forward["EventPattern"] == central["EventPattern"]
    assert forward["Name"] == central["Name"] == {"Fn::Sub": "lambda-auto-repair-forward-alarms-${Environment}"}
    assert forward["EventBusName"] == "default" and forward["State"] == "ENABLED"


@pytest.mark.parametrize("roles_region", ["", REGION, "us-west-2"], ids=["default", "roles-here", "roles-elsewhere"])
def test_forwarder_may_only_put_events_on_the_central_bus(member: dict, roles_region: str) -> None:
    # GIVEN the member stack in a region (the roles created there or in another region of the account)
    params = {"Environment": "staging", "CentralAccountId": CENTRAL_ACCOUNT, "CentralRegion": "us-east-1",
              "OrganizationId": ORG_ID, "RolesRegion": roles_region}
    resources = render(member, params, ACCOUNT, REGION)
    bus = f"arn:aws:events:us-east-1:{CENTRAL_ACCOUNT}:event-bus/lambda-auto-repair-bus-staging"
    # THEN the rule's single target is the central bus, through the forwarder role
    (target,) = resources["AlarmForwardingRule"]["Properties"]["Targets"]
    assert target["Arn"] == bus
    assert target["RoleArn"] in ({"Fn::GetAtt": ["MemberForwarderRole", "Arn"]},
                                 f"arn:aws:iam::{ACCOUNT}:role/lambda-auto-repair-member-forwarder-staging")
    # AND the IAM roles (global) exist only in the roles region, once per account
    creates_roles = roles_region in ("", REGION)
    assert ("MemberForwarderRole" in resources) == creates_roles
    assert ("MemberRepairRole" in resources) == creates_roles
    if not creates_roles:
        return
    role = resources["MemberForwarderRole"]["Properties"]
    assert role["RoleName"] == "lambda-auto-repair-member-forwarder-staging"
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "events.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    assert grants(role_statements(resources, "MemberForwarderRole"), "Allow") == {("events:PutEvents", json.dumps(bus),
                                                                                   "null")}
    assert grants(role_statements(resources, "MemberForwarderRole"), "Deny") == set()


# ---------------------------------------------------------------------------------------------- trust
def test_member_role_is_trusted_only_by_the_central_workflow_roles_in_the_organisation(
    main: dict, member: dict
) -> None:
    # GIVEN the member role rendered for a central account and organisation
    params = {"Environment": "prod", "CentralAccountId": CENTRAL_ACCOUNT, "CentralRegion": "us-east-1",
              "OrganizationId": ORG_ID}
    role = render(member, params, ACCOUNT, REGION)["MemberRepairRole"]["Properties"]
    assert role["RoleName"] == "lambda-auto-repair-member-prod"
    # THEN one statement trusts exactly the contract's central roles by ARN, only inside the organisation
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Effect"] == "Allow" and set(trust) <= {"Sid", "Effect", "Principal", "Action", "Condition"}
    assert set(trust["Principal"]) == {"AWS"}
    principals = as_list(trust["Principal"]["AWS"])
    assert sorted(principals) == sorted(
        f"arn:aws:iam::{CENTRAL_ACCOUNT}:role/lambda-auto-repair-{kind}-prod" for kind in CENTRAL_ROLES)
    assert not any("*" in p or p.endswith(":root") for p in principals)
    assert as_list(trust["Action"]) == ["sts:AssumeRole"]
    assert trust["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": ORG_ID}}
    # AND those names are the main stack's role names (a renamed central role would silently lose access)
    for kind, logical in CENTRAL_ROLES.items():
        assert main["Resources"][logical]["Properties"]["RoleName"] == {
            "Fn::Sub": f"lambda-auto-repair-{kind}-${{Environment}}"}, logical


# ---------------------------------------------------------------------------------------------- permissions
def test_the_roles_trusted_are_exactly_those_whose_handlers_act_in_member_accounts() -> None:
    # GIVEN the handlers that call accounts.clients_for (the only way the workflow acts in a member account)
    assert set(CENTRAL_ROLES) == {"parse-alarm", "collect", "execution", "verify", "targets"}
    # AND nothing outside the handlers calls it (a module that did would act for a handler this list misses)
    callers = {p.relative_to(REPO).as_posix() for p in (REPO / "src").rglob("*.py")
               if p != ACCOUNTS and "clients_for(" in p.read_text() and p.parent != HANDLERS}
    assert callers == set()
    # THEN the roles that do not act in a member account (approval, failure, coordinator...) are not trusted
    assert not {"request-approval", "handle-failure", "coordinator", "notify", "diagnose"} & set(CENTRAL_ROLES)
    # AND validate-deployment.sh --member checks the member role's trust against the same list
    script = re.search(r"^CENTRAL_ROLE_KINDS=\((.*)\)$", (REPO / "validate-deployment.sh").read_text(), re.M)
    assert script and sorted(script.group(1).split()) == sorted(CENTRAL_ROLES)


def test_the_member_role_needs_no_session_tags_because_clients_for_passes_none() -> None:
    # GIVEN accounts.clients_for's sts:AssumeRole call WHEN its arguments are read THEN it passes no session tags,
    # so neither the trust policy nor MemberAccessPolicy allows sts:TagSession
    # (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_session-tags.html: TagSession is needed only for Tags or
    # TransitiveTagKeys)
    calls = [node for node in ast.walk(ast.parse(ACCOUNTS.read_text()))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "assume_role"]
    assert len(calls) == 1
    assert {k.arg for k in calls[0].keywords} == {"RoleArn", "RoleSessionName", "DurationSeconds"}
    resources = render(load(FUNCTIONS), functions_params(OrganizationId=ORG_ID), CENTRAL_ACCOUNT, "us-east-1")
    member = render(load(MEMBER), {"Environment": "prod", "CentralAccountId": CENTRAL_ACCOUNT,
                                   "CentralRegion": "us-east-1", "OrganizationId": ORG_ID}, ACCOUNT, REGION)
    actions = [a for s in member["MemberRepairRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
               for a in as_list(s["Action"])]
    actions += [a for r in resources.values() if r["Type"] == "AWS::IAM::ManagedPolicy"
                for s in as_list(r["Properties"]["PolicyDocument"]["Statement"]) for a in as_list(s["Action"])]
    assert "sts:AssumeRole" in actions and "sts:TagSession" not in actions


@pytest.mark.parametrize(("scope_mode", "plain"), SCOPES, ids=[f"{m}-plain-{p}" for m, p in SCOPES])
def test_member_role_allows_only_what_the_central_roles_allow_today(
    main: dict, member: dict, scope_mode: str, plain: str
) -> None:
    # GIVEN both templates rendered with the same scope settings, as if in the same account
    central, allowed = central_and_member_grants(main, member, scope_mode, plain, "Allow")
    # THEN every (action, resource, tag condition) the member role allows is one a central role allows today
    assert allowed, "the member role allows nothing"
    assert not_granted_centrally(allowed, central) == []
    # AND it can do what a repair needs: change in-scope functions, read metrics and logs, onboard alarms
    actions = {a for a, _, _ in allowed}
    assert {"lambda:UpdateFunctionConfiguration", "lambda:GetFunctionConfiguration", "cloudwatch:GetMetricData",
            "logs:FilterLogEvents", "cloudwatch:DescribeAlarms", "cloudwatch:PutMetricAlarm",
            "logs:PutMetricFilter", "lambda:ListFunctions"} <= actions
    # AND nothing of the central account's own stores (tables, topic, bus, queues, parameters, buckets)
    assert not {a for a in actions if a.split(":")[0] in {"dynamodb", "sns", "sqs", "ssm", "s3", "states", "kms",
                                                          "events", "iam", "sts", "bedrock"}}


@pytest.mark.parametrize(("scope_mode", "plain"), SCOPES, ids=[f"{m}-plain-{p}" for m, p in SCOPES])
def test_member_role_keeps_every_central_deny_on_the_systems_own_functions(
    main: dict, member: dict, scope_mode: str, plain: str
) -> None:
    # GIVEN the central roles' Deny statements (never our own functions, alarms, filters)
    central, denied = central_and_member_grants(main, member, scope_mode, plain, "Deny")
    # THEN the member role denies the same, in every region of its account
    assert central and central <= denied


@pytest.mark.parametrize(("scope_mode", "plain"), SCOPES, ids=[f"{m}-plain-{p}" for m, p in SCOPES])
def test_member_role_reads_function_configurations_in_scope_only(member: dict, scope_mode: str, plain: str) -> None:
    # GIVEN the member role (issue 14 scoped the central roles' GetFunctionConfiguration: it shows environment
    # variables) WHEN its Lambda grants without a tag condition are listed
    rendered = render(member, {"Environment": "prod", "ScopeMode": scope_mode, "PlainScopeTag": plain,
                               "CentralAccountId": CENTRAL_ACCOUNT, "CentralRegion": "us-east-1",
                               "OrganizationId": ORG_ID}, ACCOUNT, REGION)
    unscoped = {a for a, _, c in grants(role_statements(rendered, "MemberRepairRole"), "Allow")
                if a.startswith("lambda:") and c == "null"}
    # THEN only the tags (which decide the scope) and the listing (no resource-level permissions) are unscoped
    assert unscoped == {"lambda:ListTags", "lambda:ListFunctions"}


BAD_STATEMENTS = {
    "action no central role has": {"Effect": "Allow", "Action": "lambda:DeleteFunction",
                                   "Resource": f"arn:aws:lambda:*:{ACCOUNT}:function:*"},
    "tag condition dropped": {"Effect": "Allow", "Action": "lambda:UpdateFunctionConfiguration",
                              "Resource": f"arn:aws:lambda:*:{ACCOUNT}:function:*"},
    "another account": {"Effect": "Allow", "Action": "logs:FilterLogEvents",
                        "Resource": f"arn:aws:logs:*:{CENTRAL_ACCOUNT}:log-group:/aws/lambda/*"},
    "central table": {"Effect": "Allow", "Action": "dynamodb:PutItem",
                      "Resource": f"arn:aws:dynamodb:*:{ACCOUNT}:table/lambda-auto-repair-state-prod"},
}


@pytest.mark.parametrize("bad", list(BAD_STATEMENTS), ids=list(BAD_STATEMENTS))
def test_subset_rule_flags_a_member_grant_beyond_the_central_roles(main: dict, member: dict, bad: str) -> None:
    # GIVEN the member's grants plus one statement no central role has today THEN the rule names it
    central, allowed = central_and_member_grants(main, member, "opt-in", "true", "Allow")
    extra = grants([BAD_STATEMENTS[bad]], "Allow")
    assert not_granted_centrally(allowed | extra, central) == sorted(extra)


# ---------------------------------------------------------------------------------------------- central side
def functions_params(**org: str) -> dict[str, str]:
    return {"Environment": "prod", "MainStackName": "lambda-auto-repair-main-prod", **org}


def test_single_account_functions_stack_has_no_organisation_resources(functions: dict) -> None:
    # GIVEN the functions template with its defaults (OrganizationId '') WHEN rendered
    for name in ORG_PARAMETERS[:4]:
        assert functions["Parameters"][name]["Default"] == ""
        assert re.match(functions["Parameters"][name]["AllowedPattern"], ""), name
    assert functions["Parameters"]["MemberMaxRepairsPerHour"]["Default"] == "0"
    resources = render(functions, functions_params(), CENTRAL_ACCOUNT, "us-east-1")
    # THEN no bus policy and no IAM resource: exactly today's single-account stack
    kinds = {r["Type"] for r in resources.values()}
    assert not kinds & {"AWS::Events::EventBusPolicy", "AWS::IAM::ManagedPolicy", "AWS::IAM::Role",
                        "AWS::IAM::Policy"}
    # AND the workflow functions read an empty organisation (settings.py: single-account mode)
    for logical, resource in resources.items():
        if resource["Type"] == "AWS::Lambda::Function":
            variables = resource["Properties"]["Environment"]["Variables"]
            assert [variables[k] for k in ORG_ENVIRONMENT] == ["", "", "", "lambda-auto-repair-member-prod"], logical


def test_organisation_resources_exist_only_under_is_organization(functions: dict) -> None:
    org_resources = {k for k, r in functions["Resources"].items()
                     if r["Type"] in {"AWS::Events::EventBusPolicy", "AWS::IAM::ManagedPolicy"}}
    assert org_resources == {"OrganizationBusPolicy", "MemberAccessPolicy", "OrganizationAccountsPolicy"}
    for logical in org_resources:
        assert functions["Resources"][logical]["Condition"] == "IsOrganization", logical
    assert functions["Conditions"]["IsOrganization"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "OrganizationId"}, ""]}]}


@pytest.mark.parametrize("paths", ["", "o-a1b2c3d4e5/r-ab12/ou-ab12-11111111/*,o-a1b2c3d4e5/r-ab12/ou-ab12-22222222/"],
                         ids=["whole-organisation", "two-ous"])
def test_organisation_mode_opens_the_bus_to_the_organisation_only(functions: dict, paths: str) -> None:
    # GIVEN organisation mode (optionally limited to OU paths) WHEN the functions template is rendered
    resources = render(functions, functions_params(OrganizationId=ORG_ID, OrganizationPaths=paths,
                                                   MemberAccounts="111111111111,222222222222",
                                                   MemberRegions="us-east-1,eu-west-1"), CENTRAL_ACCOUNT, "us-east-1")
    policy = resources["OrganizationBusPolicy"]["Properties"]
    # THEN the central bus accepts PutEvents from the member stacks' forwarder roles in the organisation (and the
    # OUs) only: a rule delivering to a bus in another account does so as its target role, so aws:PrincipalArn is
    # that role's ARN (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-bus-perms.html: use a role
    # when a rule's target is an event bus; https://docs.aws.amazon.com/IAM/latest/UserGuide/
    # reference_policies_condition-keys.html#condition-keys-principalarn: present in every signed request, the
    # role's ARN for a role session). A member account's root or administrator is denied.
    assert policy["EventBusName"] == {"Fn::ImportValue": "lambda-auto-repair-main-prod-EventBusName"}
    statement = policy["Statement"]
    assert statement["Effect"] == "Allow" and statement["Principal"] == "*"
    assert statement["Action"] == "events:PutEvents"
    assert statement["Resource"] == {"Fn::ImportValue": "lambda-auto-repair-main-prod-EventBusArn"}
    expected: dict[str, Any] = {"StringEquals": {"aws:PrincipalOrgID": ORG_ID},
                                "ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/lambda-auto-repair-member-forwarder-prod"}}
    if paths:
        expected["ForAnyValue:StringLike"] = {"aws:PrincipalOrgPaths": paths.split(",")}
    assert statement["Condition"] == expected
    # AND only the roles whose handlers act in member accounts may assume the member role, in the organisation only
    access = resources["MemberAccessPolicy"]["Properties"]
    assert sorted(access["Roles"]) == sorted(f"lambda-auto-repair-{kind}-prod" for kind in CENTRAL_ROLES)
    (assume,) = as_list(access["PolicyDocument"]["Statement"])
    assert as_list(assume["Action"]) == ["sts:AssumeRole"]
    assert assume["Resource"] == "arn:aws:iam::*:role/lambda-auto-repair-member-prod"
    assert assume["Condition"] == {"StringEquals": {"aws:ResourceOrgID": ORG_ID}}
    # AND only the roles whose handlers check membership may list the organisation's accounts (MemberAccounts '':
    # a member must be ACTIVE in it), nothing else
    listing = resources["OrganizationAccountsPolicy"]["Properties"]
    assert sorted(listing["Roles"]) == sorted(f"lambda-auto-repair-{kind}-prod" for kind in LISTING_ROLES)
    (accounts,) = as_list(listing["PolicyDocument"]["Statement"])
    assert (accounts["Effect"], accounts["Action"], accounts["Resource"]) == ("Allow", "organizations:ListAccounts", "*")
    for policy in (access, listing):
        assert "ManagedPolicyName" not in policy  # unnamed: the functions stack needs CAPABILITY_IAM only
    # AND every workflow function reads the organisation settings
    functions_seen = 0
    for logical, resource in resources.items():
        if resource["Type"] == "AWS::Lambda::Function":
            functions_seen += 1
            variables = resource["Properties"]["Environment"]["Variables"]
            assert [variables[k] for k in ORG_ENVIRONMENT] == [
                ORG_ID, "111111111111,222222222222", "us-east-1,eu-west-1", "lambda-auto-repair-member-prod"], logical
    assert functions_seen == 9
    # AND the executor, which counts the hourly budget, reads the per-account limit beside the global one
    execute = resources["ExecuteRepairFunction"]["Properties"]["Environment"]["Variables"]
    assert execute["MEMBER_MAX_REPAIRS_PER_HOUR"] == "0" and "MAX_REPAIRS_PER_HOUR" in execute


PATTERN_CASES = {
    "OrganizationId": (["", "o-a1b2c3d4e5", "o-" + "a" * 32], ["o-short", "O-A1B2C3D4E5", "a1b2c3d4e5", "o-a1b2c3d4e5,"]),
    "OrganizationPaths": (
        ["", "o-a1b2c3d4e5/r-ab12/", "o-a1b2c3d4e5/r-ab12/ou-ab12-11111111/",
         "o-a1b2c3d4e5/r-ab12/ou-ab12-11111111/ou-ab12-22222222/*", "o-a1b2c3d4e5/r-ab12/*,o-a1b2c3d4e5/r-ab12/ou-ab12-11111111/"],
        ["o-a1b2c3d4e5", "r-ab12/ou-ab12-11111111/", "o-a1b2c3d4e5/r-ab12/,", "*", "o-a1b2c3d4e5/r-ab12/ou x/"]),
    "MemberAccounts": (["", "111111111111", "111111111111,222222222222"],
                       ["11111111111", "111111111111,", "111111111111, 222222222222", "all"]),
    "MemberRegions": (["", "eu-west-1", "us-east-1,eu-west-1", "us-gov-west-1"],
                      ["eu-west", "EU-WEST-1", "us-east-1,", "*"]),
    "MemberMaxRepairsPerHour": (["0", "1", "25", "9999"], ["", "-1", "01", "10000", "1.5"]),
}


@pytest.mark.parametrize("name", list(PATTERN_CASES), ids=list(PATTERN_CASES))
def test_organisation_parameter_patterns_accept_the_contract_and_reject_garbage(functions: dict, name: str) -> None:
    pattern = re.compile(functions["Parameters"][name]["AllowedPattern"])
    good, bad = PATTERN_CASES[name]
    assert [g for g in good if not pattern.fullmatch(g)] == []
    assert [b for b in bad if pattern.fullmatch(b)] == []


@pytest.mark.parametrize("org", ["", ORG_ID], ids=["single-account", "organisation"])
def test_targets_function_reads_the_same_organisation_settings(org: str) -> None:
    # GIVEN the monitoring stack (its targets function onboards member accounts' functions) with the organisation
    # parameters deploy.sh passes it from the same parameters/<env>.json as the functions stack
    monitoring, functions = load(MONITORING), load(FUNCTIONS)
    for name in ("OrganizationId", "MemberAccounts", "MemberRegions"):
        assert monitoring["Parameters"][name]["AllowedPattern"] == functions["Parameters"][name]["AllowedPattern"]
        assert monitoring["Parameters"][name]["Default"] == ""
    params = {"Environment": "dev", "MainStackName": "lambda-auto-repair-main-dev", "OrganizationId": org,
              "MemberAccounts": "111111111111", "MemberRegions": "eu-west-1"}
    resources = render(monitoring, params, CENTRAL_ACCOUNT, "us-east-1")
    # THEN the targets function reads them as the workflow functions do
    variables = resources["TargetsFunction"]["Properties"]["Environment"]["Variables"]
    assert [variables[k] for k in ORG_ENVIRONMENT] == [org, "111111111111", "eu-west-1",
                                                       "lambda-auto-repair-member-dev"]
    assert not {r["Type"] for r in resources.values()} & {"AWS::IAM::ManagedPolicy", "AWS::Events::EventBusPolicy"}
