"""Patches moto's EventBus and StateMachine CloudFormation models.

Patches ``moto.events.models.EventBus`` (adds ``physical_resource_id``) and wraps
``moto.stepfunctions.models.StateMachine``'s CloudFormation create/update. AWS behaviour:
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-events-eventbus.html and
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-stepfunctions-statemachine.html
Written for moto ``>=5.2.5,<5.3`` (``MOTO_VERSIONS``).
"""

from __future__ import annotations

from typing import Any

from auto_repair_local.cfn_state_machine import prepare as render_definition

# What this module relies on in moto: checked at server start and by tests/unit/test_local_cloud_contracts.py
# (auto_repair_local.moto_contract; upgrade procedure in docs/ARCHITECTURE.md, "Upgrading moto").
MOTO_VERSIONS = ">=5.2.5,<5.3"
MOTO_TOUCHPOINTS = (
    "moto.events.models.EventBus#name",
    "moto.core.config.default_user_config",
    "moto.stepfunctions.models.stepfunctions_backends",
    "moto.stepfunctions.parser.models.stepfunctions_parser_backends",
    "moto.stepfunctions.models.StateMachine.create_from_cloudformation_json(resource_name, cloudformation_json)",
    "moto.stepfunctions.models.StateMachine.update_from_cloudformation_json(original_resource, new_resource_name, cloudformation_json)",
)


def _patch_event_bus_physical_id() -> None:
    from moto.events.models import EventBus

    # moto's EventBus has no physical_resource_id, so Ref gives "" ; on AWS, Ref returns the bus name.
    EventBus.physical_resource_id = property(lambda self: self.name)  # type: ignore[attr-defined]


def _patch_state_machine() -> None:
    from moto.core.config import default_user_config
    from moto.stepfunctions import models as sfn_models

    if default_user_config.get("stepfunctions", {}).get("execute_state_machine"):
        # With the interpreter on, the Step Functions API serves from the parser backend, but moto's CloudFormation
        # model writes to the plain backend: CFN-created state machines were invisible to the API.
        from moto.stepfunctions.parser.models import stepfunctions_parser_backends

        sfn_models.stepfunctions_backends = stepfunctions_parser_backends  # type: ignore[assignment]
    cls = sfn_models.StateMachine
    orig_create = cls.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]
    orig_update = cls.update_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def create(klass: Any, resource_name: str, cloudformation_json: Any, *args: Any, **kwargs: Any) -> Any:
        render_definition(cloudformation_json.setdefault("Properties", {}))
        return orig_create(klass, resource_name, cloudformation_json, *args, **kwargs)

    def update(klass: Any, *args: Any, **kwargs: Any) -> Any:
        # moto calls this with keywords (original_resource=..., cloudformation_json=..., ...).
        cfn = kwargs["cloudformation_json"] if "cloudformation_json" in kwargs else args[2]
        render_definition(cfn.setdefault("Properties", {}))
        return orig_update(klass, *args, **kwargs)

    cls.create_from_cloudformation_json = classmethod(create)  # type: ignore[assignment]
    cls.update_from_cloudformation_json = classmethod(update)  # type: ignore[assignment]
