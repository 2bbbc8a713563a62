"""A CloudFormation state machine's definition, rendered as the AWS resource provider renders it.

Replaces, for ``AWS::StepFunctions::StateMachine`` created or updated by a stack, the definition handling of
moto 5.2.5 (``moto.stepfunctions.models.StateMachine.create_from_cloudformation_json`` /
``update_from_cloudformation_json`` read ``DefinitionString`` only) and the lenient fallback in ``cfn_resources``
(one replacement pass, ``str()`` of any value, placeholders left behind).

What AWS does (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-stepfunctions-statemachine.html;
aws-cloudformation-resource-providers-stepfunctions, ``DefinitionProcessor``): exactly one of
``Definition``, ``DefinitionString`` and ``DefinitionS3Location``; a ``Definition`` object is written out as JSON;
then every ``${key}`` of ``DefinitionSubstitutions`` is replaced by the value's text, repeatedly (a value may
contain another placeholder), and a value that is not a string, integer or boolean fails the resource. The
replacement is textual, so a substituted number stays inside its quotes: ``"Seconds": "${Wait}"`` becomes the
string ``"600"``, which Step Functions rejects (``SCHEMA_VALIDATION_FAILED``) and moto's ASL parser rejects too.

Stricter than AWS in one way, on purpose: a ``${Name}`` left after substitution fails the resource here. On AWS it
fails only where Step Functions checks the field (a ``Resource`` ARN), and passes silently in a ``Comment`` or a
parameter value, where it would be a bug of the template. Pure (no moto): ``cfn_resources.patch_models`` calls
``prepare`` from its wrapper of moto's StateMachine CloudFormation create/update.
"""

from __future__ import annotations

import json
import re
from typing import Any

DEFINITION_KEYS = ("Definition", "DefinitionString", "DefinitionS3Location")
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_.:-]+)\}")
MAX_ROUNDS = 100  # replacement repeats while a value brings in another placeholder; a cycle must still end


class InvalidDefinition(ValueError):
    """The state machine's definition properties are not what the AWS resource provider accepts."""


def _text(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"  # Java's Boolean.toString, not Python's "True"
    if isinstance(value, (str, int)):
        return str(value)
    raise InvalidDefinition(f"DefinitionSubstitutions value for {key!r} must be a string, integer or boolean")


def render(props: dict[str, Any]) -> str:
    """The definition string AWS would send to CreateStateMachine for these resource properties."""
    given = [key for key in DEFINITION_KEYS if props.get(key) is not None]
    if len(given) != 1:
        raise InvalidDefinition(f"exactly one of {', '.join(DEFINITION_KEYS)} is required, got {given or 'none'}")
    (key,) = given
    if key == "DefinitionS3Location":
        raise InvalidDefinition("DefinitionS3Location is not supported by the local cloud")
    definition = props[key]
    if key == "Definition":
        if not isinstance(definition, dict) or not definition:
            raise InvalidDefinition("Definition must be a non-empty object")
        definition = json.dumps(definition, indent=2, sort_keys=True)
    elif not isinstance(definition, str):
        raise InvalidDefinition("DefinitionString must be a string")
    substitutions = props.get("DefinitionSubstitutions") or {}
    if not isinstance(substitutions, dict):
        raise InvalidDefinition("DefinitionSubstitutions must be an object")
    values = {f"${{{name}}}": _text(name, value) for name, value in substitutions.items()}
    wanted = re.compile("|".join(re.escape(placeholder) for placeholder in sorted(values, key=len, reverse=True)))
    for _ in range(MAX_ROUNDS if values else 0):
        replaced = wanted.sub(lambda m: values[m.group(0)], definition)
        if replaced == definition:
            break
        definition = replaced
    else:
        if values:
            raise InvalidDefinition("DefinitionSubstitutions refer to each other in a cycle")
    unresolved = sorted({m.group(1) for m in PLACEHOLDER.finditer(definition)})
    if unresolved:
        raise InvalidDefinition(
            "Invalid State Machine Definition: placeholders not in DefinitionSubstitutions: "
            + ", ".join(f"${{{name}}}" for name in unresolved)
        )
    return definition


def prepare(props: dict[str, Any]) -> None:
    """Leave moto exactly one rendered ``DefinitionString``."""
    props["DefinitionString"] = render(props)
    for key in ("Definition", "DefinitionSubstitutions", "DefinitionS3Location"):
        props.pop(key, None)
