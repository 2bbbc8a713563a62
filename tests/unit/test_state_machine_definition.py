"""Static checks of the Step Functions definition embedded in the functions template (a YAML Definition object)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

from auto_repair_local.cfn_state_machine import render

FUNCTIONS = Path(__file__).resolve().parents[2] / "lambda-auto-repair-functions.yaml"
TRANSIENT_LAMBDA_ERRORS = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
}


def properties() -> dict[str, Any]:
    template, matches = decode(str(FUNCTIONS))
    assert not matches, matches
    return json.loads(json.dumps(template["Resources"]["StateMachine"]["Properties"]))


def dummy(key: str, value: Any) -> str:
    """What CloudFormation would resolve a substitution to: a function ARN, a partition ARN, a number's text."""
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{value['Fn::GetAtt'][0]}"
    if isinstance(value, dict) and "Fn::Sub" in value:
        return value["Fn::Sub"].replace("${AWS::Partition}", "aws")
    assert value == {"Ref": key}, f"{key}: {value}"
    return "60"


def definition() -> dict:
    """The ASL as the AWS resource provider renders it (object to JSON, then textual substitution)."""
    props = properties()
    substitutions = {k: dummy(k, v) for k, v in props["DefinitionSubstitutions"].items()}
    return json.loads(render({"Definition": props["Definition"], "DefinitionSubstitutions": substitutions}))


STATES = definition()["States"]
TASKS = {name: state for name, state in STATES.items() if state["Type"] == "Task"}


def test_definition_starts_at_parse_alarm_event_and_every_next_exists() -> None:
    asl = definition()
    # A Pass state first wraps the input, so even a bare JSON string gets ResultPaths and a record.
    assert asl["StartAt"] == "ReceiveEvent"
    assert STATES["ReceiveEvent"] == {**STATES["ReceiveEvent"], "Type": "Pass", "Next": "ParseAlarmEvent"}
    assert STATES["ReceiveEvent"]["Parameters"]["rawEvent.$"] == "$"
    targets = set()
    for state in STATES.values():
        targets.update(filter(None, [state.get("Next"), state.get("Default")]))
        targets.update(choice["Next"] for choice in state.get("Choices", []))
        targets.update(catch["Next"] for catch in state.get("Catch", []))
    assert targets <= set(STATES), targets - set(STATES)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_retries_transient_errors_with_jitter(name: str) -> None:
    # GIVEN any Task WHEN Lambda throttles or has a transient fault THEN the state retries with backoff and jitter
    retry = TASKS[name]["Retry"]
    covered = {error for rule in retry for error in rule["ErrorEquals"]}
    assert TRANSIENT_LAMBDA_ERRORS <= covered
    assert all(rule.get("JitterStrategy") == "FULL" and rule["BackoffRate"] > 1 for rule in retry)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_catches_everything_into_the_failure_path(name: str) -> None:
    # GIVEN any Task WHEN it fails for good THEN States.ALL leads to HandleFailure (which itself ends in a Fail state)
    catches = TASKS[name].get("Catch", [])
    final = [catch for catch in catches if "States.ALL" in catch["ErrorEquals"]]
    assert final, f"{name} has no States.ALL catch"
    expected = "WorkflowFailed" if name == "HandleFailure" else "HandleFailure"
    assert final[-1]["Next"] == expected
    # Error details are added beside the context, never replacing it.
    assert all(catch.get("ResultPath", "$") != "$" for catch in catches)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_adds_to_the_context_instead_of_replacing_it(name: str) -> None:
    result_path = TASKS[name].get("ResultPath", "$")
    assert result_path.startswith("$.") and result_path != "$"


def test_the_lambda_tasks_pass_the_execution_identity() -> None:
    for name, state in TASKS.items():
        params = state["Parameters"].get("Payload", state["Parameters"])
        assert params["meta"]["executionId.$"] == "$$.Execution.Name", name
        assert params["context.$"] == ("$.rawEvent" if name == "ParseAlarmEvent" else "$"), name


def test_definition_is_a_yaml_object_and_every_substitution_is_used() -> None:
    # GIVEN the state machine WHEN a reviewer reads it THEN it is an object (not a JSON string), each ${X} has a
    # substitution and each substitution is used
    props = properties()
    assert "DefinitionString" not in props and isinstance(props["Definition"], dict)
    used = set(re.findall(r"\$\{([A-Za-z0-9]+)\}", json.dumps(props["Definition"])))
    assert used == set(props["DefinitionSubstitutions"])


def test_waits_are_numbers_read_by_path_because_substitutions_can_only_insert_text() -> None:
    # GIVEN the environment's wait and approval timeout WHEN the run starts THEN ReceiveEvent turns them into
    # numbers once (a substituted "600" stays a string, which Step Functions rejects in Seconds/TimeoutSeconds)
    waits = STATES["ReceiveEvent"]["Parameters"]["waits"]
    assert waits == {"verificationSeconds.$": "States.StringToJson('60')",
                     "approvalTimeoutSeconds.$": "States.StringToJson('60')"}
    substitutions = properties()["DefinitionSubstitutions"]
    assert substitutions["VerificationWaitSeconds"] == {"Ref": "VerificationWaitSeconds"}
    assert substitutions["ApprovalTimeoutSeconds"] == {"Ref": "ApprovalTimeoutSeconds"}
    for name in ("WaitForVerification", "ExtendVerification"):
        assert STATES[name] == {"Type": "Wait", "SecondsPath": "$.waits.verificationSeconds", "Next": "VerifyRepair"}
    assert STATES["RequestApproval"]["TimeoutSecondsPath"] == "$.waits.approvalTimeoutSeconds"
    assert not any("Seconds" in state or "TimeoutSeconds" in state for state in STATES.values())


def test_the_definition_is_valid_asl_for_the_local_cloud() -> None:
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    AmazonStateLanguageParser.parse(json.dumps(definition()))
