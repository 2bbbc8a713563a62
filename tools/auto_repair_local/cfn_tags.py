"""CloudFormation's own tags on the Lambda functions a stack creates.

On AWS every function created by a stack carries ``aws:cloudformation:stack-name``, ``aws:cloudformation:stack-id``
and ``aws:cloudformation:logical-id``, plus the stack's tags and the resource's own ``Tags`` property; tools use
the first three to find the template that owns a function (so a change made outside the template can be reported
as drift). moto 5.2.5 sets them on EC2 resources only and drops a function's ``Tags`` property. This module tags
``AWS::Lambda::Function`` resources when the stack creates them. It must be installed after ``cfn_resources``,
which replaces the same parsing hook.

Patches (see ``MOTO_TOUCHPOINTS``): wraps ``moto.cloudformation.parsing.parse_and_create_resource``.
AWS behaviour: https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-properties-resource-tags.html
Written for moto ``>=5.2.5,<5.3`` (``MOTO_VERSIONS``).
"""

from __future__ import annotations

from typing import Any

from moto.awslambda.models import LambdaFunction
from moto.cloudformation import parsing

# What this module relies on in moto: checked at server start and by tests/unit/test_local_cloud_contracts.py
# (auto_repair_local.moto_contract; upgrade procedure in docs/ARCHITECTURE.md, "Upgrading moto").
MOTO_VERSIONS = ">=5.2.5,<5.3"
MOTO_TOUCHPOINTS = (
    "moto.cloudformation.parsing.parse_and_create_resource(logical_id, resource_json, resources_map, account_id, region_name)",
    "moto.cloudformation.parsing.clean_json(resource_json, resources_map)",
    "moto.cloudformation.parsing.ResourceMap.__getitem__(key)",
    "moto.cloudformation.parsing.ResourceMap#stack_id",
    "moto.cloudformation.parsing.ResourceMap#tags",
    "moto.awslambda.models.LambdaFunction#tags",
)


def install(ctx: Any) -> None:
    original = parsing.parse_and_create_resource

    def parse_and_create_resource(
        logical_id: str, resource_json: dict[str, Any], resources_map: Any, account_id: str, region_name: str
    ) -> Any:
        resource = original(logical_id, resource_json, resources_map, account_id, region_name)
        if isinstance(resource, LambdaFunction):
            own = parsing.clean_json((resource_json.get("Properties") or {}).get("Tags") or [], resources_map)
            resource.tags.update({str(k): str(v) for k, v in (getattr(resources_map, "tags", None) or {}).items()})
            resource.tags.update({str(t["Key"]): str(t["Value"]) for t in own if isinstance(t, dict) and "Key" in t})
            resource.tags.update(
                {
                    "aws:cloudformation:stack-name": str(resources_map["AWS::StackName"]),
                    "aws:cloudformation:stack-id": str(resources_map.stack_id),
                    "aws:cloudformation:logical-id": logical_id,
                }
            )
        return resource

    parsing.parse_and_create_resource = parse_and_create_resource
