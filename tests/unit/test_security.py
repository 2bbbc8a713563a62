"""Least privilege, encryption and secrets, checked statically on the three templates and the parameter files.

Each rule is a function over the parsed templates, so the rules themselves are tested on small bad inputs
(a rule that could never fail would prove nothing) before they are applied to the real templates.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

REPO = Path(__file__).resolve().parents[2]
MAIN = REPO / "lambda-auto-repair-main.yaml"
FUNCTIONS = REPO / "lambda-auto-repair-functions.yaml"
MONITORING = REPO / "lambda-auto-repair-monitoring.yaml"
MEMBER = REPO / "lambda-auto-repair-member.yaml"
# every stack of the system, including ones added later (the targets stack)
TEMPLATES = sorted(REPO.glob("lambda-auto-repair-*.yaml"))

# Allow statements whose action has a wildcard. Only the key's account-root statement, which is what lets IAM
# policies grant use of the key at all and keeps the key manageable; AWS recommends it in every key policy.
WILDCARD_ACTION_JUSTIFIED = {
    (
        "KmsKey",
        "kms:*",
    ): "account root in the key policy: delegates key access to IAM, avoids an unmanageable key",
}
# Actions that may be allowed on Resource "*" because the service has no resource-level permissions for them.
STAR_RESOURCE_JUSTIFIED = {
    "xray:PutTraceSegments": "X-Ray has no resource-level permissions",
    "xray:PutTelemetryRecords": "X-Ray has no resource-level permissions",
    "xray:GetSamplingRules": "X-Ray has no resource-level permissions",
    "xray:GetSamplingTargets": "X-Ray has no resource-level permissions",
    "cloudwatch:GetMetricData": "GetMetricData has no resource-level permissions",
    "lambda:ListFunctions": "ListFunctions has no resource-level permissions",
    "logs:CreateLogDelivery": "Step Functions log delivery (vended logs) requires Resource *",
    "logs:GetLogDelivery": "Step Functions log delivery (vended logs) requires Resource *",
    "logs:UpdateLogDelivery": "Step Functions log delivery (vended logs) requires Resource *",
    "logs:DeleteLogDelivery": "Step Functions log delivery (vended logs) requires Resource *",
    "logs:ListLogDeliveries": "Step Functions log delivery (vended logs) requires Resource *",
    "logs:PutResourcePolicy": "Step Functions log delivery (vended logs) requires Resource *",
    "logs:DescribeResourcePolicies": "Step Functions log delivery (vended logs) requires Resource *",
    "logs:DescribeLogGroups": "Step Functions log delivery (vended logs) requires Resource *",
    "sts:GetCallerIdentity": "GetCallerIdentity has no resource-level permissions (the approver's identity)",
    "organizations:ListAccounts": "ListAccounts has no resource-level permissions (organisation mode: members)",
}
# Roles people assume rather than a service: used by no resource of the stacks.
HUMAN_ROLES = {"ApproverRole": "auto-repair approve|reject (README, Approving)"}
# Roles the central workflow assumes from another account (organisation mode): used by no resource of their stack.
CROSS_ACCOUNT_ROLES = {"MemberRepairRole": "assumed by the central workflow's roles (lambda-auto-repair-member.yaml)"}
# One IAM role per member account serves every region of that account (IAM is global, the StackSet creates it once):
# its ARNs name any region, never another account.
ANY_REGION_ROLES = {"MemberRepairRole": "one role per member account, for every region of that account"}
# Resources of another account, named exactly: the central bus a member forwards to, the member roles the central
# roles assume (any account, and the policy's aws:ResourceOrgID condition keeps it inside the organisation).
OTHER_ACCOUNT_JUSTIFIED = {
    "arn:${AWS::Partition}:events:${CentralRegion}:${CentralAccountId}:event-bus/lambda-auto-repair-bus-${Environment}":
        "the central bus, the member forwarder's only target",
    "arn:${AWS::Partition}:iam::*:role/lambda-auto-repair-member-${Environment}":
        "the member roles, in the organisation only (aws:ResourceOrgID)",
}
# Resources that may name every region: a system-defined (cross-region) inference profile routes a request to the
# foundation model in any region of its geography, and Bedrock authorises the call there as well
# (https://docs.aws.amazon.com/bedrock/latest/userguide/inference-profiles-prereq.html).
ANY_REGION_JUSTIFIED = {
    "arn:${AWS::Partition}:bedrock:*::foundation-model/*": "foundation models a cross-region inference profile routes to",
}
# Actions that change a target function: allowed only on in-scope functions, never on the system's own.
FUNCTION_MUTATIONS = {
    "lambda:UpdateFunctionConfiguration",
    "lambda:UpdateFunctionCode",
    "lambda:PublishVersion",
    "lambda:UpdateAlias",
}
OWN_FUNCTIONS_ARN = (
    "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:lambda-auto-repair-*"
)
# the member role's Deny covers every region of its account (ANY_REGION_ROLES)
OWN_FUNCTIONS_ARNS = {OWN_FUNCTIONS_ARN, OWN_FUNCTIONS_ARN.replace("${AWS::Region}", "*")}
SCOPE_TAG = "aws:ResourceTag/auto-repair"
MAIN_KEY_REFS = [{"Fn::GetAtt": ["KmsKey", "Arn"]}, {"Ref": "KmsKey"}]
IMPORTED_KEY_REF = {"Fn::ImportValue": {"Fn::Sub": "${MainStackName}-KmsKeyArn"}}
TOPIC_REF = {"Fn::ImportValue": {"Fn::Sub": "${MainStackName}-NotificationTopicArn"}}
KEY_SERVICES = {"cloudwatch.amazonaws.com", "events.amazonaws.com", "logs.${AWS::Region}.amazonaws.com"}
IDENTITY_POLICY_TYPES = {"AWS::IAM::Role", "AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"}
RESOURCE_POLICY_TYPES = {
    "AWS::KMS::Key": "KeyPolicy",
    "AWS::S3::BucketPolicy": "PolicyDocument",
    "AWS::SNS::TopicPolicy": "PolicyDocument",
    "AWS::SQS::QueuePolicy": "PolicyDocument",
}


def load(path: Path) -> dict[str, Any]:
    template, matches = decode(str(path))
    assert not matches, matches
    return json.loads(json.dumps(template))  # plain dicts and strings, whatever cfn-lint's node classes do


@pytest.fixture(scope="module")
def templates() -> dict[str, dict[str, Any]]:
    return {path.name: load(path) for path in TEMPLATES}


# ---------------------------------------------------------------------------------------------- helpers
def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def branches(value: Any) -> list[Any]:
    """Both outcomes of an Fn::If (recursively), or the value itself; AWS::NoValue dropped."""
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        _, yes, no = value["Fn::If"]
        return branches(yes) + branches(no)
    if value == {"Ref": "AWS::NoValue"}:
        return []
    return [value]


def sub_text(value: Any) -> str | None:
    """The text of a plain string or of a !Sub (either form); None for other intrinsics."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return sub if isinstance(sub, str) else sub[0]
    return None


def statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for item in as_list(document.get("Statement", [])) for s in branches(item)]


def actions(statement: dict[str, Any]) -> list[str]:
    return [a for item in as_list(statement.get("Action", [])) for a in branches(item)]


def policies(template: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(logical id, "identity" | "trust" | "resource", policy document) of every policy in a template."""
    for logical, resource in template.get("Resources", {}).items():
        props = resource.get("Properties", {})
        kind = resource["Type"]
        if kind == "AWS::IAM::Role":
            yield logical, "trust", props["AssumeRolePolicyDocument"]
            for policy in props.get("Policies", []):
                yield logical, "identity", policy["PolicyDocument"]
        elif kind in IDENTITY_POLICY_TYPES:
            yield logical, "identity", props["PolicyDocument"]
        elif kind in RESOURCE_POLICY_TYPES:
            yield logical, "resource", props[RESOURCE_POLICY_TYPES[kind]]


def references(value: Any, logical: str) -> bool:
    """Whether a value refers to the logical id (Ref, GetAtt, or ${X}/${X.Attr} in a Sub)."""
    if isinstance(value, dict):
        if value.get("Ref") == logical:
            return True
        if "Fn::GetAtt" in value and as_list(value["Fn::GetAtt"])[0].split(".")[0] == logical:
            return True
        text = sub_text(value)
        if text is not None and re.search(r"\$\{" + re.escape(logical) + r"(\.[A-Za-z]+)?\}", text):
            return True
        return any(references(v, logical) for v in value.values())
    if isinstance(value, list):
        return any(references(v, logical) for v in value)
    return False


# ---------------------------------------------------------------------------------------------- rules
WILDCARD = re.compile(r"[*?]")


def wildcard_action_problems(logical: str, kind: str, document: dict[str, Any]) -> list[str]:
    problems = []
    for statement in statements(document):
        if statement.get("Effect") != "Allow":
            continue  # a Deny with a wildcard (s3:* without TLS) only ever takes rights away
        if "NotAction" in statement:
            problems.append(f"{logical}: Allow with NotAction grants everything else")
        for action in actions(statement):
            if WILDCARD.search(action) and (logical, action) not in WILDCARD_ACTION_JUSTIFIED:
                problems.append(f"{logical} ({kind}): wildcard action {action}")
    return problems


# An ARN pattern is scoped when its partition, region and account are ours (or empty where the service has
# none, e.g. S3 and foundation models) and its resource part names a resource type, not just "*".
SCOPED_ARN = re.compile(
    r"^arn:\$\{AWS::Partition\}:[a-z0-9-]+:(\$\{AWS::Region\})?:(\$\{AWS::AccountId\})?:(?P<resource>.+)$"
)


def resource_problems(logical: str, document: dict[str, Any]) -> list[str]:
    problems = []
    for statement in statements(document):
        if statement.get("Effect") != "Allow":
            continue
        if "NotResource" in statement:
            problems.append(f"{logical}: Allow with NotResource")
        for resource in [r for item in as_list(statement.get("Resource", [])) for r in branches(item)]:
            text = sub_text(resource)
            if text is None:
                continue  # Ref, GetAtt, ImportValue: a named resource
            if text == "*":
                unjustified = [a for a in actions(statement) if a not in STAR_RESOURCE_JUSTIFIED]
                if unjustified:
                    problems.append(f"{logical}: {unjustified} on Resource '*'")
                continue
            if text in ANY_REGION_JUSTIFIED or text in OTHER_ACCOUNT_JUSTIFIED:
                continue
            if logical in ANY_REGION_ROLES:
                text = text.replace(":*:${AWS::AccountId}:", ":${AWS::Region}:${AWS::AccountId}:", 1)
            if re.match(r"^\$\{(?!AWS::)[A-Za-z0-9.]+\}", text):
                continue  # "${TableArn}/index/*", "${Bucket.Arn}/*": below a named resource
            match = SCOPED_ARN.match(text)
            if not match or match.group("resource") in ("*", "*/*"):
                problems.append(f"{logical}: resource {text!r} is not a scoped ARN")
    return problems


# The executor's scope: the auto-repair tag names this environment (or is enabled, with PlainScopeTag), an exact
# element of its comma list; opt-out adds untagged functions. tests/unit/test_scope_tags.py evaluates these
# conditions against auto_repair.guards.in_scope.
SCOPE_LIKE = {"StringLike": {SCOPE_TAG: {"Fn::Split": [" ", {"Fn::Sub": [
    "${E} ${E},* *,${E} *,${E},*${P}",
    {"E": {"Ref": "Environment"},
     "P": {"Fn::If": ["IsPlainScopeTag", " enabled enabled,* *,enabled *,enabled,*", ""]}}]}]}}}
SCOPE_UNTAGGED = {"Null": {SCOPE_TAG: "true"}}


def scope_condition_problems(template: dict[str, Any], statement: dict[str, Any]) -> list[str]:
    """A function mutation must carry one of the scope conditions (before environment scoping: the ScopeMode
    choice between auto-repair=enabled and not auto-repair=disabled)."""
    condition = statement.get("Condition")
    if condition == SCOPE_LIKE:
        return []
    if condition == SCOPE_UNTAGGED:
        return []
    return [f"{statement.get('Sid')}: condition {condition!r} is not a scope condition"]


def role_documents(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    """The role's inline policies and the managed policies of the same template attached to it."""
    props = template["Resources"][role]["Properties"]
    documents = [p["PolicyDocument"] for p in props.get("Policies", [])]
    for arn in props.get("ManagedPolicyArns", []):
        if isinstance(arn, dict) and "Ref" in arn and arn["Ref"] in template["Resources"]:
            documents.append(template["Resources"][arn["Ref"]]["Properties"]["PolicyDocument"])
    return documents


def mutation_problems(template: dict[str, Any]) -> tuple[set[str], list[str]]:
    """(roles allowed to change functions, problems) for one template."""
    mutators, problems = set(), []
    for logical, resource in template.get("Resources", {}).items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        documents = role_documents(template, logical)
        allowed = [
            s
            for d in documents
            for s in statements(d)
            if s.get("Effect") == "Allow" and FUNCTION_MUTATIONS & set(actions(s))
        ]
        if not allowed:
            continue
        mutators.add(logical)
        denied = {
            a
            for d in documents
            for s in statements(d)
            if s.get("Effect") == "Deny"
            and OWN_FUNCTIONS_ARNS & {sub_text(r) for r in as_list(s.get("Resource"))}
            for a in actions(s)
        }
        for statement in allowed:
            problems += [f"{logical} {p}" for p in scope_condition_problems(template, statement)]
            missing = (FUNCTION_MUTATIONS & set(actions(statement))) - denied
            if missing:
                problems.append(f"{logical}: {sorted(missing)} not denied on {OWN_FUNCTIONS_ARN}")
    return mutators, problems


def is_key(value: Any) -> bool:
    return value in MAIN_KEY_REFS or value == IMPORTED_KEY_REF


SECRET_PATTERNS = {
    "AWS access key id": re.compile(r"(?<![A-Z0-9])(AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "secret assignment": re.compile(
        r"(?i)\b(aws_secret_access_key|secret_?key|password|passwd|api_?key|token)\b[\"']?\s*[:=]\s*[\"']?"
        r"(?!\s*!Ref|\s*\{\{resolve:)[A-Za-z0-9/+=_\-]{8,}"
    ),
}


def secrets_in(text: str) -> list[str]:
    return [
        f"{what}: {m.group(0)[:12]}..." for what, rx in SECRET_PATTERNS.items() for m in rx.finditer(text)
    ]


# ---------------------------------------------------------------------------------------------- the rules on bad input
@pytest.mark.parametrize(
    ("statement", "flagged"),
    [
        ({"Effect": "Allow", "Action": "*", "Resource": "*"}, True),
        ({"Effect": "Allow", "Action": "lambda:*", "Resource": "*"}, True),
        ({"Effect": "Allow", "Action": ["lambda:Update*"], "Resource": "*"}, True),
        ({"Effect": "Allow", "Action": "s3:Get?bject", "Resource": "*"}, True),
        ({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}, True),
        ({"Effect": "Allow", "Action": {"Fn::If": ["C", "kms:*", "kms:Decrypt"]}, "Resource": "*"}, True),
        ({"Effect": "Allow", "Action": ["lambda:GetFunctionConfiguration"], "Resource": "*"}, False),
        ({"Effect": "Deny", "Action": "s3:*", "Resource": "*"}, False),
    ],
    ids=["star", "service-star", "prefix-star", "question-mark", "not-action", "in-if", "named", "deny"],
)
def test_wildcard_rule_flags_wildcards_in_allow_statements(statement: dict, flagged: bool) -> None:
    assert bool(wildcard_action_problems("R", "identity", {"Statement": [statement]})) is flagged


@pytest.mark.parametrize(
    ("resource", "action", "flagged"),
    [
        ("*", "lambda:UpdateFunctionConfiguration", True),
        ("*", "xray:PutTraceSegments", False),
        ("arn:aws:lambda:us-east-1:123456789012:function:*", "lambda:GetFunctionConfiguration", True),
        ({"Fn::Sub": "arn:${AWS::Partition}:lambda:*:*:function:*"}, "lambda:GetFunctionConfiguration", True),
        ({"Fn::Sub": "arn:${AWS::Partition}:s3:::*"}, "s3:GetObject", True),
        (
            {"Fn::Sub": "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:*"},
            "lambda:GetFunctionConfiguration",
            False,
        ),
        ({"Fn::Sub": ["arn:${AWS::Partition}:s3:::${B}/*", {"B": "x"}]}, "s3:GetObject", False),
        ({"Fn::GetAtt": ["Queue", "Arn"]}, "sqs:SendMessage", False),
        ({"Fn::Sub": ["${TableArn}/index/*", {"TableArn": {"Ref": "T"}}]}, "dynamodb:Query", False),
        ({"Fn::Sub": "${AWS::Partition}/*"}, "dynamodb:Query", True),
    ],
    ids=[
        "star",
        "star-justified",
        "hard-coded",
        "any-region",
        "any-bucket",
        "scoped",
        "bucket-objects",
        "named",
        "below-named",
        "pseudo-prefix",
    ],
)
def test_resource_rule_flags_unscoped_resources(resource: Any, action: str, flagged: bool) -> None:
    document = {"Statement": [{"Effect": "Allow", "Action": action, "Resource": resource}]}
    assert bool(resource_problems("R", document)) is flagged


def _repair_template(allow: dict[str, Any], deny_actions: list[str]) -> dict[str, Any]:
    statements_ = [allow]
    if deny_actions:
        statements_.append(
            {"Effect": "Deny", "Action": deny_actions, "Resource": {"Fn::Sub": OWN_FUNCTIONS_ARN}}
        )
    return {
        "Conditions": {"IsOptIn": {"Fn::Equals": [{"Ref": "ScopeMode"}, "opt-in"]}},
        "Resources": {
            "R": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "Policies": [{"PolicyName": "p", "PolicyDocument": {"Statement": statements_}}]
                },
            }
        },
    }


SCOPED = SCOPE_LIKE
UPDATE = "lambda:UpdateFunctionConfiguration"


@pytest.mark.parametrize(
    ("allow", "deny", "flagged"),
    [
        ({"Effect": "Allow", "Action": UPDATE, "Resource": "*", "Condition": SCOPED}, [UPDATE], False),
        ({"Effect": "Allow", "Action": UPDATE, "Resource": "*"}, [UPDATE], True),
        ({"Effect": "Allow", "Action": UPDATE, "Resource": "*", "Condition": SCOPED}, [], True),
        (
            {
                "Effect": "Allow",
                "Action": [UPDATE, "lambda:PublishVersion"],
                "Resource": "*",
                "Condition": SCOPED,
            },
            [UPDATE],
            True,
        ),
        (
            {
                "Effect": "Allow",
                "Action": UPDATE,
                "Resource": "*",
                "Condition": {"StringEquals": {SCOPE_TAG: "enabled"}},
            },
            [UPDATE],
            True,
        ),
        (
            {
                "Effect": "Allow",
                "Action": UPDATE,
                "Resource": "*",
                "Condition": {
                    "Fn::If": [
                        "IsOptIn",
                        {"StringEquals": {SCOPE_TAG: "enabled"}},
                        {"StringEquals": {SCOPE_TAG: "disabled"}},
                    ]
                },
            },
            [UPDATE],
            True,
        ),
    ],
    ids=["ok", "no-condition", "no-deny", "publish-not-denied", "opt-in-only", "wrong-opt-out"],
)
def test_mutation_rule_needs_scope_condition_and_self_deny(
    allow: dict, deny: list[str], flagged: bool
) -> None:
    mutators, problems = mutation_problems(_repair_template(allow, deny))
    assert mutators == {"R"} and bool(problems) is flagged


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("AccessKeyId: AKIAIOSFODNN7EXAMPLE", True),
        ('{"aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}', True),
        ("-----BEGIN RSA PRIVATE KEY-----", True),
        ("Password: hunter2hunter2", True),
        ("Password: !Ref DbPassword", False),
        ("AWS_ACCESS_KEY_ID=test", False),
        ("AllowedPattern: '^[A-Za-z0-9]+$'", False),
    ],
    ids=["key-id", "secret-key", "private-key", "password", "password-ref", "fake-local", "pattern"],
)
def test_secret_scanner_finds_literal_secrets(text: str, found: bool) -> None:
    assert bool(secrets_in(text)) is found


# ---------------------------------------------------------------------------------------------- the templates
@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_no_wildcard_actions_in_any_policy(templates: dict, path: Path) -> None:
    # GIVEN every identity, trust and resource policy of the template THEN no Allow has a wildcard action
    problems = [
        p
        for logical, kind, doc in policies(templates[path.name])
        for p in wildcard_action_problems(logical, kind, doc)
    ]
    assert problems == []


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_identity_policy_resources_are_named_or_scoped(templates: dict, path: Path) -> None:
    # GIVEN our roles' and managed policies' statements THEN each resource is named or a scoped ARN pattern,
    # and "*" only for the actions that have no resource-level permissions
    problems = [
        p
        for logical, kind, doc in policies(templates[path.name])
        if kind == "identity"
        for p in resource_problems(logical, doc)
    ]
    assert problems == []


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_every_role_is_used_by_exactly_one_function_state_machine_or_rule(
    templates: dict, path: Path
) -> None:
    template = templates[path.name]
    roles = [k for k, r in template.get("Resources", {}).items() if r["Type"] == "AWS::IAM::Role"]
    for role in roles:
        if role in HUMAN_ROLES or role in CROSS_ACCOUNT_ROLES:
            continue
        users = [(template, k) for k, r in template["Resources"].items() if k != role and references(r, role)]
        # A role exported for another stack (the targets function's, created by the main stack because the
        # monitoring stack has no IAM capabilities) is used where its export is imported.
        exports = [key for key, out in template.get("Outputs", {}).items() if references(out, role)]
        for other in templates.values():
            if other is not template:
                users += [(other, k) for k, r in other.get("Resources", {}).items()
                          if any(f"${{MainStackName}}-{key}" in json.dumps(r) for key in exports)]
        users = [(t, k) for t, k in users if t is not template or k not in exports]
        assert len(users) == 1, f"{role} is used by {[k for _, k in users]}"
        ((owner, user),) = users
        kind = owner["Resources"][user]["Type"]
        assert kind in {"AWS::Lambda::Function", "AWS::StepFunctions::StateMachine", "AWS::Events::Rule"}, (
            role,
            kind,
        )


def test_only_the_executor_may_change_functions_and_only_in_scope_never_our_own(templates: dict) -> None:
    # GIVEN the templates WHEN a role may change a function (configuration, code, version, alias)
    # THEN it is the executor role, each such Allow carries the ScopeMode tag condition and a Deny covers the
    # system's own functions whatever their tags
    mutators: dict[str, set[str]] = {}
    problems: list[str] = []
    for name, template in templates.items():
        found, issues = mutation_problems(template)
        mutators[name] = found
        problems += issues
    assert problems == []
    # The roles live in the main stack (created with CAPABILITY_NAMED_IAM), so ScopeMode does too: the executor's
    # condition and the functions' SCOPE_MODE read the one parameter (exported, imported by the functions stack).
    # Organisation mode: the member account's repair role, assumed by the central workflow, does it there.
    assert {name: found for name, found in mutators.items() if found} == {
        MAIN.name: {"ExecuteRepairRole"}, MEMBER.name: {"MemberRepairRole"}}
    role = templates[MAIN.name]["Resources"]["ExecuteRepairRole"]["Properties"]
    assert role["RoleName"] == {"Fn::Sub": "lambda-auto-repair-execution-${Environment}"}
    member_role = templates[MEMBER.name]["Resources"]["MemberRepairRole"]["Properties"]
    assert member_role["RoleName"] == {"Fn::Sub": "lambda-auto-repair-member-${Environment}"}
    scope = templates[MAIN.name]["Parameters"]["ScopeMode"]
    assert scope["AllowedValues"] == ["opt-in", "opt-out"] and scope["Default"] == "opt-in"
    assert "ScopeMode" not in templates[FUNCTIONS.name]["Parameters"]
    assert templates[MAIN.name]["Outputs"]["ScopeMode"]["Value"] == {"Ref": "ScopeMode"}
    imported = {"Fn::ImportValue": {"Fn::Sub": "${MainStackName}-ScopeMode"}}
    environments = [r["Properties"]["Environment"]["Variables"] for r in templates[FUNCTIONS.name]["Resources"].values()
                    if r["Type"] == "AWS::Lambda::Function"]
    assert [v["SCOPE_MODE"] for v in environments if "SCOPE_MODE" in v] == [imported]


def imported_role(templates: dict, value: Any) -> tuple[dict[str, Any], str]:
    """(template, logical id) of the role behind a RoleArn: a GetAtt here, or an import of the main stack's export."""
    if "Fn::GetAtt" in value:
        return templates[FUNCTIONS.name], value["Fn::GetAtt"][0]
    export = sub_text(value["Fn::ImportValue"])
    assert export is not None and export.startswith("${MainStackName}-"), value
    main = templates[MAIN.name]
    output = main["Outputs"][export.removeprefix("${MainStackName}-")]
    assert output["Export"]["Name"] == {"Fn::Sub": "${AWS::StackName}-" + export.removeprefix("${MainStackName}-")}
    return main, output["Value"]["Fn::GetAtt"][0]


def function_arn(name: str) -> str:
    return f"arn:${{AWS::Partition}}:lambda:${{AWS::Region}}:${{AWS::AccountId}}:function:{name}"


def test_state_machine_invokes_only_its_own_functions_and_publishes_only_to_our_topic(
    templates: dict,
) -> None:
    template = templates[FUNCTIONS.name]
    resources = template["Resources"]
    (machine,) = [
        r["Properties"] for r in resources.values() if r["Type"] == "AWS::StepFunctions::StateMachine"
    ]
    owner, role = imported_role(templates, machine["RoleArn"])
    allowed = [s for d in role_documents(owner, role) for s in statements(d) if s.get("Effect") == "Allow"]
    # the functions the definition calls, by the ARN their names give (the role is created before them)
    variables = machine["DefinitionSubstitutions"]
    called = {v["Fn::GetAtt"][0] for v in variables.values() if isinstance(v, dict) and "Fn::GetAtt" in v}
    for logical in called:
        assert resources[logical]["Type"] == "AWS::Lambda::Function"
        assert sub_text(resources[logical]["Properties"]["FunctionName"]).startswith("lambda-auto-repair-")
    expected = {function_arn(sub_text(resources[k]["Properties"]["FunctionName"])) for k in called}
    invokable: set[str] = set()
    for statement in allowed:
        for action in actions(statement):
            service = action.split(":")[0]
            if action == "lambda:InvokeFunction":
                for resource in as_list(statement["Resource"]):
                    text = sub_text(resource)
                    # one named function of this environment, never a pattern
                    assert set(resource) == {"Fn::Sub"} and text and not WILDCARD.search(text), resource
                    invokable.add(text)
            elif action == "sns:Publish":
                assert as_list(statement["Resource"]) in ([TOPIC_REF], [{"Ref": "NotificationTopic"}])
            else:
                assert service in {"logs", "xray", "kms"}, action
    assert invokable == expected, "the role may invoke exactly the functions the workflow calls"


def test_customer_managed_key_rotates_and_encrypts_every_store(templates: dict) -> None:
    main = templates[MAIN.name]["Resources"]
    (keys,) = [[k for k, r in main.items() if r["Type"] == "AWS::KMS::Key"]]
    assert keys == ["KmsKey"] and main["KmsKey"]["Properties"]["EnableKeyRotation"] is True
    seen: dict[str, int] = {}
    for template in templates.values():
        for logical, resource in template["Resources"].items():
            kind, props = resource["Type"], resource.get("Properties", {})
            key = {
                "AWS::SNS::Topic": lambda p: p.get("KmsMasterKeyId"),
                "AWS::SQS::Queue": lambda p: p.get("KmsMasterKeyId"),
                "AWS::Logs::LogGroup": lambda p: p.get("KmsKeyId"),
                "AWS::Lambda::Function": lambda p: p.get("KmsKeyArn"),
                "AWS::DynamoDB::Table": lambda p: (
                    p.get("SSESpecification", {}).get("SSEType") == "KMS"
                    and p["SSESpecification"].get("SSEEnabled") is True
                    and p["SSESpecification"].get("KMSMasterKeyId")
                ),
                "AWS::S3::Bucket": lambda p: next(
                    (
                        c["ServerSideEncryptionByDefault"].get("KMSMasterKeyID")
                        for c in p.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", [])
                        if c["ServerSideEncryptionByDefault"].get("SSEAlgorithm") == "aws:kms"
                    ),
                    None,
                ),
            }.get(kind)
            if key is None:
                continue
            seen[kind] = seen.get(kind, 0) + 1
            assert is_key(key(props)), f"{logical} ({kind}) is not encrypted with the system key"
    # the check covered every kind of store (the counts are lower bounds: others add functions and logs)
    assert seen["AWS::SNS::Topic"] >= 1 and seen["AWS::SQS::Queue"] >= 1 and seen["AWS::S3::Bucket"] >= 2
    assert seen["AWS::DynamoDB::Table"] >= 3 and seen["AWS::Lambda::Function"] >= 9
    assert seen["AWS::Logs::LogGroup"] >= seen["AWS::Lambda::Function"]


def test_key_policy_grants_exactly_the_services_that_need_the_key(templates: dict) -> None:
    # cloudwatch: alarm actions to the encrypted topic; events: rules to the topic and the encrypted DLQ;
    # logs: encrypted log groups. Everything else uses the key through IAM (the account root statement).
    policy = templates[MAIN.name]["Resources"]["KmsKey"]["Properties"]["KeyPolicy"]
    services: set[str] = set()
    for statement in statements(policy):
        assert statement["Effect"] == "Allow"
        principal = statement["Principal"]
        assert principal != "*" and principal.get("AWS") in (
            None,
            {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"},
        )
        for service in as_list(principal.get("Service", [])):
            services.add(sub_text(service))
            assert statement.get("Condition"), f"{service} may use the key without a condition"
    assert services == KEY_SERVICES


def test_buckets_block_public_access_and_every_resource_policy_denies_plain_http(templates: dict) -> None:
    for template in templates.values():
        resources = template["Resources"]
        protected = {
            logical: kind
            for logical, r in resources.items()
            for kind in [r["Type"]]
            if kind in {"AWS::S3::Bucket", "AWS::SNS::Topic", "AWS::SQS::Queue"}
        }
        for logical, kind in protected.items():
            if kind == "AWS::S3::Bucket":
                block = resources[logical]["Properties"]["PublicAccessBlockConfiguration"]
                assert block == {
                    k: True
                    for k in (
                        "BlockPublicAcls",
                        "BlockPublicPolicy",
                        "IgnorePublicAcls",
                        "RestrictPublicBuckets",
                    )
                }, logical
            documents = [
                doc
                for owner, kind_, doc in policies(template)
                if kind_ == "resource" and references(resources[owner]["Properties"], logical)
            ]
            tls_denies = [
                s
                for d in documents
                for s in statements(d)
                if s["Effect"] == "Deny"
                and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
                and s.get("Principal") == "*"
            ]
            assert tls_denies, f"{logical} ({kind}) has no policy denying non-TLS requests"
            if kind == "AWS::S3::Bucket":
                assert any(a in ("s3:*",) for s in tls_denies for a in actions(s))
                covered = {json.dumps(r, sort_keys=True) for s in tls_denies for r in as_list(s["Resource"])}
                assert json.dumps({"Fn::GetAtt": [logical, "Arn"]}) in covered  # the bucket and
                assert json.dumps({"Fn::Sub": f"${{{logical}.Arn}}/*"}) in covered  # its objects


def test_no_secrets_in_templates_or_parameter_files(templates: dict) -> None:
    files = TEMPLATES + sorted((REPO / "parameters").glob("*.json"))
    found = {f.name: secrets_in(f.read_text()) for f in files}
    assert {k: v for k, v in found.items() if v} == {}
    # AND a parameter that looks like a secret is never given a value in a template or a parameter file
    secretish = re.compile(r"(?i)(password|secret|token|apikey|api_key|privatekey)")
    for template in templates.values():
        for name, parameter in template.get("Parameters", {}).items():
            if secretish.search(name):
                assert parameter.get("NoEcho") is True and "Default" not in parameter, name
    for path in (REPO / "parameters").glob("*.json"):
        assert not [k for k in json.loads(path.read_text()) if secretish.search(k)], path.name


def test_diagnose_role_may_invoke_models_through_inference_profiles(templates: dict) -> None:
    """Newer Bedrock models are offered only through inference profiles. Invoking one needs ``bedrock:InvokeModel``
    on the profile (system-defined ``inference-profile/*`` or ``application-inference-profile/*``) and on the
    foundation model in every region the profile routes to:
    https://docs.aws.amazon.com/bedrock/latest/userguide/inference-profiles-prereq.html
    """
    # GIVEN the diagnose role's statements that allow InvokeModel
    main = templates[MAIN.name]
    allowed = [sub_text(r) for document in role_documents(main, "DiagnoseRole") for statement in statements(document)
               if statement.get("Effect") == "Allow" and "bedrock:InvokeModel" in actions(statement)
               for r in as_list(statement.get("Resource", []))]
    # THEN foundation models in any region, and this account's profiles of both kinds in this region, are covered
    assert "arn:${AWS::Partition}:bedrock:*::foundation-model/*" in allowed
    assert "arn:${AWS::Partition}:bedrock:${AWS::Region}:${AWS::AccountId}:inference-profile/*" in allowed
    assert "arn:${AWS::Partition}:bedrock:${AWS::Region}:${AWS::AccountId}:application-inference-profile/*" in allowed
    # AND nothing wider: no other account's profiles, no other action
    assert all(r in ANY_REGION_JUSTIFIED or "${AWS::AccountId}" in str(r) for r in allowed)
