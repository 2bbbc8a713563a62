"""Requests made with the member repair role's session credentials are authorised by that role's identity policies.

In organisation mode the central workflow acts in a member account only through ``lambda-auto-repair-member-<env>``:
on AWS every Lambda, CloudWatch and CloudWatch Logs call made with that session's credentials is evaluated against
the role's identity policies (an explicit Deny wins, otherwise an Allow is needed), with the resource's tags in the
request context, https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html. moto
checks none of it, so a member template lacking a permission the code uses, or a wrong ``aws:ResourceTag`` scope,
passed locally and failed on AWS.

Scope: sessions of roles whose name starts with ``lambda-auto-repair-member-`` (in any account). Only those: the
local cloud's other sessions (the functions' execution roles, ``OrganizationAccountAccessRole``, the tests' probe
roles) call services this module does not map, and the local cloud's ``test`` keys stand for an administrator.

Each request maps to what IAM authorises (``needs``; the Service Authorization Reference names the actions, resource
ARNs and condition keys:
https://docs.aws.amazon.com/service-authorization/latest/reference/list_awslambda.html,
https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazoncloudwatch.html,
https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazoncloudwatchlogs.html):

* Lambda: ``lambda:<Operation>`` (``ListTags``, ``Invoke`` -> ``InvokeFunction``) on
  ``arn:aws:lambda:<region>:<acct>:function:<name>`` (``:<qualifier>`` when the call names a version or alias, as
  Lambda authorises it, https://docs.aws.amazon.com/lambda/latest/dg/lambda-api-permissions-ref.html), with the
  function's tags as ``aws:ResourceTag/<key>``; ``ListFunctions`` on ``*``; ``TagResource``/``UntagResource`` add
  ``aws:RequestTag/<key>``/``aws:TagKeys``.
* CloudWatch: alarm actions on ``arn:aws:cloudwatch:<region>:<acct>:alarm:<name>`` (each alarm a call names;
  ``alarm:*`` for a DescribeAlarms without names; a PutMetricAlarm with ``Tags`` also needs ``cloudwatch:TagResource``,
  https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html), metric reads on ``*``.
* CloudWatch Logs: log-group actions on ``arn:aws:logs:<region>:<acct>:log-group:<name>``.
* ``sts:GetCallerIdentity`` needs no permission (https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html).

Anything else such a session asks for is denied (fail closed). Every request also carries ``aws:PrincipalArn``,
``aws:PrincipalAccount``, ``aws:PrincipalOrgID``/``aws:PrincipalOrgPaths`` and ``aws:ResourceAccount``/
``aws:ResourceOrgID`` (``sts_trust.principal_context``/``resource_context``).

A denial is answered as each service answers it (botocore reads the code the product's ``error_code`` sees):
Lambda HTTP 403 ``AccessDeniedException``, CloudWatch HTTP 403 ``AccessDenied``, CloudWatch Logs HTTP 400
``AccessDeniedException``; the message is AWS's: ``User: <session arn> is not authorized to perform: <action> on
resource: <arn> because no identity-based policy allows the <action> action`` (or ``with an explicit deny in an
identity-based policy``).

Patches (see ``MOTO_TOUCHPOINTS``): wraps ``moto.core.responses.BaseResponse.call_action``, through which every
request of these services passes after moto resolved the caller's account from its access key.
Written for moto ``>=5.2.5,<5.3`` (``MOTO_VERSIONS``).
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from auto_repair_local.iam_policy import Decision, Principal, Request, evaluate

# What this module relies on in moto: checked at server start and by tests/unit/test_local_cloud_contracts.py
# (auto_repair_local.moto_contract; upgrade procedure in docs/ARCHITECTURE.md, "Upgrading moto").
MOTO_VERSIONS = ">=5.2.5,<5.3"
MOTO_TOUCHPOINTS = (
    "moto.core.responses.BaseResponse.call_action()",
    "moto.core.responses.BaseResponse.serialized(action_result)",
    "moto.core.responses.BaseResponse._get_action()",
    "moto.core.responses.BaseResponse#service_name",
    "moto.core.responses.BaseResponse#current_account",
    "moto.core.responses.BaseResponse#access_key",
    "moto.core.responses.BaseResponse#region",
    "moto.core.responses.BaseResponse#querystring",
    "moto.core.responses.BaseResponse#body",
    "moto.core.responses.ActionResult(result)",
    "moto.core.exceptions.ServiceException",
    "moto.awslambda.models.lambda_backends",
    "moto.awslambda.models.LambdaBackend.get_function(function_name_or_arn, qualifier)",
    "moto.awslambda.models.LambdaFunction#tags",
)

log = logging.getLogger("auto_repair_local.session_authz")

MEMBER_ROLE_PREFIX = "lambda-auto-repair-member-"
PARTITION = "aws"
_FUNCTION_ARN = re.compile(
    r"^(?:arn:aws[a-z-]*:lambda:(?P<region>[a-z0-9-]+):)?(?:(?P<account>\d{12}):)?(?:function:)?"
    r"(?P<name>[A-Za-z0-9_-]+)(?::(?P<qualifier>[A-Za-z0-9_$-]+))?$")
_ALARM_ARN = re.compile(r"^arn:aws[a-z-]*:cloudwatch:[a-z0-9-]+:\d{12}:alarm:.+$")


class UnknownActionError(LookupError):
    """A request this module cannot map to IAM: a member role session is denied it (fail closed)."""


@dataclass(frozen=True)
class Call:
    """One API request as the service received it: its operation's parameters by their API names."""

    service: str  # the IAM service prefix: lambda, cloudwatch, logs, sts, ...
    operation: str  # the API operation, e.g. UpdateFunctionConfiguration
    region: str
    account: str  # the account the request acts in (the credentials' account)
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Need:
    """One authorisation IAM makes for a request: an action on a resource, with the request's own condition keys."""

    action: str
    resource: str
    context: Mapping[str, Any] = field(default_factory=dict)
    function_arn: str = ""  # the Lambda function whose tags are aws:ResourceTag/<key> ('' = none)


# -- the mapping (pure) -------------------------------------------------------------------------------------------

# Lambda operations on one function: operation -> (IAM action, whether a qualifier is part of the resource ARN).
_LAMBDA_FUNCTION_ACTIONS: dict[str, tuple[str, bool]] = {
    "GetFunction": ("lambda:GetFunction", True),
    "GetFunctionConfiguration": ("lambda:GetFunctionConfiguration", True),
    "UpdateFunctionConfiguration": ("lambda:UpdateFunctionConfiguration", False),
    "UpdateFunctionCode": ("lambda:UpdateFunctionCode", False),
    "DeleteFunction": ("lambda:DeleteFunction", True),
    "PublishVersion": ("lambda:PublishVersion", False),
    "ListVersionsByFunction": ("lambda:ListVersionsByFunction", False),
    "GetAlias": ("lambda:GetAlias", False),
    "UpdateAlias": ("lambda:UpdateAlias", False),
    "CreateAlias": ("lambda:CreateAlias", False),
    "DeleteAlias": ("lambda:DeleteAlias", False),
    "ListAliases": ("lambda:ListAliases", False),
    "ListProvisionedConcurrencyConfigs": ("lambda:ListProvisionedConcurrencyConfigs", False),
    "GetProvisionedConcurrencyConfig": ("lambda:GetProvisionedConcurrencyConfig", True),
    "GetFunctionConcurrency": ("lambda:GetFunctionConcurrency", False),
    "PutFunctionConcurrency": ("lambda:PutFunctionConcurrency", False),
    "GetPolicy": ("lambda:GetPolicy", True),
    "Invoke": ("lambda:InvokeFunction", True),
}
_LAMBDA_TAG_ACTIONS = {"ListTags": "lambda:ListTags", "TagResource": "lambda:TagResource",
                       "UntagResource": "lambda:UntagResource"}
_LAMBDA_ANY_RESOURCE = {"ListFunctions": "lambda:ListFunctions", "GetAccountSettings": "lambda:GetAccountSettings"}

_CLOUDWATCH_ALARM_ACTIONS = {"PutMetricAlarm", "DeleteAlarms", "DescribeAlarms", "SetAlarmState",
                             "EnableAlarmActions", "DisableAlarmActions", "DescribeAlarmHistory"}
_CLOUDWATCH_TAG_ACTIONS = {"TagResource", "UntagResource", "ListTagsForResource"}
_CLOUDWATCH_ANY_RESOURCE = {"GetMetricData", "GetMetricStatistics", "ListMetrics", "DescribeAlarmsForMetric",
                            "PutMetricData"}

_LOGS_GROUP_ACTIONS = {"FilterLogEvents", "GetLogEvents", "DescribeLogStreams", "CreateLogGroup", "DeleteLogGroup",
                       "DescribeMetricFilters", "PutMetricFilter", "DeleteMetricFilter", "PutRetentionPolicy",
                       "StartQuery", "ListTagsLogGroup", "TagLogGroup"}
_LOGS_ANY_RESOURCE = {"DescribeLogGroups", "GetQueryResults", "StopQuery"}

_FREE = {("sts", "GetCallerIdentity")}


def needs(call: Call) -> list[Need]:
    """What IAM authorises for ``call`` (``[]``: nothing, e.g. sts:GetCallerIdentity); ``UnknownActionError`` if
    this module does not know the operation."""
    if (call.service, call.operation) in _FREE:
        return []
    mapper = {"lambda": _lambda, "cloudwatch": _cloudwatch, "logs": _logs}.get(call.service)
    found = mapper(call) if mapper else None
    if found is None:
        raise UnknownActionError(f"{call.service}:{call.operation}")
    return found


def function_arn(call: Call, name_or_arn: str, *, qualified: bool) -> str:
    """The function ARN a FunctionName/Resource names (a name, partial ARN or ARN, optionally ``:qualifier``)."""
    m = _FUNCTION_ARN.match(unquote(name_or_arn or ""))
    if m is None:
        raise UnknownActionError(f"lambda:{call.operation} on {name_or_arn!r}")
    region, account = m.group("region") or call.region, m.group("account") or call.account
    arn = f"arn:{PARTITION}:lambda:{region}:{account}:function:{m.group('name')}"
    qualifier = m.group("qualifier") or str(call.params.get("Qualifier") or "")
    return f"{arn}:{qualifier}" if qualified and qualifier else arn


def unqualified(arn: str) -> str:
    """The function ARN without a version or alias (whose tags a qualified ARN's request carries)."""
    parts = arn.split(":")
    return ":".join(parts[:7])


def _lambda(call: Call) -> list[Need] | None:
    op, params = call.operation, call.params
    if op in _LAMBDA_ANY_RESOURCE:
        return [Need(_LAMBDA_ANY_RESOURCE[op], "*")]
    if op in _LAMBDA_FUNCTION_ACTIONS:
        action, qualified = _LAMBDA_FUNCTION_ACTIONS[op]
        arn = function_arn(call, str(params.get("FunctionName") or ""), qualified=qualified)
        return [Need(action, arn, function_arn=unqualified(arn))]
    if op in _LAMBDA_TAG_ACTIONS:
        arn = function_arn(call, str(params.get("Resource") or params.get("ARN") or ""), qualified=True)
        context: dict[str, Any] = {}
        if op == "TagResource":
            context = request_tags(dict(params.get("Tags") or {}))
        elif op == "UntagResource":
            context["aws:TagKeys"] = sorted(str(k) for k in _as_list(params.get("TagKeys") or params.get("tagKeys")))
        return [Need(_LAMBDA_TAG_ACTIONS[op], arn, context, function_arn=unqualified(arn))]
    return None


def alarm_arn(call: Call, name: str) -> str:
    return f"arn:{PARTITION}:cloudwatch:{call.region}:{call.account}:alarm:{name}"


def _cloudwatch(call: Call) -> list[Need] | None:
    op, params = call.operation, call.params
    action = f"cloudwatch:{op}"
    if op in _CLOUDWATCH_ANY_RESOURCE:
        return [Need(action, "*")]
    if op in _CLOUDWATCH_ALARM_ACTIONS:
        names = _as_list(params.get("AlarmNames")) or _as_list(params.get("AlarmName"))
        context: dict[str, Any] = {}
        if op == "PutMetricAlarm" and params.get("Tags"):
            context = request_tags({t.get("Key"): t.get("Value") for t in _as_list(params.get("Tags"))})
        if not names:
            # A DescribeAlarms by prefix, state or none: every alarm of the account may be answered.
            return [Need(action, alarm_arn(call, "*"), context)] if op == "DescribeAlarms" else None
        found = [Need(action, alarm_arn(call, str(n)), context) for n in names]
        if context:  # an alarm created with tags also needs cloudwatch:TagResource on it (API_PutMetricAlarm)
            found += [Need("cloudwatch:TagResource", alarm_arn(call, str(n)), context) for n in names]
        return found
    if op in _CLOUDWATCH_TAG_ACTIONS:
        arn = str(params.get("ResourceARN") or "")
        if not _ALARM_ARN.match(arn):
            return None  # tags of a metric stream, rule, ...: not a resource the product touches
        context = {}
        if op == "TagResource":
            context = request_tags({t.get("Key"): t.get("Value") for t in _as_list(params.get("Tags"))})
        elif op == "UntagResource":
            context = {"aws:TagKeys": sorted(str(k) for k in _as_list(params.get("TagKeys")))}
        return [Need(action, arn, context)]
    return None


def log_group_arn(call: Call, name: str) -> str:
    return f"arn:{PARTITION}:logs:{call.region}:{call.account}:log-group:{name}"


def _logs(call: Call) -> list[Need] | None:
    op, params = call.operation, call.params
    action = f"logs:{op}"
    if op in _LOGS_ANY_RESOURCE:
        return [Need(action, "*")]
    if op not in _LOGS_GROUP_ACTIONS:
        return None
    identifier = str(params.get("logGroupIdentifier") or "")
    if identifier.startswith("arn:"):
        group_arn = identifier[:-2] if identifier.endswith(":*") else identifier
        return [Need(action, group_arn)]
    name = str(params.get("logGroupName") or identifier or "")
    if not name:
        # DescribeMetricFilters by metric only: any group of the account may be answered.
        return [Need(action, log_group_arn(call, "*"))] if op == "DescribeMetricFilters" else None
    context: dict[str, Any] = {}
    if op == "CreateLogGroup" and params.get("tags"):
        context = request_tags(dict(params["tags"]))
    return [Need(action, log_group_arn(call, name), context)]


def request_tags(tags: dict[Any, Any]) -> dict[str, Any]:
    """The condition keys of tags a request sets: ``aws:RequestTag/<key>`` each, and ``aws:TagKeys``."""
    clean = {str(k): str(v) for k, v in tags.items()}
    return {**{f"aws:RequestTag/{k}": v for k, v in clean.items()}, "aws:TagKeys": sorted(clean)}


def _as_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


# -- the decision (pure given the policies, the context and the tags) ---------------------------------------------


@dataclass(frozen=True)
class Denial:
    action: str
    resource: str
    decision: Decision  # DENY (explicit) or IMPLICIT_DENY

    def message(self, who: str) -> str:
        why = ("with an explicit deny in an identity-based policy" if self.decision is Decision.DENY
               else f"because no identity-based policy allows the {self.action} action")
        return f"User: {who} is not authorized to perform: {self.action} on resource: {self.resource} {why}"


def in_scope(principal: Principal) -> bool:
    """Is this caller a member repair role's session (the only sessions this module authorises)?"""
    role = principal.role_arn
    return bool(role) and role.rsplit("/", 1)[-1].startswith(MEMBER_ROLE_PREFIX)


def decide(call: Call, principal: Principal, policies: Iterable[str | Mapping[str, Any] | None],
           base_context: Mapping[str, Any], tags_of: Callable[[str], Mapping[str, str]]) -> Denial | None:
    """None when every authorisation ``call`` needs is allowed by ``policies``; else the first that is not."""
    try:
        wanted = needs(call)
    except UnknownActionError:
        return Denial(f"{call.service}:{call.operation}", "*", Decision.IMPLICIT_DENY)
    documents = list(policies)
    for need in wanted:
        context = dict(base_context)
        if need.function_arn:
            context.update({f"aws:ResourceTag/{k}": v for k, v in tags_of(need.function_arn).items()})
        context.update(need.context)
        decision = evaluate(documents, Request(principal=principal, action=need.action, resource=need.resource,
                                               context=context))
        if decision is not Decision.ALLOW:
            return Denial(need.action, need.resource, decision)
    return None


# -- moto ---------------------------------------------------------------------------------------------------------

# moto's service names -> IAM service prefixes (where they differ).
_PREFIX = {"awslambda": "lambda", "lambda": "lambda"}
# How each service answers AccessDenied: (code, HTTP status).
_ERRORS = {"lambda": ("AccessDeniedException", 403), "logs": ("AccessDeniedException", 400),
           "cloudwatch": ("AccessDenied", 403)}


def function_tags(arn: str) -> dict[str, str]:
    """The tags of the function an unqualified ARN names ({} if it does not exist: then nothing tag-scoped allows)."""
    from moto.awslambda.models import lambda_backends

    parts = arn.split(":")
    region, account, name = parts[3], parts[4], parts[6]
    try:
        return dict(lambda_backends[account][region].get_function(name, None).tags or {})
    except Exception:  # moto's UnknownFunctionException
        return {}


def _params(response: Any) -> dict[str, Any]:
    """The request's parameters by API name: moto's parsed ones, the URI's, the query string's and a JSON body's."""
    params: dict[str, Any] = {}
    body = getattr(response, "body", None)
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and body.lstrip().startswith("{"):
        try:
            loaded = json.loads(body)
        except ValueError:
            loaded = None
        if isinstance(loaded, dict):
            params.update(loaded)
    for key, values in (getattr(response, "querystring", None) or {}).items():
        if isinstance(values, list):
            params[key] = values[0] if len(values) == 1 and key != "tagKeys" else values
        else:
            params[key] = values
    if getattr(response, "automated_parameter_parsing", False):
        params.update(getattr(response, "params", None) or {})
    params.update(getattr(response, "uri_match", None) or {})
    return params


def install(ctx: Any) -> None:
    from moto.core.exceptions import ServiceException
    from moto.core.responses import ActionResult, BaseResponse

    from auto_repair_local.sts_trust import caller, identity_policies, principal_context, resource_context

    original = BaseResponse.call_action
    if getattr(original, "_auto_repair_local", False):
        return

    class AccessDenied(ServiceException):  # defined here so moto serialises it with the requested service's model
        pass

    scoped: dict[str, Principal | None] = {}  # access key -> the member role session it belongs to, or None

    def call_action(self: BaseResponse) -> Any:
        key = str(getattr(self, "access_key", "") or "")
        if not key.startswith("ASIA"):  # moto's STS keys; the local cloud's root keys are an administrator's
            return original(self)
        if key not in scoped:  # a key's session never changes; moto finds it by scanning every session issued
            if len(scoped) > 10_000:
                scoped.clear()
            found = caller(key, self.current_account)
            scoped[key] = found if in_scope(found) else None
        principal = scoped[key]
        if principal is None:
            return original(self)
        service = _PREFIX.get(str(self.service_name), str(self.service_name))
        operation = self._get_action() or ""  # first: for REST services it also matches the URI's parameters
        call = Call(service=service, operation=operation, region=self.region, account=principal.account,
                    params=_params(self))
        context = {**principal_context(principal), **resource_context(principal.account)}
        denial = decide(call, principal, identity_policies(principal.role_arn), context, function_tags)
        if denial is None:
            return original(self)
        message = denial.message(principal.arn)
        log.info("%s %s: %s", service, call.operation, message)
        code, status = _ERRORS.get(service, ("AccessDenied", 403))
        with warnings.catch_warnings():  # moto warns that the service model has no such error shape
            warnings.simplefilter("ignore")
            _, headers, body = self.serialized(ActionResult(AccessDenied(code, message)))
        headers["status"] = str(status)
        return status, headers, body

    call_action._auto_repair_local = True  # type: ignore[attr-defined]
    BaseResponse.call_action = call_action  # type: ignore[method-assign]
