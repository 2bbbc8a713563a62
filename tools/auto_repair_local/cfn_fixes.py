"""CloudFormation intrinsic functions moto evaluates differently from AWS.

``Ref: AWS::NoValue`` as a list element: CloudFormation removes the element, moto left ``None`` in the list.

``Fn::Sub`` with a variable map: moto substitutes with Python's ``string.Template``, which turns ``$$`` into
``$``. CloudFormation leaves ``$$`` alone, and Step Functions definitions depend on it (``$$.Execution.Id``
is the context object; ``$.Execution.Id`` is a path into the input).

Patches (see ``MOTO_TOUCHPOINTS``): ``moto.cloudformation.parsing.clean_json`` (``Fn::Sub`` with a map, ``AWS::NoValue`` in a list) and
``moto.awslambda.models.LambdaFunction.__init__`` (environment values as strings) and ``moto.iam.models.Role.put_policy``
(an ``AWS::IAM::Role``'s inline ``Policies`` stored as JSON text, as GetRolePolicy returns them:
https://docs.aws.amazon.com/IAM/latest/APIReference/API_GetRolePolicy.html; moto kept the template's mapping and
answered its Python text). AWS behaviour:
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/intrinsic-function-reference-sub.html,
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/pseudo-parameter-reference.html#cfn-pseudo-param-novalue and
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-properties-lambda-function-environment.html
Written for moto ``>=5.2.5,<5.3`` (``MOTO_VERSIONS``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

# What this module relies on in moto: checked at server start and by tests/unit/test_local_cloud_contracts.py
# (auto_repair_local.moto_contract; upgrade procedure in docs/ARCHITECTURE.md, "Upgrading moto").
MOTO_VERSIONS = ">=5.2.5,<5.3"
MOTO_TOUCHPOINTS = (
    "moto.cloudformation.parsing.clean_json(resource_json, resources_map)",
    "moto.awslambda.models.LambdaFunction.__init__(account_id, spec)",
    "moto.iam.models.Role.put_policy(policy_name, policy_json)",
)


def substitute(template: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        template = template.replace("${" + key + "}", value)
    return template


def patched_clean_json(original: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """moto's clean_json (``original``) with the fixes above; moto's recursion goes through the patched one."""

    def clean_json(resource_json: Any, resources_map: Any) -> Any:
        if isinstance(resource_json, list):
            # AWS::NoValue in a list removes the element; moto kept a None (e.g. a null IAM policy statement
            # from `!If [IsOptIn, !Ref AWS::NoValue, {...}]`, which a policy evaluation then trips over).
            cleaned = (clean_json(item, resources_map) for item in resource_json)
            return [value for value in cleaned if value is not None]
        if isinstance(resource_json, dict) and isinstance(resource_json.get("Fn::Sub"), list):
            template, mappings = resource_json["Fn::Sub"]
            if not isinstance(template, str):
                template = original(template, resources_map)
            values = {key: str(clean_json(value, resources_map)) for key, value in mappings.items()}
            return original({"Fn::Sub": substitute(template, values)}, resources_map)
        return original(resource_json, resources_map)

    return clean_json


def install(ctx: Any) -> None:
    from moto.cloudformation import parsing

    parsing.clean_json = patched_clean_json(parsing.clean_json)
    install_lambda_environment_fix()
    install_role_policy_fix()


def install_role_policy_fix() -> None:
    from moto.iam.models import Role

    if getattr(Role.put_policy, "__auto_repair_json__", False):
        return
    original = Role.put_policy

    def put_policy(self: Any, policy_name: str, policy_json: Any) -> None:
        original(self, policy_name, policy_json if isinstance(policy_json, str) else json.dumps(policy_json))

    put_policy.__auto_repair_json__ = True  # type: ignore[attr-defined]
    Role.put_policy = put_policy  # type: ignore[method-assign]


def _string_environment(spec: Any) -> None:
    """CloudFormation hands Lambda every environment value as a string; moto keeps YAML numbers and booleans."""
    variables = (spec.get("Environment") or {}).get("Variables") if isinstance(spec, dict) else None
    if isinstance(variables, dict):
        for key, value in variables.items():
            if isinstance(value, bool):
                variables[key] = "true" if value else "false"
            elif not isinstance(value, str):
                variables[key] = str(value)


def install_lambda_environment_fix() -> None:
    from moto.awslambda.models import LambdaFunction

    if getattr(LambdaFunction.__init__, "__auto_repair_env__", False):
        return
    original = LambdaFunction.__init__

    def init(self: Any, account_id: str, spec: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        _string_environment(spec)
        original(self, account_id, spec, *args, **kwargs)

    init.__auto_repair_env__ = True  # type: ignore[attr-defined]
    LambdaFunction.__init__ = init
