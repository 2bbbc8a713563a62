"""CloudFormation template ``Rules``: parameter assertions checked before a stack is created or updated.

On AWS, a template's ``Rules`` section is evaluated with the stack's parameter values when a stack or change set
is created or updated; a rule whose ``RuleCondition`` holds and one of whose ``Assertions`` is false fails the call
with ``ValidationError`` (the message is the assertion's ``AssertDescription``) and nothing is created or changed.
moto 5.2.5 ignores the section, so a template could refuse a value on AWS and take it locally. This module
evaluates the rule functions the AWS page lists (``Fn::And``, ``Fn::Contains``, ``Fn::EachMemberEquals``,
``Fn::EachMemberIn``, ``Fn::Equals``, ``Fn::Not``, ``Fn::Or``, ``Ref`` of a parameter); any other function
(``Fn::ValueOf``, ``Fn::RefAll`` ...) needs a live account's data and is refused, so a rule is never silently
skipped.

Patches (see ``MOTO_TOUCHPOINTS``): wraps ``CloudFormationBackend.create_stack``, ``update_stack`` and
``create_change_set``.
AWS behaviour: https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/rules-section-structure.html
Written for moto ``>=5.2.5,<5.3`` (``MOTO_VERSIONS``).
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any

import yaml
from moto.cloudformation.exceptions import ValidationError
from moto.cloudformation.models import CloudFormationBackend
from moto.cloudformation.utils import yaml_tag_constructor

# What this module relies on in moto: checked at server start and by tests/unit/test_local_cloud_contracts.py
# (auto_repair_local.moto_contract; upgrade procedure in docs/ARCHITECTURE.md, "Upgrading moto").
MOTO_VERSIONS = ">=5.2.5,<5.3"
MOTO_TOUCHPOINTS = (
    "moto.cloudformation.models.CloudFormationBackend.create_stack(name, template, parameters)",
    "moto.cloudformation.models.CloudFormationBackend.update_stack(name, template, parameters)",
    "moto.cloudformation.models.CloudFormationBackend.create_change_set(stack_name, template, parameters)",
    "moto.cloudformation.models.CloudFormationBackend.get_stack(name_or_stack_id)",
    "moto.cloudformation.models.Stack#parameters",
    "moto.cloudformation.exceptions.ValidationError(name_or_id, message)",
    "moto.cloudformation.utils.yaml_tag_constructor(loader, tag, node)",
)


class _Loader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags (!Ref, !Equals ...), as moto reads templates."""


_Loader.add_multi_constructor(
    "!", lambda loader, suffix, node: yaml_tag_constructor(loader, f"!{suffix}", node)
)


def parse_template(body: str) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = yaml.load(body, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    return parsed if isinstance(parsed, dict) else {}


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise ValidationError(message="Template format error: a rule function expects a list of strings")
    return [str(v) for v in value]


def evaluate(expression: Any, parameters: Mapping[str, str]) -> Any:
    """The value of a rule expression: a bool for the functions, a string (or list) for Ref and literals."""
    if not isinstance(expression, dict):
        return (
            [evaluate(e, parameters) for e in expression] if isinstance(expression, list) else str(expression)
        )
    if len(expression) != 1:
        raise ValidationError(message="Template format error: a rule function must be an object with one key")
    name, args = next(iter(expression.items()))
    if name == "Ref":
        if args not in parameters:
            raise ValidationError(
                message=f"Template format error: Unresolved resource dependencies [{args}] in Rules"
            )
        return parameters[args]
    handler = _FUNCTIONS.get(name)
    if handler is None:
        raise ValidationError(
            message=f"Template format error: the local cloud does not evaluate {name} in Rules"
        )
    return handler(
        [evaluate(a, parameters) for a in args] if isinstance(args, list) else [evaluate(args, parameters)]
    )


_FUNCTIONS: dict[str, Callable[[list[Any]], bool]] = {
    "Fn::Equals": lambda a: str(a[0]) == str(a[1]),
    "Fn::Not": lambda a: not a[0],
    "Fn::And": all,
    "Fn::Or": any,
    "Fn::Contains": lambda a: str(a[1]) in _strings(a[0]),
    "Fn::EachMemberEquals": lambda a: all(v == str(a[1]) for v in _strings(a[0])),
    "Fn::EachMemberIn": lambda a: set(_strings(a[0])) <= set(_strings(a[1])),
}


def effective_parameters(template: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, str]:
    """The values the rules see: the given ones, else the template's defaults; pseudo parameters are not rules'."""
    declared = template.get("Parameters") or {}
    values = {k: str(v["Default"]) for k, v in declared.items() if isinstance(v, dict) and "Default" in v}
    values.update({str(k): str(v) for k, v in given.items()})
    return values


def check_rules(template_body: str, given: Mapping[str, Any]) -> None:
    """Raises ValidationError(AssertDescription) for the first failed assertion of a rule whose condition holds."""
    template = parse_template(template_body)
    rules = template.get("Rules") or {}
    if not rules:
        return
    parameters = effective_parameters(template, given)
    for rule_name, rule in rules.items():
        if "RuleCondition" in rule and not evaluate(rule["RuleCondition"], parameters):
            continue
        for assertion in rule.get("Assertions") or []:
            if not evaluate(assertion["Assert"], parameters):
                raise ValidationError(
                    message=assertion.get("AssertDescription") or f"Assertion failed for rule {rule_name}"
                )


def install(ctx: Any) -> None:
    create_stack = CloudFormationBackend.create_stack
    update_stack = CloudFormationBackend.update_stack
    create_change_set = CloudFormationBackend.create_change_set

    @functools.wraps(create_stack)
    def checked_create_stack(
        self: Any, name: str, template: str, parameters: dict[str, Any], *a: Any, **kw: Any
    ) -> Any:
        check_rules(template, parameters)
        return create_stack(self, name, template, parameters, *a, **kw)

    @functools.wraps(update_stack)
    def checked_update_stack(self: Any, *args: Any, **kwargs: Any) -> Any:
        bound = _bind(update_stack, self, args, kwargs)
        previous = dict(self.get_stack(bound["name"]).parameters)
        given = {
            p["ParameterKey"]: (
                previous.get(p["ParameterKey"], "")
                if p.get("UsePreviousValue")
                else p.get("ParameterValue", "")
            )
            for p in bound["parameters"] or []
        }
        check_rules(bound["template"], given)
        return update_stack(self, *args, **kwargs)

    @functools.wraps(create_change_set)
    def checked_create_change_set(self: Any, *args: Any, **kwargs: Any) -> Any:
        bound = _bind(create_change_set, self, args, kwargs)
        check_rules(bound["template"], bound["parameters"] or {})
        return create_change_set(self, *args, **kwargs)

    CloudFormationBackend.create_stack = checked_create_stack  # type: ignore[method-assign]
    CloudFormationBackend.update_stack = checked_update_stack  # type: ignore[method-assign]
    CloudFormationBackend.create_change_set = checked_create_change_set  # type: ignore[method-assign]


def _bind(
    function: Callable[..., Any], self: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    return dict(inspect.signature(function).bind(self, *args, **kwargs).arguments)
