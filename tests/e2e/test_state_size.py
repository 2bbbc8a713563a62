"""The Step Functions payload quota in the local cloud, and the workflow's states well inside it.

AWS: "Maximum input or output size for a task, state, or execution: 256 KiB of data as a UTF-8 encoded string"
(https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html); ``States.DataLimitExceeded`` is "a
terminal error that can't be caught by the States.ALL error type", reported when a connector's output, a state's
output or a state's input after Parameters is larger than the quota
(https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from auto_repair_cli import scenario

REPO = Path(__file__).resolve().parents[2]
ROLE_ARN = "arn:aws:iam::123456789012:role/sfn-test"
DEFAULT_LIMIT = 32 * 1024  # goal for the default windows
MAX_WINDOWS_LIMIT = 64 * 1024  # goal with AnalysisWindowMinutes/BaselineWindowMinutes at their maximum

# Returns {"text": <chars> copies of CHAR}: the JSON text is len(CHAR.encode()) * chars bytes plus 11.
BIG_RESULT = '''
import os


def handler(event, context):
    return {"text": os.environ["CHAR"] * int(os.environ["CHARS"])}
'''

def run_machine(sfn: Any, lam: Any, iam: Any, char: str, chars: int) -> dict[str, Any]:
    name = f"big-{uuid.uuid4().hex[:8]}"
    scenario.create_target(lam, iam, name, BIG_RESULT, env={"CHAR": char, "CHARS": str(chars)})
    arn = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    definition = {
        "StartAt": "Produce",
        "States": {
            "Produce": {"Type": "Task", "Resource": arn, "ResultPath": "$.result", "Next": "Done",
                        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Caught"}]},
            "Caught": {"Type": "Pass", "End": True},
            "Done": {"Type": "Pass", "End": True},
        },
    }
    machine = sfn.create_state_machine(name=f"sm-{name}", definition=json.dumps(definition), roleArn=ROLE_ARN)
    execution = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], input="{}")
    return scenario.wait_for(
        lambda: (d := sfn.describe_execution(executionArn=execution["executionArn"]))["status"] != "RUNNING" and d,
        timeout=60, what="the execution to finish")


@pytest.mark.parametrize(
    ("char", "chars", "status", "error"),
    [
        # 300,000 ASCII bytes: over the quota; the States.ALL Catch must not catch it.
        ("x", 300_000, "FAILED", "States.DataLimitExceeded"),
        # 250,000 UTF-8 bytes (125,000 two-byte characters): within the quota, although its ASCII-escaped JSON
        # (\\u00e9, 6 bytes a character) is 750 KB.
        ("é", 125_000, "SUCCEEDED", None),
        # 300,000 UTF-8 bytes of non-ASCII: over the quota.
        ("é", 150_000, "FAILED", "States.DataLimitExceeded"),
    ],
    ids=["ascii-over", "utf8-within", "utf8-over"],
)
def test_task_result_over_the_quota_fails_the_execution_even_with_a_states_all_catch(
    deployed, char: str, chars: int, status: str, error: str | None
) -> None:
    # GIVEN a Task whose Lambda returns <chars> copies of <char>, with a States.ALL Catch
    cloud = deployed.cloud
    sfn, lam, iam = (cloud.client(s) for s in ("stepfunctions", "lambda", "iam"))

    # WHEN it runs
    done = run_machine(sfn, lam, iam, char, chars)

    # THEN the quota is measured in UTF-8 bytes and, when exceeded, fails the execution uncaught
    assert done["status"] == status, done
    if error:
        assert done.get("error") == error, done
        history = sfn.get_execution_history(executionArn=done["executionArn"])["events"]
        assert not any(e.get("stateEnteredEventDetails", {}).get("name") == "Caught" for e in history)


def run_incident(deployed, name: str) -> dict[str, Any]:
    cloud = deployed.cloud
    lam, iam, cw, sfn = (cloud.client(s) for s in ("lambda", "iam", "cloudwatch", "stepfunctions"))
    scenario.create_target(lam, iam, name, scenario.CHATTY_HOG, memory=128, env={"WORK_MB": "150"})
    scenario.put_guide_alarms(cw, name, deployed.topic_arn, period=10)
    traffic = scenario.Traffic(lam, name, interval=0.5)
    begun = datetime.now(UTC).replace(microsecond=0)
    traffic.start()
    try:
        return scenario.wait_for_execution(sfn, deployed.state_machine_arn, name, timeout=300, after=begun)
    finally:
        traffic.stop()


@pytest.mark.parametrize("windows", ["default", "maximum"])
def test_chatty_non_ascii_incident_keeps_every_state_small(deployed, assert_max_state_size, windows: str) -> None:
    # GIVEN a memory-starved function that logs a non-ASCII error line on every call, and the windows
    if windows == "maximum":
        scenario.set_collect_windows(deployed.cloud.client("lambda"), deployed.environment, *scenario.window_maxima(REPO))
    limit = DEFAULT_LIMIT if windows == "default" else MAX_WINDOWS_LIMIT

    # WHEN its alarm runs the workflow
    execution = run_incident(deployed, f"chatty-{windows}")

    # THEN the incident is repaired and no state, task input or result in its history passes the goal
    assert execution["status"] == "SUCCEEDED", execution
    sfn = deployed.cloud.client("stepfunctions")
    output = json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["output"])
    assert output["evidence"]["bulk"]["key"].startswith("evidence/")
    assert output["evidence"]["logLineCount"] > 0
    assert_max_state_size(sfn, execution["executionArn"], limit)
