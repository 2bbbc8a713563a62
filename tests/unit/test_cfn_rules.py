"""Template ``Rules`` in the local cloud, and the rule that keeps sub-minute alarm periods in the local environment.

AWS evaluates a template's Rules when a stack or change set is created or updated and fails the call with
``ValidationError`` (the assertion's ``AssertDescription``), creating nothing:
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/rules-section-structure.html
AWS/Lambda metrics are one-minute metrics, so a 10 s or 30 s alarm on them does not evaluate as it does locally:
https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics.html
"""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.cloudformation.exceptions import ValidationError
from moto.cloudformation.models import CloudFormationBackend

from auto_repair_local import cfn_rules

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = [REPO / "lambda-auto-repair-functions.yaml", REPO / "lambda-auto-repair-monitoring.yaml"]

RULED = """
Parameters:
  Environment: {Type: String, AllowedValues: [dev, local]}
  AlarmPeriodSeconds: {Type: Number, Default: 300, AllowedValues: [10, 30, 60, 300]}
Rules:
  MinutePeriods:
    RuleCondition: !Not [!Equals [!Ref Environment, local]]
    Assertions:
      - Assert: !Not [!Contains [['10', '30'], !Ref AlarmPeriodSeconds]]
        AssertDescription: periods under a minute are local-only
Resources:
  Topic:
    Type: AWS::SNS::Topic
"""


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
@pytest.mark.parametrize(
    ("environment", "period", "refused"),
    [
        ("dev", "10", True),
        ("prod", "30", True),
        ("staging", "30", True),
        ("dev", "60", False),
        ("prod", "300", False),
        ("dev", None, False),  # the default, 300
        ("local", "10", False),
        ("local", "30", False),
    ],
)
def test_our_templates_refuse_sub_minute_periods_outside_local(
    template: Path, environment: str, period: str | None, refused: bool
) -> None:
    # GIVEN a template's parameter values WHEN its Rules are evaluated as CloudFormation does
    given = {"Environment": environment} | ({"AlarmPeriodSeconds": period} if period else {})
    if refused:
        # THEN a sub-minute period outside local is a ValidationError naming the parameter
        with pytest.raises(ValidationError, match="AlarmPeriodSeconds 10 and 30 are local-only"):
            cfn_rules.check_rules(template.read_text(), given)
    else:
        cfn_rules.check_rules(template.read_text(), given)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ({"Fn::Equals": ["a", {"Ref": "P"}]}, True),
        ({"Fn::Not": [{"Fn::Equals": ["a", {"Ref": "P"}]}]}, False),
        ({"Fn::And": [{"Fn::Equals": ["a", "a"]}, {"Fn::Equals": ["a", "b"]}]}, False),
        ({"Fn::Or": [{"Fn::Equals": ["a", "a"]}, {"Fn::Equals": ["a", "b"]}]}, True),
        ({"Fn::Contains": [["a", "b"], {"Ref": "P"}]}, True),
        ({"Fn::EachMemberEquals": [["a", "a"], "a"]}, True),
        ({"Fn::EachMemberIn": [["a", "c"], ["a", "b"]]}, False),
    ],
)
def test_rule_functions_evaluate_as_documented(expression: dict, expected: bool) -> None:
    assert cfn_rules.evaluate(expression, {"P": "a"}) is expected


@pytest.mark.parametrize(
    "expression",
    [{"Fn::ValueOf": ["P", "VpcId"]}, {"Ref": "Missing"}, {"Fn::Equals": ["a", "a"], "Fn::Not": [True]}],
)
def test_rules_the_local_cloud_cannot_evaluate_are_refused_not_skipped(expression: dict) -> None:
    with pytest.raises(ValidationError):
        cfn_rules.evaluate(expression, {"P": "a"})


@pytest.fixture
def rules_enforced(monkeypatch: pytest.MonkeyPatch):
    # install() replaces CloudFormationBackend methods; monkeypatch puts the originals back afterwards
    for name in ("create_stack", "update_stack", "create_change_set"):
        monkeypatch.setattr(CloudFormationBackend, name, getattr(CloudFormationBackend, name))
    cfn_rules.install(None)
    with mock_aws():
        yield boto3.client("cloudformation", region_name="us-east-1")


def _params(**values: str) -> list[dict[str, str]]:
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]


def test_create_stack_fails_on_a_false_assertion_and_creates_nothing(rules_enforced) -> None:
    cfn = rules_enforced
    # GIVEN a template whose rule refuses 30 s outside local WHEN a dev stack is created with 30
    with pytest.raises(ClientError) as caught:
        cfn.create_stack(
            StackName="s", TemplateBody=RULED, Parameters=_params(Environment="dev", AlarmPeriodSeconds="30")
        )
    # THEN CloudFormation's answer: ValidationError with the AssertDescription, and no stack
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert caught.value.response["Error"]["Message"] == "periods under a minute are local-only"
    assert cfn.list_stacks()["StackSummaries"] == []
    # AND the local environment may use it
    cfn.create_stack(
        StackName="s", TemplateBody=RULED, Parameters=_params(Environment="local", AlarmPeriodSeconds="30")
    )


def test_update_and_change_set_are_checked_with_previous_values(rules_enforced) -> None:
    cfn = rules_enforced
    # GIVEN a dev stack with 300 s
    cfn.create_stack(
        StackName="s", TemplateBody=RULED, Parameters=_params(Environment="dev", AlarmPeriodSeconds="300")
    )
    # WHEN it is updated to 10 s, keeping the previous Environment THEN the update is refused
    update = [{"ParameterKey": "Environment", "UsePreviousValue": True}, *_params(AlarmPeriodSeconds="10")]
    with pytest.raises(ClientError, match="ValidationError"):
        cfn.update_stack(StackName="s", TemplateBody=RULED, Parameters=update)
    # AND so is a change set with the same values
    with pytest.raises(ClientError, match="ValidationError"):
        cfn.create_change_set(
            StackName="s", ChangeSetName="c", ChangeSetType="UPDATE", TemplateBody=RULED, Parameters=update
        )
