"""IAM policy evaluation for the local cloud: trust policies, resource policies and identity policies.

Pure (no moto): a ``Request`` names who asks (``Principal``), the action, the resource and the request context
(condition keys); ``evaluate`` answers ``ALLOW``, ``DENY`` (an explicit Deny matched) or ``IMPLICIT_DENY``
(nothing allowed it), in AWS's order: an explicit Deny in any statement wins, then any Allow, else denied.
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html and, for requests that
cross an account boundary (role trust, bus policies),
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic-cross-account.html

Covered: Principal/NotPrincipal (``*``, ``{"AWS": account | root | role | user | session ARN | "*"}``,
``{"Service": ...}``; no wildcards inside a principal), Action/NotAction with ``*``/``?`` wildcards,
Resource/NotResource with wildcards inside the colon-separated segments of the ARN, where only a ``*`` that ends a
segment may run past a colon
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html, "Using wildcards in
resource ARNs"), and the condition
operators our templates and the organisation mode use: String*, Arn*, Bool, Null, Numeric*, with ``IfExists`` and
the ``ForAnyValue:``/``ForAllValues:`` set qualifiers
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html; the Arn*
operators compare each of the six colon-delimited components of the ARN separately, so a wildcard never spans a
colon there, and ArnEquals takes wildcards like ArnLike, as that page's table says). An
operator it does not know makes the statement fail closed: an Allow does not apply, a Deny does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Decision(StrEnum):
    ALLOW = "Allow"
    DENY = "Deny"
    IMPLICIT_DENY = "ImplicitDeny"


class PolicyError(ValueError):
    """A policy document this evaluator cannot read; the caller treats it as not allowing anything."""


ACCOUNT_ROOT = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):root$")
ACCOUNT_ID = re.compile(r"^\d{12}$")
SESSION_ARN = re.compile(r"^arn:(aws[a-z-]*):sts::(\d{12}):assumed-role/([^/]+)/(.+)$")


@dataclass(frozen=True)
class Principal:
    """Who makes a request: an IAM user/role, a role session, an account's root, or an AWS service."""

    arn: str = ""  # user/role/root ARN, or the session ARN arn:aws:sts::<acct>:assumed-role/<role>/<session>
    account: str = ""
    service: str = ""  # e.g. "lambda.amazonaws.com" when a service acts

    @property
    def role_arn(self) -> str:
        """For a role session, the role's IAM ARN (what a policy names); else ''."""
        m = SESSION_ARN.match(self.arn)
        return f"arn:{m.group(1)}:iam::{m.group(2)}:role/{m.group(3)}" if m else ""

    @property
    def principal_arn(self) -> str:
        """aws:PrincipalArn: for a role session it is the role's ARN, as AWS sets it."""
        return self.role_arn or self.arn

    def in_policy(self, element: Any) -> bool:
        """Does a Principal element name this principal?"""
        if element == "*":
            return True
        if not isinstance(element, Mapping):
            raise PolicyError(f"Principal must be '*' or an object, not {element!r}")
        for kind, values in element.items():
            for value in _as_list(values):
                if kind == "Service" and self.service and value == self.service:
                    return True
                if kind == "AWS" and not self.service and self._names_me(str(value)):
                    return True
        return False

    def _names_me(self, value: str) -> bool:
        if value == "*":
            return True
        # An account (12 digits or its root ARN) names every principal of that account; the account then decides
        # through its own identity policies.
        root = ACCOUNT_ROOT.match(value)
        if root or ACCOUNT_ID.match(value):
            return self.account == (root.group(1) if root else value)
        # A role ARN names all sessions of the role; a session ARN only that session. No wildcards in ARNs.
        return value in (self.arn, self.role_arn)


@dataclass(frozen=True)
class Request:
    principal: Principal
    action: str
    resource: str = "*"
    # Condition keys (case-insensitive), a value or a list of values (multivalued keys such as
    # aws:PrincipalOrgPaths).
    context: Mapping[str, Any] = field(default_factory=dict)

    def value(self, key: str) -> list[str] | None:
        for k, v in self.context.items():
            if k.lower() == key.lower():
                if v is None:
                    return None
                return [_text(x) for x in _as_list(v)]
        return None


def load(document: str | Mapping[str, Any] | None) -> dict[str, Any]:
    if document is None or document == "":
        return {"Statement": []}
    if isinstance(document, Mapping):
        return dict(document)
    try:
        parsed = json.loads(document)
    except ValueError:
        from urllib.parse import unquote

        try:
            parsed = json.loads(unquote(document))  # IAM returns documents URL-encoded
        except ValueError as exc:
            raise PolicyError(f"policy is not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise PolicyError("policy must be a JSON object")
    return parsed


def evaluate(documents: Iterable[str | Mapping[str, Any] | None], request: Request,
             *, resource_policy: bool = False) -> Decision:
    """The decision of a set of policies for one request (Deny wins, then Allow, else implicit deny).

    ``resource_policy``: statements need a Principal (trust and resource policies); identity policies have none.
    """
    allowed = False
    for document in documents:
        try:
            statements = _as_list(load(document).get("Statement", []))
        except PolicyError:
            continue  # an unreadable policy allows nothing
        for statement in statements:
            effect = statement.get("Effect") if isinstance(statement, Mapping) else None
            try:
                applies = _applies(statement, request, resource_policy)
            except PolicyError:
                applies = effect == "Deny"  # fail closed
            if not applies:
                continue
            if effect == "Deny":
                return Decision.DENY
            if effect == "Allow":
                allowed = True
    return Decision.ALLOW if allowed else Decision.IMPLICIT_DENY


def _applies(statement: Mapping[str, Any], request: Request, resource_policy: bool) -> bool:
    if "Principal" in statement:
        if not request.principal.in_policy(statement["Principal"]):
            return False
    elif "NotPrincipal" in statement:
        if request.principal.in_policy(statement["NotPrincipal"]):
            return False
    elif resource_policy:
        raise PolicyError("a resource policy statement needs Principal or NotPrincipal")
    if "Action" in statement:
        if not _any_glob(statement["Action"], request.action, case=False):
            return False
    elif "NotAction" in statement:
        if _any_glob(statement["NotAction"], request.action, case=False):
            return False
    else:
        raise PolicyError("statement without Action or NotAction")
    if "Resource" in statement:
        if not _any_resource(statement["Resource"], request.resource):
            return False
    elif "NotResource" in statement and _any_resource(statement["NotResource"], request.resource):
        return False
    return _conditions(statement.get("Condition") or {}, request)


def _any_glob(patterns: Any, value: str, *, case: bool) -> bool:
    for pattern in _as_list(patterns):
        p, v = (str(pattern), value) if case else (str(pattern).lower(), value.lower())
        if _glob(p, v):
            return True
    return False


def _glob(pattern: str, value: str) -> bool:
    # Action names and String*Like values: * any run of characters, ? one character; nothing else is special.
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.S) is not None


def _any_resource(patterns: Any, value: str) -> bool:
    return any(_resource_glob(str(pattern), value) for pattern in _as_list(patterns))


def _resource_glob(pattern: str, value: str) -> bool:
    """A Resource element's ARN pattern: wildcards work within the colon-separated segments; a ``*`` that is the
    last character of a segment (before a colon, or at the end) may expand past colon boundaries, any other ``*``
    or ``?`` stays inside its segment. ``"*"`` alone is every resource."""
    parts = []
    for i, c in enumerate(pattern):
        if c == "*":
            ends_segment = i + 1 == len(pattern) or pattern[i + 1] == ":"
            parts.append(".*" if ends_segment else "[^:]*")
        elif c == "?":
            parts.append("[^:]")
        else:
            parts.append(re.escape(c))
    return re.fullmatch("".join(parts), value, re.S) is not None


def _arn_like(pattern: str, value: str) -> bool:
    """ArnLike/ArnEquals: the six colon-delimited components (partition prefix ``arn``, partition, service, Region,
    account, resource; the resource keeps any further colons) are compared one by one, each with ``*``/``?``
    wildcards, so no wildcard matches across a component's colon. Something that is not a six-component ARN
    matches nothing."""
    wanted, got = pattern.split(":", 5), value.split(":", 5)
    if len(wanted) != 6 or len(got) != 6:
        return False
    return all(_glob(w, g) for w, g in zip(wanted, got, strict=True))


# -- conditions --------------------------------------------------------------------------------------------------

_NEGATED = {"StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "ArnNotEquals", "ArnNotLike",
            "NumericNotEquals"}


def _conditions(block: Mapping[str, Any], request: Request) -> bool:
    if not isinstance(block, Mapping):
        raise PolicyError("Condition must be an object")
    for operator, keys in block.items():
        if not isinstance(keys, Mapping):
            raise PolicyError(f"Condition {operator} must be an object")
        for key, wanted in keys.items():
            if not _condition(str(operator), str(key), [_text(w) for w in _as_list(wanted)], request):
                return False
    return True


def _condition(operator: str, key: str, wanted: list[str], request: Request) -> bool:
    qualifier = ""
    if ":" in operator:
        qualifier, operator = operator.split(":", 1)
        if qualifier not in ("ForAnyValue", "ForAllValues"):
            raise PolicyError(f"unknown set qualifier {qualifier}")
    if_exists = operator.endswith("IfExists") and operator != "Null"
    base = operator[: -len("IfExists")] if if_exists else operator
    values = request.value(key)
    match = None if base == "Null" else _operator(base)  # an unknown operator fails whether or not the key is set
    if base == "Null":
        # {"Null": {"k": "true"}}: true when the key is absent.
        return (values is None or values == []) == (wanted[0].lower() == "true")
    if values is None:
        if qualifier == "ForAllValues":
            return True  # vacuously true for an absent key (AWS warns about this; our templates avoid it)
        if qualifier == "ForAnyValue":
            return False
        return if_exists or base in _NEGATED
    assert match is not None
    if qualifier == "ForAllValues":
        return all(match(v, wanted) for v in values)
    if qualifier == "ForAnyValue":
        return any(match(v, wanted) for v in values)
    # A single-valued operator on a key with several values: any value may satisfy it.
    return any(match(v, wanted) for v in values)


def _operator(name: str) -> Any:
    positive = {
        "StringEquals": lambda v, w: v in w,
        "StringEqualsIgnoreCase": lambda v, w: v.lower() in (x.lower() for x in w),
        "StringLike": lambda v, w: any(_glob(x, v) for x in w),
        "ArnEquals": lambda v, w: any(_arn_like(x, v) for x in w),
        "ArnLike": lambda v, w: any(_arn_like(x, v) for x in w),
        "Bool": lambda v, w: v.lower() in (x.lower() for x in w),
        "NumericEquals": lambda v, w: _num(v) in [_num(x) for x in w],
        "NumericLessThan": lambda v, w: any(_num(v) < _num(x) for x in w),
        "NumericLessThanEquals": lambda v, w: any(_num(v) <= _num(x) for x in w),
        "NumericGreaterThan": lambda v, w: any(_num(v) > _num(x) for x in w),
        "NumericGreaterThanEquals": lambda v, w: any(_num(v) >= _num(x) for x in w),
    }
    if name in positive:
        return positive[name]
    if name in _NEGATED:
        base = positive[name.replace("Not", "", 1)]
        return lambda v, w: not base(v, w)
    raise PolicyError(f"unknown condition operator {name}")


def _num(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise PolicyError(f"not a number: {value!r}") from None


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
