"""EventBridge delivery in the local cloud: Step Functions and Lambda targets, AWS input shaping, DLQ, matching.

moto 5.2.5 (``moto.events.models.Rule.send_to_targets``) delivers only to SQS, log groups, archives, other buses
and API destinations; a Step Functions or Lambda target raises ``NotImplementedError`` inside PutEvents. It also
ignores ``Input``/``InputPath``, drops ``resources``/``time``/``id`` when forwarding to another bus, ignores
disabled rules, and its pattern matcher flattens only objects, so a pattern cannot reach into an array of objects
(the alarm event's ``detail.configuration.metrics``). This module replaces ``send_to_targets`` and
``EventPattern.matches_event``:

* SQS, log group, archive and bus targets are delivered in-process, synchronously, as moto does;
* Step Functions (StartExecution) and Lambda (async Invoke) targets go to a worker thread that calls the local
  cloud's own API (``ctx.endpoint``) with boto3, so PutEvents returns at once and any other extension
  (``lambda_runtime``) sees the call as it would from AWS;
* a failed delivery is retried per the target's ``RetryPolicy`` (bounded, short back-off) and then sent to the
  target's ``DeadLetterConfig`` queue with the message attributes AWS adds (RULE_ARN, TARGET_ARN, ERROR_CODE,
  ERROR_MESSAGE, EXHAUSTED_RETRY_CONDITION, RETRY_ATTEMPTS).

Patches (see ``MOTO_TOUCHPOINTS``): replaces ``moto.events.models.Rule.send_to_targets`` and
``moto.events.models.EventPattern.matches_event`` (Event Ruler's semantics, ``matches``), wraps
``moto.events.models.EventPatternParser.parse`` so PutRule (and a stack's ``AWS::Events::Rule``) refuses with
``InvalidEventPatternException`` a pattern whose meaning on AWS differs from ``matches`` (``check_pattern``), and
implements TestEventPattern (``moto.events.responses.EventsHandler.test_event_pattern``) with the same matcher.
AWS behaviour: https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-create-pattern-operators.html,
https://github.com/aws/event-ruler (README, ``JsonRuleCompiler``),
https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rule-retry-policy.html,
https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rule-dlq.html,
https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-transform-target-input.html and
https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns.html
Written for moto ``>=5.2.5,<5.3`` (``MOTO_VERSIONS``).
"""

from __future__ import annotations

import copy
import datetime as dt
import ipaddress
import json
import logging
import queue
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from auto_repair_local.iam_policy import Decision, Principal, Request, evaluate
from auto_repair_local.sts_trust import (
    AccessDeniedError,
    caller,
    check_assume_role,
    identity_policies,
    principal_context,
    resource_context,
)

# What this module relies on in moto: checked at server start and by tests/unit/test_local_cloud_contracts.py
# (auto_repair_local.moto_contract; upgrade procedure in docs/ARCHITECTURE.md, "Upgrading moto").
MOTO_VERSIONS = ">=5.2.5,<5.3"
MOTO_TOUCHPOINTS = (
    "moto.events.models.Rule.send_to_targets(original_event, transform_input)",
    "moto.events.models.Rule._send_to_events_archive(resource_id, event)",
    "moto.events.models.Rule#state",
    "moto.events.models.Rule#event_pattern",
    "moto.events.models.Rule#targets",
    "moto.events.models.Rule#arn",
    "moto.events.models.Rule#name",
    "moto.events.models.Rule#account_id",
    "moto.events.models.Rule#region_name",
    "moto.events.models.EventPattern.matches_event(event)",
    "moto.events.models.EventPattern#_pattern",
    "moto.events.models.EventPattern.load(raw_pattern)",
    "moto.events.models.EventPattern.get_pattern()",
    "moto.events.models.EventPatternParser.parse()",
    "moto.events.exceptions.InvalidEventPatternException(reason)",
    "moto.events.responses.EventsHandler.test_event_pattern()",
    "moto.events.responses.EventsHandler._get_param(param_name)",
    "moto.events.responses.EventsHandler.put_events()",
    "moto.core.exceptions.ServiceException",
    "moto.events.responses.EventsHandler#events_backend",
    "moto.events.responses.EventsHandler#current_account",
    "moto.events.responses.EventsHandler#region",
    "moto.events.models.EventBus#policy",
    "moto.events.models.EventsBackend.put_events(events)",
    "moto.events.models.EventBus#rules",
    "moto.events.models.events_backends",
    "moto.events.models.EventsBackend.describe_event_bus(name)",
    "moto.utilities.arns.parse_arn(arn)",
    "moto.sqs.models.sqs_backends",
    "moto.sqs.models.SQSBackend.send_message(queue_name, message_body, message_attributes, group_id)",
    "moto.logs.models.logs_backends",
    "moto.logs.models.LogsBackend.create_log_stream(log_group_name, log_stream_name)",
    "moto.logs.models.LogsBackend.put_log_events(log_group_name, log_stream_name, log_events)",
)

log = logging.getLogger("auto_repair_local.events_delivery")

_UNDEFINED = object()
# Errors on which EventBridge does not retry (the target cannot succeed by waiting).
_NON_RETRIABLE = {
    "ResourceNotFoundException",
    "StateMachineDoesNotExist",
    "AccessDeniedException",
    "InvalidExecutionInput",
    "ValidationException",
    "InvalidParameterValueException",
    "InvalidArn",
}
_MAX_LOCAL_RETRIES = 2  # caps MaximumRetryAttempts (default 185 on AWS) so a dead target fails within seconds


# ---------------------------------------------------------------------------------------------------------------
# Event patterns (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns.html)
# ---------------------------------------------------------------------------------------------------------------


class PatternError(ValueError):
    """A pattern EventBridge refuses, or whose meaning on AWS differs from this matcher's (PutRule refuses it)."""


def check_pattern(pattern: dict[str, Any]) -> None:
    """Refuse what Event Ruler (EventBridge's matcher) refuses or reads differently from ``matches``.

    Event Ruler compiles a pattern into flat branches, one per combination of ``$or`` alternatives, each a map
    from field path to filters; every field outside a ``$or`` is *put* into every branch (``JsonRuleCompiler``:
    ``parseIntoOrRelationship`` forks the branches, ``writeRules`` does ``rule.put(path, values)``). A path
    both outside and inside a ``$or`` is therefore not ANDed: whichever comes later in the JSON text replaces
    the other in that branch, so the meaning depends on key order (which CloudFormation's YAML-to-JSON does
    not promise). ``matches`` ANDs them, so such a pattern is refused rather than guessed at.
    """
    branches: list[set[str]] = [set()]
    _collect_paths(pattern, "", branches)


def _collect_paths(node: dict[str, Any], prefix: str, branches: list[set[str]]) -> None:
    if not node:
        raise PatternError("Empty objects are not allowed")
    for key, sub in node.items():
        if key == "$or":
            if not isinstance(sub, list) or len(sub) < 2 or not all(isinstance(a, dict) for a in sub):
                raise PatternError("$or must be an array of at least 2 objects")
            forks: list[set[str]] = []
            for alternative in sub:
                copies = [set(b) for b in branches]
                _collect_paths(alternative, prefix, copies)
                forks.extend(copies)
            branches[:] = forks
        elif isinstance(sub, dict):
            _collect_paths(sub, f"{prefix}{key}.", branches)
        elif isinstance(sub, list) and sub:
            path = prefix + key
            if any(path in b for b in branches):
                raise PatternError(f'"{path}" is matched both outside and inside "$or" (or in two "$or"s)')
            for b in branches:
                b.add(path)
        else:
            raise PatternError(f'"{key}" must be a non-empty array or an object')


def matches(pattern: dict[str, Any] | None, event: Any) -> bool:
    """Event Ruler's semantics for patterns ``check_pattern`` accepts, including arrays of objects.

    An event field that is an array is the set of its leaf values: a filter matches when it matches any one
    of them (so ``anything-but`` matches an array holding any value it does not exclude), and ``exists``
    looks at leaves only (an object or an empty array does not exist). A nested pattern over an array of
    objects matches when one element matches all of it.
    """
    if not pattern:
        return True
    return _match_object(pattern, event)


def _match_object(pattern: dict[str, Any], value: Any) -> bool:
    for key, sub in pattern.items():
        if key == "$or":
            if not any(_match_object(alt, value) for alt in sub):
                return False
            continue
        child = value.get(key, _UNDEFINED) if isinstance(value, dict) else _UNDEFINED
        if isinstance(sub, dict):
            # Nested pattern: an array of objects matches if any element matches.
            if isinstance(child, list):
                if not any(isinstance(item, dict) and _match_object(sub, item) for item in child):
                    return False
            elif not isinstance(child, dict) or not _match_object(sub, child):
                if not (child is _UNDEFINED and _only_absence_filters(sub)):
                    return False
        elif isinstance(sub, list):
            if not _match_leaf(sub, _leaves(child)):
                return False
        else:
            return False
    return True


def _only_absence_filters(pattern: dict[str, Any]) -> bool:
    # {"a": {"b": [{"exists": false}]}} matches an event without "a".
    for sub in pattern.values():
        if isinstance(sub, dict):
            if not _only_absence_filters(sub):
                return False
        elif not (isinstance(sub, list) and sub and all(f == {"exists": False} for f in sub)):
            return False
    return True


def _leaves(value: Any) -> list[Any]:
    """The values Event Ruler sees at a path: scalars, with (nested) arrays flattened and objects not leaves."""
    if value is _UNDEFINED or isinstance(value, dict):
        return []
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


def _match_leaf(filters: list[Any], values: list[Any]) -> bool:
    for f in filters:
        if isinstance(f, dict):
            if _named_filter(f, values):
                return True
        elif any(_equal(v, f) for v in values):
            return True
    return False


def _equal(a: Any, b: Any) -> bool:
    # JSON semantics: true is not 1, 1 is 1.0.
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b or _num_eq(a, b)


def _num_eq(a: Any, b: Any) -> bool:
    return (
        isinstance(a, (int, float))
        and isinstance(b, (int, float))
        and not isinstance(a, bool)
        and not isinstance(b, bool)
        and float(a) == float(b)
    )


def _named_filter(f: dict[str, Any], values: list[Any]) -> bool:
    name, arg = next(iter(f.items()))
    if name == "exists":
        return bool(values) == bool(arg)
    if name == "anything-but":
        return any(not _anything_but_hit(arg, v) for v in values)
    return any(_scalar_filter(name, arg, v) for v in values)


def _anything_but_hit(arg: Any, v: Any) -> bool:
    if isinstance(arg, dict):
        sub, sub_arg = next(iter(arg.items()))
        return any(_scalar_filter(sub, o, v) for o in (sub_arg if isinstance(sub_arg, list) else [sub_arg]))
    return any(_equal(v, o) for o in (arg if isinstance(arg, list) else [arg]))


def _scalar_filter(name: str, arg: Any, v: Any) -> bool:
    if name in ("prefix", "suffix"):
        if isinstance(arg, dict) and "equals-ignore-case" in arg:
            target, text = str(arg["equals-ignore-case"]).lower(), v.lower() if isinstance(v, str) else None
        else:
            target, text = arg, v if isinstance(v, str) else None
        if text is None:
            return False
        return text.startswith(target) if name == "prefix" else text.endswith(target)
    if name == "equals-ignore-case":
        return isinstance(v, str) and v.lower() == str(arg).lower()
    if name == "wildcard":
        regex = "^" + ".*".join(re.escape(part) for part in str(arg).split("*")) + "$"
        return isinstance(v, str) and re.match(regex, v, re.S) is not None
    if name == "numeric":
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            return False
        ops = {
            "<": float.__lt__,
            "<=": float.__le__,
            "=": float.__eq__,
            ">": float.__gt__,
            ">=": float.__ge__,
        }
        return all(ops[arg[i]](float(v), float(arg[i + 1])) for i in range(0, len(arg), 2))
    if name == "cidr":
        try:
            return isinstance(v, str) and ipaddress.ip_address(v) in ipaddress.ip_network(arg, strict=False)
        except ValueError:
            return False
    return False


# ---------------------------------------------------------------------------------------------------------------
# Input shaping (Input, InputPath, InputTransformer)
# ---------------------------------------------------------------------------------------------------------------


def _json_path(event: Any, path: str) -> Any:
    """The subset of JSONPath EventBridge accepts: $, $.a.b, $.a[0].b."""
    if path in ("$", ""):
        return event
    node = event
    for part in re.findall(r"\.([^.\[\]]+)|\[(\d+)\]", path[1:]):
        key, index = part
        if key:
            if not isinstance(node, dict) or key not in node:
                return _UNDEFINED
            node = node[key]
        else:
            if not isinstance(node, list) or int(index) >= len(node):
                return _UNDEFINED
            node = node[int(index)]
    return node


def render_input(target: dict[str, Any], event: dict[str, Any], rule_arn: str = "") -> str:
    """The payload EventBridge sends to ``target`` for ``event`` (a string, usually JSON)."""
    if target.get("Input") is not None:
        return target["Input"]
    if target.get("InputPath"):
        value = _json_path(event, target["InputPath"])
        return json.dumps(None if value is _UNDEFINED else value)
    transformer = target.get("InputTransformer")
    if transformer:
        return _transform(
            transformer.get("InputPathsMap") or {}, transformer["InputTemplate"], event, rule_arn
        )
    return json.dumps(event)


def _transform(paths: dict[str, str], template: str, event: dict[str, Any], rule_arn: str) -> str:
    values = {name: _json_path(event, path) for name, path in paths.items()}
    # The reserved variables EventBridge offers in every InputTemplate.
    values["aws.events.event"] = event
    values["aws.events.event.json"] = event
    values["aws.events.rule-arn"] = rule_arn
    values["aws.events.rule-name"] = rule_arn.rsplit("/", 1)[-1]
    values["aws.events.event.ingestion-time"] = event.get("time")

    # A placeholder inside a JSON string is replaced by the raw text; outside, by the JSON value (AWS behaviour:
    # "<a>" with a = abc gives "abc"; <a> alone gives "abc" quoted).
    out: list[str] = []
    in_string = False
    i = 0
    while i < len(template):
        ch = template[i]
        if ch == '"' and (i == 0 or template[i - 1] != "\\"):
            in_string = not in_string
        if ch == "<":
            end = template.find(">", i)
            name = template[i + 1 : end] if end > 0 else None
            if name is not None and name in values:
                value = values[name]
                if value is _UNDEFINED:
                    value = None
                if in_string:
                    text = value if isinstance(value, str) else json.dumps(value)
                    out.append(json.dumps(text)[1:-1])
                else:
                    out.append(json.dumps(value))
                i = end + 1
                continue
        out.append(ch)
        i += 1
    return "".join(out)


# ---------------------------------------------------------------------------------------------------------------
# Delivery
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class _Job:
    rule_arn: str
    target: dict[str, Any]
    event: dict[str, Any]
    payload: str
    account_id: str
    region: str
    attempts: int = 0
    first_try: float = field(default_factory=time.monotonic)


class Deliverer:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.jobs: queue.Queue[_Job | None] = queue.Queue()
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="events-delivery", daemon=True)

    def client(self, service: str, region: str, account: str = "") -> Any:
        """A client acting in the rule's account: its targets are in that account (moto picks the account from the
        ``x-moto-account-id`` header when the keys are the local ``test`` ones)."""
        from auto_repair_local.local_org import CENTRAL_ACCOUNT, account_client

        with self._lock:
            key = (service, region, account)
            if key not in self._clients:
                self._clients[key] = account_client(self.endpoint, service, account or CENTRAL_ACCOUNT, region)
            return self._clients[key]

    def _run(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            try:
                self._deliver(job)
            except Exception:  # never let one event kill the worker
                log.exception("delivery to %s failed unexpectedly", job.target.get("Arn"))

    def _deliver(self, job: _Job) -> None:
        from botocore.exceptions import ClientError

        arn = job.target["Arn"]
        service, region = arn.split(":")[2], arn.split(":")[3]
        retry = job.target.get("RetryPolicy") or {}
        max_retries = min(int(retry.get("MaximumRetryAttempts", _MAX_LOCAL_RETRIES)), _MAX_LOCAL_RETRIES)
        while True:
            try:
                if service == "states":
                    self.client("stepfunctions", region, job.account_id).start_execution(
                        stateMachineArn=arn, input=job.payload
                    )
                elif service == "lambda":
                    self.client("lambda", region, job.account_id).invoke(
                        FunctionName=arn, InvocationType="Event", Payload=job.payload.encode()
                    )
                else:
                    raise ValueError(f"unsupported target {arn}")
                return
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "ClientError")
                message = exc.response.get("Error", {}).get("Message", str(exc))
            except Exception as exc:  # connection errors while the server stops, bad ARNs, ...
                code, message = type(exc).__name__, str(exc)
            if code in _NON_RETRIABLE or job.attempts >= max_retries:
                exhausted = None if code in _NON_RETRIABLE else "MaximumRetryAttempts"
                self._dead_letter(job, code, message, exhausted)
                return
            job.attempts += 1
            time.sleep(0.2 * job.attempts)

    def _dead_letter(self, job: _Job, code: str, message: str, exhausted: str | None) -> None:
        dlq = (job.target.get("DeadLetterConfig") or {}).get("Arn")
        log.warning("event %s to %s failed: %s %s", job.event.get("id"), job.target["Arn"], code, message)
        if not dlq:
            return
        from moto.sqs.models import sqs_backends

        parts = dlq.split(":")
        attributes = {
            "RULE_ARN": job.rule_arn,
            "TARGET_ARN": job.target["Arn"],
            "ERROR_CODE": code,
            "ERROR_MESSAGE": message[:256],
            "RETRY_ATTEMPTS": str(job.attempts),
        }
        if exhausted:
            attributes["EXHAUSTED_RETRY_CONDITION"] = exhausted
        sqs_backends[parts[4]][parts[3]].send_message(
            queue_name=parts[5],
            message_body=json.dumps(_wire_event(job.event)),
            message_attributes={k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()},
        )


def _iso(value: Any) -> str:
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(float(value), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def _wire_event(event: dict[str, Any]) -> dict[str, Any]:
    """The event as AWS serialises it to targets (ISO time, no moto-internal keys)."""
    out = {k: v for k, v in event.items() if not k.startswith("_") and k != "ingestion-time"}
    if "time" in out:
        out["time"] = _iso(out["time"])
    return out


_deliverer: Deliverer | None = None


def send_to_targets(rule: Any, original_event: dict[str, Any], transform_input: bool = True) -> None:
    """Replacement for moto's ``Rule.send_to_targets``."""
    from moto.events.models import events_backends
    from moto.utilities.arns import parse_arn

    # ENABLED or ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS; moto delivered for DISABLED rules too.
    if not str(rule.state).startswith("ENABLED") or not rule.event_pattern.matches_event(original_event):
        return
    event = _wire_event(original_event)
    for target in rule.targets:
        arn = target["Arn"]
        try:
            parsed = parse_arn(arn)
            payload = render_input(target, event, rule.arn) if transform_input else json.dumps(event)
            if parsed.service == "events" and parsed.resource_type == "event-bus":
                if (parsed.account, parsed.region) != (rule.account_id, rule.region_name):
                    refusal = cross_bus_refusal(rule.account_id, rule.arn, target, arn)
                    if refusal is not None:
                        raise BusDeliveryRefused(*refusal)
                # Bus-to-bus forwarding keeps the event as it is (id, time, resources), as on AWS; moto dropped them.
                backend = events_backends[parsed.account][parsed.region]
                _put_forwarded(backend, parsed.resource_id, copy.deepcopy(original_event))
            elif parsed.service in ("states", "lambda"):
                assert _deliverer is not None
                _deliverer.jobs.put(_Job(rule.arn, target, event, payload, rule.account_id, rule.region_name))
            elif parsed.service == "sqs":
                group_id = (target.get("SqsParameters") or {}).get("MessageGroupId")
                _send_sqs(rule, parsed.resource_id, payload, group_id)
            elif parsed.service == "logs" and parsed.resource_type == "log-group":
                _send_log(rule, parsed.resource_id, payload)
            elif parsed.service == "events" and not parsed.resource_type:
                rule._send_to_events_archive(parsed.resource_id, original_event)
            else:
                log.warning("rule %s: target type of %s is not delivered by the local cloud", rule.name, arn)
        except BusDeliveryRefused as exc:
            if _deliverer is not None:
                job = _Job(rule.arn, target, event, "", rule.account_id, rule.region_name)
                _deliverer._dead_letter(job, exc.code, exc.message, None)
        except Exception as exc:  # one broken target must not fail PutEvents or the other targets
            log.exception("rule %s: delivery to %s failed", rule.name, arn)
            if _deliverer is not None:
                job = _Job(rule.arn, target, event, "", rule.account_id, rule.region_name)
                _deliverer._dead_letter(job, type(exc).__name__, str(exc), None)


def _send_sqs(rule: Any, queue_name: str, payload: str, group_id: str | None) -> None:
    from moto.sqs.models import sqs_backends

    sqs_backends[rule.account_id][rule.region_name].send_message(
        queue_name=queue_name, message_body=payload, group_id=group_id
    )


def _send_log(rule: Any, group: str, payload: str) -> None:
    # moto's own helper re-parses "time" as epoch seconds, which the AWS-shaped (ISO) event no longer is.
    from moto.logs.models import logs_backends

    backend = logs_backends[rule.account_id][rule.region_name]
    stream = str(uuid.uuid4())
    backend.create_log_stream(group, stream)
    backend.put_log_events(group, stream, [{"timestamp": int(time.time() * 1000), "message": payload}])


class BusDeliveryRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _bus_policy(bus_arn: str) -> str | None:
    from moto.events.models import events_backends
    from moto.utilities.arns import parse_arn

    parsed = parse_arn(bus_arn)
    try:
        bus = events_backends[parsed.account][parsed.region].describe_event_bus(parsed.resource_id)
    except Exception:  # moto's ResourceNotFoundException: no such bus
        return None
    return bus.policy


def bus_allows(principal: Principal, bus_arn: str, *, same_account_identity: Decision | None = None) -> bool:
    """Does the bus's resource policy let ``principal`` PutEvents to it? Across accounts an explicit Allow is needed
    (and no Deny); in the bus's own account the identity policy's Allow is enough unless the bus policy denies.
    https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-bus-perms.html"""
    bus_account = bus_arn.split(":")[4]
    request = Request(principal=principal, action="events:PutEvents", resource=bus_arn,
                      context={**principal_context(principal), **resource_context(bus_account)})
    decision = evaluate([_bus_policy(bus_arn)], request, resource_policy=True)
    if decision is Decision.DENY:
        return False
    if principal.account == bus_account:
        return decision is Decision.ALLOW or same_account_identity is Decision.ALLOW
    return decision is Decision.ALLOW


def cross_bus_refusal(rule_account: str, rule_arn: str, target: dict[str, Any], bus_arn: str) -> tuple[str, str] | None:
    """Why EventBridge would not deliver to a bus in another account or Region (None: it delivers).

    The rule's target role is assumed by events.amazonaws.com (its trust policy), must allow events:PutEvents on the
    bus (its identity policies), and the bus's resource policy must allow the role's account.
    https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-cross-account.html
    """
    role_arn = target.get("RoleArn")
    if not role_arn:
        return ("AccessDeniedException",
                f"A target event bus in another account or Region needs a RoleArn: {bus_arn}")
    try:
        check_assume_role(Principal(service="events.amazonaws.com"), role_arn,
                          extra_context={"aws:SourceAccount": rule_account, "aws:SourceArn": rule_arn})
    except AccessDeniedError as exc:
        return "AccessDeniedException", exc.message
    role_account = role_arn.split(":")[4]
    session = Principal(arn=f"arn:aws:sts::{role_account}:assumed-role/{role_arn.rsplit('/', 1)[-1]}/events",
                        account=role_account)
    request = Request(principal=session, action="events:PutEvents", resource=bus_arn,
                      context={**principal_context(session), **resource_context(bus_arn.split(':')[4])})
    identity = evaluate(identity_policies(role_arn), request)
    if identity is not Decision.ALLOW:
        return ("AccessDeniedException",
                f"User: {session.arn} is not authorized to perform: events:PutEvents on resource: {bus_arn} "
                "because no identity-based policy allows the events:PutEvents action")
    if not bus_allows(session, bus_arn, same_account_identity=identity):
        return ("AccessDeniedException",
                f"User: {session.arn} is not authorized to perform: events:PutEvents on resource: {bus_arn} "
                "because no resource-based policy allows the events:PutEvents action")
    return None


def _put_forwarded(backend: Any, bus_name: str, event: dict[str, Any]) -> None:
    bus = backend.describe_event_bus(bus_name)
    for rule in list(bus.rules.values()):
        rule.send_to_targets(copy.deepcopy(event))


def install(ctx: Any) -> None:
    global _deliverer, _moto_parse
    from moto.events import models as events_models
    from moto.events import responses as events_responses

    if _moto_parse is None:
        _moto_parse = events_models.EventPatternParser.parse

    if _deliverer is None:
        _deliverer = Deliverer(ctx.endpoint)
        _deliverer.thread.start()

        def stop() -> None:
            assert _deliverer is not None
            _deliverer.jobs.put(None)
            _deliverer.thread.join(timeout=5)

        ctx.on_shutdown(stop)

    events_models.Rule.send_to_targets = send_to_targets  # type: ignore[method-assign]
    events_models.EventPattern.matches_event = lambda self, event: matches(  # type: ignore[method-assign]
        self._pattern, json.loads(json.dumps(event))
    )
    events_models.EventPatternParser.parse = _parse_checked  # type: ignore[method-assign]
    events_responses.EventsHandler.test_event_pattern = _test_event_pattern  # type: ignore[method-assign,assignment]
    if not getattr(events_responses.EventsHandler.put_events, "_auto_repair_local", False):
        original = events_responses.EventsHandler.put_events
        home_root = f"arn:aws:iam::{ctx.account_id}:root"

        def put_events(self: Any) -> str:
            return _put_events(self, original, home_root)

        put_events._auto_repair_local = True  # type: ignore[attr-defined]
        events_responses.EventsHandler.put_events = put_events  # type: ignore[method-assign]


_moto_parse: Any = None
_NOT_AUTHORIZED_FOR_SOURCE = {"ErrorCode": "NotAuthorizedForSourceException",
                              "ErrorMessage": "Not authorized for the source."}


def _put_events(handler: Any, original: Any, home_root: str) -> str:
    """PutEvents as AWS authorises it.

    * A ``Source`` beginning ``aws.`` is reserved for AWS services: the entry fails with
      ``NotAuthorizedForSourceException`` (https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutEvents.html,
      https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-events-structure.html). The local cloud's own
      ``test`` keys in the home account stay the operator's way to inject AWS-shaped events (the existing suites
      replay alarm events that way); any other principal (a role session, an IAM user, another account) is refused.
    * ``EventBusName`` naming a bus of another account or Region needs the bus's resource policy (and, for a role
      session, its identity policies) to allow ``events:PutEvents``; the event keeps the caller's account and Region.
    """
    from moto.core.exceptions import ServiceException
    from moto.events.models import events_backends
    from moto.utilities.arns import parse_arn

    entries = handler._get_param("Entries") or []
    if len(entries) > 10:
        return str(original(handler))
    principal = caller(handler.get_access_key(), handler.current_account)
    results: list[dict[str, Any]] = []
    for entry in entries:
        source = str(entry.get("Source") or "")
        bus = str(entry.get("EventBusName") or "")
        if source.startswith("aws.") and principal.arn != home_root:
            results.append(dict(_NOT_AUTHORIZED_FOR_SOURCE))
            continue
        target = parse_arn(bus) if bus.startswith("arn:") else None
        if target is None or (target.account, target.region) == (handler.current_account, handler.region):
            results.extend(handler.events_backend.put_events([entry]))
            continue
        identity = (evaluate(identity_policies(principal.role_arn), Request(
            principal=principal, action="events:PutEvents", resource=bus,
            context={**principal_context(principal), **resource_context(target.account)}))
            if principal.role_arn else Decision.ALLOW)
        if identity is not Decision.ALLOW or not bus_allows(principal, bus, same_account_identity=identity):
            class AccessDeniedException(ServiceException):
                code = "AccessDeniedException"

            raise AccessDeniedException(
                f"User: {principal.arn} is not authorized to perform: events:PutEvents on resource: {bus}")
        missing = next((k for k in ("Source", "DetailType", "Detail") if not entry.get(k)), None)
        if missing:
            results.append({"ErrorCode": "InvalidArgument", "ErrorMessage":
                            f"Parameter {missing} is not valid. Reason: {missing} is a required argument."})
            continue
        try:
            detail = json.loads(entry["Detail"])
        except ValueError:
            results.append({"ErrorCode": "MalformedDetail", "ErrorMessage": "Detail is malformed."})
            continue
        event_id = str(uuid.uuid4())
        now = time.time()
        event = {"version": "0", "id": event_id, "detail-type": entry["DetailType"], "source": source,
                 "account": handler.current_account, "time": entry.get("Time", now), "region": handler.region,
                 "resources": entry.get("Resources", []), "detail": detail, "ingestion-time": now}
        _put_forwarded(events_backends[target.account][target.region], target.resource_id, event)
        results.append({"EventId": event_id})
    failed = sum(1 for r in results if "ErrorCode" in r)
    return json.dumps({"FailedEntryCount": failed, "Entries": results})


def _parse_checked(self: Any) -> dict[str, Any]:
    """moto's PutRule/CreateStack pattern parse, then Event Ruler's refusals, as AWS answers them."""
    from moto.events.exceptions import InvalidEventPatternException

    pattern: dict[str, Any] = _moto_parse(self)
    try:
        if pattern:
            check_pattern(pattern)
    except PatternError as exc:
        raise InvalidEventPatternException(reason=str(exc)) from None
    return pattern


def _test_event_pattern(self: Any) -> str:
    """TestEventPattern (moto: not implemented): the rules' own matcher, so a test can ask what a rule matches."""
    from moto.events.exceptions import InvalidEventPatternException
    from moto.events.models import EventPattern

    pattern = EventPattern.load(self._get_param("EventPattern"))
    try:
        event = json.loads(self._get_param("Event") or "")
    except ValueError:
        raise InvalidEventPatternException(reason="Event is not valid JSON") from None
    return json.dumps({"Result": matches(pattern.get_pattern(), event)})
