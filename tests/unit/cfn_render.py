"""CloudFormation's rendering of a template for the template tests: conditions decided for the parameters, then
Ref, Fn::If, Fn::Sub and Fn::Split resolved, AWS::NoValue dropped. Shared by the tests that read the IAM a template
would create (test_member_template, test_scope_tags); resource attributes and imports stay as written."""

from __future__ import annotations

import re
from typing import Any

NO_VALUE = object()


def condition_values(template: dict[str, Any], params: dict[str, str]) -> dict[str, bool]:
    """Every condition of the template decided for the parameters (Equals, Not, Or, And, Condition)."""

    def value(expr: Any) -> Any:
        if isinstance(expr, dict) and set(expr) == {"Ref"}:
            return params[expr["Ref"]]
        if isinstance(expr, dict) and set(expr) == {"Condition"}:
            return value(template["Conditions"][expr["Condition"]])
        if isinstance(expr, dict) and set(expr) == {"Fn::Equals"}:
            a, b = expr["Fn::Equals"]
            return str(value(a)) == str(value(b))
        if isinstance(expr, dict) and set(expr) == {"Fn::Not"}:
            return not value(expr["Fn::Not"][0])
        if isinstance(expr, dict) and set(expr) == {"Fn::Or"}:
            return any(value(e) for e in expr["Fn::Or"])
        if isinstance(expr, dict) and set(expr) == {"Fn::And"}:
            return all(value(e) for e in expr["Fn::And"])
        assert not isinstance(expr, dict), f"condition function {expr} is not evaluated here"
        return expr

    return {name: bool(value(expr)) for name, expr in template.get("Conditions", {}).items()}


def resolve(value: Any, params: dict[str, str], conditions: dict[str, bool]) -> Any:
    """The value CloudFormation would produce: Ref (parameters, pseudo parameters), Fn::If, Fn::Sub, Fn::Split;
    NoValue dropped; GetAtt and ImportValue kept as they are (named resources)."""
    if isinstance(value, list):
        items = [resolve(v, params, conditions) for v in value]
        return [i for i in items if i is not NO_VALUE]
    if not isinstance(value, dict):
        return value
    if value == {"Ref": "AWS::NoValue"}:
        return NO_VALUE
    if set(value) == {"Ref"} and value["Ref"] in params:
        return params[value["Ref"]]
    if set(value) == {"Fn::If"}:
        name, yes, no = value["Fn::If"]
        return resolve(yes if conditions[name] else no, params, conditions)
    if set(value) == {"Fn::Sub"}:
        sub = value["Fn::Sub"]
        text, names = (sub, {}) if isinstance(sub, str) else (sub[0], sub[1])
        variables = {**params, **{k: resolve(v, params, conditions) for k, v in names.items()}}
        used = [variables.get(name) for name in re.findall(r"\$\{([\w:]+)\}", text)]
        if not all(isinstance(v, str) for v in used):
            return value  # a resource attribute or an import: known only at deploy time
        return re.sub(r"\$\{([\w:]+)\}", lambda m: variables[m.group(1)], text)
    if set(value) == {"Fn::Split"}:
        separator, text = value["Fn::Split"]
        return resolve(text, params, conditions).split(separator)
    items = {k: resolve(v, params, conditions) for k, v in value.items()}
    return {k: v for k, v in items.items() if v is not NO_VALUE}
