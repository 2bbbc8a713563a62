"""Per-resource stack events, as CloudFormation records them.

AWS behaviour: https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_StackEvent.html
Written for moto ``>=5.2.5,<5.3`` (``MOTO_VERSIONS``).
"""

from __future__ import annotations

from typing import Any

from moto.cloudformation import models as cfn_models

# What this module relies on in moto: checked at server start and by tests/unit/test_local_cloud_contracts.py
# (auto_repair_local.moto_contract; upgrade procedure in docs/ARCHITECTURE.md, "Upgrading moto").
MOTO_VERSIONS = ">=5.2.5,<5.3"
MOTO_TOUCHPOINTS = (
    "moto.cloudformation.models.cloudformation_backends",
    "moto.cloudformation.models.CloudFormationBackend#stacks",
    "moto.cloudformation.models.Event(stack_id, stack_name, logical_resource_id, physical_resource_id, resource_type, resource_status, resource_status_reason, resource_properties)",
    "moto.cloudformation.models.Stack#events",
    "moto.cloudformation.models.Stack#stack_id",
    "moto.cloudformation.models.Stack#name",
    "moto.cloudformation.parsing.ResourceMap#_account_id",
    "moto.cloudformation.parsing.ResourceMap#_region_name",
    "moto.cloudformation.parsing.ResourceMap#stack_id",
)

# ---------------------------------------------------------------------------------------------------------------
# Stack events
# ---------------------------------------------------------------------------------------------------------------


def _stack_for(resources_map: Any) -> Any:
    account_id, region = resources_map._account_id, resources_map._region_name
    backend = cfn_models.cloudformation_backends[account_id][region]
    return backend.stacks.get(resources_map.stack_id)


def _physical_id(resource: Any) -> str | None:
    if resource is None or isinstance(resource, str):
        return resource
    try:
        return resource.physical_resource_id
    except Exception:  # some moto models raise for attributes they do not track
        return None


def _add_resource_event(
    resources_map: Any,
    logical_id: str,
    resource_type: str,
    status: str,
    physical_id: str | None = None,
    reason: str | None = None,
) -> None:
    stack = _stack_for(resources_map)
    if stack is None:
        return
    event = cfn_models.Event(
        stack_id=stack.stack_id,
        stack_name=stack.name,
        logical_resource_id=logical_id,
        physical_resource_id=physical_id or "",
        resource_type=resource_type,
        resource_status=status,
        resource_status_reason=reason,
        resource_properties=None,
    )
    stack.events.append(event)


def _failure_reason(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return f'Resource handler returned message: "{message}"'
