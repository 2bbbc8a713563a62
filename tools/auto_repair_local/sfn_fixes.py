"""Step Functions behaviours moto's interpreter gets wrong, corrected as AWS does them.

* StartExecution without a name: AWS generates a UUID name; moto uses ``None``, so every such execution
  shares the ARN ``...:None`` and ``$$.Execution.Name`` is null.
* ``$$.Execution.StartTime`` is an ISO-8601 string on AWS; moto puts a datetime in the context object,
  which breaks the serialisation of any state that reads it.

Patches (see ``MOTO_TOUCHPOINTS``): wraps
``moto.stepfunctions.parser.models.StepFunctionsParserBackend.start_execution`` and
``moto.stepfunctions.parser.backend.execution_worker.ExecutionWorker._get_evaluation_environment``. AWS behaviour:
https://docs.aws.amazon.com/step-functions/latest/apireference/API_StartExecution.html and
https://docs.aws.amazon.com/step-functions/latest/dg/input-output-contextobject.html
Written for moto ``>=5.2.5,<5.3`` (``MOTO_VERSIONS``).
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

# What this module relies on in moto: checked at server start and by tests/unit/test_local_cloud_contracts.py
# (auto_repair_local.moto_contract; upgrade procedure in docs/ARCHITECTURE.md, "Upgrading moto").
MOTO_VERSIONS = ">=5.2.5,<5.3"
MOTO_TOUCHPOINTS = (
    "moto.stepfunctions.parser.models.StepFunctionsParserBackend.start_execution(state_machine_arn, name)",
    "moto.stepfunctions.parser.backend.execution_worker.ExecutionWorker._get_evaluation_environment()",
)


def iso_z(value: datetime.datetime) -> str:
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def install(ctx: Any) -> None:
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    original_start = StepFunctionsParserBackend.start_execution

    def start_execution(
        self: Any, state_machine_arn: str, name: Any = None, *args: Any, **kwargs: Any
    ) -> Any:
        return original_start(self, state_machine_arn, name or str(uuid.uuid4()), *args, **kwargs)

    StepFunctionsParserBackend.start_execution = start_execution

    original_env = ExecutionWorker._get_evaluation_environment

    def evaluation_environment(self: Any) -> Any:
        env = original_env(self)
        execution = env.states.context_object.context_object_data["Execution"]
        if isinstance(execution.get("StartTime"), datetime.datetime):
            execution["StartTime"] = iso_z(execution["StartTime"])
        return env

    ExecutionWorker._get_evaluation_environment = evaluation_environment
