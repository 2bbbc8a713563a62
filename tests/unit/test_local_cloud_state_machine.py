"""The local cloud renders a stack's state machine definition as the AWS resource provider does, or fails it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

from auto_repair_local.cfn_state_machine import InvalidDefinition, prepare, render

WAIT = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 5, "Next": "T"},
                                   "T": {"Type": "Task", "Resource": "${Fn}", "End": True}}}
ARN = "arn:aws:lambda:us-east-1:123456789012:function:f"


def test_definition_object_is_written_as_json_and_every_placeholder_replaced() -> None:
    # GIVEN a Definition object and a substitution used twice WHEN rendered THEN it is JSON with the value in place
    definition = {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "${Fn}", "Comment": "${Fn}",
                                                   "End": True}}}
    rendered = json.loads(render({"Definition": definition, "DefinitionSubstitutions": {"Fn": ARN}}))
    assert rendered["States"]["T"]["Resource"] == ARN == rendered["States"]["T"]["Comment"]


def test_substitution_values_may_bring_in_another_placeholder_as_on_aws() -> None:
    # AWS replaces repeatedly (StringUtils.replaceEachRepeatedly): a value may name another key
    rendered = render({"Definition": WAIT, "DefinitionSubstitutions": {"Fn": "${Inner}", "Inner": ARN}})
    assert json.loads(rendered)["States"]["T"]["Resource"] == ARN


def test_integer_and_boolean_values_become_their_text_inside_the_quotes() -> None:
    definition = {"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": {"n": "${N}", "b": "${B}"},
                                                   "End": True}}}
    rendered = json.loads(render({"Definition": definition, "DefinitionSubstitutions": {"N": 600, "B": True}}))
    assert rendered["States"]["P"]["Result"] == {"n": "600", "b": "true"}


def test_a_number_substituted_into_seconds_is_a_string_that_the_asl_parser_rejects() -> None:
    # GIVEN "Seconds": "${Wait}" WHEN rendered THEN it is the string "600", which Step Functions rejects
    # (SCHEMA_VALIDATION_FAILED) and so does the local cloud's parser: a template cannot pass numbers this way
    definition = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": "${Wait}", "End": True}}}
    rendered = render({"Definition": definition, "DefinitionSubstitutions": {"Wait": 600}})
    assert json.loads(rendered)["States"]["W"]["Seconds"] == "600"
    with pytest.raises(Exception, match="600"):
        AmazonStateLanguageParser.parse(rendered)


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"Definition": WAIT}, r"\$\{Fn\}"),
        ({"Definition": WAIT, "DefinitionSubstitutions": {"Other": ARN}}, r"\$\{Fn\}"),
        ({"DefinitionString": json.dumps(WAIT), "DefinitionSubstitutions": {"Fn": ARN}, "Definition": WAIT},
         "exactly one"),
        ({}, "exactly one"),
        ({"Definition": {}}, "non-empty object"),
        ({"Definition": WAIT, "DefinitionSubstitutions": {"Fn": ["a"]}}, "string, integer or boolean"),
        ({"Definition": WAIT, "DefinitionSubstitutions": {"Fn": "${Loop}", "Loop": "${Fn}"}}, "cycle"),
        ({"DefinitionS3Location": {"Bucket": "b", "Key": "k"}}, "not supported"),
    ],
    ids=["no-substitutions", "unknown-placeholder", "two-definitions", "none", "empty", "list-value", "cycle",
         "s3-location"],
)
def test_bad_definition_properties_fail_the_resource(props: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidDefinition, match=message):
        render(props)


def test_prepare_leaves_moto_only_the_rendered_definition_string() -> None:
    props = {"Definition": WAIT, "DefinitionSubstitutions": {"Fn": ARN}, "RoleArn": "r"}
    prepare(props)
    assert set(props) == {"DefinitionString", "RoleArn"}
    AmazonStateLanguageParser.parse(props["DefinitionString"])  # valid ASL for the interpreter


def test_a_definition_string_without_substitutions_is_kept_as_is() -> None:
    text = json.dumps(WAIT).replace("${Fn}", ARN)
    assert render({"DefinitionString": text}) == text
