"""Powertools objects shared by the handlers: JSON logs, EMF metrics, X-Ray tracing."""

from __future__ import annotations

from typing import Any, cast

from aws_lambda_powertools import Logger, Metrics, Tracer

from auto_repair.settings import get_settings
from auto_repair.workflow import WorkflowContext

# The handler decorators need these objects at import, and Powertools reads its own POWERTOOLS_* variables when
# they are built; the service name and namespace are the only settings resolved that early.
SERVICE = get_settings().service_name

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=get_settings().metrics_namespace, service=SERVICE)
tracer = Tracer(service=SERVICE)

# Step Functions passes {"context": <workflow context>, "meta": {executionId, executionArn, ...}}.
CORRELATION_PATH = "meta.executionId"


def unpack(event: Any) -> tuple[WorkflowContext, dict[str, Any]]:
    """The workflow context and the execution metadata of a task payload."""
    if isinstance(event, dict) and "context" in event and isinstance(event.get("meta"), dict):
        context = event["context"]
        return cast(WorkflowContext, context if isinstance(context, dict) else {"raw": context}), event["meta"]
    return cast(WorkflowContext, event if isinstance(event, dict) else {"raw": event}), {}


def add_dimension_env(environment: str) -> None:
    metrics.add_dimension(name="Environment", value=environment)
