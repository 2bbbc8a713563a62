"""Step Functions payload quota: 256 KB of UTF-8 per state input, state output and task result, and the
``States.DataLimitExceeded`` error it raises is terminal, as on AWS.

moto's interpreter checks the size but differs from AWS in three ways the product depends on:

* it measures ``json.dumps`` with ASCII escapes, so a non-ASCII character counts 6 bytes instead of its 2-4
  UTF-8 bytes, and treats exactly 262,144 bytes as over the quota; AWS counts the UTF-8 encoded JSON text;
* a ``States.ALL`` Retry or Catch matches ``States.DataLimitExceeded``; on AWS it cannot ("a terminal error
  that can't be caught by the States.ALL error type"): the execution fails, so a workflow whose only safety
  net is a ``States.ALL`` Catch sends no failure notice and releases no lock;
* a Lambda task's input after ``Parameters`` is not checked; AWS reports ``States.DataLimitExceeded`` for it.

Patches (see ``MOTO_TOUCHPOINTS``): ``moto.stepfunctions.parser.quotas.is_within_size_quota`` (and the names
three state modules imported from it), ``ErrorEqualsDecl._eval_body`` and ``StateTaskLambda._eval_parameters``.
AWS behaviour: https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html
(``States.ALL``, ``States.DataLimitExceeded``) and
https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html ("Maximum input or output size for a
task, state, or execution: 256 KiB of data as a UTF-8 encoded string").
Written for moto ``>=5.2.5,<5.3`` (``MOTO_VERSIONS``).
"""

from __future__ import annotations

import json
from typing import Any

# What this module relies on in moto: checked at server start and by tests/unit/test_local_cloud_contracts.py
# (auto_repair_local.moto_contract; upgrade procedure in docs/ARCHITECTURE.md, "Upgrading moto").
MOTO_VERSIONS = ">=5.2.5,<5.3"
MOTO_TOUCHPOINTS = (
    "moto.stepfunctions.parser.quotas.is_within_size_quota(value)",
    "moto.stepfunctions.parser.asl.component.state.state.is_within_size_quota(value)",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task_lambda.is_within_size_quota(value)",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service"
    ".is_within_size_quota(value)",
    "moto.stepfunctions.parser.asl.component.common.error_name.error_equals_decl.ErrorEqualsDecl"
    "._eval_body(env)",
    "moto.stepfunctions.parser.asl.component.common.error_name.error_equals_decl.ErrorEqualsDecl#error_names",
    "moto.stepfunctions.parser.asl.component.common.error_name.states_error_name.StatesErrorName(typ)",
    "moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type.StatesErrorNameType"
    ".StatesStatesDataLimitExceeded",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task_lambda.StateTaskLambda"
    "._eval_parameters(env)",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task_lambda.StateTaskLambda"
    "._verify_size_quota(env, value)",
)

MAX_PAYLOAD_BYTES = 256 * 1024
DATA_LIMIT_EXCEEDED = "States.DataLimitExceeded"


def payload_bytes(value: Any) -> int:
    """The size Step Functions counts: the JSON text of the value, UTF-8 encoded (a string counts as is)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"),
                                                            default=str)
    # A lone surrogate (invalid text an event may still carry as a JSON escape) counts, it does not crash the count.
    return len(text.encode("utf-8", "surrogatepass"))


def is_within_size_quota(value: Any) -> bool:
    return payload_bytes(value) <= MAX_PAYLOAD_BYTES


def install(ctx: Any) -> None:
    import importlib

    from moto.stepfunctions.parser.asl.component.common.error_name.error_equals_decl import ErrorEqualsDecl
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task_lambda import (
        StateTaskLambda,
    )

    for name in ("moto.stepfunctions.parser.quotas",
                 "moto.stepfunctions.parser.asl.component.state.state",
                 "moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task_lambda",
                 "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service"):
        importlib.import_module(name).is_within_size_quota = is_within_size_quota  # type: ignore[attr-defined]

    limit = StatesErrorName(typ=StatesErrorNameType.StatesStatesDataLimitExceeded)
    original_eval = ErrorEqualsDecl._eval_body

    def eval_body(self: Any, env: Any) -> None:
        # The error being matched is on top of the stack; States.ALL must not match the terminal quota error.
        if env.stack and env.stack[-1] == limit and limit not in self.error_names:
            env.stack.pop()
            env.stack.append(False)
            return
        original_eval(self, env)

    ErrorEqualsDecl._eval_body = eval_body

    original_parameters = StateTaskLambda._eval_parameters

    def eval_parameters(self: Any, env: Any) -> dict:
        parameters = original_parameters(self, env)
        self._verify_size_quota(env=env, value=parameters["Payload"])
        return parameters

    StateTaskLambda._eval_parameters = eval_parameters


def largest_state(sfn: Any, execution_arn: str) -> tuple[int, str]:
    """The largest input/output/parameters/result in an execution's history, in UTF-8 bytes, and its event type.

    Read from GetExecutionHistory as a user would; the states' own size quota applies to the same texts.
    """
    largest, where = 0, ""
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        for event in page.get("events", []):
            for key, details in event.items():
                if not key.endswith("EventDetails") or not isinstance(details, dict):
                    continue
                for field in ("input", "output", "parameters"):
                    text = details.get(field)
                    if isinstance(text, str) and payload_bytes(text) > largest:
                        largest, where = payload_bytes(text), f"{event.get('type')}.{field}"
        if not page.get("nextToken"):
            return largest, where
        kwargs["nextToken"] = page["nextToken"]
