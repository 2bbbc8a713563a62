"""CloudFormation intrinsic functions moto evaluates differently from AWS.

``Fn::Sub`` with a variable map: moto substitutes with Python's ``string.Template``, which turns ``$$`` into
``$``. CloudFormation leaves ``$$`` alone, and Step Functions definitions depend on it (``$$.Execution.Id``
is the context object; ``$.Execution.Id`` is a path into the input).
"""

from __future__ import annotations

from typing import Any


def substitute(template: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        template = template.replace("${" + key + "}", value)
    return template


def install(ctx: Any) -> None:
    from moto.cloudformation import parsing

    original = parsing.clean_json

    def clean_json(resource_json: Any, resources_map: Any) -> Any:
        if isinstance(resource_json, dict) and isinstance(resource_json.get("Fn::Sub"), list):
            template, mappings = resource_json["Fn::Sub"]
            if not isinstance(template, str):
                template = original(template, resources_map)
            values = {key: str(clean_json(value, resources_map)) for key, value in mappings.items()}
            return original({"Fn::Sub": substitute(template, values)}, resources_map)
        return original(resource_json, resources_map)

    parsing.clean_json = clean_json
