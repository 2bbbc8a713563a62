"""Static checks of the Step Functions definition embedded in the functions template."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cfnlint.decode import decode

FUNCTIONS = Path(__file__).resolve().parents[2] / "lambda-auto-repair-functions.yaml"
TRANSIENT_LAMBDA_ERRORS = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
}


def definition() -> dict:
    """The ASL as CloudFormation would render it: variable-map values substituted literally, others dummied."""
    template, matches = decode(str(FUNCTIONS))
    assert not matches, matches
    body, variables = template["Resources"]["StateMachine"]["Properties"]["DefinitionString"]["Fn::Sub"]
    for key, value in variables.items():
        rendered = value if isinstance(value, str) else f"arn:aws:lambda:us-east-1:123456789012:function:{key}"
        body = body.replace("${" + key + "}", rendered)
    # Remaining ${Param} references are numbers (wait seconds, timeouts) or pseudo parameters inside strings.
    body = re.sub(r"\$\{AWS::[A-Za-z]+\}", "aws", body)
    body = re.sub(r"\$\{[A-Za-z]+\}", "60", body)
    return json.loads(body)


STATES = definition()["States"]
TASKS = {name: state for name, state in STATES.items() if state["Type"] == "Task"}


def test_definition_starts_at_parse_alarm_event_and_every_next_exists() -> None:
    asl = definition()
    # A Pass state first wraps the input, so even a bare JSON string gets ResultPaths and a record.
    assert asl["StartAt"] == "ReceiveEvent"
    assert STATES["ReceiveEvent"] == {**STATES["ReceiveEvent"], "Type": "Pass", "Parameters": {"rawEvent.$": "$"},
                                      "Next": "ParseAlarmEvent"}
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
